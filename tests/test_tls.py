"""`xmpp-echo --tls` against a real ejabberd whose echo listener is wrapped in TLS.

A throwaway CA and a server certificate for the DNS name `localhost` (no IP address in
it) are made with `openssl`; the echo listener is deploy/ejabberd/echo.yml itself with its
two commented TLS lines (`tls: true`, `certfile:`) turned on. Then:

* with `--tls-ca ca.pem --tls-server-name localhost` the component connects, echoes and
  stops cleanly on SIGTERM;
* without `--tls-ca` (the system's CA store) it exits 2 with a certificate error;
* with the default name (the IP address of `--server`) or a wrong name it exits 2 and
  names `--tls-server-name`;
* `--tls` against a plain component port (Prosody's, which has no TLS) is retried, not
  fatal (a handshake failure that is not about the certificate).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from xmpptest.ci import missing
from xmpptest.clients import client
from xmpptest.servers import EjabberdServer, ServerUnavailable

ECHO = "echo.localhost"
EXIT_TIMEOUT = 15.0
EXIT_CONFIG = 2


def openssl(*args: str, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: Path) -> dict[str, Path]:
    """A CA, and a server certificate it signed for DNS:localhost (P-256, valid 2 days)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=xmpp-component test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    bundle = d / "ejabberd-cert.pem"   # ejabberd's certfile: chain + key in one PEM
    bundle.write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    return {"ca": d / "ca.pem", "bundle": bundle}


class TlsEjabberd(EjabberdServer):
    """ejabberd whose echo listener is the deploy snippet with its TLS lines turned on."""

    def __init__(self, workdir: Path, certfile: Path):
        super().__init__(workdir)
        self.certfile = certfile

    def _write_config(self):
        super()._write_config()
        snippet = self.workdir / "echo.yml"
        text = snippet.read_text()
        text, n_tls = re.subn(r"(?m)^(\s+)# tls: true$", r"\g<1>tls: true", text)
        text, n_cert = re.subn(r"(?m)^(\s+)# certfile: .*$", rf'\g<1>certfile: "{self.certfile}"', text)
        if (n_tls, n_cert) != (1, 1):
            raise ValueError(f"deploy/ejabberd/echo.yml: expected one '# tls: true' and one "
                             f"'# certfile:' line, found {n_tls} and {n_cert}")
        snippet.write_text(text)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        missing("openssl is not installed (scripts/test-all.sh installs it)")
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_ejabberd(tmp_path_factory, certs):
    try:
        TlsEjabberd.check_installed()
    except ServerUnavailable as e:
        missing(str(e))
    srv = TlsEjabberd(tmp_path_factory.mktemp("ejabberd-tls"), certs["bundle"])
    try:
        yield srv.start()
    finally:
        srv.stop()


def start_echo(components, echo_bin, server, name: str, *tls_args: str):
    return components.start(echo_bin, server, domain=ECHO, name=name, log_filter="warn",
                            extra_args=["--tls", *tls_args])


def assert_config_exit(proc, *words: str):
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc is not None, f"still running {EXIT_TIMEOUT} s after a certificate error:\n{proc.logs_for_humans()}"
    assert rc == EXIT_CONFIG, f"exit status {rc}, expected {EXIT_CONFIG}:\n{proc.logs_for_humans()}"
    err = proc.stderr()
    for word in ("certificate", *words):
        assert word in err, f"stderr does not mention {word!r}:\n{proc.logs_for_humans()}"


async def test_private_ca_connects_and_echoes(tls_ejabberd, echo_bin, components, certs):
    proc = start_echo(components, echo_bin, tls_ejabberd, "echo-tls",
                      "--tls-ca", str(certs["ca"]), "--tls-server-name", "localhost")
    proc.wait_connected(timeout=20)
    async with client(tls_ejabberd, "alice") as alice:
        reply = await alice.send_message_and_wait(ECHO, "over TLS")
        assert reply["body"] == "over TLS", reply
    # A graceful stop over TLS (close_notify, then the TCP close) is still exit 0.
    assert proc.terminate(timeout=5) == 0, proc.logs_for_humans()


def test_system_roots_refuse_a_private_ca(tls_ejabberd, echo_bin, components):
    proc = start_echo(components, echo_bin, tls_ejabberd, "echo-tls-system-roots",
                      "--tls-server-name", "localhost")
    assert_config_exit(proc, "UnknownIssuer", "not signed by a CA we trust", "--tls-ca")


def test_ip_address_needs_a_server_name(tls_ejabberd, echo_bin, components, certs):
    # --server is 127.0.0.1:PORT, and the certificate names only localhost.
    proc = start_echo(components, echo_bin, tls_ejabberd, "echo-tls-ip", "--tls-ca", str(certs["ca"]))
    assert_config_exit(proc, 'not valid for name "127.0.0.1"', "--tls-server-name")


def test_wrong_server_name_is_refused(tls_ejabberd, echo_bin, components, certs):
    proc = start_echo(components, echo_bin, tls_ejabberd, "echo-tls-wrong-name",
                      "--tls-ca", str(certs["ca"]), "--tls-server-name", "xmpp.example.org")
    assert_config_exit(proc, 'not valid for name "xmpp.example.org"', "--tls-server-name")


def test_tls_to_a_plain_port_is_retried(prosody, echo_bin, components, certs):
    proc = components.start(echo_bin, prosody, domain=ECHO, name="echo-tls-to-plain", log_filter="info",
                            extra_args=["--tls", "--tls-ca", str(certs["ca"]), "--tls-server-name", "localhost"])
    deadline = time.monotonic() + EXIT_TIMEOUT
    # The sentinel: a second attempt, so the first failure was retried, not fatal.
    while proc.output().count("TLS handshake failed") < 2:
        assert proc.poll() is None, f"exited ({proc.poll()}) instead of retrying:\n{proc.logs_for_humans()}"
        assert time.monotonic() < deadline, f"no second attempt within {EXIT_TIMEOUT} s:\n{proc.logs_for_humans()}"
        time.sleep(0.1)
    assert "tls: true" in proc.output(), f"no hint about the listener:\n{proc.logs_for_humans()}"
    assert proc.poll() is None
