"""What the OAuth2 / OpenID Connect test clients of this folder share: the environment, failures,
responses shown in failure messages, JSON bodies, and the forms of HTML pages read with
html.parser the way a browser without JavaScript reads them.

Imported by authlib_flows.py, consent_browser.py and federation_flows.py, which put this folder
on sys.path first; only the standard library is imported here (`requests` only for type hints).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests

# ---------------------------------------------------------------------------------------------
# Configuration


def env(name: str, default: str | None = None) -> str:
    """The environment variable `name`, or `default` when it is unset or empty; with neither,
    says so (`FAIL setup: ...`) and exits with status 2."""
    value = os.environ.get(name, "") or default
    if not value:
        print(f"FAIL setup: environment variable {name} is not set", flush=True)
        sys.exit(2)
    return value


# ---------------------------------------------------------------------------------------------
# Failures


class CheckFailed(Exception):
    pass


def fail(expected: str, got: str = "") -> None:
    raise CheckFailed(f"expected {expected}; got {got}" if got else f"expected {expected}")


SHOWN_HEADERS = ("Location", "Content-Type", "Cache-Control", "WWW-Authenticate")


def show(
    resp: requests.Response,
    *,
    headers: tuple[str, ...] = SHOWN_HEADERS,
    limit: int = 600,
    origin: bool = False,
    html_text: Callable[[str], str] | None = None,
) -> str:
    """Status, the headers that matter and the start of the body, on one line: `headers` are
    the ones shown (when present), the body is cut after `limit` characters, `origin` puts the
    URL's scheme and host before its path, and `html_text`, when given, turns the body of an
    HTML page into what is shown of it."""
    body = resp.text
    if html_text is not None and resp.headers.get("Content-Type", "").startswith("text/html"):
        body = html_text(body)
    if len(body) > limit:
        body = body[:limit] + f"... ({len(body)} characters)"
    url = urlsplit(resp.url)
    where = f"{url.scheme}://{url.netloc}{url.path}" if origin else url.path
    parts = [f"{resp.status_code} to {resp.request.method} {where}"]
    for header in headers:
        if header in resp.headers:
            parts.append(f"{header}: {resp.headers[header]}")
    parts.append(f"body {body!r}")
    return ", ".join(parts)


def json_body(
    resp: requests.Response,
    status: int | tuple[int, ...],
    what: str,
    *,
    show: Callable[[requests.Response], str] = show,
):
    """The response's JSON body, after checking its status (one or any of several) and content
    type; a failure shows the response with `show`."""
    statuses = (status,) if isinstance(status, int) else status
    if resp.status_code not in statuses:
        fail(f"{what}: status {' or '.join(map(str, statuses))}", show(resp))
    # A JWK Set may say so in its type (RFC 7517 section 8.5.1).
    content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type not in ("application/json", "application/jwk-set+json"):
        fail(f"{what}: Content-Type application/json", show(resp))
    try:
        return resp.json()
    except ValueError:
        fail(f"{what}: a JSON body", show(resp))


# ---------------------------------------------------------------------------------------------
# HTML pages, read with html.parser


@dataclass
class Form:
    id: str = ""
    action: str | None = None
    method: str = "get"
    fields: list[tuple[str, str]] = field(default_factory=list)  # what a submission sends
    inputs: dict[str, dict] = field(default_factory=dict)  # name -> attributes, every <input>
    buttons: list[dict] = field(default_factory=list)  # attributes of submit buttons


class PageParser(HTMLParser):
    """Every form of a page, in order, with its inputs and submit buttons (an <input> or
    <button> with a form="<id>" attribute belongs to that form, wherever it stands), and the
    text of the elements with role="alert"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.alerts: list[str] = []
        self._form: Form | None = None
        self._early: dict[str, list[tuple[str, dict]]] = {}  # form id -> (tag, attributes) before it
        self._alert: list | None = None  # [tag, depth, text parts]

    def form(self, form_id: str) -> Form | None:
        """The first form with this id, if any."""
        return next((f for f in self.forms if f.id == form_id), None)

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if self._alert is not None and tag == self._alert[0]:
            self._alert[1] += 1
        elif self._alert is None and a.get("role") == "alert":
            self._alert = [tag, 1, []]
        if tag == "form":
            self._form = Form(a.get("id", ""), a.get("action"), a.get("method", "get").lower())
            self.forms.append(self._form)
            if self.form(self._form.id) is self._form:
                for early_tag, early in self._early.pop(self._form.id, []):
                    self._add(self._form, early_tag, early)
            return
        if tag not in ("input", "button"):
            return
        if a.get("form"):
            owner = self.form(a["form"])
            if owner is None:  # a form further down the page, or none
                self._early.setdefault(a["form"], []).append((tag, a))
                return
        else:
            owner = self._form
        if owner is not None:
            self._add(owner, tag, a)

    def _add(self, form: Form, tag: str, a: dict) -> None:
        """An <input> or <button> of `form`, with its attributes `a`."""
        kind = a.get("type", "submit" if tag == "button" else "text").lower()
        if kind in ("submit", "image"):
            form.buttons.append(a)
            return
        if tag == "button" or "name" not in a:
            return
        form.inputs[a["name"]] = a
        if "disabled" in a or kind in ("reset", "button", "file"):
            return
        if kind in ("checkbox", "radio") and "checked" not in a:
            return
        form.fields.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if self._alert is not None and tag == self._alert[0]:
            self._alert[1] -= 1
            if self._alert[1] == 0:
                self.alerts.append(" ".join("".join(self._alert[2]).split()))
                self._alert = None

    def handle_data(self, data):
        if self._alert is not None:
            self._alert[2].append(data)


def parse_page(resp: requests.Response) -> PageParser:
    """The forms and alerts of an HTML response."""
    parser = PageParser()
    parser.feed(resp.text)
    parser.close()
    return parser
