"""Real Prosody 0.12 and ejabberd 23.01 servers on loopback, for integration tests.

Each server runs in the foreground from a fresh temp dir on free 127.0.0.1
ports, with a self-contained config (see configs/), and is stopped by PID
(SIGTERM, then SIGKILL after a bounded wait). Readiness means: the c2s port
answers a stream header with <stream:features> AND a XEP-0114 handshake (as
the harness-only component probe.localhost) is answered with <handshake/>.
The three components are configured from the deploy snippets themselves
(deploy/prosody/*.cfg.lua, deploy/ejabberd/*.yml), so a snippet that stops
working fails the suite: `deploy_snippet` copies one with the test domain
(example.org -> localhost), the test secret and, for ejabberd, a free port.
Recipe and traps: shared/reference/real-servers.md.
"""
from __future__ import annotations

import atexit
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .raw import RawComponent, StanzaSplitter

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"

DOMAIN = "localhost"
COMPONENT_SECRETS = {
    "echo.localhost": "echo-secret",
    "pong.localhost": "pong-secret",
    "webstatus.localhost": "webstatus-secret",
}
# Component domain -> name of its snippet in deploy/prosody/<name>.cfg.lua, deploy/ejabberd/<name>.yml.
DEPLOY_SNIPPETS = {"echo.localhost": "echo", "pong.localhost": "pong", "webstatus.localhost": "webstatus"}
PROBE_COMPONENT = ("probe.localhost", "probe-secret")   # used only by the readiness probe
DEFAULT_USERS = {"alice": "alicepw", "bob": "bobpw"}
HARNESS_USER = ("harness", "harnesspw")                  # used by fixtures' protocol probes

STOP_GRACE_S = 5.0

_live: set["XmppServer"] = set()


class ServerUnavailable(Exception):
    """The server software is not installed on this machine."""


class ServerStartError(RuntimeError):
    """The server was started but did not become ready."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM `proc`, wait up to `grace` seconds, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)
    return proc.returncode


SECRET_PLACEHOLDER = re.compile(r'"REPLACE-WITH-THE-CONTENT-OF-/etc/xmpp-[a-z]+/secret"')


def deploy_snippet(kind: str, domain: str, port: int | None = None) -> str:
    """The deploy/ snippet for `domain` on server `kind`, made runnable on loopback.

    Exactly three edits, each of which must apply exactly once (a snippet that no
    longer has the expected shape fails loudly): the secret placeholder becomes the
    test secret, `example.org` becomes `localhost`, and for ejabberd the listener's
    `port:` becomes `port`.
    """
    name = DEPLOY_SNIPPETS[domain]
    path = DEPLOY_DIR / ("prosody" if kind == "prosody" else "ejabberd") / \
        (f"{name}.cfg.lua" if kind == "prosody" else f"{name}.yml")
    text = path.read_text()
    text, n = SECRET_PLACEHOLDER.subn(f'"{COMPONENT_SECRETS[domain]}"', text)
    if n != 1:
        raise ValueError(f"{path}: expected one secret placeholder, found {n}")
    test_domain = f"{name}.example.org"
    if text.count(f'"{test_domain}"' if kind == "prosody" else f"{test_domain}:") != 1:
        raise ValueError(f"{path}: expected the component {test_domain} once")
    text = text.replace("example.org", DOMAIN)
    if kind == "ejabberd":
        text, n = re.subn(r"(?m)^(\s+port: )\d+$", rf"\g<1>{port}", text)
        if n != 1:
            raise ValueError(f"{path}: expected one listener port, found {n}")
    return text


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ('' when missing)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@atexit.register
def _kill_leftovers():   # last resort if the interpreter exits with a server still running
    for srv in list(_live):
        srv.stop()


class XmppServer:
    """Common lifecycle: ports, temp dir, process, readiness, users."""

    kind = "server"
    ready_timeout = 20.0

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.domain = DOMAIN
        self.c2s_port = self.component_port = self.http_port = 0
        # Components whose listener is not `component_port` (ejabberd: one per component).
        self.component_ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.users: dict[str, str] = {}
        self.log_path = self.workdir / f"{self.kind}.log"
        self.exit_codes: list[int] = []

    # -- to be provided by subclasses -------------------------------------
    def _write_config(self):
        raise NotImplementedError

    def _spawn(self, log) -> subprocess.Popen:
        raise NotImplementedError

    def _port_conflict(self) -> bool:
        """True when the log says a listener could not bind its port."""
        return False

    def register_user(self, user: str, password: str):
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def port_for(self, domain: str) -> int:
        """The component port where `domain` authenticates."""
        return self.component_ports.get(domain, self.component_port)

    def _extra_component_domains(self) -> list[str]:
        """Component domains that get a listener of their own (none by default)."""
        return []

    def _pick_ports(self):
        domains = self._extra_component_domains()
        ports: list[int] = []
        while len(ports) < 3 + len(domains):
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.c2s_port, self.component_port, self.http_port = ports[:3]
        self.component_ports = dict(zip(domains, ports[3:]))

    def start(self, attempts: int = 3):
        """Pick free ports, write the config, spawn, wait ready, create users.

        Retries with new ports when a port turned out to be taken (the free-port
        check and the server's bind() are not atomic).
        """
        last = None
        for _ in range(attempts):
            self._pick_ports()
            self._write_config()
            try:
                self._start_process()
            except ServerStartError as e:
                last = e
                conflict = self._port_conflict()
                self.stop()
                if conflict:
                    continue
                raise
            for user, pw in {**DEFAULT_USERS, HARNESS_USER[0]: HARNESS_USER[1]}.items():
                self.register_user(user, pw)
            return self
        raise last

    def _start_process(self):
        log = open(self.log_path, "ab")
        log.write(f"\n===== harness: starting {self.kind} at {time.strftime('%H:%M:%S')} "
                  f"(c2s {self.c2s_port}, component {self.component_port}, http {self.http_port}, "
                  f"per-component {self.component_ports})\n".encode())
        log.flush()
        try:
            self.proc = self._spawn(log)
        finally:
            log.close()
        _live.add(self)
        self.wait_ready(self.ready_timeout)

    def restart(self):
        """Stop by PID and start again on the SAME ports and data dir; wait until ready."""
        self.stop()
        self._start_process()
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait up to 5 s, SIGKILL. Safe to call twice."""
        if self.proc is None:
            return None
        rc = stop_process(self.proc)
        self.exit_codes.append(rc)
        self.proc = None
        _live.discard(self)
        return rc

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- readiness -------------------------------------------------------------
    def _c2s_ok(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.c2s_port), timeout=1) as s:
            s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                      b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
            sp = StanzaSplitter()
            end = time.monotonic() + 2
            while time.monotonic() < end:
                s.settimeout(max(0.01, end - time.monotonic()))
                data = s.recv(65536)
                if not data:
                    return False
                sp.feed(data)
                if sp.items:
                    return sp.items[0].startswith("<stream:features")
        return False

    def _component_ok(self) -> bool:
        c = RawComponent(*PROBE_COMPONENT, self.component_port)
        try:
            c.connect(timeout=2)
            return True
        finally:
            c.close()

    def _component_ports_open(self) -> bool:
        for port in self.component_ports.values():
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        return True

    def wait_ready(self, timeout: float):
        t0 = time.monotonic()
        last_err: Exception | None = None
        while True:
            if self.proc is None or self.proc.poll() is not None:
                rc = None if self.proc is None else self.proc.returncode
                raise ServerStartError(f"{self.kind} exited during startup (status {rc}); log tail:\n"
                                       f"{tail(self.log_path)}")
            if self._port_conflict():
                raise ServerStartError(f"{self.kind} could not open a port; log tail:\n{tail(self.log_path)}")
            try:
                if self._c2s_ok() and self._component_ok() and self._component_ports_open():
                    self.ready_after = time.monotonic() - t0
                    return
            except (OSError, RuntimeError, ValueError) as e:
                last_err = e
            if time.monotonic() - t0 > timeout:
                raise ServerStartError(f"{self.kind} not ready after {timeout} s (last probe error: "
                                       f"{last_err!r}); log tail:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def describe(self) -> str:
        return (f"{self.kind} pid={self.pid} c2s=127.0.0.1:{self.c2s_port} "
                f"component=127.0.0.1:{self.component_port} dir={self.workdir}")

    def __repr__(self):
        return f"<{self.describe()}>"


class ProsodyServer(XmppServer):
    """Prosody 0.12: static config driven by ENV_* variables, users via prosodyctl."""

    kind = "prosody"
    ready_timeout = 20.0

    @staticmethod
    def check_installed():
        missing = [b for b in ("prosody", "prosodyctl") if shutil.which(b) is None]
        if missing:
            raise ServerUnavailable(
                f"Prosody is not installed ({', '.join(missing)} not on PATH); install it with "
                "`apt-get install -y --no-install-recommends prosody lua-unbound` "
                "(scripts/test-all.sh does this)")

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.data_dir = self.workdir / "data"

    def _write_config(self):
        self.data_dir.mkdir(exist_ok=True)
        shutil.copyfile(CONFIG_DIR / "prosody.cfg.lua", self.config_path)
        # prosody.cfg.lua ends with Include "components/*.cfg.lua" (like Debian's conf.d).
        components = self.workdir / "components"
        components.mkdir(exist_ok=True)
        for domain, name in DEPLOY_SNIPPETS.items():
            (components / f"{name}.cfg.lua").write_text(deploy_snippet("prosody", domain))

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(XMPP_TEST_DIR=str(self.data_dir), PROSODY_C2S_PORT=str(self.c2s_port),
                   PROSODY_COMP_PORT=str(self.component_port), PROSODY_HTTP_PORT=str(self.http_port))
        return env

    def _spawn(self, log):
        return subprocess.Popen(["prosody", "--config", str(self.config_path), "-F"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=self.env(), cwd=self.workdir, start_new_session=True)

    def _port_conflict(self) -> bool:
        # Prosody keeps running without a listener whose port is taken.
        try:
            return "Failed to open server port" in self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def register_user(self, user: str, password: str):
        r = subprocess.run(["prosodyctl", "--config", str(self.config_path), "register", user, self.domain, password],
                           env=self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"prosodyctl register {user} failed ({r.returncode}): {r.stdout}{r.stderr}")
        self.users[user] = password


def _ejabberd_erl_libs() -> str | None:
    """The directory that holds ejabberd-<version>/ebin (ERL_LIBS), e.g. /usr/lib/x86_64-linux-gnu."""
    hits = sorted(glob.glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app") + glob.glob("/usr/lib/ejabberd-*/ebin/ejabberd.app"))
    return str(Path(hits[-1]).parent.parent.parent) if hits else None


class EjabberdServer(XmppServer):
    """ejabberd 23.01 run directly as `erl -s ejabberd` (one PID, no epmd); users via HTTP API."""

    kind = "ejabberd"
    ready_timeout = 60.0

    @staticmethod
    def check_installed():
        if shutil.which("erl") is None or _ejabberd_erl_libs() is None:
            raise ServerUnavailable(
                "ejabberd is not installed (need `erl` on PATH and /usr/lib/<arch>/ejabberd-*/ebin); install it with "
                "`apt-get install -y --no-install-recommends ejabberd` (scripts/test-all.sh does this)")

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.config_path = self.workdir / "ejabberd.yml"

    def _extra_component_domains(self) -> list[str]:
        return list(DEPLOY_SNIPPETS)   # deploy/ejabberd/*.yml: one listener per component

    def _write_config(self):
        for d in ("db", "logs"):
            (self.workdir / d).mkdir(exist_ok=True)
        text = (CONFIG_DIR / "ejabberd.yml.in").read_text()
        includes = []
        for domain, name in DEPLOY_SNIPPETS.items():
            snippet = self.workdir / f"{name}.yml"
            snippet.write_text(deploy_snippet("ejabberd", domain, self.component_ports[domain]))
            includes.append(f"  - {json.dumps(str(snippet))}")
        text = (text.replace("__C2S_PORT__", str(self.c2s_port))
                    .replace("__COMPONENT_PORT__", str(self.component_port))
                    .replace("__HTTP_PORT__", str(self.http_port))
                    .replace("__COMPONENT_INCLUDES__", "\n".join(includes)))
        self.config_path.write_text(text)
        inetrc = self.workdir / "inetrc"
        if Path("/etc/ejabberd/inetrc").exists():
            shutil.copyfile("/etc/ejabberd/inetrc", inetrc)
        else:   # same content as Debian's file; avoids "inet_config: file ... not found"
            inetrc.write_text('{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost","hostalias"]}.\n')

    def _spawn(self, log):
        env = dict(os.environ)
        env.update(EJABBERD_CONFIG_PATH=str(self.config_path),
                   EJABBERD_LOG_PATH=str(self.workdir / "logs" / "ejabberd.log"),
                   ERL_LIBS=_ejabberd_erl_libs() or "", ERL_INETRC=str(self.workdir / "inetrc"))
        # /usr/bin/erl execs erlexec, which execs beam.smp: the PID is the VM itself.
        return subprocess.Popen(["erl", "-noinput", "-env", "ERL_CRASH_DUMP_BYTES", "0",
                                 "-mnesia", "dir", f'"{self.workdir / "db"}"', "-s", "ejabberd"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=self.workdir, start_new_session=True)

    def _port_conflict(self) -> bool:
        try:
            return "address already in use" in self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def register_user(self, user: str, password: str):
        body = json.dumps({"user": user, "host": self.domain, "password": password}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/api/register", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            if e.code != 409:   # 409 = already registered: fine, but the password must match
                raise RuntimeError(f"ejabberd /api/register {user} failed: HTTP {e.code} {text}") from e
            if self.users.get(user, password) != password:
                raise RuntimeError(f"user {user} already exists with another password") from e
        self.users[user] = password


SERVER_CLASSES = {"prosody": ProsodyServer, "ejabberd": EjabberdServer}
