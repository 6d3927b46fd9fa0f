#!/usr/bin/env python3
"""The gateway's OAuth2 / OpenID Connect provider driven the way a relying party drives it.

Authlib's requests client (OAuth2Session) speaks the protocol; plain `requests`, following no
redirect on its own, stands in for the browser on the server-rendered sign-in and consent pages
(their forms are read with html.parser and posted back as a browser without JavaScript would).
ID tokens are verified with authlib.jose against the provider's JWKS and validated with
authlib.oidc.core's CodeIDToken.

Environment:
  ISSUER                      the gateway's base URL, e.g. http://127.0.0.1:8080 (no trailing slash)
  USERNAME, PASSWORD          a verified user who has never authorized the confidential or the
                              public client (their first authorization must show the consent page)
  REDIRECT_URI                registered for the confidential, public and service clients
  CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET
                              grants authorization_code + refresh_token, scopes openid profile
                              email phone offline_access
  PUBLIC_CLIENT_ID            public, authorization_code + refresh_token
  SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET
                              confidential, client_credentials only
  optional: PUBLIC_CLIENT_SCOPE (default "openid email offline_access"), SERVICE_CLIENT_SCOPE
  (default: none sent), HTTP_TIMEOUT (seconds, default 30)

Output: `ok <check>` for each check that passed, in order; at the first failure
`FAIL <check>: expected ...; got ...` and exit status 1 (2 for a missing variable).

  authlib_flows.py            every check
  authlib_flows.py --list     the checks' names, in order
  authlib_flows.py NAME...    discovery, jwks and the named checks (in the listed order; a check
                              obtains what it needs from earlier steps by itself)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

# The issuer of the local stack is plain http on the loopback: Authlib refuses such URLs in
# its metadata checks unless told that this is intended.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.deprecate import AuthlibDeprecationWarning  # noqa: E402

# authlib.jose announces its move to joserfc on import; it works the same until Authlib 2.
warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)

from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session, OAuthError  # noqa: E402
from authlib.jose import JsonWebKey, JsonWebToken  # noqa: E402
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402
from authlib.oidc.discovery import OpenIDProviderMetadata  # noqa: E402

# testkit.py, beside this script, holds what the test clients share: found from any working
# directory, and no __pycache__ left beside it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from testkit import CheckFailed, Form, env, fail, json_body, parse_page, show  # noqa: E402

TIMEOUT = float(os.environ.get("HTTP_TIMEOUT", "30"))
# Seconds of clock difference accepted on exp, iat and auth_time.
LEEWAY = 60
CONFIDENTIAL_SCOPE = "openid profile email phone offline_access"

EXPECTED_ENDPOINTS = {
    "authorization_endpoint": "/oauth2/authorize",
    "token_endpoint": "/oauth2/token",
    "revocation_endpoint": "/oauth2/revoke",
    "introspection_endpoint": "/oauth2/introspect",
    "userinfo_endpoint": "/oauth2/userinfo",
    "jwks_uri": "/oauth2/jwks",
}
EXPECTED_LISTS = {
    "response_types_supported": {"code"},
    "grant_types_supported": {"authorization_code", "refresh_token", "client_credentials"},
    "code_challenge_methods_supported": {"S256"},
    "token_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post", "none"},
    "id_token_signing_alg_values_supported": {"RS256"},
    "scopes_supported": {
        "openid", "profile", "email", "phone", "offline_access", "campaigns:read", "campaigns:write"
    },
    "subject_types_supported": {"public"},
}
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Client:
    label: str
    client_id: str
    secret: str | None
    auth_method: str  # token endpoint authentication: client_secret_basic | client_secret_post | none
    scope: str | None


ISSUER = env("ISSUER")
USERNAME = env("USERNAME")
PASSWORD = env("PASSWORD")
REDIRECT_URI = env("REDIRECT_URI")
CONFIDENTIAL = Client(
    "confidential",
    env("CONFIDENTIAL_CLIENT_ID"),
    env("CONFIDENTIAL_CLIENT_SECRET"),
    "client_secret_basic",
    CONFIDENTIAL_SCOPE,
)
PUBLIC = Client(
    "public",
    env("PUBLIC_CLIENT_ID"),
    None,
    "none",
    os.environ.get("PUBLIC_CLIENT_SCOPE", "openid email offline_access"),
)
SERVICE = Client(
    "service",
    env("SERVICE_CLIENT_ID"),
    env("SERVICE_CLIENT_SECRET"),
    "client_secret_post",
    os.environ.get("SERVICE_CLIENT_SCOPE") or None,
)

# Filled by the discovery and jwks checks, which always run first.
META: dict = {}
JWKS: dict = {}


# ---------------------------------------------------------------------------------------------
# HTTP: sessions that ignore proxy settings (everything is on the loopback)


def new_http() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


HTTP = new_http()


def oauth_session(client: Client, secret: str | None = None, auth_method: str | None = None):
    """Authlib's client for one of the registered clients; `last` keeps the token endpoint's
    last response (Authlib returns only the parsed token or raises OAuthError)."""
    method = auth_method or client.auth_method
    session = OAuth2Session(
        client_id=client.client_id,
        client_secret=secret if secret is not None else client.secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint=META.get("token_endpoint"),
        default_timeout=TIMEOUT,
    )
    session.trust_env = False
    session.last = None

    def keep(resp):
        session.last = resp
        return resp

    session.register_compliance_hook("access_token_response", keep)
    session.register_compliance_hook("refresh_token_response", keep)
    return session


def token_call(session, call) -> requests.Response:
    """Runs an Authlib token endpoint call and returns the HTTP response, success or not."""
    session.last = None
    try:
        call()
    except (OAuthError, requests.HTTPError, ValueError) as error:
        if session.last is None:
            raise CheckFailed(f"expected a token endpoint response; got {error!r}") from error
    return session.last


def form_of(request: requests.PreparedRequest) -> dict[str, list[str]]:
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return parse_qs(body, keep_blank_values=True)


def exchange_code(client: Client, code: str, verifier: str | None, **extra) -> requests.Response:
    session = oauth_session(client)
    params = dict(grant_type="authorization_code", code=code, **extra)
    if verifier is not None:
        params["code_verifier"] = verifier
    return token_call(session, lambda: session.fetch_token(META["token_endpoint"], **params))


def refresh(client: Client, refresh_token: str) -> requests.Response:
    # No scope: the refreshed token keeps the grant's.
    session = oauth_session(client)
    session.scope = None
    return token_call(
        session,
        lambda: session.refresh_token(META["token_endpoint"], refresh_token=refresh_token),
    )


def introspect(token: str, as_client: Client = CONFIDENTIAL) -> requests.Response:
    session = oauth_session(as_client)
    return session.introspect_token(META["introspection_endpoint"], token=token)


def revoke(client: Client, token: str, hint: str | None = None) -> requests.Response:
    session = oauth_session(client)
    return session.revoke_token(META["revocation_endpoint"], token=token, token_type_hint=hint)


def userinfo(access_token: str | None, method: str = "GET") -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return HTTP.request(method, META["userinfo_endpoint"], headers=headers, timeout=TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Expectations on token endpoint answers


def expect_tokens(
    resp: requests.Response, what: str, *, refresh_token: bool | None, id_token: bool | None
) -> dict:
    """A successful token response (RFC 6749 5.1): 200 JSON, Cache-Control: no-store, a Bearer
    access token; refresh_token / id_token present (True), absent (False) or either (None)."""
    body = json_body(resp, 200, what)
    if "no-store" not in resp.headers.get("Cache-Control", ""):
        fail(f"{what}: Cache-Control: no-store", show(resp))
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        fail(f"{what}: an access_token", show(resp))
    if str(body.get("token_type", "")).lower() != "bearer":
        fail(f"{what}: token_type Bearer", show(resp))
    if not isinstance(body.get("expires_in"), int) or body["expires_in"] <= 0:
        fail(f"{what}: expires_in, a positive integer", show(resp))
    if not isinstance(body.get("scope"), str):
        fail(f"{what}: scope, a space-separated string", show(resp))
    for name, wanted in (("refresh_token", refresh_token), ("id_token", id_token)):
        present = isinstance(body.get(name), str) and bool(body[name])
        if wanted is True and not present:
            fail(f"{what}: a {name}", show(resp))
        if wanted is False and name in body:
            fail(f"{what}: no {name}", show(resp))
    return body


def expect_token_error(
    resp: requests.Response, what: str, errors: set[str], statuses: tuple[int, ...] = (400,)
) -> dict:
    """An error response of RFC 6749 5.2: JSON {"error", ...} with one of `errors`."""
    wanted = " or ".join(sorted(errors))
    body = json_body(resp, statuses, f"{what}: {wanted}")
    if not isinstance(body, dict) or body.get("error") not in errors:
        fail(f"{what}: error {wanted}", show(resp))
    if resp.status_code == 401 and not resp.headers.get("WWW-Authenticate"):
        fail(f"{what}: 401 with a WWW-Authenticate header", show(resp))
    return body


def expect_active(token: str, what: str, client_id: str, as_client: Client = CONFIDENTIAL) -> dict:
    resp = introspect(token, as_client)
    body = json_body(resp, 200, what)
    if body.get("active") is not True:
        fail(f"{what}: introspection active true", show(resp))
    if body.get("client_id") != client_id:
        fail(f"{what}: introspection client_id {client_id!r}", show(resp))
    if "iss" in body and body["iss"] != ISSUER:
        fail(f"{what}: introspection iss {ISSUER!r}", show(resp))
    if "exp" in body and not (isinstance(body["exp"], int) and body["exp"] > time.time() - LEEWAY):
        fail(f"{what}: introspection exp in the future", show(resp))
    return body


def expect_inactive(token: str, what: str) -> None:
    resp = introspect(token)
    body = json_body(resp, 200, what)
    if body != {"active": False}:
        fail(f'{what}: introspection {{"active": false}}', show(resp))


def expect_bearer_refused(access_token: str, what: str) -> None:
    resp = userinfo(access_token)
    if resp.status_code != 401:
        fail(f"{what}: userinfo 401", show(resp))
    if not resp.headers.get("WWW-Authenticate", "").lower().startswith("bearer"):
        fail(f"{what}: userinfo 401 with WWW-Authenticate: Bearer (RFC 6750 3)", show(resp))


# ---------------------------------------------------------------------------------------------
# ID tokens


def b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def verify_id_token(id_token: str, client_id: str, nonce: str, access_token: str) -> dict:
    """Verifies the signature against the JWKS (RS256 only) and every claim OIDC Core 3.1.3.7
    asks of a relying party, plus the provider's promises: auth_time, azp and at_hash."""
    try:
        header = b64url_json(id_token.split(".")[0])
    except ValueError:
        fail("an ID token that is a JWS in compact form", repr(id_token[:80]))
    if header.get("alg") != "RS256":
        fail("ID token header alg RS256", json.dumps(header))
    kids = {key.get("kid") for key in JWKS.get("keys", [])}
    if header.get("kid") not in kids:
        fail(f"ID token header kid among the JWKS' {sorted(kids)}", json.dumps(header))
    try:
        claims = JsonWebToken(["RS256"]).decode(
            id_token,
            JsonWebKey.import_key_set(JWKS),
            claims_cls=CodeIDToken,
            claims_options={
                "iss": {"essential": True, "value": ISSUER},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
            },
            claims_params={"nonce": nonce, "client_id": client_id, "access_token": access_token},
        )
        claims.validate(leeway=LEEWAY)
    except Exception as error:  # joserfc / authlib errors: bad signature, claim errors
        fail(
            "an ID token that verifies against the JWKS and validates (iss, aud, exp, iat, nonce, azp, at_hash)",
            f"{type(error).__name__}: {error}; claims {json.dumps(b64url_json(id_token.split('.')[1]))}",
        )
    claims = dict(claims)
    now = time.time()
    got = json.dumps(claims)
    if claims.get("iss") != ISSUER:
        fail(f"ID token iss {ISSUER!r}", got)
    aud = claims.get("aud")
    if aud != client_id and not (isinstance(aud, list) and client_id in aud):
        fail(f"ID token aud {client_id!r}", got)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        fail("ID token sub, a non-empty string", got)
    if claims.get("nonce") != nonce:
        fail(f"ID token nonce {nonce!r}", got)
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= now - LEEWAY:
        fail("ID token exp in the future", got)
    if not isinstance(claims.get("iat"), (int, float)) or not (
        claims["iat"] <= now + LEEWAY < claims["exp"] + LEEWAY
    ):
        fail("ID token iat not in the future and before exp", got)
    if not isinstance(claims.get("auth_time"), (int, float)) or claims["auth_time"] > now + LEEWAY:
        fail("ID token auth_time, not in the future", got)
    if claims.get("azp") != client_id:
        fail(f"ID token azp {client_id!r}", got)
    if claims.get("at_hash") != at_hash(access_token):
        fail(f"ID token at_hash {at_hash(access_token)!r} (left half of SHA-256 of the access token)", got)
    return claims


# ---------------------------------------------------------------------------------------------
# The browser part: the sign-in and consent pages, read with html.parser


def sign_in_form(resp: requests.Response, what: str) -> Form:
    """The sign-in form as the spec draws it, or a failure naming what is missing."""
    if not resp.headers.get("Content-Type", "").startswith("text/html"):
        fail(f"{what}: an HTML page", show(resp))
    form = parse_page(resp).form("sign-in")
    if form is None:
        fail(f'{what}: a <form id="sign-in">', show(resp))
    if form.method != "post":
        fail(f'{what}: <form id="sign-in" method="post">', show(resp))
    if "username" not in form.inputs or form.inputs.get("password", {}).get("type") != "password":
        fail(
            f'{what}: <input name="username"> and <input name="password" type="password"> in the sign-in form',
            show(resp),
        )
    if not any(b.get("id") == "sign-in-submit" for b in form.buttons):
        fail(f'{what}: a submit button id="sign-in-submit" in the sign-in form', show(resp))
    return form


def consent_form(resp: requests.Response, what: str) -> Form | None:
    form = parse_page(resp).form("consent")
    if form is None:
        return None
    decisions = {b.get("id"): (b.get("name"), b.get("value")) for b in form.buttons}
    if (
        form.method != "post"
        or "ticket" not in form.inputs
        or decisions.get("allow") != ("decision", "allow")
        or decisions.get("deny") != ("decision", "deny")
    ):
        fail(
            f'{what}: <form id="consent" method="post"> with input ticket and buttons '
            'id="allow"/id="deny" name="decision" value="allow"/"deny"',
            show(resp),
        )
    return form


def submit(
    http: requests.Session,
    page: requests.Response,
    form: Form,
    values: dict[str, str],
    button: dict | None = None,
) -> requests.Response:
    """Posts a form as a browser would: its fields, `values` replacing those of the same name,
    and the name/value of the button clicked."""
    data = [(k, v) for k, v in form.fields if k not in values] + list(values.items())
    if button and button.get("name"):
        data.append((button["name"], button.get("value", "")))
    url = urljoin(page.url, form.action or page.url)
    return http.post(url, data=data, allow_redirects=False, timeout=TIMEOUT)


@dataclass
class BrowserResult:
    response: requests.Response  # the last response: a 303, or the consent page when decision=None
    consent_shown: bool

    @property
    def location(self) -> str | None:
        return self.response.headers.get("Location") if self.response.status_code == 303 else None


def browse(url: str, *, password: str = PASSWORD, decision: str | None = "allow") -> BrowserResult:
    """Opens an authorization URL and goes through the pages: a 303 straight away is returned
    as it is; otherwise the sign-in form is filled in and, if the consent page comes, its
    `decision` button is clicked (decision=None stops on the consent page)."""
    http = new_http()
    resp = http.get(url, allow_redirects=False, timeout=TIMEOUT)
    if resp.status_code == 303:
        return BrowserResult(resp, False)
    if resp.status_code != 200:
        fail("the sign-in page (200) or a 303 for the authorization request", show(resp))
    form = sign_in_form(resp, "the sign-in page")
    button = next(b for b in form.buttons if b.get("id") == "sign-in-submit")
    resp = submit(http, resp, form, {"username": USERNAME, "password": password}, button)
    if resp.status_code == 303:
        return BrowserResult(resp, False)
    consent = consent_form(resp, "the consent page") if resp.status_code == 200 else None
    if consent is None:
        fail(
            "after signing in: a 303 to the redirect_uri or the consent page (200, form#consent)", show(resp)
        )
    if decision is None:
        return BrowserResult(resp, True)
    button = next(b for b in consent.buttons if b.get("id") == decision)
    resp = submit(http, resp, consent, {}, button)
    if resp.status_code != 303 or not resp.headers.get("Location"):
        fail(f"after {decision} on the consent page: a 303 with a Location", show(resp))
    return BrowserResult(resp, True)


@dataclass
class AuthRequest:
    client: Client
    url: str
    state: str
    nonce: str
    verifier: str | None


def authorization_request(
    client: Client, *, pkce: bool = True, scope: str | None = "default", **params
) -> AuthRequest:
    """An authorization URL built by Authlib: state, nonce and (unless pkce=False) an S256
    code challenge; `params` adds or overrides query parameters (None leaves one out)."""
    session = oauth_session(client)
    state, nonce = generate_token(32), generate_token(32)
    verifier = generate_token(64) if pkce else None
    params.setdefault("nonce", nonce)
    params["scope"] = client.scope if scope == "default" else scope
    url, _ = session.create_authorization_url(
        META["authorization_endpoint"], state=state, code_verifier=verifier, **params
    )
    return AuthRequest(client, url, state, nonce, verifier)


def redirect_params(location: str | None, what: str) -> dict[str, str]:
    """The query of a redirect to REDIRECT_URI, one value per parameter."""
    if not location:
        fail(f"{what}: a redirect to {REDIRECT_URI}", "no Location")
    got, want = urlsplit(location), urlsplit(REDIRECT_URI)
    if (got.scheme, got.netloc, got.path) != (want.scheme, want.netloc, want.path) or got.fragment:
        fail(f"{what}: a redirect to {REDIRECT_URI} with a query", f"Location {location}")
    params = parse_qs(got.query, keep_blank_values=True)
    for name, values in parse_qs(want.query, keep_blank_values=True).items():
        if params.get(name, [])[: len(values)] != values:
            fail(f"{what}: the redirect_uri's own query parameter {name} kept", f"Location {location}")
        params[name] = params[name][len(values) :]
    if any(len(values) > 1 for values in params.values()):
        fail(f"{what}: each parameter once", f"Location {location}")
    return {name: values[0] for name, values in params.items() if values}


def expect_code(result: BrowserResult, request: AuthRequest, what: str) -> str:
    params = redirect_params(result.location, what)
    if "error" in params or not params.get("code"):
        fail(f"{what}: a code in the redirect", f"Location {result.location}")
    if params.get("state") != request.state:
        fail(f"{what}: state {request.state!r} back unchanged", f"Location {result.location}")
    if params.get("iss") != ISSUER:
        fail(f"{what}: iss={ISSUER} in the redirect (RFC 9207)", f"Location {result.location}")
    return params["code"]


def expect_redirect_error(result: BrowserResult, request: AuthRequest, error: str, what: str) -> None:
    if result.response.status_code != 303:
        fail(f"{what}: a 303 to the redirect_uri with error={error}", show(result.response))
    params = redirect_params(result.location, what)
    if params.get("error") != error or "code" in params:
        fail(f"{what}: error={error} and no code in the redirect", f"Location {result.location}")
    if params.get("state") != request.state:
        fail(f"{what}: state {request.state!r} back unchanged", f"Location {result.location}")
    if params.get("iss") != ISSUER:
        fail(f"{what}: iss={ISSUER} in the redirect", f"Location {result.location}")


def expect_error_page(resp: requests.Response, what: str) -> None:
    """Refused without redirecting: status 400, an HTML page, no Location."""
    if resp.status_code != 400 or "Location" in resp.headers:
        fail(f"{what}: 400 and no Location (no redirect to an unverified URI)", show(resp))
    if not resp.headers.get("Content-Type", "").startswith("text/html"):
        fail(f"{what}: an HTML error page", show(resp))


def fresh_code(client: Client, **params) -> tuple[str, AuthRequest]:
    """A new authorization code (consenting if asked)."""
    request = authorization_request(client, **params)
    return expect_code(browse(request.url), request, f"authorization of the {client.label} client"), request


def fresh_tokens(client: Client) -> tuple[dict, AuthRequest]:
    code, request = fresh_code(client)
    resp = exchange_code(client, code, request.verifier)
    return expect_tokens(
        resp, f"code exchange of the {client.label} client", refresh_token=True, id_token=None
    ), request


def mutated_redirect_uri() -> str:
    parts = urlsplit(REDIRECT_URI)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "-other"))


# ---------------------------------------------------------------------------------------------
# Shared steps (each runs once, whichever check needs it first)


@functools.cache
def first_confidential_flow() -> dict:
    request = authorization_request(CONFIDENTIAL)
    result = browse(request.url)
    code = expect_code(result, request, "first authorization of the confidential client")
    resp = exchange_code(CONFIDENTIAL, code, request.verifier)
    return {"request": request, "consent_shown": result.consent_shown, "response": resp}


@functools.cache
def first_confidential_tokens() -> tuple[dict, AuthRequest]:
    flow = first_confidential_flow()
    body = expect_tokens(
        flow["response"], "code exchange (confidential client)", refresh_token=True, id_token=True
    )
    return body, flow["request"]


@functools.cache
def public_tokens() -> tuple[dict, AuthRequest]:
    request = authorization_request(PUBLIC)
    code = expect_code(browse(request.url), request, "authorization of the public client")
    resp = exchange_code(PUBLIC, code, request.verifier)
    sent = form_of(resp.request)
    if (
        "Authorization" in resp.request.headers
        or "client_secret" in sent
        or sent.get("client_id") != [PUBLIC.client_id]
    ):
        fail("the public client's token request with client_id in the body and no secret", str(sent))
    wants_id_token = "openid" in (PUBLIC.scope or "").split()
    body = expect_tokens(
        resp, "code exchange (public client)", refresh_token=True, id_token=wants_id_token or None
    )
    if wants_id_token:
        verify_id_token(body["id_token"], PUBLIC.client_id, request.nonce, body["access_token"])
    return body, request


@functools.cache
def rotated() -> dict:
    """A fresh grant of the confidential client, refreshed once."""
    first, _ = fresh_tokens(CONFIDENTIAL)
    resp = refresh(CONFIDENTIAL, first["refresh_token"])
    second = expect_tokens(resp, "refresh", refresh_token=True, id_token=None)
    return {"first": first, "second": second}


@functools.cache
def reused() -> requests.Response:
    return refresh(CONFIDENTIAL, rotated()["first"]["refresh_token"])


@functools.cache
def service_token() -> dict:
    session = oauth_session(SERVICE)
    resp = token_call(
        session,
        lambda: session.fetch_token(
            META["token_endpoint"], grant_type="client_credentials", scope=SERVICE.scope
        ),
    )
    body = expect_tokens(resp, "client_credentials (service client)", refresh_token=False, id_token=False)
    sent = form_of(resp.request)
    if (
        "Authorization" in resp.request.headers
        or sent.get("client_id") != [SERVICE.client_id]
        or sent.get("client_secret") != [SERVICE.secret]
    ):
        fail(
            "client_secret_post: client_id and client_secret in the body, no Authorization header",
            str(sorted(sent)),
        )
    return body


@functools.cache
def revoked_access_token() -> str:
    tokens, _ = fresh_tokens(CONFIDENTIAL)
    resp = revoke(CONFIDENTIAL, tokens["access_token"], "access_token")
    if resp.status_code != 200:
        fail("revocation of an access token: 200", show(resp))
    return tokens["access_token"]


# ---------------------------------------------------------------------------------------------
# The checks, in the order they run

CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


def check_metadata(doc: dict) -> None:
    if doc.get("issuer") != ISSUER:
        fail(f"issuer {ISSUER!r}", repr(doc.get("issuer")))
    for name, path in EXPECTED_ENDPOINTS.items():
        if doc.get(name) != ISSUER + path:
            fail(f"{name} {ISSUER + path!r}", repr(doc.get(name)))
    for name, values in EXPECTED_LISTS.items():
        if not isinstance(doc.get(name), list) or set(doc[name]) != values or len(doc[name]) != len(values):
            fail(f"{name} {sorted(values)}", repr(doc.get(name)))
    if doc.get("authorization_response_iss_parameter_supported") is not True:
        fail(
            "authorization_response_iss_parameter_supported true",
            repr(doc.get("authorization_response_iss_parameter_supported")),
        )


@check
def discovery_openid_configuration():
    resp = HTTP.get(ISSUER + "/.well-known/openid-configuration", timeout=TIMEOUT)
    doc = json_body(resp, 200, "GET /.well-known/openid-configuration")
    check_metadata(doc)
    try:
        OpenIDProviderMetadata(doc).validate()
    except ValueError as error:
        fail("OpenID Provider Metadata valid for Authlib", str(error))
    META.update(doc)


@check
def discovery_oauth_authorization_server():
    resp = HTTP.get(ISSUER + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    doc = json_body(resp, 200, "GET /.well-known/oauth-authorization-server")
    check_metadata(doc)
    try:
        AuthorizationServerMetadata(doc).validate()
    except ValueError as error:
        fail("RFC 8414 metadata valid for Authlib", str(error))
    for name in ["issuer", *EXPECTED_ENDPOINTS, *EXPECTED_LISTS]:
        if doc.get(name) != META.get(name):
            fail(f"{name} as in openid-configuration ({META.get(name)!r})", repr(doc.get(name)))


@check
def jwks():
    resp = HTTP.get(META["jwks_uri"], timeout=TIMEOUT)
    doc = json_body(resp, 200, "GET jwks_uri")
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        fail('{"keys": [...]} with at least one key', show(resp))
    kids = set()
    for key in keys:
        if key.get("kty") != "RSA" or key.get("use") != "sig" or key.get("alg") != "RS256":
            fail('every key kty "RSA", use "sig", alg "RS256"', json.dumps(key))
        if not isinstance(key.get("kid"), str) or not key["kid"] or key["kid"] in kids:
            fail("every key with a kid of its own", json.dumps(key))
        if not key.get("n") or not key.get("e"):
            fail("every key with n and e", json.dumps(key))
        if PRIVATE_JWK_MEMBERS & key.keys():
            fail("public keys only", f"members {sorted(PRIVATE_JWK_MEMBERS & key.keys())} in {key['kid']}")
        kids.add(key["kid"])
    try:
        JsonWebKey.import_key_set(doc)
    except Exception as error:
        fail("a JWK set Authlib imports", f"{type(error).__name__}: {error}")
    JWKS.clear()
    JWKS.update(doc)


@check
def sign_in_wrong_password():
    request = authorization_request(CONFIDENTIAL)
    http = new_http()
    page = http.get(request.url, allow_redirects=False, timeout=TIMEOUT)
    if page.status_code != 200:
        fail("the sign-in page (200)", show(page))
    form = sign_in_form(page, "the sign-in page")
    button = next(b for b in form.buttons if b.get("id") == "sign-in-submit")
    wrong = "wrong-" + generate_token(12)
    again = submit(http, page, form, {"username": USERNAME, "password": wrong}, button)
    if again.status_code != 401 or "Location" in again.headers:
        fail("a wrong password: 401 and the sign-in page again", show(again))
    form_again = sign_in_form(again, "the sign-in page after a wrong password")
    alerts = [text for text in parse_page(again).alerts if text]
    if not alerts:
        fail('an error message in an element with role="alert"', show(again))
    if wrong in again.text:
        fail("the wrong password not echoed in the page", "it is")
    # Both renderings carry every authorization parameter in the form (other fields may change).
    wanted = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query, keep_blank_values=True).items()}
    for label, shown in (("the sign-in form", form), ("the sign-in form after a wrong password", form_again)):
        carried = {k: v for k, v in shown.fields if k in wanted}
        if carried != wanted:
            fail(f"{label}: inputs carrying every authorization parameter {wanted}", str(carried))
    # The page shown again works: the right password goes on (to the consent page, left open).
    button = next(b for b in form_again.buttons if b.get("id") == "sign-in-submit")
    resp = submit(http, again, form_again, {"username": USERNAME, "password": PASSWORD}, button)
    if resp.status_code == 303:
        expect_code(BrowserResult(resp, False), request, "the right password after a wrong one")
    elif resp.status_code != 200 or consent_form(resp, "the consent page") is None:
        fail("the right password after a wrong one: the consent page or a 303 with a code", show(resp))


@check
def code_flow_confidential():
    flow = first_confidential_flow()
    if not flow["consent_shown"]:
        fail(
            "the consent page on the first authorization of the confidential client "
            "(USERNAME must be a user who never authorized it)",
            "a redirect with a code right after signing in",
        )
    resp = flow["response"]
    if not resp.request.headers.get("Authorization", "").startswith("Basic ") or "client_secret" in form_of(
        resp.request
    ):
        fail(
            "client_secret_basic (Authorization: Basic, no secret in the body)",
            "the request was sent otherwise",
        )
    body, _ = first_confidential_tokens()
    if set(body["scope"].split()) != set(CONFIDENTIAL_SCOPE.split()):
        fail(f"scope {CONFIDENTIAL_SCOPE!r}", show(resp))


@check
def id_token_confidential():
    body, request = first_confidential_tokens()
    verify_id_token(body["id_token"], CONFIDENTIAL.client_id, request.nonce, body["access_token"])


@check
def userinfo_confidential():
    body, request = first_confidential_tokens()
    sub = b64url_json(body["id_token"].split(".")[1]).get("sub")
    for method in ("GET", "POST"):
        resp = userinfo(body["access_token"], method)
        info = json_body(resp, 200, f"{method} userinfo")
        if info.get("sub") != sub:
            fail(f"{method} userinfo: sub {sub!r} as in the ID token", show(resp))
        if not isinstance(info.get("email"), str) or "@" not in info["email"]:
            fail(f"{method} userinfo: email (email scope)", show(resp))
        if not isinstance(info.get("email_verified"), bool):
            fail(f"{method} userinfo: email_verified, a boolean", show(resp))


@check
def userinfo_without_token():
    resp = userinfo(None)
    if resp.status_code != 401:
        fail("userinfo without a token: 401", show(resp))


@check
def consent_remembered():
    first_confidential_flow()
    request = authorization_request(CONFIDENTIAL)
    result = browse(request.url, decision=None)
    if result.consent_shown:
        fail("no consent page on a second authorization of the same client and scopes", show(result.response))
    code = expect_code(result, request, "second authorization")
    expect_tokens(
        exchange_code(CONFIDENTIAL, code, request.verifier),
        "code exchange of the second authorization",
        refresh_token=True,
        id_token=True,
    )


@check
def consent_deny():
    request = authorization_request(CONFIDENTIAL, prompt="consent")
    result = browse(request.url, decision="deny")
    if not result.consent_shown:
        fail("the consent page with prompt=consent", show(result.response))
    expect_redirect_error(result, request, "access_denied", "deny on the consent page")


@check
def code_flow_public():
    public_tokens()


@check
def refresh_public():
    first, _ = public_tokens()
    resp = refresh(PUBLIC, first["refresh_token"])
    sent = form_of(resp.request)
    if (
        "Authorization" in resp.request.headers
        or "client_secret" in sent
        or sent.get("client_id") != [PUBLIC.client_id]
    ):
        fail("the public client's refresh with client_id in the body and no secret", str(sorted(sent)))
    second = expect_tokens(resp, "refresh (public client)", refresh_token=True, id_token=None)
    if second["refresh_token"] == first["refresh_token"] or second["access_token"] == first["access_token"]:
        fail("a new refresh token and a new access token", show(resp))


@check
def refresh_rotation():
    tokens = rotated()
    if tokens["second"]["refresh_token"] == tokens["first"]["refresh_token"]:
        fail("a new refresh token from the refresh (rotation)", "the same one")
    if tokens["second"]["access_token"] == tokens["first"]["access_token"]:
        fail("a new access token from the refresh", "the same one")
    expect_active(tokens["second"]["access_token"], "the refreshed access token", CONFIDENTIAL.client_id)


@check
def refresh_reuse_refused():
    expect_token_error(reused(), "a used refresh token again", {"invalid_grant"})


@check
def refresh_reuse_revokes_grant():
    tokens = rotated()
    reused()
    resp = refresh(CONFIDENTIAL, tokens["second"]["refresh_token"])
    expect_token_error(resp, "the newest refresh token after a reuse (grant revoked)", {"invalid_grant"})
    expect_inactive(tokens["second"]["access_token"], "the newest access token after a reuse")
    expect_inactive(tokens["first"]["access_token"], "the first access token after a reuse")


@check
def client_credentials():
    service_token()


@check
def client_credentials_introspection():
    token = service_token()["access_token"]
    # A client learns about its own tokens only.
    body = expect_active(token, "the service client's access token", SERVICE.client_id, SERVICE)
    expect_inactive(token, "another client's access token, asked by the confidential client")
    if "token_type" in body and str(body["token_type"]).lower() != "bearer":
        fail("introspection token_type Bearer", json.dumps(body))


@check
def introspection_requires_client_auth():
    token = service_token()["access_token"]
    url = META["introspection_endpoint"]
    attempts = {
        "no client authentication": dict(data={"token": token}),
        "the public client's id only": dict(data={"token": token, "client_id": PUBLIC.client_id}),
        "a wrong secret": dict(
            data={"token": token}, auth=(CONFIDENTIAL.client_id, CONFIDENTIAL.secret + "x")
        ),
    }
    for what, kwargs in attempts.items():
        resp = HTTP.post(url, timeout=TIMEOUT, **kwargs)
        expect_token_error(resp, f"introspection with {what}", {"invalid_client"}, (401,))


@check
def token_wrong_client_secret():
    session = oauth_session(SERVICE, secret=SERVICE.secret + "x", auth_method="client_secret_basic")
    resp = token_call(
        session, lambda: session.fetch_token(META["token_endpoint"], grant_type="client_credentials")
    )
    expect_token_error(resp, "a wrong client secret", {"invalid_client"}, (401,))
    if not resp.headers.get("WWW-Authenticate", "").lower().startswith("basic"):
        fail("WWW-Authenticate: Basic with invalid_client", show(resp))


@check
def revoke_access_token():
    revoked_access_token()


@check
def revoked_token_introspects_inactive():
    expect_inactive(revoked_access_token(), "the revoked access token")


@check
def revoked_token_refused_by_userinfo():
    expect_bearer_refused(revoked_access_token(), "the revoked access token")


@check
def revoke_unknown_token():
    resp = revoke(CONFIDENTIAL, "unknown-" + generate_token(40))
    if resp.status_code != 200:
        fail("revocation of an unknown token: 200 (RFC 7009 2.2)", show(resp))


@check
def revoke_refresh_token_revokes_grant():
    tokens, _ = fresh_tokens(CONFIDENTIAL)
    resp = revoke(CONFIDENTIAL, tokens["refresh_token"], "refresh_token")
    if resp.status_code != 200:
        fail("revocation of a refresh token: 200", show(resp))
    expect_token_error(
        refresh(CONFIDENTIAL, tokens["refresh_token"]), "the revoked refresh token", {"invalid_grant"}
    )
    expect_inactive(tokens["access_token"], "the access token of a revoked refresh token's grant")


@check
def pkce_wrong_verifier():
    code, _ = fresh_code(CONFIDENTIAL)
    resp = exchange_code(CONFIDENTIAL, code, generate_token(64))
    expect_token_error(resp, "a wrong code_verifier", {"invalid_grant"})


@check
def pkce_missing_verifier():
    code, _ = fresh_code(CONFIDENTIAL)
    resp = exchange_code(CONFIDENTIAL, code, None)
    if "code_verifier" in form_of(resp.request):
        fail("a token request without code_verifier", "one was sent")
    expect_token_error(resp, "no code_verifier", {"invalid_grant", "invalid_request"}, (400,))


@check
def redirect_uri_mismatch_at_token():
    code, request = fresh_code(CONFIDENTIAL)
    resp = exchange_code(CONFIDENTIAL, code, request.verifier, redirect_uri=mutated_redirect_uri())
    expect_token_error(resp, "a redirect_uri other than the authorization's", {"invalid_grant"})


@check
def unregistered_redirect_uri():
    for uri in (mutated_redirect_uri(), "https://attacker.invalid/callback"):
        request = authorization_request(CONFIDENTIAL, redirect_uri=uri)
        resp = new_http().get(request.url, allow_redirects=False, timeout=TIMEOUT)
        expect_error_page(resp, f"redirect_uri {uri} (not registered)")


@check
def unknown_client_id():
    request = authorization_request(replace(CONFIDENTIAL, client_id="unknown-" + generate_token(20)))
    resp = new_http().get(request.url, allow_redirects=False, timeout=TIMEOUT)
    expect_error_page(resp, "an unknown client_id")


def expect_authorize_error(request: AuthRequest, error: str, what: str) -> None:
    """The authorization request is refused at once: a 400 page (no automatic redirect, RFC 9700
    section 4.11.2) whose a#continue link carries `error` back to the redirect_uri."""
    resp = new_http().get(request.url, allow_redirects=False, timeout=TIMEOUT)
    if resp.status_code != 400 or "Location" in resp.headers:
        fail(f"{what}: a 400 page, no redirect", show(resp))
    link = re.search(r'<a id="continue" href="([^"]*)"', resp.text)
    if link is None:
        fail(f"{what}: a link a#continue back to the client", show(resp))
    location = html.unescape(link.group(1))
    params = redirect_params(location, what)
    if params.get("error") != error or "code" in params:
        fail(f"{what}: error={error} and no code in the link", f"href {location}")
    if params.get("state") != request.state:
        fail(f"{what}: state {request.state!r} back unchanged", f"href {location}")
    if params.get("iss") != ISSUER:
        fail(f"{what}: iss={ISSUER} in the link", f"href {location}")


@check
def public_client_without_code_challenge():
    request = authorization_request(PUBLIC, pkce=False)
    if "code_challenge" in request.url:
        fail("an authorization URL without code_challenge", request.url)
    expect_authorize_error(request, "invalid_request", "a public client's request without code_challenge")


@check
def code_challenge_method_plain():
    verifier = generate_token(64)
    request = authorization_request(
        PUBLIC, pkce=False, code_challenge=verifier, code_challenge_method="plain"
    )
    expect_authorize_error(request, "invalid_request", "code_challenge_method=plain")


@check
def unsupported_response_type():
    verifier = generate_token(64)
    request = authorization_request(
        CONFIDENTIAL,
        pkce=False,
        response_type="token",
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
    )
    expect_authorize_error(request, "unsupported_response_type", "response_type=token")


@check
def unknown_scope():
    request = authorization_request(CONFIDENTIAL, scope="openid no-such-scope")
    expect_authorize_error(request, "invalid_scope", "an unknown scope")


@check
def code_replay():
    code, request = fresh_code(CONFIDENTIAL)
    first = expect_tokens(
        exchange_code(CONFIDENTIAL, code, request.verifier),
        "the first redemption of a code",
        refresh_token=True,
        id_token=True,
    )
    resp = exchange_code(CONFIDENTIAL, code, request.verifier)
    expect_token_error(resp, "the same code redeemed again", {"invalid_grant"})
    expect_inactive(first["access_token"], "the access token of a replayed code's first redemption")
    expect_token_error(
        refresh(CONFIDENTIAL, first["refresh_token"]),
        "the refresh token of a replayed code's first redemption",
        {"invalid_grant"},
    )


@check
def public_client_credentials_refused():
    session = oauth_session(PUBLIC)
    resp = token_call(
        session, lambda: session.fetch_token(META["token_endpoint"], grant_type="client_credentials")
    )
    body = json_body(
        resp,
        (400, 401),
        "client_credentials by a public client: unauthorized_client (400) or invalid_client (401)",
    )
    if (resp.status_code, body.get("error")) not in ((400, "unauthorized_client"), (401, "invalid_client")):
        fail(
            "client_credentials by a public client: 400 unauthorized_client or 401 invalid_client", show(resp)
        )


@check
def service_client_authorization_refused():
    request = authorization_request(SERVICE)
    expect_authorize_error(
        request,
        "unauthorized_client",
        "an authorization request of a client_credentials-only client (REDIRECT_URI registered for it)",
    )


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
    always = {"discovery_openid_configuration", "jwks"}
    for fn in CHECKS:
        if argv and fn.__name__ not in argv and fn.__name__ not in always:
            continue
        try:
            fn()
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
