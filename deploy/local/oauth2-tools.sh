#!/usr/bin/env bash
# What the OAuth2 / OpenID Connect system tests need besides the Rust toolchain, installed once:
# a virtualenv in .stack/tools with Authlib, requests and Selenium (from PyPI, pinned), Debian's
# Chromium and chromedriver (only when `chromium` / `chromedriver` are not on PATH), and the
# upstream OpenID provider of the federation tests (crates/system-tests/oauth2/upstream-provider:
# panva's oidc-provider from npm, `npm ci` from its package-lock.json into .stack/tools, so that
# no node_modules lands in the source tree; Node.js and npm from Debian when not on PATH).
# Nothing else is downloaded: the test scripts hand Selenium the chromedriver and Chromium paths
# printed here, so Selenium Manager never fetches a driver or a browser.
#
# Idempotent. Progress goes to stderr; on success stdout has exactly these lines, for `eval` or
# for a test harness to read:
#
#   PYTHON=<the virtualenv's python>
#   CHROMEDRIVER=<path of chromedriver>
#   CHROMIUM=<path of chromium>
#   NODE=<path of node>
#   UPSTREAM_PROVIDER=<path of the installed provider.mjs, to run with $NODE>
#
# For example:
#   eval "$(deploy/local/oauth2-tools.sh)"
#   ISSUER=... "$PYTHON" crates/system-tests/oauth2/authlib_flows.py
#   ISSUER=http://127.0.0.1:4100 PORT=4100 CLIENT_ID=... CLIENT_SECRET=... REDIRECT_URI=... \
#       "$NODE" "$UPSTREAM_PROVIDER"
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

# Tests run in parallel and each asks for the tools: one installs, the others wait for it.
mkdir -p "$TOOLS"
exec 9>"$TOOLS/.oauth2-tools.lock"
flock 9

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

# The upstream OpenID provider of the federation tests. Its directory is named after the
# oidc-provider version that its package.json pins; the stamp holds the SHA-256 of the
# package-lock.json it was installed from, so that a changed lock file installs again.
if ! command -v node >/dev/null; then apt_install nodejs npm; fi
if ! command -v npm >/dev/null; then apt_install npm; fi
NODE=$(command -v node) || die "node is not on PATH after installing it"
UPSTREAM_SRC=$ROOT/crates/system-tests/oauth2/upstream-provider
OIDC_PROVIDER_VERSION=$("$NODE" -p 'require(process.argv[1]).dependencies["oidc-provider"]' \
    "$UPSTREAM_SRC/package.json") || die "cannot read the oidc-provider version from $UPSTREAM_SRC/package.json"
[[ $OIDC_PROVIDER_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || die "$UPSTREAM_SRC/package.json must pin oidc-provider to an exact version, not $OIDC_PROVIDER_VERSION"
UPSTREAM_DIR=$TOOLS/upstream-provider-$OIDC_PROVIDER_VERSION
UPSTREAM_STAMP=$UPSTREAM_DIR/.installed
lock_sum=$(sha256sum "$UPSTREAM_SRC/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$UPSTREAM_STAMP" ] || [ "$(cat "$UPSTREAM_STAMP")" != "$lock_sum" ] \
    || [ ! -d "$UPSTREAM_DIR/node_modules/oidc-provider" ]; then
    say "installing oidc-provider $OIDC_PROVIDER_VERSION from npm into $UPSTREAM_DIR"
    rm -f "$UPSTREAM_STAMP"
    mkdir -p "$UPSTREAM_DIR"
    cp "$UPSTREAM_SRC/package.json" "$UPSTREAM_SRC/package-lock.json" "$UPSTREAM_DIR/"
    (cd "$UPSTREAM_DIR" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error) \
        || die "npm ci failed in $UPSTREAM_DIR"
    (cd "$UPSTREAM_DIR" && "$NODE" --input-type=module -e "await import('oidc-provider')") \
        || die "oidc-provider does not load with $NODE ($("$NODE" --version)) from $UPSTREAM_DIR"
    printf '%s\n' "$lock_sum" >"$UPSTREAM_STAMP"
fi
# Copied on every run, so that an edited provider.mjs takes effect without a new install.
cp "$UPSTREAM_SRC/provider.mjs" "$UPSTREAM_DIR/provider.mjs.tmp"
mv -f "$UPSTREAM_DIR/provider.mjs.tmp" "$UPSTREAM_DIR/provider.mjs"

printf 'PYTHON=%s\nCHROMEDRIVER=%s\nCHROMIUM=%s\nNODE=%s\nUPSTREAM_PROVIDER=%s\n' \
    "$VENV/bin/python" "$CHROMEDRIVER" "$CHROMIUM" "$NODE" "$UPSTREAM_DIR/provider.mjs" >&3
