"""Run a component binary (e.g. `xmpp-echo`) as a subprocess against a test server.

The process gets `--server 127.0.0.1:<component port> --domain D --log debug`
and its secret via `--secret-file`, `--secret` or env `XMPP_COMPONENT_SECRET`.
stdout and stderr go to files in the test's temp dir. `wait_connected` is a
protocol-level check: a logged-in raw c2s client sends disco#info to the
component's domain until a `result` comes back (bounded).
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from .raw import RawClient, attr
from .servers import COMPONENT_SECRETS, HARNESS_USER, XmppServer, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def echo_binary_path() -> Path:
    """`$XMPP_ECHO_BIN`, else <repo>/target/debug/xmpp-echo."""
    env = os.environ.get("XMPP_ECHO_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "xmpp-echo"


class ComponentError(AssertionError):
    """The component did not behave as the harness expected (carries its logs)."""


class ComponentProcess:
    """One component subprocess with its own log files."""

    def __init__(self, binary: Path, server: XmppServer, workdir: Path, domain: str = "echo.localhost",
                 secret: str | None = None, secret_via: str = "file", log_filter: str = "debug",
                 extra_args: list[str] | None = None, name: str | None = None):
        self.binary, self.server, self.domain = Path(binary), server, domain
        self.secret = server_secret(domain) if secret is None else secret
        self.secret_via = secret_via
        self.log_filter = log_filter
        self.extra_args = list(extra_args or [])
        self.name = name or f"{self.binary.name}-{domain}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{self.name}.stdout.log"
        self.stderr_path = self.workdir / f"{self.name}.stderr.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def command(self) -> tuple[list[str], dict]:
        args = [str(self.binary), "--server", f"127.0.0.1:{self.server.port_for(self.domain)}",
                "--domain", self.domain, "--log", self.log_filter]
        env = dict(os.environ)
        env.pop("XMPP_COMPONENT_SECRET", None)
        if self.secret_via == "file":
            secret_file = self.workdir / f"{self.name}.secret"
            secret_file.write_text(self.secret + "\n")
            secret_file.chmod(0o600)
            args += ["--secret-file", str(secret_file)]
        elif self.secret_via == "env":
            env["XMPP_COMPONENT_SECRET"] = self.secret
        elif self.secret_via == "arg":
            args += ["--secret", self.secret]
        else:
            raise ValueError(f"secret_via must be file, env or arg, not {self.secret_via!r}")
        return args + self.extra_args, env

    def start(self) -> "ComponentProcess":
        args, env = self.command()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, cwd=self.workdir, start_new_session=True)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @staticmethod
    def _read(path: Path) -> str:
        """A log file's text without ANSI colour codes."""
        return ANSI.sub("", path.read_text(errors="replace")) if path.exists() else ""

    def stdout(self) -> str:
        return self._read(self.stdout_path)

    def stderr(self) -> str:
        return self._read(self.stderr_path)

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def logs_for_humans(self, lines: int = 40) -> str:
        def last(text: str) -> str:
            return "\n".join(text.splitlines()[-lines:])
        return (f"--- {self.name} stdout (tail) ---\n{last(self.stdout())}\n"
                f"--- {self.name} stderr (tail) ---\n{last(self.stderr())}")

    def wait_exit(self, timeout: float) -> int | None:
        """Exit status, or None if still running after `timeout` seconds."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def terminate(self, timeout: float = 5.0) -> int | None:
        """SIGTERM only; exit status, or None if still running after `timeout`."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait_exit(timeout)

    def stop(self) -> int | None:
        """SIGTERM, wait ~5 s, SIGKILL. Safe to call twice."""
        if self.proc is None:
            return self.returncode
        self.returncode = stop_process(self.proc)
        return self.returncode

    def wait_connected(self, timeout: float = 10.0, user: tuple[str, str] = HARNESS_USER) -> float:
        """Poll disco#info to the component's domain until it answers `result`.

        Returns the seconds it took; raises ComponentError (with the component's
        logs) when the process exits or `timeout` passes first.
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        probe: RawClient | None = None
        last = "no probe sent"
        try:
            while True:
                rc = self.poll()
                if rc is not None:
                    raise ComponentError(f"{self.name} exited with status {rc} before it was connected "
                                         f"({self.server.kind}).\n{self.logs_for_humans()}")
                if time.monotonic() >= deadline:
                    hs = "handshake ok" in self.output()
                    raise ComponentError(
                        f"{self.name} did not answer disco#info on {self.server.kind} within {timeout} s "
                        f"(last reply: {last}; 'handshake ok' in its log: {hs}).\n{self.logs_for_humans()}")
                try:
                    if probe is None or probe.eof:
                        probe = RawClient(*user, self.server.c2s_port, resource=f"probe-{self.name}")
                        probe.login(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                    reply = probe.disco_info(self.domain, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                    last = reply or "timeout"
                    if reply is not None and attr(reply, "type") == "result" and not server_stand_in(reply):
                        return time.monotonic() - t0
                except (OSError, RuntimeError) as e:
                    last = repr(e)
                    if probe is not None:
                        probe.close()
                    probe = None
                time.sleep(0.1)
        finally:
            if probe is not None:
                probe.close()


def server_stand_in(reply: str) -> bool:
    """True for the disco#info answer Prosody gives for a component that is NOT connected.

    With `name = ...` in its Component section (deploy/prosody/*.cfg.lua), Prosody answers
    disco#info itself while the component is away: one identity and the single feature
    disco#info. Every real component also advertises at least urn:xmpp:ping.
    """
    features = re.findall(r"<feature\b[^>]*\bvar=['\"]([^'\"]*)['\"]", reply)
    return "<query" in reply and features == ["http://jabber.org/protocol/disco#info"]


def server_secret(domain: str) -> str:
    """The secret the test server configs give `domain`."""
    return COMPONENT_SECRETS.get(domain, "no-secret-configured-for-" + domain)
