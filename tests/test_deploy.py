"""deploy/: every file an admin copies is proven here.

* Server snippets (deploy/prosody, deploy/ejabberd): the `server` fixture already runs
  Prosody and ejabberd FROM those files (xmpptest/servers.py `deploy_snippet`); here the
  three real components connect through them, and service discovery shows their names.
* systemd units (deploy/systemd): `systemd-analyze verify` and `security --offline`, the
  promised directives, and each unit's ExecStart line run for real with the example
  config, the credential and state directories mapped to temp dirs and a notify socket.
* Example configs (deploy/config): valid TOML, only known keys, every option documented.
* nginx (deploy/nginx): `nginx -t`, then a real nginx on loopback with a self-signed
  certificate in front of real components: pages, unbuffered live events, the XMPP
  WebSocket upgrade, and /metrics refused.
"""
from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from xmpptest.ci import missing
from xmpptest.clients import client, disco_identities
from xmpptest.component import REPO_ROOT
from xmpptest.servers import COMPONENT_SECRETS, DEPLOY_DIR, DEPLOY_SNIPPETS, free_port, stop_process
from xmpptest.webstatus import HttpReply, Webstatus

DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
BINARIES = {"echo": "xmpp-echo", "webstatus": "xmpp-webstatus", "pong": "xmpp-pong"}


def binary(name: str) -> Path:
    """`$XMPP_<NAME>_BIN`, else <repo>/target/debug/xmpp-<name>; missing = fail in CI, skip elsewhere."""
    env = os.environ.get(f"XMPP_{name.upper()}_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / BINARIES[name]
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing(f"{path} not built (cargo build --bins, or set XMPP_{name.upper()}_BIN)")
    return path


def prosody_name(name: str) -> str:
    """The `name = "..."` of deploy/prosody/<name>.cfg.lua."""
    text = (DEPLOY_DIR / "prosody" / f"{name}.cfg.lua").read_text()
    found = re.findall(r'(?m)^\s*name\s*=\s*"([^"]*)"', text)
    assert len(found) == 1, f"deploy/prosody/{name}.cfg.lua: expected one name = \"...\", found {found}"
    return found[0]


def component_args(name: str, tmp_path: Path) -> list[str]:
    """The flags a component needs besides --server/--domain/--secret-file (its HTTP and data)."""
    if name == "echo":
        return []
    return ["--http", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / f"{name}-data")]


# -- server snippets -------------------------------------------------------------------------------
def test_snippet_names_are_the_components_names():
    """Prosody's `name` in each snippet and the documented names agree."""
    assert {n: prosody_name(n) for n in DEPLOY_SNIPPETS.values()} == \
        {"echo": "Echo", "webstatus": "Web presence", "pong": "XMPPong"}


async def test_components_connect_through_the_snippets_and_disco_shows_their_names(server, components, tmp_path):
    """All three real binaries connect with the deploy snippets' settings; each answers
    disco#info with the same name as its Prosody snippet; disco#items of the server lists
    them (named on Prosody; ejabberd 23.01 has no per-component name, so there the items
    carry only the JID)."""
    procs = {}
    for domain, name in DEPLOY_SNIPPETS.items():
        procs[name] = components.start(binary(name), server, domain=domain, log_filter="info",
                                       extra_args=component_args(name, tmp_path), name=name)
    for proc in procs.values():
        proc.wait_connected(timeout=15)
    async with client(server, "alice") as alice:
        for domain, name in DEPLOY_SNIPPETS.items():
            reply = await alice.disco_info(domain)
            assert reply["type"] == "result", reply
            names = [i["name"] for i in disco_identities(reply)]
            assert prosody_name(name) in names, (domain, names)
        items_reply = await alice.iq("localhost", f"<query xmlns='{DISCO_ITEMS_NS}'/>")
        assert items_reply["type"] == "result", items_reply
        items = {el.get("jid"): el.get("name")
                 for el in items_reply.xml.iter(f"{{{DISCO_ITEMS_NS}}}item")}
    expected = {domain: prosody_name(name) for domain, name in DEPLOY_SNIPPETS.items()}
    if server.kind == "prosody":
        assert {d: items.get(d) for d in expected} == expected, items
    else:
        assert {d: items.get(d, "absent") for d in expected} == {d: None for d in expected}, items


# -- systemd units ---------------------------------------------------------------------------------
UNIT_DIR = DEPLOY_DIR / "systemd"
COMPONENT_DOMAINS = {name: domain for domain, name in DEPLOY_SNIPPETS.items()}


def unit_text(name: str) -> str:
    return (UNIT_DIR / f"xmpp-{name}.service").read_text()


def unit_values(name: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit (all sections), in order, comments skipped."""
    values: dict[str, list[str]] = {}
    for line in unit_text(name).splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        missing("systemd-analyze not found (apt-get install systemd; scripts/test-all.sh does this)")
    return path


def unit_with_local_binary(name: str, tmp_path: Path) -> Path:
    """The unit, with /usr/local/bin/ pointing at the built binary (verify checks it exists)."""
    text = unit_text(name)
    assert text.count(f"ExecStart=/usr/local/bin/xmpp-{name} ") == 1
    unit = tmp_path / f"xmpp-{name}.service"
    unit.write_text(text.replace(f"ExecStart=/usr/local/bin/xmpp-{name} ", f"ExecStart={binary(name)} "))
    return unit


@pytest.mark.parametrize("name", ["echo", "webstatus", "pong"])
def test_unit_passes_systemd_analyze_verify(name, tmp_path):
    """`systemd-analyze verify` accepts the unit with no warning at all (an unknown key or a
    bad value is only a warning there, so the output must be empty)."""
    unit = unit_with_local_binary(name, tmp_path)
    r = subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


@pytest.mark.parametrize("name", ["echo", "webstatus", "pong"])
def test_unit_exposure_is_low(name, tmp_path):
    """`systemd-analyze security --offline` rates the sandbox: 'OK' means exposure <= 2.0
    on its 0 (locked down) to 10 (unprotected) scale."""
    unit = unit_with_local_binary(name, tmp_path)
    r = subprocess.run([systemd_analyze(), "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


@pytest.mark.parametrize("name", ["echo", "webstatus", "pong"])
def test_unit_has_the_deployment_contract(name):
    """What the README promises of every unit: notify + watchdog, dynamic user, secret as a
    credential, config in /etc/<component>/config.toml, sled data in a StateDirectory."""
    v = unit_values(name)
    one = {k: vals[-1] for k, vals in v.items()}
    assert one["Type"] == "notify" and one["WatchdogSec"]
    assert one["DynamicUser"] == "yes" and one["Restart"] == "on-failure"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "CapabilityBoundingSet": ""}.items():
        assert one[key] == value, key
    assert "AF_INET" in one["RestrictAddressFamilies"].split()
    assert "@system-service" in v["SystemCallFilter"]
    assert one["LoadCredential"] == f"secret:/etc/xmpp-{name}/secret"
    exec_start = shlex.split(one["ExecStart"])
    assert exec_start[0] == f"/usr/local/bin/xmpp-{name}"
    assert exec_start[exec_start.index("--config") + 1] == f"/etc/xmpp-{name}/config.toml"
    assert exec_start[exec_start.index("--secret-file") + 1] == "%d/secret"
    if name == "echo":
        assert "StateDirectory" not in one and "--data" not in exec_start
    else:   # ProtectSystem=strict: the only writable place is the StateDirectory
        assert one["StateDirectory"] == f"xmpp-{name}"
        assert exec_start[exec_start.index("--data") + 1] == f"/var/lib/xmpp-{name}"


# -- example configs + the units' ExecStart, run for real ----------------------------------------
CONFIG_DIR = DEPLOY_DIR / "config"


def help_flags(name: str) -> set[str]:
    out = subprocess.run([str(binary(name)), "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"--([a-z][a-z-]+)", out)) - {"help", "version", "config"}


@pytest.mark.parametrize("name", ["echo", "webstatus", "pong"])
def test_example_config_is_valid_toml_and_documents_every_flag(name):
    """Every set key is an option of the binary; every option of `--help` is documented in
    the example (as a key, commented with its default, or as a command-line-only flag)."""
    text = (CONFIG_DIR / f"{name}.toml").read_text()
    keys = set(tomllib.loads(text))
    flags = help_flags(name)
    assert keys <= flags, f"keys the binary does not know: {keys - flags}"
    documented = set(re.findall(r"(?m)^#?\s*([a-z][a-z-]+) = ", text)) | set(re.findall(r"--([a-z][a-z-]+)", text))
    assert flags <= documented, f"options missing from deploy/config/{name}.toml: {flags - documented}"


def notify_socket() -> tuple[socket.socket, Path]:
    """A bound datagram socket standing in for systemd's NOTIFY_SOCKET (short path: 108 bytes max)."""
    path = Path(tempfile.mkdtemp(prefix="xn")) / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock, path


def read_notifications(sock: socket.socket, until: str, timeout: float, proc) -> list[str]:
    """Datagrams until one contains `until` (raises with what came, or if the process exits)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
            if until in got[-1]:
                return got
        except socket.timeout:
            if proc.poll() is not None:
                break
    raise AssertionError(f"no {until!r} within {timeout} s (exit status {proc.poll()}); got {got}")


@pytest.mark.parametrize("name", ["echo", "webstatus", "pong"])
def test_unit_execstart_with_the_example_config_runs(server, name, tmp_path):
    """The unit's own ExecStart line, with the example config: only the paths that systemd
    and the admin provide are mapped (binary, /etc config, credential dir %d, /var/lib state
    dir) and the example's values are pointed at the test server. The component reports
    READY=1 on the notify socket once connected, serves HTTP, writes its state directory,
    and on SIGTERM sends STOPPING=1 and exits 0."""
    domain = COMPONENT_DOMAINS[name]
    config = (CONFIG_DIR / f"{name}.toml").read_text()
    http_port = free_port()
    for old, new in (('"127.0.0.1:5347"', f'"127.0.0.1:{server.port_for(domain)}"'),
                     ('"127.0.0.1:8080"', f'"127.0.0.1:{http_port}"')):
        if name == "webstatus" or "8080" not in old:
            assert config.count(old) == 1, old
            config = config.replace(old, new)
    config = config.replace("example.org", "localhost")
    etc, creds, state = tmp_path / "etc", tmp_path / "credentials", tmp_path / "state"
    for d in (etc, creds, state):
        d.mkdir()
    (etc / "config.toml").write_text(config)
    (creds / "secret").write_text(COMPONENT_SECRETS[domain] + "\n")
    exec_start = shlex.split(unit_values(name)["ExecStart"][-1])
    mapping = {f"/usr/local/bin/xmpp-{name}": str(binary(name)),
               f"/etc/xmpp-{name}/config.toml": str(etc / "config.toml"),
               "%d/secret": str(creds / "secret"), f"/var/lib/xmpp-{name}": str(state)}
    args = [mapping.get(a, a) for a in exec_start]
    if name == "pong":   # the unit's --http is the production port; use a free one
        args[args.index("--http") + 1] = f"127.0.0.1:{http_port}"
    assert not [a for a in args if a.startswith(("/usr/local", "/etc/", "/var/lib", "%"))], args

    sock, sock_path = notify_socket()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")
    log = open(tmp_path / "component.log", "wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path, start_new_session=True)
    try:
        try:
            ready = read_notifications(sock, "READY=1", 20, proc)
            assert f"STATUS=connected as {domain}" in ready[-1]
            read_notifications(sock, "WATCHDOG=1", 5, proc)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{(tmp_path / 'component.log').read_text(errors='replace')}") from None
        if name != "echo":
            path = "/" if name == "webstatus" else "/leaderboard.json"
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=5) as resp:
                assert resp.status == 200
            assert any(state.iterdir()), "the database is in the state directory"
        proc.send_signal(signal.SIGTERM)
        read_notifications(sock, "STOPPING=1", 10, proc)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        sock.close()
        shutil.rmtree(sock_path.parent, ignore_errors=True)


# -- nginx -----------------------------------------------------------------------------------------
NGINX_DIR = DEPLOY_DIR / "nginx"


def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if path is None:
        missing("nginx not installed (apt-get install nginx; scripts/test-all.sh does this)")
    return path


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 made with openssl (also the client's CA)."""
    if shutil.which("openssl") is None:
        missing("openssl not installed (scripts/test-all.sh installs it)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Nginx:
    """A real nginx on loopback running deploy/nginx/<name>.conf, with only what the admin
    edits changed: listen ports (free loopback ones; the IPv6 lines dropped), the
    certificate paths (a self-signed one), and the upstream ports."""

    def __init__(self, name: str, workdir: Path, upstreams: dict[int, int]):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert, key = self_signed_cert(workdir)
        self.https_port, self.http_port = free_port(), free_port()
        site = (NGINX_DIR / f"{name}.conf").read_text()
        domain = f"{'status' if name == 'webstatus' else name}.example.org"
        edits = [("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
                 ("listen [::]:443 ssl http2;", ""),
                 ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
                 ("listen [::]:80;", ""),
                 (f"/etc/letsencrypt/live/{domain}/fullchain.pem", str(self.cert)),
                 (f"/etc/letsencrypt/live/{domain}/privkey.pem", str(key))]
        for old, new in edits:
            assert site.count(old) == 1, f"deploy/nginx/{name}.conf: expected {old!r} once"
            site = site.replace(old, new)
        for prod, port in upstreams.items():
            assert f"proxy_pass http://127.0.0.1:{prod};" in site, prod
            site = site.replace(f"proxy_pass http://127.0.0.1:{prod};", f"proxy_pass http://127.0.0.1:{port};")
        (workdir / "site.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {workdir / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    access_log {workdir}/access.log;
    # A main config that compresses everything it may (Debian's has `gzip on;`): the
    # site file must still deliver live events at once.
    gzip on;
    gzip_proxied any;
    gzip_min_length 1;
    gzip_types text/event-stream application/json text/plain image/svg+xml;
{temp}
    include {workdir}/site.conf;
}}
""")
        self.proc: subprocess.Popen | None = None
        self.ssl = ssl.create_default_context(cafile=str(self.cert))

    def command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-p", str(self.workdir), "-e", str(self.workdir / "error.log"),
                "-c", str(self.conf), *extra]

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> "Nginx":
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "stderr.log", "wb"), start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: {(self.workdir / 'error.log').read_text()}")
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)

    def get(self, path: str, https: bool = True, timeout: float = 5.0) -> HttpReply:
        """A GET through the proxy (certificate verified against the test CA)."""
        conn = (http.client.HTTPSConnection("127.0.0.1", self.https_port, context=self.ssl, timeout=timeout)
                if https else http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout))
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                             resp.read().decode("utf-8", "replace"))
        finally:
            conn.close()


METRICS_PATHS = ["/metrics", "/metrics?x=1", "//metrics", "/%6detrics", "/metrics/"]


def test_nginx_events_location_is_unbuffered_with_a_long_timeout():
    """nginx 1.22 happens to pass small SSE chunks on even when buffering, so the live test
    below cannot catch a dropped `proxy_buffering off`; this pins the directives (and a read
    timeout well above the component's 15 s keep-alive)."""
    site = (NGINX_DIR / "webstatus.conf").read_text()
    block = site[site.index("location ~ ^/status/[^/]+/events$"):]
    block = block[:block.index("}")]
    for directive in ("proxy_buffering off;", "proxy_cache off;", "gzip off;", "proxy_read_timeout 1h;"):
        assert directive in block, directive


@pytest.mark.parametrize("name", ["webstatus", "pong"])
def test_nginx_config_passes_nginx_t(name, tmp_path):
    nginx = Nginx(name, tmp_path, {8080: 1} if name == "webstatus" else {8081: 2, 5280: 3})
    r = nginx.test_config()
    assert r.returncode == 0 and "test is successful" in r.stderr, r.stderr


class PublicView:
    """A `Webstatus` whose URLs handed to users are the proxy's (--public-url)."""

    def __init__(self, ws: Webstatus, public_url: str):
        self.ws, self.public_url = ws, public_url

    def url(self, token: str, suffix: str = "") -> str:
        return f"{self.public_url}/status/{token}{suffix}"

    async def json(self, token: str) -> dict:
        return await self.ws.json(token)


async def test_webstatus_through_nginx_tls_sse_and_no_metrics(prosody, components, tmp_path):
    """Status page, live events (each one arrives at once: unbuffered) and the index with the
    public URL, through TLS; /metrics in every spelling refused; plain HTTP redirected."""
    from test_webstatus import registered   # the registration flow of the webstatus suite

    ws = Webstatus(components, binary("webstatus"), prosody, tmp_path / "ws")
    nginx = Nginx("webstatus", tmp_path / "nginx", {8080: ws.http_port})
    public_url = f"https://127.0.0.1:{nginx.https_port}"
    ws.args[ws.args.index("--public-url") + 1] = public_url
    ws.start()
    nginx.start()
    try:
        index = await asyncio.to_thread(nginx.get, "/")
        assert index.status == 200 and f"{public_url}/status/TOKEN" in index.body, index
        async with registered(prosody, PublicView(ws, public_url)) as (c, token):
            page = await asyncio.to_thread(nginx.get, f"/status/{token}")
            assert page.status == 200 and "Available" in page.body, page
            assert "x-frame-options" not in page.headers   # an iframe may show it

            conn = http.client.HTTPSConnection("127.0.0.1", nginx.https_port, context=nginx.ssl, timeout=10)
            try:
                conn.request("GET", f"/status/{token}/events", headers={"Accept-Encoding": "gzip"})
                resp = conn.getresponse()
                assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
                assert resp.getheader("Content-Encoding") is None, "compressed events wait in gzip's buffer"

                def next_data() -> str:
                    while True:
                        line = resp.fp.readline().decode()
                        if line.startswith("data: "):
                            return line
                        assert line, "event stream closed"

                first = await asyncio.to_thread(next_data)
                assert '"available"' in first, first
                t0 = time.monotonic()
                c.xmpp.send_presence(pshow="dnd")
                changed = await asyncio.wait_for(asyncio.to_thread(next_data), timeout=5)
                took = time.monotonic() - t0
                assert '"dnd"' in changed, changed
                print(f"presence change -> event through nginx in {took * 1000:.0f} ms")
            finally:
                conn.close()
        for path in METRICS_PATHS:
            reply = await asyncio.to_thread(nginx.get, path)
            assert reply.status == 403, (path, reply.status)
        redirect = await asyncio.to_thread(nginx.get, "/status/x", False)
        assert redirect.status == 301 and redirect.headers["location"].startswith("https://"), redirect
    finally:
        nginx.stop()


def websocket_upgrade(nginx: Nginx) -> str:
    """The status line and headers nginx returns for an RFC 7395 WebSocket opening."""
    with socket.create_connection(("127.0.0.1", nginx.https_port), timeout=5) as raw:
        with nginx.ssl.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall((f"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Sec-WebSocket-Protocol: xmpp\r\nOrigin: https://localhost\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
            return head.decode(errors="replace")


def test_pong_through_nginx_leaderboard_websocket_and_no_metrics(server, components, tmp_path):
    """The leaderboard through TLS; the XMPP server's WebSocket upgraded on the same origin
    (Prosody and ejabberd); /metrics, which exists on the component, refused by the proxy."""
    pong_port = free_port()
    proc = components.start(binary("pong"), server, domain="pong.localhost", log_filter="info",
                            extra_args=["--http", f"127.0.0.1:{pong_port}", "--data", str(tmp_path / "pong")])
    proc.wait_connected(timeout=15)
    nginx = Nginx("pong", tmp_path / "nginx", {8081: pong_port, 5280: server.http_port}).start()
    try:
        board = nginx.get("/leaderboard.json")
        assert board.status == 200 and isinstance(json.loads(board.body), (list, dict)), board
        with urllib.request.urlopen(f"http://127.0.0.1:{pong_port}/metrics", timeout=5) as direct:
            assert direct.status == 200   # it exists, so the 403 below is the proxy's doing
        for path in METRICS_PATHS:
            assert nginx.get(path).status == 403, path
        head = websocket_upgrade(nginx)
        assert head.startswith("HTTP/1.1 101"), head
        assert re.search(r"(?im)^sec-websocket-protocol:\s*xmpp\s*$", head), head
    finally:
        nginx.stop()
