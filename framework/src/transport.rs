//! The byte stream to the server, plain TCP or TLS, as one reading and one writing half.
//!
//! An enum rather than a boxed trait object: the plain path stays a direct call on
//! Tokio's own TCP halves (one predictable branch per read or write, no allocation, no
//! lock), and only TLS pays for `tokio::io::split`'s shared state, which it needs anyway
//! because one TLS session serves both directions.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;

use crate::config::Config;
use crate::error::Error;

/// The reading half of a connection to the server.
pub(crate) enum ReadHalf {
    /// Plain TCP (XEP-0114 as specified).
    Plain(OwnedReadHalf),
    /// TLS over TCP (`--tls`).
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a connection to the server.
pub(crate) enum WriteHalf {
    /// Plain TCP (XEP-0114 as specified).
    Plain(OwnedWriteHalf),
    /// TLS over TCP (`--tls`).
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

/// Opens the TCP connection and, with `--tls`, runs the TLS handshake over it.
pub(crate) async fn dial(config: &Config) -> Result<(ReadHalf, WriteHalf), Error> {
    let socket = TcpStream::connect(&config.server)
        .await
        .map_err(|source| Error::Connect {
            addr: config.server.clone(),
            source,
        })?;
    socket.set_nodelay(true)?;
    Ok(match &config.tls {
        None => {
            let (read, write) = socket.into_split();
            (ReadHalf::Plain(read), WriteHalf::Plain(write))
        }
        Some(tls) => {
            let (read, write) = tokio::io::split(tls.handshake(socket).await?);
            (ReadHalf::Tls(read), WriteHalf::Tls(write))
        }
    })
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            ReadHalf::Tls(socket) => Pin::new(socket).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            WriteHalf::Tls(socket) => Pin::new(socket).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(socket) => socket.is_write_vectored(),
            WriteHalf::Tls(socket) => socket.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(socket) => Pin::new(socket).poll_flush(cx),
            WriteHalf::Tls(socket) => Pin::new(socket).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            WriteHalf::Tls(socket) => Pin::new(socket).poll_shutdown(cx),
        }
    }
}
