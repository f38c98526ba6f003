"""`--metrics ADDR` against a real Prosody: `/health` follows the XMPP link (200 while it is
up, 503 with a one-line reason while the server is down, 200 again once the component has
reconnected) and `/metrics` is Prometheus text with the framework's counters."""
from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from xmpptest.servers import free_port

ECHO = "echo.localhost"
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.eE+-]+$|^.* (NaN|[+-]Inf)$')


def get(port: int, path: str) -> tuple[int, str] | None:
    """(status, body) of GET path on the metrics listener; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None


def poll(port: int, path: str, status: int, timeout: float, proc=None) -> str:
    """Polls until `path` answers `status` (bounded); returns the body."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = get(port, path)
        if last is not None and last[0] == status:
            return last[1]
        time.sleep(0.1)
    logs = proc.logs_for_humans() if proc else ""
    pytest.fail(f"{path} did not answer {status} within {timeout} s; last answer {last!r}\n{logs}")


def samples(text: str) -> dict[str, float]:
    """Prometheus text (0.0.4) into series -> value; every line must be a comment or a sample."""
    out = {}
    for line in filter(None, text.splitlines()):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        assert SAMPLE.match(line), f"not Prometheus text: {line!r}"
        series, value = line.rsplit(" ", 1)
        out[series] = float(value)
    return out


def test_health_follows_the_link_through_a_server_outage(fresh_prosody, echo_bin, components):
    srv = fresh_prosody
    port = free_port()
    echo = components.start(echo_bin, srv, domain=ECHO, extra_args=["--metrics", f"127.0.0.1:{port}"])
    echo.wait_connected(timeout=10)

    body = poll(port, "/health", 200, timeout=10, proc=echo)
    assert body.startswith("up: linked to ") and body.endswith("\n"), body
    metrics = samples(poll(port, "/metrics", 200, timeout=5, proc=echo))
    assert metrics["xmpp_component_link_up"] == 1
    assert metrics["xmpp_component_connections_total"] == 1
    # wait_connected's disco#info query went through: one IQ in, one reply out.
    assert metrics['xmpp_component_stanzas_received_total{kind="iq"}'] >= 1
    assert metrics['xmpp_component_stanzas_sent_total{kind="iq"}'] >= 1

    srv.stop()
    body = poll(port, "/health", 503, timeout=15, proc=echo)
    assert body.startswith("down: ") and body.endswith("\n") and body.count("\n") == 1, body
    assert samples(get(port, "/metrics")[1])["xmpp_component_link_up"] == 0

    srv.restart()   # same ports; the component reconnects with its backoff (at most a few s here)
    body = poll(port, "/health", 200, timeout=30, proc=echo)
    assert body.startswith("up: "), body
    metrics = samples(get(port, "/metrics")[1])
    assert metrics["xmpp_component_link_up"] == 1
    assert metrics["xmpp_component_reconnects_total"] >= 1
    assert echo.poll() is None, "xmpp-echo exited instead of reconnecting"
