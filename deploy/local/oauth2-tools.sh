#!/usr/bin/env bash
# What the OAuth2 / OpenID Connect system tests need besides the Rust toolchain, installed once:
# a virtualenv in .stack/tools with Authlib, requests and Selenium (from PyPI, pinned), and
# Debian's Chromium and chromedriver (only when `chromium` / `chromedriver` are not on PATH).
# Nothing else is downloaded: the test scripts hand Selenium the chromedriver and Chromium paths
# printed here, so Selenium Manager never fetches a driver or a browser.
#
# Idempotent. Progress goes to stderr; on success stdout has exactly these lines, for `eval` or
# for a test harness to read:
#
#   PYTHON=<the virtualenv's python>
#   CHROMEDRIVER=<path of chromedriver>
#   CHROMIUM=<path of chromium>
#
# For example:
#   eval "$(deploy/local/oauth2-tools.sh)"
#   ISSUER=... "$PYTHON" crates/system-tests/oauth2/authlib_flows.py
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

AUTHLIB_VERSION=1.9.10
REQUESTS_VERSION=2.34.2
# Not 4.52.0: it needs certifi >= 2026.10.23, which PyPI does not have yet (2026-11-30).
SELENIUM_VERSION=4.51.0
# A new pin makes a new virtualenv beside the old one, never a half-upgraded one.
VERSION_TAG=authlib$AUTHLIB_VERSION-requests$REQUESTS_VERSION-selenium$SELENIUM_VERSION
TOOLS=$STACK_DIR/tools
VENV=$TOOLS/oauth2-clients-$VERSION_TAG
# Written last, so an interrupted install is redone instead of being taken as complete.
STAMP=$VENV/.installed

# Only the result lines go to stdout: everything else (pip, apt-get, say) goes to stderr.
exec 3>&1 1>&2

if [ ! -f "$STAMP" ] || [ ! -x "$VENV/bin/python" ]; then
    say "installing Authlib $AUTHLIB_VERSION, requests $REQUESTS_VERSION, selenium $SELENIUM_VERSION from PyPI into $VENV"
    command -v python3 >/dev/null || die "python3 is needed for the OAuth2 test clients"
    if ! python3 -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
    rm -rf "$VENV"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "Authlib==$AUTHLIB_VERSION" \
        "requests==$REQUESTS_VERSION" \
        "selenium==$SELENIUM_VERSION"
    "$VENV/bin/python" -c 'import authlib, requests, selenium' \
        || die "the OAuth2 test clients do not import in $VENV"
    touch "$STAMP"
fi

if ! command -v chromium >/dev/null; then apt_install chromium; fi
if ! command -v chromedriver >/dev/null; then apt_install chromium-driver; fi
CHROMIUM=$(command -v chromium) || die "chromium is not on PATH after installing it"
CHROMEDRIVER=$(command -v chromedriver) || die "chromedriver is not on PATH after installing it"

# A driver of another major version than the browser refuses to start it: say so now rather
# than in the middle of a test.
browser_major=$("$CHROMIUM" --version 2>/dev/null | grep -Eo '[0-9]+\.' | head -1 | tr -d .) || true
driver_major=$("$CHROMEDRIVER" --version 2>/dev/null | grep -Eo '[0-9]+\.' | head -1 | tr -d .) || true
if [ -z "$browser_major" ] || [ "$browser_major" != "$driver_major" ]; then
    die "chromium ($CHROMIUM: ${browser_major:-?}) and chromedriver ($CHROMEDRIVER: ${driver_major:-?}) are not of the same major version"
fi

printf 'PYTHON=%s\nCHROMEDRIVER=%s\nCHROMIUM=%s\n' "$VENV/bin/python" "$CHROMEDRIVER" "$CHROMIUM" >&3
