//! One connection to the server (plain TCP or TLS, see `transport`): dial, handshake, then a reading half that yields
//! stream events and a writing task that drains the outbound queue.
//!
//! The outbound queue and the bytes of a batch that failed to write live in an [`Outbox`]
//! that outlives the connection, so nothing queued is lost when the link drops: the next
//! connection writes the failed batch again (at-least-once for that one batch) and then
//! carries on with the queue, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::{Error, StreamErrorInfo};
use crate::handle::{Handle, Queued};
use crate::handshake;
use crate::metrics::Counters;
use crate::serialize::{escaped, serialize};
use crate::stanza::Stanza;
use crate::transport::{self, ReadHalf, WriteHalf};
use crate::xmlstream::{NS_COMPONENT, NS_STREAM, ParseError, ParseMode, StreamEvent, StreamParser};

/// Largest batch of serialised stanzas written with one syscall.
const BATCH_BYTES: usize = 64 * 1024;

/// A batch of fan-out stanzas smaller than this waits one scheduler round for more
/// before it is written.
const COALESCE_BYTES: usize = 16 * 1024;

/// The outbound queue plus whatever a dead connection failed to write.
pub(crate) struct Outbox {
    pub(crate) queue: mpsc::Receiver<Queued>,
    /// Serialised stanzas not yet known to be written; written first on the next connection.
    pub(crate) unsent: Vec<u8>,
    /// Stanzas that waited longer than this (an outage) are dropped, not written.
    pub(crate) ttl: Option<Duration>,
}

impl Outbox {
    /// Serialises `queued` into `unsent` unless it waited past the TTL; returns whether it
    /// was kept.
    fn serialize_if_fresh(&mut self, queued: &Queued, now: Instant) -> bool {
        if self
            .ttl
            .is_some_and(|ttl| now.saturating_duration_since(queued.at) > ttl)
        {
            return false;
        }
        serialize(&queued.stanza, &mut self.unsent);
        true
    }
}

/// The reading half of an established connection.
pub(crate) struct StreamReader {
    socket: ReadHalf,
    parser: StreamParser,
    buffer: Vec<u8>,
    ready: VecDeque<StreamEvent>,
}

impl StreamReader {
    fn new(socket: ReadHalf, config: &Config) -> Self {
        StreamReader {
            socket,
            parser: StreamParser::with_limits(
                config.max_stanza_size,
                config.max_depth,
                ParseMode::Typed,
            ),
            buffer: Vec::with_capacity(BATCH_BYTES),
            ready: VecDeque::new(),
        }
    }

    /// The next event. Cancel-safe: bytes are only consumed once a read completes.
    pub(crate) async fn next(&mut self) -> Result<StreamEvent, Error> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// Reads once from the socket and parses what arrived; the events are then available
    /// from [`StreamReader::next_parsed_stanza`]. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> Result<(), Error> {
        self.buffer.clear();
        let n = self.socket.read_buf(&mut self.buffer).await?;
        if n == 0 {
            return Err(Error::Closed);
        }
        let ready = &mut self.ready;
        self.parser
            .feed(&self.buffer, |event| ready.push_back(event))
            .map_err(|e| match e {
                ParseError::TooDeep(limit) => Error::StanzaTooDeep { limit },
                other => Error::Xml(other.to_string()),
            })
    }

    /// The next stanza already parsed, without reading (see [`StreamReader::next_stanza`]).
    pub(crate) fn next_parsed_stanza(&mut self) -> Option<Result<StreamEvent, Error>> {
        self.ready.pop_front().map(as_stanza)
    }

    /// The next stanza (or invalid stanza); a `<stream:error/>` or the end of the stream
    /// is an error.
    pub(crate) async fn next_stanza(&mut self) -> Result<StreamEvent, Error> {
        as_stanza(self.next().await?)
    }

    async fn next_element(&mut self) -> Result<Element, Error> {
        match self.next_stanza().await? {
            StreamEvent::Stanza(Stanza::Element(element)) => Ok(element),
            StreamEvent::Stanza(other) => Err(Error::UnexpectedDuringHandshake(
                match other {
                    Stanza::Presence(_) => "presence",
                    Stanza::Iq(_) => "iq",
                    _ => "message",
                }
                .into(),
            )),
            _ => Err(Error::UnexpectedDuringHandshake("an invalid stanza".into())),
        }
    }
}

/// Passes stanzas through; a `<stream:error/>`, the end of the stream or a second header
/// become errors.
fn as_stanza(event: StreamEvent) -> Result<StreamEvent, Error> {
    match event {
        StreamEvent::Stanza(Stanza::Element(element)) => match stream_error(&element) {
            Some(info) => Err(Error::Stream(info)),
            None => Ok(StreamEvent::Stanza(Stanza::Element(element))),
        },
        StreamEvent::End => Err(Error::Closed),
        StreamEvent::Header(_) => Err(Error::Xml("a second stream header".into())),
        other => Ok(other),
    }
}

/// Reads a `<stream:error/>` into its condition and text.
pub(crate) fn stream_error(element: &Element) -> Option<StreamErrorInfo> {
    if element.name() != "error" || element.ns() != NS_STREAM {
        return None;
    }
    const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    let condition = element
        .children()
        .find(|c| c.ns() == NS_STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned());
    let text = element
        .get_child("text", NS_STREAMS)
        .map(|t| t.text())
        .filter(|t| !t.is_empty());
    Some(StreamErrorInfo { condition, text })
}

/// Dials the server and completes the XEP-0114 handshake, within the configured timeout.
pub(crate) async fn connect(config: &Config) -> Result<(StreamReader, WriteHalf), Error> {
    tokio::time::timeout(config.handshake_timeout, connect_inner(config))
        .await
        .map_err(|_| Error::HandshakeTimeout(config.handshake_timeout))?
}

async fn connect_inner(config: &Config) -> Result<(StreamReader, WriteHalf), Error> {
    let (read, mut write) = transport::dial(config).await?;
    let mut reader = StreamReader::new(read, config);
    let domain = config.domain.to_string();
    send(&mut write, handshake::stream_header(&domain).as_bytes()).await?;

    let header = match reader.next().await? {
        StreamEvent::Header(header) => header,
        StreamEvent::End => return Err(Error::Closed),
        _ => return Err(Error::UnexpectedDuringHandshake("a stanza".into())),
    };
    let Some(stream_id) = header.id else {
        // Prosody answers an unknown domain with an id-less header and then the reason.
        return match reader.next_element().await {
            Err(stream_error @ Error::Stream(_)) => Err(stream_error),
            _ => Err(Error::MissingStreamId),
        };
    };
    let token = handshake::handshake_element(&stream_id, config.secret.expose());
    send(&mut write, token.as_bytes()).await?;
    let reply = reader.next_element().await?;
    if reply.name() != "handshake" || reply.ns() != NS_COMPONENT {
        return Err(Error::UnexpectedDuringHandshake(reply.name().to_owned()));
    }
    Ok((reader, write))
}

/// Writes all of `bytes` and flushes: TLS may keep the tail of a write buffered when the
/// socket is full, and only a flush pushes it out (on plain TCP it is a no-op).
async fn send(socket: &mut WriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}

/// How the supervisor asks a writer to stop.
#[derive(Debug)]
pub(crate) struct Close {
    /// Write everything queued right now before closing (graceful shutdown).
    pub(crate) flush: bool,
    /// A `<stream:error/>` to send before `</stream:stream>`.
    pub(crate) stream_error: Option<(&'static str, String)>,
}

/// Drains the outbox into the socket until told to close or the socket fails.
/// Sends a whitespace keepalive after `keepalive` of write idleness.
pub(crate) async fn write_loop(
    mut socket: WriteHalf,
    outbox: Arc<Mutex<Outbox>>,
    mut close: oneshot::Receiver<Close>,
    keepalive: Duration,
    handle: Handle,
) -> Result<(), Error> {
    let sent = &handle.counters().sent;
    let mut outbox = outbox.lock().await;
    let outbox = &mut *outbox;
    // One timer, pushed back after every write: a keepalive goes out only on idle links.
    let idle = tokio::time::sleep(keepalive);
    tokio::pin!(idle);
    loop {
        if !outbox.unsent.is_empty() {
            send(&mut socket, &outbox.unsent).await?;
            outbox.unsent.clear();
            idle.as_mut().reset(tokio::time::Instant::now() + keepalive);
        }
        tokio::select! {
            biased;
            request = &mut close => {
                let request = request.unwrap_or(Close { flush: false, stream_error: None });
                return finish(&mut socket, outbox, request).await;
            }
            next = outbox.queue.recv() => match next {
                Some(first) => {
                    let now = Instant::now();
                    let (mut batch, mut expired) = (0, 0);
                    let mut kinds = [0u64; 3];
                    let mut next = Some(first);
                    let (mut yielded, mut fan_out) = (false, false);
                    while let Some(queued) = next {
                        fan_out |= matches!(queued.stanza, Stanza::Shared(_));
                        if outbox.serialize_if_fresh(&queued, now) {
                            batch += 1;
                            match queued.stanza {
                                Stanza::Message(_) | Stanza::Shared(_) => kinds[0] += 1,
                                Stanza::Presence(_) => kinds[1] += 1,
                                Stanza::Iq(_) => kinds[2] += 1,
                                Stanza::Element(_) => {}
                            }
                        } else {
                            expired += 1;
                        }
                        if outbox.unsent.len() >= BATCH_BYTES {
                            break;
                        }
                        next = outbox.queue.try_recv().ok();
                        if next.is_none()
                            && !yielded
                            && fan_out
                            && outbox.unsent.len() < COALESCE_BYTES
                        {
                            // Fan-out traffic (shared payloads: a game's 30 Hz updates)
                            // comes in bursts from many tasks: let those already woken
                            // queue theirs first, so that one write carries many stanzas
                            // (the syscall costs more than a stanza), at the price of one
                            // scheduler round. Other stanzas are written at once.
                            yielded = true;
                            tokio::task::yield_now().await;
                            next = outbox.queue.try_recv().ok();
                        }
                    }
                    Counters::add(sent, batch);
                    let counters = handle.counters();
                    for (counter, n) in [&counters.sent_message, &counters.sent_presence, &counters.sent_iq].into_iter().zip(kinds) {
                        if n > 0 {
                            Counters::add(counter, n);
                        }
                    }
                    if expired > 0 {
                        Counters::add(&handle.counters().expired, expired);
                        tracing::warn!(expired, "dropped stanzas that waited in the queue longer than --queue-ttl");
                    }
                }
                // Every handle is gone: nothing more can ever be sent.
                None => return finish(&mut socket, outbox, Close { flush: true, stream_error: None }).await,
            },
            () = &mut idle => outbox.unsent.push(b' '),
        }
    }
}

async fn finish(socket: &mut WriteHalf, outbox: &mut Outbox, close: Close) -> Result<(), Error> {
    if close.flush {
        let now = Instant::now();
        while let Ok(queued) = outbox.queue.try_recv() {
            outbox.serialize_if_fresh(&queued, now);
        }
    }
    let mut tail = std::mem::take(&mut outbox.unsent);
    if !close.flush {
        // Keep the queued bytes for the next connection; only say goodbye on this one.
        outbox.unsent = tail;
        tail = Vec::new();
    }
    if let Some((condition, text)) = close.stream_error {
        tail.extend_from_slice(
            format!(
                "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{}</text></stream:error>",
                escaped(&text)
            )
            .as_bytes(),
        );
    }
    tail.extend_from_slice(b"</stream:stream>");
    send(socket, &tail).await?;
    socket.shutdown().await?;
    Ok(())
}
