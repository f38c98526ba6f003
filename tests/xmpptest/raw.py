"""Raw-socket XMPP helpers (standard library only).

* `StanzaSplitter` cuts an XMPP byte stream into its stream header and the
  exact raw text of each top-level element.
* `RawComponent` is a minimal XEP-0114 component (used to probe server
  readiness and to prove the harness works without the Rust binary).
* `RawClient` is a minimal c2s client (SASL PLAIN + resource bind), used by
  synchronous fixtures, e.g. to poll until a component answers disco#info.

Adapted from shared/reference/servers/xmpp_raw.py. Every network wait here is
bounded by an explicit timeout.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import re
import socket
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat

STREAM_NS = "http://etherx.jabber.org/streams"
COMPONENT_NS = "jabber:component:accept"
CLIENT_NS = "jabber:client"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"

_ids = itertools.count(1)


def handshake_token(stream_id: str, secret: str) -> str:
    """XEP-0114: lowercase hex SHA-1 of (stream id + secret)."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def parse_element(raw: str, default_ns: str = CLIENT_NS) -> ET.Element:
    """Parse one raw top-level element as cut by StanzaSplitter.

    Raw elements carry no declaration for the stream's default namespace or
    the `stream:` prefix, so they are wrapped in an element that declares both.
    """
    wrapper = ET.fromstring(f"<w xmlns='{default_ns}' xmlns:stream='{STREAM_NS}'>{raw}</w>")
    return wrapper[0]


def attr(raw: str, name: str) -> str | None:
    """Value of attribute `name` on the opening tag of a raw element."""
    m = re.search(rf"\s{re.escape(name)}=(['\"])(.*?)\1", raw.split(">", 1)[0])
    return m.group(2) if m else None


def _tag_end(buf: bytes, i: int) -> int:
    """Index just past the '>' that closes the tag starting at buf[i] == '<'."""
    quote = None
    j = i + 1
    while j < len(buf):
        c = buf[j:j + 1]
        if quote:
            if c == quote:
                quote = None
        elif c in (b"'", b'"'):
            quote = c
        elif c == b">":
            return j + 1
        j += 1
    return -1


class StanzaSplitter:
    """Feed bytes of an XMPP stream; get the stream header and each top-level
    element (stanza, stream:error, handshake, ...) as the exact raw text."""

    def __init__(self):
        self.buf = b""
        self.depth = 0
        self.start = None
        self.header = None          # raw text of <stream:stream ...>
        self.header_attrs = None
        self.items: list[str] = []  # raw top-level elements, in order
        self.closed = False         # saw </stream:stream>
        self.p = xml.parsers.expat.ParserCreate()  # no namespace processing: raw qnames
        self.p.StartElementHandler = self._start
        self.p.EndElementHandler = self._end

    def _start(self, name, attrs):
        idx = self.p.CurrentByteIndex
        if self.depth == 0:
            end = _tag_end(self.buf, idx)
            self.header = self.buf[idx:end].decode()
            self.header_attrs = dict(attrs)
        elif self.depth == 1:
            self.start = idx
        self.depth += 1

    def _end(self, name):
        self.depth -= 1
        if self.depth == 1:
            # expat reports an empty element's end *after* its '/>', a normal
            # one's at the start of its '</name>'.
            start_end = _tag_end(self.buf, self.start)
            if self.buf[start_end - 2:start_end] == b"/>":
                end = start_end
            else:
                end = _tag_end(self.buf, self.p.CurrentByteIndex)
            self.items.append(self.buf[self.start:end].decode())
            self.start = None
        elif self.depth == 0:
            self.closed = True

    def feed(self, data: bytes):
        self.buf += data
        self.p.Parse(data, False)


class _RawStream:
    """Shared socket plumbing: send, bounded receive, element matching."""

    def __init__(self, port: int, host: str = "127.0.0.1", name: str = "raw"):
        self.port, self.host, self.name = port, host, name
        self.sock: socket.socket | None = None
        self.split = StanzaSplitter()
        self.taken = 0
        self.eof = False
        self.transcript: list[str] = []   # "SEND ..." / "RECV ..." lines, for failure messages

    def send(self, text: str):
        self.transcript.append(f"SEND {text}")
        self.sock.sendall(text.encode("utf-8"))

    def _pump(self, timeout: float) -> bool:
        self.sock.settimeout(max(0.01, timeout))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            self.transcript.append("EOF")
            return False
        self.split.feed(data)
        return True

    def _open_stream(self, header: str, timeout: float) -> str:
        """Send a stream header on a fresh splitter; return the server's header."""
        self.split = StanzaSplitter()
        self.taken = 0
        self.send(header)
        deadline = time.monotonic() + timeout
        while self.split.header is None and not self.eof and time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        if self.split.header is None:
            raise RuntimeError(f"[{self.name}] no stream header from port {self.port}; got {self.split.buf!r}")
        self.transcript.append(f"RECV {self.split.header}")
        return self.split.header

    def recv(self, timeout: float = 5.0) -> str | None:
        """Next raw top-level element, or None on timeout / EOF."""
        deadline = time.monotonic() + timeout
        while self.taken >= len(self.split.items):
            if self.eof or time.monotonic() >= deadline:
                return None
            self._pump(deadline - time.monotonic())
        item = self.split.items[self.taken]
        self.taken += 1
        self.transcript.append(f"RECV {item}")
        return item

    def recv_all(self, timeout: float = 1.0) -> list[str]:
        """Everything that arrives within `timeout` seconds."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            item = self.recv(left)
            if item is None:
                if self.eof:
                    break
                continue
            out.append(item)
        return out

    def recv_match(self, pattern: str, timeout: float = 5.0) -> str | None:
        """Next element matching regex `pattern`; others are skipped (kept in the transcript)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            item = self.recv(left)
            if item is None:
                if self.eof:
                    return None
                continue
            if re.search(pattern, item, re.S):
                return item

    def close(self):
        """Send </stream:stream>, wait (bounded) for the server's close, close the socket."""
        if self.sock:
            try:
                self.send("</stream:stream>")
                end = time.monotonic() + 1.0
                while not self.eof and not self.split.closed and time.monotonic() < end:
                    self._pump(0.2)
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawComponent(_RawStream):
    """A bare XEP-0114 component connection."""

    def __init__(self, domain: str, secret: str, port: int, host: str = "127.0.0.1", name: str | None = None):
        super().__init__(port, host, name or domain)
        self.domain, self.secret = domain, secret
        self.stream_id = None

    def open(self, timeout: float = 5.0) -> str:
        """TCP connect + stream header; returns the server's raw stream header."""
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        header = self._open_stream(
            "<?xml version='1.0'?>"
            f"<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAM_NS}' to='{self.domain}'>",
            timeout,
        )
        self.stream_id = self.split.header_attrs.get("id")
        return header

    def handshake(self, secret: str | None = None, timeout: float = 5.0) -> str | None:
        """Send <handshake/>; return the server's first reply (raw)."""
        token = handshake_token(self.stream_id or "", self.secret if secret is None else secret)
        self.send(f"<handshake>{token}</handshake>")
        return self.recv(timeout)

    def connect(self, timeout: float = 5.0) -> str:
        """open() + handshake(); raises unless the server answers <handshake/>."""
        self.open(timeout)
        reply = self.handshake(timeout=timeout)
        if reply is None or not reply.startswith("<handshake"):
            raise RuntimeError(f"[{self.name}] handshake refused: {reply!r}")
        return reply


class RawClient(_RawStream):
    """A bare c2s client: SASL PLAIN over plaintext, resource bind, no presence."""

    def __init__(self, user: str, password: str, port: int, domain: str = "localhost",
                 resource: str = "raw", host: str = "127.0.0.1"):
        super().__init__(port, host, f"{user}@{domain}/{resource}")
        self.user, self.password, self.domain, self.resource = user, password, domain, resource
        self.jid: str | None = None

    def _header(self) -> str:
        return (f"<?xml version='1.0'?><stream:stream xmlns='{CLIENT_NS}' xmlns:stream='{STREAM_NS}' "
                f"to='{self.domain}' version='1.0'>")

    def _expect(self, pattern: str, what: str, timeout: float) -> str:
        got = self.recv(timeout)
        if got is None or not re.search(pattern, got, re.S):
            tail = "\n".join(self.transcript[-6:])
            raise RuntimeError(f"[{self.name}] expected {what}, got {got!r}\n{tail}")
        return got

    def login(self, timeout: float = 5.0) -> str:
        """Connect, authenticate with SASL PLAIN and bind; returns the full JID."""
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._open_stream(self._header(), timeout)
        feats = self._expect(r"^<stream:features", "stream features", timeout)
        if "PLAIN" not in feats:
            raise RuntimeError(f"[{self.name}] server does not offer SASL PLAIN: {feats}")
        token = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
        self._expect(r"^<success", "SASL success", timeout)
        self._open_stream(self._header(), timeout)
        self._expect(r"^<stream:features", "post-auth stream features", timeout)
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>"
                  f"<resource>{self.resource}</resource></bind></iq>")
        bound = self._expect(r"<jid>", "bind result", timeout)
        self.jid = re.search(r"<jid>(.*?)</jid>", bound).group(1)
        return self.jid

    def iq(self, to: str, payload: str, iq_type: str = "get", timeout: float = 5.0) -> str | None:
        """Send an IQ and return the raw reply with the same id (or None on timeout)."""
        iq_id = f"raw{next(_ids)}"
        self.send(f"<iq type='{iq_type}' to='{to}' id='{iq_id}'>{payload}</iq>")
        return self.recv_match(rf"^<iq\b[^>]*\bid=['\"]{iq_id}['\"]", timeout)

    def disco_info(self, to: str, timeout: float = 5.0) -> str | None:
        return self.iq(to, f"<query xmlns='{DISCO_INFO_NS}'/>", timeout=timeout)
