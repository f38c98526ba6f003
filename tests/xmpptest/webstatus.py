"""Helpers for the `xmpp-webstatus` integration tests (tests/test_webstatus.py).

* `webstatus_binary_path()`: `$XMPP_WEBSTATUS_BIN`, else <repo>/target/debug/xmpp-webstatus.
* `Webstatus`: the component process plus its HTTP side (port, data dir, GETs, SIGKILL
  and restart with the same data).
* `fresh_user(server)`: a new account per test, so rosters never leak between tests
  (the server fixture lives for the whole module).
* `register_form` / `submit_form` / `form_fields`: XEP-0077 + XEP-0004 on the wire.
* `wait_until`: poll an async predicate with a deadline and say what was last seen.
* Browser tooling lookup: Chromium and the Playwright package under tests/browser.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from .component import REPO_ROOT, ComponentProcess
from .servers import XmppServer, free_port

DOMAIN = "webstatus.localhost"
REGISTER_NS = "jabber:iq:register"
DATA_NS = "jabber:x:data"
TOKEN_RE = re.compile(r"/status/([A-Za-z0-9_-]{22})\b")
BROWSER_DIR = REPO_ROOT / "tests" / "browser" / "webstatus"

_users = itertools.count(1)


def webstatus_binary_path() -> Path:
    env = os.environ.get("XMPP_WEBSTATUS_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "xmpp-webstatus"


def fresh_user(server: XmppServer, prefix: str = "ws") -> str:
    """Creates a new account `<prefix><n>-<pid>` (password = name + 'pw'); returns its name."""
    name = f"{prefix}{next(_users)}x{os.getpid()}"
    server.register_user(name, name + "pw")
    return name


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]   # lower-case names
    body: str

    def json(self):
        import json
        return json.loads(self.body)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> HttpReply:
    """A GET that returns 4xx/5xx/304 as values instead of raising."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpReply(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                             resp.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return HttpReply(e.code, {k.lower(): v for k, v in e.headers.items()},
                         e.read().decode("utf-8", "replace"))


class Webstatus:
    """`xmpp-webstatus` as a subprocess: HTTP on a free port, data in the test's temp dir."""

    def __init__(self, factory, binary: Path, server: XmppServer, workdir: Path,
                 probe_timeout: float = 2.0, extra_args: list[str] | None = None):
        self.factory, self.binary, self.server = factory, binary, server
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "webstatus-data"
        self.http_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.args = ["--http", f"127.0.0.1:{self.http_port}", "--public-url", self.base,
                     "--data", str(self.data_dir), "--probe-rate", "200",
                     "--probe-timeout", str(probe_timeout)] + list(extra_args or [])
        self.proc: ComponentProcess | None = None
        self.starts = 0

    def start(self, timeout: float = 15.0) -> "Webstatus":
        self.starts += 1
        self.proc = self.factory.start(self.binary, self.server, domain=DOMAIN, extra_args=self.args,
                                       name=f"xmpp-webstatus-{self.starts}", log_filter="debug,sled=info")
        self.proc.wait_connected(timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if http_get(self.base + "/", timeout=1.0).status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"HTTP side not answering on {self.base}\n{self.proc.logs_for_humans()}")
            time.sleep(0.05)

    def kill(self):
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None and self.proc.proc is not None
        self.proc.proc.send_signal(signal.SIGKILL)
        self.proc.proc.wait(timeout=10)

    def url(self, token: str, suffix: str = "") -> str:
        return f"{self.base}/status/{token}{suffix}"

    async def get(self, path: str, headers: dict[str, str] | None = None) -> HttpReply:
        url = path if path.startswith("http") else self.base + path
        return await asyncio.to_thread(http_get, url, headers)

    async def json(self, token: str) -> dict:
        reply = await self.get(self.url(token, ".json"))
        assert reply.status == 200, f"GET {token}.json -> {reply.status} {reply.body}"
        return reply.json()


async def wait_until(probe: Callable[[], Awaitable], check: Callable[[object], bool], timeout: float,
                     what: str, interval: float = 0.05):
    """Calls `probe()` until `check(result)` holds; returns (result, seconds taken)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    last = None
    while True:
        last = await probe()
        if check(last):
            return last, loop.time() - t0
        if loop.time() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s; last seen: {last!r}")
        await asyncio.sleep(interval)


# -- XEP-0077 / XEP-0004 -------------------------------------------------------------------
def query_of(iq) -> ET.Element | None:
    return iq.xml.find(f"{{{REGISTER_NS}}}query")


def form_of(iq) -> ET.Element | None:
    q = query_of(iq)
    return None if q is None else q.find(f"{{{DATA_NS}}}x")


def form_fields(form: ET.Element) -> dict[str, dict]:
    """{var: {'type', 'label', 'values'}} of an x:data form."""
    out = {}
    for f in form.findall(f"{{{DATA_NS}}}field"):
        out[f.get("var")] = {"type": f.get("type"), "label": f.get("label"),
                             "values": [v.text or "" for v in f.findall(f"{{{DATA_NS}}}value")]}
    return out


def token_in(text: str) -> str | None:
    m = TOKEN_RE.search(text or "")
    return m.group(1) if m else None


async def register_form(c, timeout: float = 5.0):
    return await c.iq(DOMAIN, f"<query xmlns='{REGISTER_NS}'/>", "get", timeout)


def submission(show_status_msg: str = "0", show_full_jid: str = "0", extra: str = "") -> str:
    return (f"<query xmlns='{REGISTER_NS}'><x xmlns='{DATA_NS}' type='submit'>"
            f"<field type='hidden' var='FORM_TYPE'><value>{REGISTER_NS}</value></field>"
            f"<field type='boolean' var='show_status_msg'><value>{show_status_msg}</value></field>"
            f"<field type='boolean' var='show_full_jid'><value>{show_full_jid}</value></field>"
            f"{extra}</x></query>")


async def submit_form(c, show_status_msg: str = "0", show_full_jid: str = "0", extra: str = "",
                      timeout: float = 5.0):
    return await c.iq(DOMAIN, submission(show_status_msg, show_full_jid, extra), "set", timeout)


# -- browser tooling ------------------------------------------------------------------------
def chromium_path() -> str | None:
    env = os.environ.get("CHROMIUM_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def playwright_installed() -> bool:
    return (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file()
