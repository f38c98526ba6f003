"""pytest fixtures for the XEP-0114 integration tests.

* `server`: a real Prosody and a real ejabberd (parametrized), one per test module,
  on free loopback ports in a fresh temp dir, with users alice/alicepw and bob/bobpw.
* `prosody`, `ejabberd`: one server of that kind per module; `fresh_prosody`: one per
  test (for tests that restart it: `fresh_prosody.restart()`).
* `echo_bin`, `components`, `echo`: the `xmpp-echo` binary, a factory of component
  processes, and an `xmpp-echo` already connected to `server`.
* `async def` tests run in a fresh event loop with an overall timeout (no plugin needed).

Missing server software or component binary: the test FAILS when env CI is set
(CI must install/build it: scripts/test-all.sh), and is skipped with a clear
message otherwise.
"""
from __future__ import annotations

import asyncio
import inspect
import os
from pathlib import Path

import pytest

from xmpptest.ci import in_ci, missing
from xmpptest.component import ComponentProcess, echo_binary_path
from xmpptest.servers import SERVER_CLASSES, ServerUnavailable, XmppServer, tail

ASYNC_TEST_TIMEOUT = float(os.environ.get("XMPP_TEST_TIMEOUT", "120"))


# -- async tests -----------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run `async def` tests with asyncio.run, bounded by XMPP_TEST_TIMEOUT seconds."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def bounded():
        # Only the overall deadline is reported as such; a bounded wait that times out
        # inside the test keeps its own error (on 3.11 both are the same TimeoutError).
        try:
            async with asyncio.timeout(ASYNC_TEST_TIMEOUT) as deadline:
                await pyfuncitem.obj(**kwargs)
        except TimeoutError:
            if deadline.expired():
                pytest.fail(f"test did not finish within {ASYNC_TEST_TIMEOUT} s", pytrace=False)
            raise

    asyncio.run(bounded())
    return True


# -- logs of servers and components in failure reports ------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, XmppServer):
            report.sections.append((f"{value.kind} log tail ({value.log_path})", tail(value.log_path, 60)))
        elif isinstance(value, ComponentFactory):
            for proc in value.started:
                report.sections.append((f"{proc.name} output", proc.logs_for_humans(60)))
        elif isinstance(value, ComponentProcess):
            report.sections.append((f"{value.name} output", value.logs_for_humans(60)))


# -- servers ---------------------------------------------------------------------------------------
def _start_server(kind: str, tmp_path_factory) -> XmppServer:
    cls = SERVER_CLASSES[kind]
    try:
        cls.check_installed()
    except ServerUnavailable as e:
        missing(str(e))
    srv = cls(tmp_path_factory.mktemp(kind))
    try:
        srv.start()
    except BaseException:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="module", params=["prosody", "ejabberd"])
def server(request, tmp_path_factory):
    """A running Prosody, then (second parametrization) a running ejabberd; one per module."""
    srv = _start_server(request.param, tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    srv = _start_server("prosody", tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ejabberd(tmp_path_factory):
    srv = _start_server("ejabberd", tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fresh_prosody(tmp_path_factory):
    """A Prosody of its own for one test (which may stop/restart it)."""
    srv = _start_server("prosody", tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()


# -- components ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def echo_bin() -> Path:
    path = echo_binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing(f"xmpp-echo binary not found or not executable at {path}; build it with "
                "`cargo build -p xmpp-echo` or point XMPP_ECHO_BIN at it")
    return path


class ComponentFactory:
    """Starts component processes for one test and stops them all at teardown."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[ComponentProcess] = []

    def start(self, binary: Path, server: XmppServer, **kw) -> ComponentProcess:
        kw.setdefault("name", f"{Path(binary).name}-{len(self.started) + 1}")
        proc = ComponentProcess(binary, server, self.workdir, **kw)
        self.started.append(proc)
        return proc.start()

    def stop_all(self):
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def components(tmp_path):
    factory = ComponentFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def echo(server, echo_bin, components) -> ComponentProcess:
    """xmpp-echo connected to `server` as echo.localhost (secret from a file), answering disco#info."""
    proc = components.start(echo_bin, server, domain="echo.localhost")
    proc.wait_connected(timeout=10)
    return proc
