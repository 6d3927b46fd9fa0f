#!/usr/bin/env python3
"""The sign-in and consent pages of the gateway's OAuth2 provider in a real browser: headless
Chromium (Debian's, driven by Selenium 4 through Debian's chromedriver; Selenium Manager is never
used, so nothing is downloaded), a code flow with PKCE S256, state and nonce up to the tokens.

It starts a tiny HTTP server of its own on REDIRECT_URI's port to receive the redirect, opens the
authorization URL, types the username and password into the sign-in form, clicks
#sign-in-submit, waits for the consent form, saves a screenshot of it, checks the page names the
client, clicks #allow, waits for the redirect, checks state and iss, and exchanges the code at
the token endpoint (client_secret_basic + code_verifier) for an access token and an ID token.

Environment:
  ISSUER                   the gateway's base URL, e.g. http://127.0.0.1:8080
  CLIENT_ID, CLIENT_SECRET a confidential client with REDIRECT_URI registered, scopes openid email
  CLIENT_NAME              the client's registered name, which the consent page must show
  USERNAME, PASSWORD       a user who has not yet consented to this client
  REDIRECT_URI             http://127.0.0.1:PORT/PATH; this script listens on 127.0.0.1:PORT
  SCREENSHOT               the PNG file to write the consent page to
  CHROMEDRIVER, CHROMIUM   the paths deploy/local/oauth2-tools.sh prints

Output: `ok <step>` per step, `screenshot: <path>`; at the first failure `FAIL <step>: ...` and
exit status 1 (2 for a missing variable). Every wait ends after 30 s, and the whole run after
240 s.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

# Never let Selenium Manager run (it would download a driver or browser), nor send usage stats.
# Selenium skips it anyway when the Service is given the chromedriver path, as below.
os.environ["SE_AVOID_STATS"] = "true"
os.environ["SE_OFFLINE"] = "true"

import requests  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# testkit.py, beside this script, holds what the test clients share: found from any working
# directory, and no __pycache__ left beside it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from testkit import env  # noqa: E402

WAIT = 30  # seconds, for every wait on the browser, the callback and HTTP
DEADLINE = 240  # seconds for the whole run
# A blocking socket call (e.g. a command to chromedriver) never waits longer than this.
socket.setdefaulttimeout(60)


class StepFailed(Exception):
    pass


def ok(step: str) -> None:
    print(f"ok {step}", flush=True)


class Callback(BaseHTTPRequestHandler):
    """Receives the redirect to REDIRECT_URI: puts its query on the server's queue."""

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != self.server.path:
            self.send_error(404)
            return
        self.server.received.put(self.path)
        body = b"<!doctype html><title>callback</title><p>Authorization response received.</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def start_callback_server(redirect_uri: str) -> HTTPServer:
    url = urlsplit(redirect_uri)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        raise StepFailed(f"expected REDIRECT_URI http://127.0.0.1:PORT/PATH; got {redirect_uri!r}")
    server = HTTPServer(("127.0.0.1", url.port), Callback)
    server.path = url.path or "/"
    server.received = queue.Queue()
    threading.Thread(target=server.serve_forever, name="callback", daemon=True).start()
    return server


def start_browser(chromedriver: str, chromium: str) -> webdriver.Chrome:
    for path in (chromedriver, chromium):
        if not Path(path).is_file() or not os.access(path, os.X_OK):
            raise StepFailed(f"expected an executable at {path}; got none")
    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    service = Service(executable_path=chromedriver)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


def wait_for(driver, what: str, condition):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        raise StepFailed(
            f"expected {what} within {WAIT} s; got page {driver.current_url!r}: {page_text(driver)!r}"
        ) from None


def page_text(driver) -> str:
    try:
        text = driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException:
        return ""
    return " ".join(text.split())[:500]


def stale(element) -> bool:
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def first(driver, css: str):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def run() -> None:
    global current_step
    issuer = env("ISSUER")
    client_id, client_secret = env("CLIENT_ID"), env("CLIENT_SECRET")
    client_name = env("CLIENT_NAME")
    username, password = env("USERNAME"), env("PASSWORD")
    redirect_uri = env("REDIRECT_URI")
    screenshot = Path(env("SCREENSHOT")).resolve()
    chromedriver, chromium = env("CHROMEDRIVER"), env("CHROMIUM")

    http = requests.Session()
    http.trust_env = False  # everything is on the loopback: no proxy
    current_step = "discovery"
    resp = http.get(issuer + "/.well-known/openid-configuration", timeout=WAIT)
    if resp.status_code != 200:
        raise StepFailed(
            f"expected 200 from the discovery document; got {resp.status_code} {resp.text[:300]!r}"
        )
    meta = resp.json()
    if meta.get("issuer") != issuer:
        raise StepFailed(f"expected issuer {issuer!r}; got {meta.get('issuer')!r}")
    ok(current_step)

    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    authorization_url = (
        meta["authorization_endpoint"]
        + "?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid email",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )

    current_step = "callback_server"
    server = start_callback_server(redirect_uri)
    driver = None
    try:
        current_step = "browser"
        driver = start_browser(chromedriver, chromium)
        ok(f"browser ({driver.capabilities.get('browserVersion', '?')})")

        current_step = "sign_in_page"
        driver.get(authorization_url)
        form = wait_for(driver, "the sign-in form (form#sign-in)", lambda d: first(d, "form#sign-in"))
        username_input = form.find_elements(By.CSS_SELECTOR, 'input[name="username"]')
        password_input = form.find_elements(By.CSS_SELECTOR, 'input[name="password"][type="password"]')
        if not username_input or not password_input or not first(driver, "#sign-in-submit"):
            raise StepFailed(
                "expected inputs username and password and a #sign-in-submit button in form#sign-in; "
                f"got {page_text(driver)!r}"
            )
        ok(current_step)

        current_step = "sign_in"
        username_input[0].send_keys(username)
        password_input[0].send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "#sign-in-submit").click()
        # The next page, not the one still shown while the form is being posted.
        wait_for(driver, "the sign-in form to be submitted", lambda d: stale(form))

        def consent_or_else(d):
            alert = first(d, '[role="alert"]')
            return (
                first(d, "form#consent")
                or (alert if alert and alert.text.strip() else None)
                or (not server.received.empty() and "callback")
            )

        outcome = wait_for(driver, "the consent form (form#consent) after signing in", consent_or_else)
        if outcome == "callback":
            raise StepFailed(
                "expected the consent page after signing in; got a redirect to the client at once "
                "(USERNAME has consented to this client before?)"
            )
        if outcome.tag_name != "form":
            raise StepFailed(
                f"expected the consent page after signing in; got the sign-in page with {outcome.text!r}"
            )
        ok(current_step)

        current_step = "consent_page"
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        if (
            not driver.save_screenshot(str(screenshot))
            or not screenshot.is_file()
            or screenshot.stat().st_size == 0
        ):
            raise StepFailed(f"expected a screenshot written to {screenshot}; got none")
        print(f"screenshot: {screenshot}", flush=True)
        text = driver.find_element(By.TAG_NAME, "body").text
        if client_name not in text:
            raise StepFailed(
                f"expected the client's name {client_name!r} on the consent page; got {page_text(driver)!r}"
            )
        if not first(driver, "form#consent #allow") or not first(driver, "form#consent #deny"):
            raise StepFailed(f"expected buttons #allow and #deny in form#consent; got {page_text(driver)!r}")
        ok(current_step)

        current_step = "allow"
        driver.find_element(By.CSS_SELECTOR, "#allow").click()
        try:
            path = server.received.get(timeout=WAIT)
        except queue.Empty:
            raise StepFailed(
                f"expected the redirect to {redirect_uri} within {WAIT} s; "
                f"got page {driver.current_url!r}: {page_text(driver)!r}"
            ) from None
        params = {k: v[0] for k, v in parse_qs(urlsplit(path).query, keep_blank_values=True).items()}
        if "error" in params or not params.get("code"):
            raise StepFailed(f"expected a code in the redirect; got {path!r}")
        if params.get("state") != state:
            raise StepFailed(f"expected state {state!r} back unchanged; got {params.get('state')!r}")
        if params.get("iss") != issuer:
            raise StepFailed(f"expected iss {issuer!r} in the redirect; got {params.get('iss')!r}")
        ok(current_step)
    finally:
        if driver is not None:
            driver.quit()
        server.shutdown()
        server.server_close()

    current_step = "token"
    resp = http.post(
        meta["token_endpoint"],
        auth=(client_id, client_secret),
        timeout=WAIT,
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )
    try:
        tokens = resp.json()
    except ValueError:
        tokens = {}
    if resp.status_code != 200 or not tokens.get("access_token") or not tokens.get("id_token"):
        raise StepFailed(
            f"expected 200 with access_token and id_token; got {resp.status_code} {resp.text[:600]!r}"
        )
    # Not verified here (authlib_flows.py does that): only that it is this flow's ID token.
    payload = tokens["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if claims.get("nonce") != nonce or claims.get("aud") not in (client_id, [client_id]):
        raise StepFailed(f"expected an ID token with nonce {nonce!r} and aud {client_id!r}; got {claims}")
    ok(current_step)


current_step = "setup"


def main() -> int:
    def out_of_time(signum, frame):
        raise StepFailed(f"expected the whole run to end within {DEADLINE} s; it did not")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(DEADLINE)
    try:
        run()
    except StepFailed as failure:
        print(f"FAIL {current_step}: {failure}", flush=True)
        return 1
    except Exception as error:  # a browser that does not start, a network error, a crash
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        print(f"FAIL {current_step}: {detail}", flush=True)
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
