#!/usr/bin/env python3
"""The gateway's "sign in with another OpenID Connect provider" (federation) driven the way a
browser drives it.

Each "browser" is a `requests.Session` (its own cookie jar) that follows no redirect by itself:
redirects are followed by hand, and the HTML pages on the way (the upstream provider's sign-in
and consent pages) are read with html.parser and their forms posted back as a browser without
JavaScript would, until the browser arrives at the gateway's callback
(/api/v1/auth/providers/<PROVIDER>/callback). Only `requests` and the standard library are used.

Environment:
  GATEWAY            the gateway's base URL, e.g. http://127.0.0.1:8080 (no trailing slash); the
                     same origin as its OAUTH2_ISSUER, or the browser's cookie would not reach
                     the callback
  PROVIDER           the provider's name in the gateway's OIDC_PROVIDERS
  UPSTREAM_KIND      oidc-provider  the upstream is upstream-provider/provider.mjs (any login is
                                    accepted; email = the login if it has an @, else
                                    <login>@upstream.example; email_verified true)
                     self           the upstream is another gateway of this project (its
                                    form#sign-in and form#consent pages)
  UPSTREAM_LOGIN, UPSTREAM_PASSWORD
                     self: an existing user of the upstream gateway (username: email or phone)
                     who has never signed in to GATEWAY through PROVIDER and whose email has no
                     account on GATEWAY; oidc-provider: optional, any login (default: a new one
                     each run, so that first_sign_in_creates_account holds on a reused database)
  LOCAL_PASSWORD     the password the local users of the link checks are registered with
  optional:
  UPSTREAM_EMAIL     the upstream account's email, compared with the created account's (default:
                     UPSTREAM_LOGIN if it has an @, for oidc-provider the rule above; otherwise
                     not compared)
  UPSTREAM_LOGIN2, UPSTREAM_PASSWORD2
                     a second upstream account for link_and_unlink (self: another user of the
                     upstream gateway, linked to no one; without it the check is skipped;
                     oidc-provider: default a new login each run)
  HTTP_TIMEOUT       seconds, default 30

Output: `ok <check>` for each check that passed, in order (`skip <check>: <why>` for one that
cannot run here); at the first failure `FAIL <check>: expected ...; got ...` (with the status
and body of the response in question) and exit status 1 (2 for a missing variable).

  federation_flows.py            every check
  federation_flows.py --list     the checks' names, in order
  federation_flows.py NAME...    the named checks (in the listed order; a check obtains what it
                                 needs from earlier steps by itself)
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import sys
import traceback
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

# testkit.py, beside this script, holds what the test clients share: found from any working
# directory, and no __pycache__ left beside it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import testkit  # noqa: E402
from testkit import CheckFailed, Form, env, fail, parse_page  # noqa: E402

TIMEOUT = float(os.environ.get("HTTP_TIMEOUT", "30"))
# Redirects and form posts one browser flow may take before it is taken for a loop.
MAX_STEPS = 20
KINDS = ("oidc-provider", "self")
OIDC_PROVIDER_EMAIL_DOMAIN = "upstream.example"


# ---------------------------------------------------------------------------------------------
# Configuration


def fresh(prefix: str) -> str:
    """A name no earlier run used: lower case, as the gateway stores emails."""
    return f"{prefix}-{secrets.token_hex(6)}"


GATEWAY = env("GATEWAY").rstrip("/")
PROVIDER = env("PROVIDER")
UPSTREAM_KIND = env("UPSTREAM_KIND")
if UPSTREAM_KIND not in KINDS:
    print(f"FAIL setup: UPSTREAM_KIND must be one of {', '.join(KINDS)}, not {UPSTREAM_KIND!r}", flush=True)
    sys.exit(2)
SELF = UPSTREAM_KIND == "self"
if SELF:
    UPSTREAM_LOGIN = env("UPSTREAM_LOGIN")
    UPSTREAM_PASSWORD = env("UPSTREAM_PASSWORD")
    UPSTREAM_LOGIN2 = os.environ.get("UPSTREAM_LOGIN2", "")
    UPSTREAM_PASSWORD2 = os.environ.get("UPSTREAM_PASSWORD2", "")
else:
    UPSTREAM_LOGIN = env("UPSTREAM_LOGIN", f"{fresh('fed-first')}@{OIDC_PROVIDER_EMAIL_DOMAIN}")
    UPSTREAM_PASSWORD = env("UPSTREAM_PASSWORD", "any password")
    UPSTREAM_LOGIN2 = env("UPSTREAM_LOGIN2", f"{fresh('fed-link')}@{OIDC_PROVIDER_EMAIL_DOMAIN}")
    UPSTREAM_PASSWORD2 = env("UPSTREAM_PASSWORD2", "any password")
LOCAL_PASSWORD = env("LOCAL_PASSWORD")

CALLBACK_PATH = f"/api/v1/auth/providers/{PROVIDER}/callback"
COOKIE_NAME = "oidc_login"
COOKIE_PATH = "/api/v1/auth/providers"


def upstream_email(login: str, override: str = "") -> str | None:
    """The email the upstream gives for `login`, when it can be told."""
    if override:
        return override.lower()
    if "@" in login:
        return login.lower()
    if not SELF:
        return f"{login}@{OIDC_PROVIDER_EMAIL_DOMAIN}".lower()
    return None


# ---------------------------------------------------------------------------------------------
# Failures


class CheckSkipped(Exception):
    pass


def page_text(html: str) -> str:
    """The visible text of an HTML page, on one line (error pages say what went wrong there)."""
    html = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html)
    return " ".join(re.sub(r"(?s)<[^>]*>", " ", html).split())


def show(resp: requests.Response) -> str:
    """Status, the headers that matter and the start of the body, on one line: the URL with its
    origin (two servers take part), Set-Cookie, and an HTML page's visible text."""
    return testkit.show(
        resp,
        headers=("Location", "Content-Type", "Set-Cookie", "WWW-Authenticate"),
        limit=800,
        origin=True,
        html_text=page_text,
    )


def json_body(resp: requests.Response, status: int, what: str):
    """The response's JSON body, after checking its status and content type (testkit's, with
    this script's `show`)."""
    return testkit.json_body(resp, status, what, show=show)


def expect_error(resp: requests.Response, status: int, code: str, what: str) -> dict:
    """The API's error shape {"error": {"code", "message"}} with `status` and `code`."""
    body = json_body(resp, status, f"{what}: {status} {code}")
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or error.get("code") != code:
        fail(f'{what}: {status} {{"error": {{"code": "{code}", ...}}}}', show(resp))
    if not isinstance(error.get("message"), str):
        fail(f"{what}: an error message", show(resp))
    return body


# ---------------------------------------------------------------------------------------------
# HTTP


def new_browser() -> requests.Session:
    """A browser: its own cookie jar; nothing from the environment (everything is local)."""
    http = requests.Session()
    http.trust_env = False
    return http


API = new_browser()  # for the JSON API calls that need no cookie


def api(method: str, path: str, token: str | None = None, http: requests.Session = API, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.request(
        method, GATEWAY + path, headers=headers, allow_redirects=False, timeout=TIMEOUT, **kwargs
    )


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def is_callback(url: str) -> bool:
    return urlsplit(url).path == CALLBACK_PATH


def check_callback_origin(url: str) -> None:
    got, want = urlsplit(url), urlsplit(GATEWAY)
    if (got.scheme, got.netloc) != (want.scheme, want.netloc):
        fail(
            f"the callback on GATEWAY's origin {want.scheme}://{want.netloc} (else the browser "
            f"would not send the {COOKIE_NAME} cookie: set GATEWAY to the gateway's OAUTH2_ISSUER)",
            url,
        )


# ---------------------------------------------------------------------------------------------
# The browser: pages read with html.parser


def has_password(form: Form) -> bool:
    return any(a.get("type", "").lower() == "password" for a in form.inputs.values())


def choose_form(resp: requests.Response, login: str, password: str):
    """The form a person would fill on this page: (what, form, values, button), or None."""
    forms = parse_page(resp).forms
    by_id = {f.id: f for f in forms if f.id}
    first_button = lambda f: f.buttons[0] if f.buttons else None  # noqa: E731
    # This project's gateway as the upstream (oauth2-spec.md).
    if "sign-in" in by_id:
        form = by_id["sign-in"]
        button = next((b for b in form.buttons if b.get("id") == "sign-in-submit"), first_button(form))
        return "the upstream gateway's sign-in form", form, {"username": login, "password": password}, button
    if "consent" in by_id:
        form = by_id["consent"]
        button = next(
            (b for b in form.buttons if (b.get("name"), b.get("value")) == ("decision", "allow")), None
        )
        if button is None:
            return None
        return "the upstream gateway's consent form (allow)", form, {}, button
    # oidc-provider's development interactions: a login form (inputs login, password), then a
    # consent form (hidden prompt=consent, one submit button).
    for form in forms:
        if "login" in form.inputs and has_password(form):
            return "the upstream's login form", form, {"login": login, "password": password}, first_button(form)
    for form in forms:
        if dict(form.fields).get("prompt") == "consent" and form.method == "post":
            return "the upstream's consent form", form, {}, first_button(form)
    return None


def submit(http: requests.Session, page: requests.Response, form: Form, values: dict, button) -> requests.Response:
    """Sends a form as a browser would: its fields, `values` replacing those of the same name,
    and the name/value of the button clicked; a relative action resolved against the page."""
    data = [(k, v) for k, v in form.fields if k not in values] + list(values.items())
    if button and button.get("name"):
        data.append((button["name"], button.get("value", "")))
    url = urljoin(page.url, form.action or page.url)
    if form.method == "get":
        url = urljoin(url, "?" + urlencode(data))
        return http.get(url, allow_redirects=False, timeout=TIMEOUT)
    return http.post(url, data=data, allow_redirects=False, timeout=TIMEOUT)


@dataclass
class Browsed:
    callback_url: str  # where the upstream sent the browser back to
    response: requests.Response | None  # the callback's response (None with stop_at_callback)
    steps: list[str]  # what the browser did, for failure messages


def browse(
    http: requests.Session, url: str, login: str, password: str, *, stop_at_callback: bool = False
) -> Browsed:
    """Opens `url` in the browser `http` and goes on as a person would: follows redirects,
    fills the upstream's sign-in form with login/password and allows on its consent page, until
    the browser is sent to the gateway's callback. Then returns the callback's response (or,
    with stop_at_callback, only its URL, not opened)."""
    steps: list[str] = []
    resp = None
    for _ in range(MAX_STEPS):
        if resp is None or resp.status_code in (301, 302, 303, 307, 308):
            if resp is not None:
                location = resp.headers.get("Location")
                if not location:
                    fail("a Location with the redirect", show(resp))
                url = urljoin(resp.url, location)
            if is_callback(url):
                check_callback_origin(url)
                steps.append(f"callback {urlsplit(url).path}")
                if stop_at_callback:
                    return Browsed(url, None, steps)
                return Browsed(url, http.get(url, allow_redirects=False, timeout=TIMEOUT), steps)
            steps.append(f"GET {urlsplit(url).netloc}{urlsplit(url).path}")
            resp = http.get(url, allow_redirects=False, timeout=TIMEOUT)
            continue
        if resp.status_code != 200 or not resp.headers.get("Content-Type", "").startswith("text/html"):
            fail(
                f"on the way to the callback ({' -> '.join(steps)}): a redirect or an HTML page "
                "(the upstream's sign-in or consent page)",
                show(resp),
            )
        chosen = choose_form(resp, login, password)
        if chosen is None:
            fail(
                f"on the way to the callback ({' -> '.join(steps)}): a sign-in or consent form to fill",
                show(resp),
            )
        what, form, values, button = chosen
        steps.append(f"POST {what}")
        page = resp
        resp = submit(http, page, form, values, button)
        if resp.status_code == 401:
            fail(f"{what} to accept login {login!r} (a redirect or the next page)", show(resp))
    fail(f"the callback within {MAX_STEPS} steps", " -> ".join(steps))


# ---------------------------------------------------------------------------------------------
# Federation steps


def expect_login_cookie(resp: requests.Response, http: requests.Session, what: str) -> None:
    """Set-Cookie: oidc_login=<random>; HttpOnly; SameSite=Lax; Path=/api/v1/auth/providers."""
    # requests folds several Set-Cookie headers into one; urllib3's headers keep them apart.
    raw = resp.raw.headers.getlist("Set-Cookie")
    cookie = next((c.strip() for c in raw if c.strip().startswith(COOKIE_NAME + "=")), None)
    if cookie is None:
        fail(f"{what}: Set-Cookie {COOKIE_NAME}=...", show(resp))
    attributes = {part.strip().split("=", 1)[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    value = cookie.split(";")[0].split("=", 1)[1].strip()
    if len(value) < 16:
        fail(f"{what}: a random {COOKIE_NAME} value (16 characters or more)", cookie)
    if "httponly" not in attributes:
        fail(f"{what}: {COOKIE_NAME} HttpOnly", cookie)
    if attributes.get("samesite", "").lower() != "samesite=lax":
        fail(f"{what}: {COOKIE_NAME} SameSite=Lax", cookie)
    if attributes.get("path", "").lower() != f"path={COOKIE_PATH}".lower():
        fail(f"{what}: {COOKIE_NAME} Path={COOKIE_PATH}", cookie)
    if COOKIE_NAME not in http.cookies:
        fail(f"{what}: the {COOKIE_NAME} cookie kept by the browser", cookie)


def expect_authorization_url(url: str, what: str) -> dict[str, str]:
    """An authorization request to the upstream: code flow, state, nonce, PKCE S256, and a
    redirect_uri that is this gateway's callback."""
    params = query_of(url)
    got = json.dumps(params)
    if urlsplit(url).scheme not in ("http", "https") or is_callback(url):
        fail(f"{what}: the upstream's authorization URL", url)
    if params.get("response_type") != "code":
        fail(f"{what}: response_type=code", got)
    for name in ("client_id", "state", "nonce", "code_challenge"):
        if not params.get(name):
            fail(f"{what}: a {name}", got)
    if len(params["state"]) < 16 or len(params["nonce"]) < 16:
        fail(f"{what}: a random state and nonce (16 characters or more)", got)
    if params.get("code_challenge_method") != "S256":
        fail(f"{what}: code_challenge_method=S256", got)
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", params["code_challenge"]):
        fail(f"{what}: an S256 code_challenge (43 base64url characters)", got)
    if "openid" not in params.get("scope", "").split():
        fail(f"{what}: scope with openid", got)
    redirect_uri = params.get("redirect_uri", "")
    if not is_callback(redirect_uri):
        fail(f"{what}: redirect_uri ...{CALLBACK_PATH}", got)
    check_callback_origin(redirect_uri)
    return params


@dataclass
class Flow:
    http: requests.Session  # the browser
    authorization_url: str  # where the gateway sent it
    params: dict[str, str]  # the authorization request's parameters


def start_sign_in(http: requests.Session | None = None) -> Flow:
    """GET /api/v1/auth/providers/<p>/authorize in a (new) browser: 303 to the upstream."""
    http = http or new_browser()
    what = f"GET /api/v1/auth/providers/{PROVIDER}/authorize"
    # consent=true: the terms are accepted, as a new account needs (registration's `consent`).
    resp = api("GET", f"/api/v1/auth/providers/{PROVIDER}/authorize?consent=true", http=http)
    if resp.status_code != 303 or not resp.headers.get("Location"):
        fail(f"{what}: 303 to the upstream", show(resp))
    expect_login_cookie(resp, http, what)
    url = urljoin(resp.url, resp.headers["Location"])
    return Flow(http, url, expect_authorization_url(url, f"{what}: the Location"))


def start_link(token: str) -> Flow:
    """POST /api/v1/me/providers/<p> as the user of `token`, in a new browser."""
    http = new_browser()
    what = f"POST /api/v1/me/providers/{PROVIDER}"
    resp = api("POST", f"/api/v1/me/providers/{PROVIDER}", token, http=http)
    body = json_body(resp, 200, what)
    url = body.get("authorization_url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        fail(f"{what}: an authorization_url", show(resp))
    expect_login_cookie(resp, http, what)
    return Flow(http, url, expect_authorization_url(url, f"{what}: authorization_url"))


def finish(flow: Flow, login: str, password: str) -> Browsed:
    return browse(flow.http, flow.authorization_url, login, password)


def expect_signed_in(browsed: Browsed, what: str) -> dict:
    resp = browsed.response
    body = json_body(resp, 200, f"{what}: the callback")
    for name in ("access_token", "refresh_token", "session_id", "user_id"):
        if not isinstance(body.get(name), str) or not body[name]:
            fail(f"{what}: the callback's {name}", show(resp))
    if body.get("token_type") != "Bearer":
        fail(f"{what}: the callback's token_type Bearer", show(resp))
    for name in ("expires_in", "refresh_token_expires_in"):
        if not isinstance(body.get(name), int) or body[name] <= 0:
            fail(f"{what}: the callback's {name}, a positive integer", show(resp))
    if not isinstance(body.get("account_created"), bool):
        fail(f"{what}: the callback's account_created, a boolean", show(resp))
    return body


def me(token: str, what: str) -> dict:
    resp = api("GET", "/api/v1/me", token)
    body = json_body(resp, 200, f"{what}: GET /api/v1/me")
    if not isinstance(body, dict) or not body.get("user_id"):
        fail(f"{what}: GET /api/v1/me with a user_id", show(resp))
    return body


def sign_in_with_provider(login: str, password: str, what: str) -> tuple[Flow, Browsed, dict]:
    flow = start_sign_in()
    browsed = finish(flow, login, password)
    return flow, browsed, expect_signed_in(browsed, what)


def local_user(label: str) -> dict:
    """A new password user of the gateway, signed in: {"email", "user_id", "token"}."""
    email = f"{fresh('fed-' + label)}@example.com"
    resp = api(
        "POST", "/api/v1/auth/register-sync", json={"email": email, "password": LOCAL_PASSWORD, "consent": True}
    )
    json_body(resp, 201, f"registering the local user {email}")
    resp = api("POST", "/api/v1/auth/sign-in", json={"email": email, "password": LOCAL_PASSWORD})
    body = json_body(resp, 200, f"signing in the local user {email}")
    if not body.get("access_token") or not body.get("user_id"):
        fail(f"signing in the local user {email}: access_token and user_id", show(resp))
    return {"email": email, "user_id": body["user_id"], "token": body["access_token"]}


def linked_providers(token: str, what: str) -> list:
    resp = api("GET", "/api/v1/me/providers", token)
    body = json_body(resp, 200, f"{what}: GET /api/v1/me/providers")
    if not isinstance(body, list):
        fail(f"{what}: GET /api/v1/me/providers, a JSON array", show(resp))
    return body


@functools.cache
def first_sign_in() -> dict:
    """UPSTREAM_LOGIN's first sign-in through the provider (its browser kept for the replay)."""
    what = f"the first sign-in of {UPSTREAM_LOGIN!r}"
    flow, browsed, body = sign_in_with_provider(UPSTREAM_LOGIN, UPSTREAM_PASSWORD, what)
    return {"flow": flow, "browsed": browsed, "body": body}


# ---------------------------------------------------------------------------------------------
# Checks

CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def providers_listed():
    resp = api("GET", "/api/v1/auth/providers")
    body = json_body(resp, 200, "GET /api/v1/auth/providers")
    if not isinstance(body, list) or not all(isinstance(p, dict) for p in body):
        fail('GET /api/v1/auth/providers: [{"name", "display_name"}, ...]', show(resp))
    entry = next((p for p in body if p.get("name") == PROVIDER), None)
    if entry is None:
        fail(f"GET /api/v1/auth/providers listing {PROVIDER!r}", show(resp))
    if not isinstance(entry.get("display_name"), str) or not entry["display_name"]:
        fail(f"GET /api/v1/auth/providers: a display_name for {PROVIDER!r}", show(resp))


@check
def unknown_provider_refused():
    name = fresh("no-such-provider")
    resp = api("GET", f"/api/v1/auth/providers/{name}/authorize")
    json_body(resp, 404, f"GET /api/v1/auth/providers/{name}/authorize: 404")
    if "Location" in resp.headers:
        fail("no redirect for an unknown provider", show(resp))


@check
def first_sign_in_creates_account():
    first = first_sign_in()
    body, resp = first["body"], first["browsed"].response
    if body["account_created"] is not True:
        fail(
            f"account_created true on the first sign-in of {UPSTREAM_LOGIN!r} (an upstream "
            "account that never signed in to this gateway)",
            show(resp),
        )
    profile = me(body["access_token"], "the new account's access token")
    if profile["user_id"] != body["user_id"]:
        fail(f"GET /api/v1/me: user_id {body['user_id']!r} as in the callback", json.dumps(profile))
    email = upstream_email(UPSTREAM_LOGIN, os.environ.get("UPSTREAM_EMAIL", ""))
    if email is not None and str(profile.get("email", "")).lower() != email:
        fail(f"GET /api/v1/me: the upstream's email {email!r}", json.dumps(profile))
    if email is None and not profile.get("email"):
        fail("GET /api/v1/me: the upstream's email", json.dumps(profile))
    # provider.mjs says email_verified true for every account.
    if not SELF and profile.get("email_verified") is not True:
        fail("GET /api/v1/me: email_verified true (the upstream says email_verified true)", json.dumps(profile))


@check
def second_sign_in_same_user():
    first = first_sign_in()["body"]
    _, browsed, body = sign_in_with_provider(
        UPSTREAM_LOGIN, UPSTREAM_PASSWORD, f"a second sign-in of {UPSTREAM_LOGIN!r}"
    )
    if body["account_created"] is not False:
        fail("account_created false on a second sign-in", show(browsed.response))
    if body["user_id"] != first["user_id"]:
        fail(f"the same user_id {first['user_id']!r} as on the first sign-in", show(browsed.response))
    if body["access_token"] == first["access_token"]:
        fail("a new access token", "the first sign-in's")
    me(body["access_token"], "the second sign-in's access token")


@check
def callback_without_cookie_refused():
    first_sign_in()
    flow = start_sign_in()
    browsed = browse(flow.http, flow.authorization_url, UPSTREAM_LOGIN, UPSTREAM_PASSWORD, stop_at_callback=True)
    if not query_of(browsed.callback_url).get("code"):
        fail("the upstream's redirect to the callback with a code", browsed.callback_url)
    other = new_browser()
    resp = other.get(browsed.callback_url, allow_redirects=False, timeout=TIMEOUT)
    expect_error(resp, 400, "invalid_state", "the callback opened in another browser (no oidc_login cookie)")


@check
def callback_state_replayed_refused():
    first = first_sign_in()
    http, url = first["flow"].http, first["browsed"].callback_url
    resp = http.get(url, allow_redirects=False, timeout=TIMEOUT)
    expect_error(resp, 400, "invalid_state", "the completed callback replayed in the same browser")


@check
def callback_tampered_state_refused():
    flow = start_sign_in()
    query = urlencode({"code": secrets.token_urlsafe(32), "state": secrets.token_urlsafe(32)})
    resp = flow.http.get(f"{GATEWAY}{CALLBACK_PATH}?{query}", allow_redirects=False, timeout=TIMEOUT)
    expect_error(resp, 400, "invalid_state", "the callback with a made-up state (and the browser's cookie)")
    # The same with the real state but a cookie of another flow.
    real = start_sign_in()
    other = start_sign_in()
    query = urlencode({"code": secrets.token_urlsafe(32), "state": real.params["state"]})
    resp = other.http.get(f"{GATEWAY}{CALLBACK_PATH}?{query}", allow_redirects=False, timeout=TIMEOUT)
    expect_error(resp, 400, "invalid_state", "the callback with the state of another browser's flow")


@functools.cache
def upstream_issuer(authorization_url: str) -> str | None:
    """The upstream's issuer (for the iss parameter, RFC 9207), from the discovery document at
    the authorization endpoint's origin; None when it cannot be found there."""
    parts = urlsplit(authorization_url)
    try:
        resp = API.get(f"{parts.scheme}://{parts.netloc}/.well-known/openid-configuration", timeout=TIMEOUT)
        doc = resp.json() if resp.status_code == 200 else {}
    except (requests.RequestException, ValueError):
        return None
    endpoint = doc.get("authorization_endpoint", "")
    if urlsplit(endpoint)[:3] != parts[:3]:
        return None
    return doc.get("issuer")


@check
def upstream_error_reported():
    flow = start_sign_in()
    params = {
        "error": "access_denied",
        "error_description": "End-User aborted interaction",
        "state": flow.params["state"],
    }
    issuer = upstream_issuer(flow.authorization_url)
    if issuer:
        params["iss"] = issuer  # as the upstream sends it with its errors
    url = f"{flow.params['redirect_uri']}?{urlencode(params)}"
    resp = flow.http.get(url, allow_redirects=False, timeout=TIMEOUT)
    expect_error(resp, 400, "provider_error", "the callback with error=access_denied and the flow's state")


@check
def link_and_unlink():
    if not (UPSTREAM_LOGIN2 and UPSTREAM_PASSWORD2):
        raise CheckSkipped("UPSTREAM_LOGIN2 / UPSTREAM_PASSWORD2 (a second user of the upstream gateway) not set")
    first_sign_in()
    user = local_user("link")
    flow = start_link(user["token"])
    browsed = finish(flow, UPSTREAM_LOGIN2, UPSTREAM_PASSWORD2)
    body = json_body(browsed.response, 200, f"linking {UPSTREAM_LOGIN2!r}: the callback")
    if body.get("linked") != PROVIDER:
        fail(f'linking: the callback\'s {{"linked": "{PROVIDER}"}}', show(browsed.response))
    if body.get("user_id") != user["user_id"]:
        fail(f"linking: the callback's user_id {user['user_id']!r} (the local user)", show(browsed.response))
    if "access_token" in body:
        fail("linking: no new tokens from the callback", show(browsed.response))

    listed = linked_providers(user["token"], "after linking")
    entry = next((p for p in listed if isinstance(p, dict) and p.get("provider") == PROVIDER), None)
    if entry is None:
        fail(f"GET /api/v1/me/providers listing {PROVIDER!r} after linking", json.dumps(listed))
    if not entry.get("linked_at"):
        fail("GET /api/v1/me/providers: linked_at", json.dumps(listed))
    email = upstream_email(UPSTREAM_LOGIN2)
    if email is not None and str(entry.get("email", "")).lower() != email:
        fail(f"GET /api/v1/me/providers: the upstream account's email {email!r}", json.dumps(listed))

    what = f"signing in through {PROVIDER} with the linked {UPSTREAM_LOGIN2!r}"
    _, signed_in, tokens = sign_in_with_provider(UPSTREAM_LOGIN2, UPSTREAM_PASSWORD2, what)
    if tokens["user_id"] != user["user_id"] or tokens["account_created"] is not False:
        fail(f"{what}: the local user {user['user_id']!r}, account_created false", show(signed_in.response))
    if me(tokens["access_token"], what).get("email") != user["email"]:
        fail(f"{what}: GET /api/v1/me with the local user's email {user['email']!r}")

    resp = api("DELETE", f"/api/v1/me/providers/{PROVIDER}", user["token"])
    if resp.status_code != 204:
        fail(f"DELETE /api/v1/me/providers/{PROVIDER} by a user with a password: 204", show(resp))
    listed = linked_providers(user["token"], "after unlinking")
    if any(isinstance(p, dict) and p.get("provider") == PROVIDER for p in listed):
        fail(f"GET /api/v1/me/providers without {PROVIDER!r} after unlinking", json.dumps(listed))
    resp = api("DELETE", f"/api/v1/me/providers/{PROVIDER}", user["token"])
    expect_error(resp, 404, "not_linked", "unlinking again")


@check
def last_sign_in_method_kept():
    first = first_sign_in()["body"]
    resp = api("DELETE", f"/api/v1/me/providers/{PROVIDER}", first["access_token"])
    expect_error(
        resp,
        409,
        "last_sign_in_method",
        "unlinking the only sign-in method of the account the provider created (no password)",
    )
    listed = linked_providers(first["access_token"], "after the refused unlinking")
    if not any(isinstance(p, dict) and p.get("provider") == PROVIDER for p in listed):
        fail(f"GET /api/v1/me/providers still listing {PROVIDER!r}", json.dumps(listed))


@check
def already_linked_refused():
    first = first_sign_in()["body"]
    user = local_user("thief")
    flow = start_link(user["token"])
    browsed = finish(flow, UPSTREAM_LOGIN, UPSTREAM_PASSWORD)
    expect_error(
        browsed.response,
        409,
        "already_linked",
        f"linking {UPSTREAM_LOGIN!r} (the account of user {first['user_id']}) to another user",
    )
    if linked_providers(user["token"], "after the refused link"):
        fail("no provider linked to the other user", json.dumps(linked_providers(user["token"], "again")))
    # The upstream account still signs in its own user.
    _, _, body = sign_in_with_provider(UPSTREAM_LOGIN, UPSTREAM_PASSWORD, "a sign-in after the refused link")
    if body["user_id"] != first["user_id"]:
        fail(f"the upstream account still signing in user {first['user_id']!r}", json.dumps(body))


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    names = [fn.__name__ for fn in CHECKS]
    if argv[:1] == ["--list"]:
        print("\n".join(names))
        return 0
    unknown = [name for name in argv if name not in names]
    if unknown:
        print(f"FAIL setup: no check named {', '.join(unknown)} (--list lists them)", flush=True)
        return 2
    for fn in CHECKS:
        if argv and fn.__name__ not in argv:
            continue
        try:
            fn()
        except CheckSkipped as why:
            print(f"skip {fn.__name__}: {why}", flush=True)
            continue
        except CheckFailed as failure:
            print(f"FAIL {fn.__name__}: {failure}", flush=True)
            return 1
        except Exception as error:  # a network error, a crash of this script
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            print(f"FAIL {fn.__name__}: {detail}", flush=True)
            traceback.print_exc(file=sys.stderr)
            return 1
        print(f"ok {fn.__name__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
