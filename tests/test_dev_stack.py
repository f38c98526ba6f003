"""scripts/dev-stack.sh, the newcomer's command: up, Ctrl-C, up again.

The stack runs with every port moved to a free one through its environment variables, the
already-built debug binaries (DEV_SKIP_BUILD=1) and a temp DEV_DIR. Ctrl-C is simulated as
a terminal does it: SIGINT to the whole foreground process group.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from xmpptest.ci import missing
from xmpptest.component import REPO_ROOT
from xmpptest.servers import ProsodyServer, ServerUnavailable, free_port

SCRIPT = REPO_ROOT / "scripts" / "dev-stack.sh"
BINARIES = ("xmpp-echo", "xmpp-pong", "xmpp-webstatus")
PORT_VARS = ("XMPP_C2S_PORT", "XMPP_COMPONENT_PORT", "XMPP_HTTP_PORT", "WEBSTATUS_HTTP_PORT", "PONG_HTTP_PORT")


@pytest.fixture
def stack_env(tmp_path) -> dict:
    try:
        ProsodyServer.check_installed()
    except ServerUnavailable as e:
        missing(str(e))
    bin_dir = Path(os.environ.get("XMPP_ECHO_BIN", REPO_ROOT / "target" / "debug" / "xmpp-echo")).parent
    for name in BINARIES:
        if not os.access(bin_dir / name, os.X_OK):
            missing(f"{bin_dir / name} not built (cargo build --bins)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_")}
    ports: list[int] = []
    while len(ports) < len(PORT_VARS):
        port = free_port()
        if port not in ports:
            ports.append(port)
    env.update(dict(zip(PORT_VARS, map(str, ports))))
    env.update(DEV_DIR=str(tmp_path / "dev"), DEV_SKIP_BUILD="1", BIN_DIR=str(bin_dir), DEV_LOG="info")
    return env


def processes_using(path: str) -> list[str]:
    """Command lines of live processes that mention `path` (the stack's DEV_DIR)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in cmdline and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline}")
    return found


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def run_until_up(env: dict, log: Path, timeout: float = 60.0) -> subprocess.Popen:
    """Starts the stack (output appended to `log`) and waits for this run's "up" banner."""
    start = log.stat().st_size if log.exists() else 0
    out = open(log, "ab")
    proc = subprocess.Popen(["bash", str(SCRIPT)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=REPO_ROOT, start_new_session=True)   # its own process group, like a terminal's
    deadline = time.monotonic() + timeout
    while "Dev stack is up" not in log.read_text(errors="replace")[start:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            raise AssertionError(f"dev stack not up (exit {proc.poll()}):\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    return proc


def ctrl_c(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    """SIGINT to the foreground process group, as the terminal's Ctrl-C; the exit status and output."""
    before = len(log.read_text(errors="replace"))
    os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return rc, log.read_text(errors="replace")[before:]


def test_ctrl_c_stops_everything_cleanly_and_a_second_run_works(stack_env, tmp_path):
    dev_dir = stack_env["DEV_DIR"]
    log = tmp_path / "dev-stack.out"
    ports = [int(stack_env[v]) for v in PORT_VARS]
    for run in (1, 2):
        proc = run_until_up(stack_env, log)
        try:
            assert all(port_open(p) for p in ports), {p: port_open(p) for p in ports}
            text = log.read_text()
            t0 = time.monotonic()
            assert "alice@localhost / alicepw" in text and "bob@localhost / bobpw" in text
            rc, tail = ctrl_c(proc, log)
            print(f"run {run}: Ctrl-C to exit in {time.monotonic() - t0:.2f} s")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        assert rc == 0, f"run {run}: exit {rc}\n{tail}"
        assert "stopped" in tail and "error" not in tail, tail
        assert processes_using(dev_dir) == [], f"run {run}: left running"
        assert not [p for p in ports if port_open(p)], f"run {run}: a port is still open"
    # Components were stopped before Prosody (no reconnect attempts), and their logs
    # were appended: both runs are in each file.
    for name in BINARIES:
        text = (Path(dev_dir) / "logs" / f"{name}.log").read_text()
        assert len(re.findall(r"===== dev-stack: starting", text)) == 2, name
        assert "reconnect attempt" not in text, f"{name} lost Prosody before it was stopped:\n{text}"
        assert text.count("handshake ok") == 2, name


def test_a_busy_port_is_named_with_its_variable(stack_env, tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(stack_env["PONG_HTTP_PORT"])))
        blocker.listen()
        r = subprocess.run(["bash", str(SCRIPT)], env=stack_env, cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert f"port {stack_env['PONG_HTTP_PORT']} on 127.0.0.1 is in use" in r.stderr, r.stderr
    assert "PONG_HTTP_PORT=" in r.stderr, r.stderr
    assert processes_using(stack_env["DEV_DIR"]) == []
