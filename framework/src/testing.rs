//! A test kit for component authors: [`TestServer`] plays the server side of XEP-0114.
//!
//! It listens on a loopback port, accepts a component, checks its handshake against the
//! secret, and then lets a test push stanzas, await what the component sends, and inject
//! faults: drop the TCP connection, send a stream error, send malformed XML, or go silent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), xmpp_component::testing::TestError> {
//! use xmpp_component::testing::TestServer;
//! let mut server = TestServer::bind("echo.localhost", "secret").await?;
//! // start the component against server.addr() ...
//! server.accept().await?;
//! server.send_xml("<message from='alice@localhost/a' to='echo.localhost' type='chat'>\
//!                  <body>hi</body></message>").await?;
//! let echoed = server.recv().await?;
//! assert_eq!(echoed.attr("to"), Some("alice@localhost/a"));
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::handshake;
use crate::stanza::Stanza;
use crate::xmlstream::{ParseMode, StreamEvent, StreamParser};

/// How long [`TestServer::recv`] and [`TestServer::accept`] wait by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// What went wrong in a test-server interaction.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// Socket trouble.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The component sent something that is not XML or not a stream.
    #[error("component sent bad XML: {0}")]
    Xml(String),
    /// The component closed its stream or connection.
    #[error("the component closed the connection")]
    Closed,
    /// The handshake token did not match.
    #[error("wrong handshake token")]
    BadHandshake,
    /// No component is connected.
    #[error("no component connected; call accept() first")]
    NotConnected,
}

/// The server side of one XEP-0114 listener.
pub struct TestServer {
    listener: TcpListener,
    domain: String,
    secret: String,
    connection: Option<(ServerReader, ServerWriter)>,
    accepted: usize,
}

impl TestServer {
    /// Listens on `127.0.0.1:0` for the component `domain` authenticating with `secret`.
    pub async fn bind(domain: &str, secret: &str) -> Result<Self, TestError> {
        Ok(TestServer {
            listener: TcpListener::bind("127.0.0.1:0").await?,
            domain: domain.to_owned(),
            secret: secret.to_owned(),
            connection: None,
            accepted: 0,
        })
    }

    /// The address to give the component as `--server`.
    pub fn addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// How many connections have completed the handshake so far.
    pub fn accepted(&self) -> usize {
        self.accepted
    }

    /// Accepts the next connection and completes the handshake (waits up to [`DEFAULT_WAIT`]).
    /// A wrong token is answered with `not-authorized`, as real servers do.
    pub async fn accept(&mut self) -> Result<(), TestError> {
        self.accept_within(DEFAULT_WAIT).await
    }

    /// [`TestServer::accept`] with an explicit wait.
    pub async fn accept_within(&mut self, wait: Duration) -> Result<(), TestError> {
        let (socket, _) = tokio::time::timeout(wait, self.listener.accept())
            .await
            .map_err(|_| TestError::Timeout(wait))??;
        socket.set_nodelay(true)?;
        let (read, write) = socket.into_split();
        let mut reader = ServerReader::new(read);
        let mut writer = ServerWriter { socket: write };
        match reader.next_event(wait).await? {
            StreamEvent::Header(_) => {}
            _ => return Err(TestError::Xml("expected a stream header".into())),
        }
        let stream_id = format!("test-{}-{}", std::process::id(), self.accepted);
        writer
            .send_raw(
                format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                     xmlns:stream='http://etherx.jabber.org/streams' id='{stream_id}' from='{}'>",
                    self.domain
                )
                .as_bytes(),
            )
            .await?;
        let token = reader.recv_within(wait).await?;
        if token.name() != "handshake" || token.text() != handshake::token(&stream_id, &self.secret)
        {
            writer
                .send_stream_error("not-authorized", "Given token does not match")
                .await?;
            return Err(TestError::BadHandshake);
        }
        writer.send_raw(b"<handshake/>").await?;
        self.accepted += 1;
        self.connection = Some((reader, writer));
        Ok(())
    }

    fn connection(&mut self) -> Result<&mut (ServerReader, ServerWriter), TestError> {
        self.connection.as_mut().ok_or(TestError::NotConnected)
    }

    /// Sends a stanza to the component.
    pub async fn send(&mut self, stanza: impl Into<Element>) -> Result<(), TestError> {
        self.connection()?.1.send(stanza).await
    }

    /// Sends XML text (one or more stanzas) to the component.
    pub async fn send_xml(&mut self, xml: &str) -> Result<(), TestError> {
        self.send_raw(xml.as_bytes()).await
    }

    /// Sends raw bytes, e.g. malformed XML.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TestError> {
        self.connection()?.1.send_raw(bytes).await
    }

    /// Sends `<stream:error><condition/></stream:error>` and closes the stream.
    pub async fn send_stream_error(
        &mut self,
        condition: &str,
        text: &str,
    ) -> Result<(), TestError> {
        self.connection()?
            .1
            .send_stream_error(condition, text)
            .await
    }

    /// Drops the TCP connection without a goodbye.
    pub fn drop_connection(&mut self) {
        self.connection = None;
    }

    /// The next element the component sends, waiting up to [`DEFAULT_WAIT`].
    pub async fn recv(&mut self) -> Result<Element, TestError> {
        self.recv_within(DEFAULT_WAIT).await
    }

    /// The next element the component sends, waiting up to `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Element, TestError> {
        self.connection()?.0.recv_within(wait).await
    }

    /// Asserts silence: `Ok` when the component sends nothing for `wait`, otherwise the
    /// element it sent. (Going silent as a server is simply not answering.)
    pub async fn expect_silence(&mut self, wait: Duration) -> Result<(), Element> {
        match self.recv_within(wait).await {
            Ok(element) => Err(element),
            Err(_) => Ok(()),
        }
    }

    /// Splits the live connection into halves for concurrent use (benchmarks).
    pub fn take_connection(&mut self) -> Result<(ServerReader, ServerWriter), TestError> {
        self.connection.take().ok_or(TestError::NotConnected)
    }
}

/// The reading half of a test-server connection.
pub struct ServerReader {
    socket: OwnedReadHalf,
    parser: StreamParser,
    buffer: Vec<u8>,
    ready: std::collections::VecDeque<StreamEvent>,
}

impl ServerReader {
    fn new(socket: OwnedReadHalf) -> Self {
        ServerReader {
            socket,
            parser: StreamParser::with_mode(16 * 1024 * 1024, ParseMode::Elements),
            buffer: Vec::with_capacity(64 * 1024),
            ready: Default::default(),
        }
    }

    async fn next_event(&mut self, wait: Duration) -> Result<StreamEvent, TestError> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(event) = self.ready.pop_front() {
                    return Ok(event);
                }
                self.buffer.clear();
                if self.socket.read_buf(&mut self.buffer).await? == 0 {
                    return Err(TestError::Closed);
                }
                let ready = &mut self.ready;
                self.parser
                    .feed(&self.buffer, |e| ready.push_back(e))
                    .map_err(|e| TestError::Xml(e.to_string()))?;
            }
        })
        .await
        .map_err(|_| TestError::Timeout(wait))?
    }

    /// The next element, waiting up to `wait`; the end of the stream is [`TestError::Closed`].
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Element, TestError> {
        match self.next_event(wait).await? {
            StreamEvent::Stanza(Stanza::Element(element)) => Ok(element),
            StreamEvent::End => Err(TestError::Closed),
            _ => Err(TestError::Xml("unexpected second header".into())),
        }
    }

    /// The raw socket, for benchmarks that parse the component's output themselves.
    /// Anything already read but not yet returned is discarded.
    pub fn into_socket(self) -> OwnedReadHalf {
        self.socket
    }

    /// Every element already parsed or readable within `wait`, in order (for throughput tests).
    pub async fn recv_batch(&mut self, wait: Duration) -> Result<Vec<Element>, TestError> {
        let mut out = vec![self.recv_within(wait).await?];
        while let Some(event) = self.ready.pop_front() {
            if let StreamEvent::Stanza(Stanza::Element(element)) = event {
                out.push(element);
            }
        }
        Ok(out)
    }
}

/// The writing half of a test-server connection.
pub struct ServerWriter {
    socket: OwnedWriteHalf,
}

impl ServerWriter {
    /// Sends a stanza.
    pub async fn send(&mut self, stanza: impl Into<Element>) -> Result<(), TestError> {
        let mut bytes = Vec::new();
        crate::serialize::serialize(&Stanza::Element(stanza.into()), &mut bytes);
        self.send_raw(&bytes).await
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TestError> {
        self.socket.write_all(bytes).await?;
        Ok(())
    }

    async fn send_stream_error(&mut self, condition: &str, text: &str) -> Result<(), TestError> {
        self.send_raw(
            format!(
                "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{text}</text></stream:error>\
                 </stream:stream>"
            )
            .as_bytes(),
        )
        .await?;
        self.socket.shutdown().await?;
        Ok(())
    }
}

/// Serialises a stanza exactly as the connection writer does (for benchmarks).
pub fn serialize_for_bench(stanza: &Stanza, out: &mut Vec<u8>) {
    crate::serialize::serialize(stanza, out);
}
