//! Every error the framework can return, and how the supervisor treats each one.
//!
//! Errors split into three families: [`Error`] (the connection and its stream),
//! [`SendError`] (handing a stanza to the outbound queue) and [`RequestError`]
//! (awaiting an IQ reply). [`Error::is_fatal`] is what the supervisor asks to decide
//! between "reconnect with backoff" and "exit and tell the operator what to fix".

use std::fmt;
use std::time::Duration;

/// A `<stream:error/>` the server sent us, kept as names so that conditions
/// newer than our parser still surface intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamErrorInfo {
    /// The defined condition, e.g. `not-authorized` or `conflict`.
    pub condition: String,
    /// The server's human-readable `<text/>`, if any.
    pub text: Option<String>,
}

impl StreamErrorInfo {
    /// Whether this condition is a configuration mistake that reconnecting cannot fix.
    pub fn is_configuration_error(&self) -> bool {
        matches!(
            self.condition.as_str(),
            "not-authorized" | "host-unknown" | "improper-addressing" | "invalid-namespace"
        )
    }

    /// What an operator most likely has to change (configuration errors), or why a
    /// retried condition keeps coming back (`conflict`).
    pub fn hint(&self) -> Option<&'static str> {
        match self.condition.as_str() {
            "not-authorized" => Some(
                "the server rejected the handshake: check that the component secret matches \
                 the server's component_secret (Prosody) or password (ejabberd_service), and \
                 that the server has this --domain configured (ejabberd answers an unknown \
                 domain with not-authorized too)",
            ),
            "host-unknown" | "improper-addressing" => Some(
                "the server does not know this component domain: check --domain and that the \
                 server has a Component entry (Prosody) or ejabberd_service hosts entry for it",
            ),
            "conflict" => Some(
                "the server already has a connection for this domain: another instance of \
                 this component, or a dead connection the server has not noticed yet (Prosody \
                 keeps it until the TCP connection times out; retrying). On ejabberd, a domain \
                 that is also one of the server's own hosts always conflicts",
            ),
            "invalid-namespace" => Some(
                "the server did not accept a jabber:component:accept stream: check that --server \
                 points at the server's component port (often 5347), not the client port",
            ),
            _ => None,
        }
    }
}

impl fmt::Display for StreamErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.condition)?;
        if let Some(text) = &self.text {
            write!(f, " ({text:?})")?;
        }
        Ok(())
    }
}

/// What is wrong with the server's TLS certificate (`--tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Not issued by a CA we trust (`--tls-ca`, or the platform's roots without it).
    UnknownIssuer,
    /// Valid, but not for the name we expect (`--tls-server-name`).
    WrongName,
    /// Expired or not yet valid: the server must renew it (or a clock is wrong).
    Expired,
    /// Rejected for another reason (bad signature, wrong purpose, revoked, ...).
    Invalid,
}

/// Why a connection (or the attempt to make one) ended.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address we dialled.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the TCP connection.
    #[error("the server closed the connection")]
    Closed,
    /// The bytes the server sent are not well-formed XML (or not a valid XMPP stream).
    #[error("malformed XML from the server: {0}")]
    Xml(String),
    /// A stanza nested so deep that even skipping it is not safe (over 131,072 levels;
    /// stanzas merely over `--max-depth` or `--max-stanza-size` are skipped, not this).
    #[error("inbound stanza nests more than {limit} levels deep")]
    StanzaTooDeep {
        /// The limit in levels.
        limit: usize,
    },
    /// The server's stream header carried no `id`, so no handshake can be computed.
    #[error("the server's stream header has no id attribute; is this an XEP-0114 component port?")]
    MissingStreamId,
    /// The server sent something other than `<handshake/>` while we waited for it.
    #[error("expected <handshake/> from the server, got <{0}>")]
    UnexpectedDuringHandshake(String),
    /// The server did not finish the handshake in time.
    #[error("the handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// The server sent `<stream:error/>`.
    #[error("stream error from the server: {0}")]
    Stream(StreamErrorInfo),
    /// The link stayed silent and did not answer our ping.
    #[error("no answer to a keepalive ping within {0:?}: the link is dead")]
    DeadLink(Duration),
    /// The TLS handshake failed for a reason other than the certificate (the peer does
    /// not speak TLS, no common protocol version, the connection dropped, ...).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The server's TLS certificate failed verification.
    #[error("the server's TLS certificate is not accepted for {server_name:?}: {detail}")]
    Certificate {
        /// The name we verified against.
        server_name: String,
        /// What is wrong, for the hint and for deciding whether to retry.
        problem: CertificateProblem,
        /// rustls's own description.
        detail: String,
    },
    /// The configuration is unusable (bad flag, unreadable secret file, ...).
    #[error("configuration error: {0}")]
    Config(String),
    /// A service could not start for another reason (its state failed to load, ...).
    #[error("{0}")]
    Startup(String),
}

impl Error {
    /// True when reconnecting cannot help and the process should exit with a message.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Stream(info) => info.is_configuration_error(),
            Error::Config(_) => true,
            // Trust and names are ours to fix; an expired certificate is renewed on the server.
            Error::Certificate { problem, .. } => *problem != CertificateProblem::Expired,
            _ => false,
        }
    }

    /// A sentence that names the likely fix (fatal errors) or explains a retried one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Stream(info) => info.hint(),
            Error::Certificate { problem, .. } => Some(match problem {
                CertificateProblem::UnknownIssuer => {
                    "the server's certificate is not signed by a CA we trust: pass --tls-ca FILE \
                     with the (private) CA that issued it; without --tls-ca only the system's \
                     CA store is trusted"
                }
                CertificateProblem::WrongName => {
                    "the certificate does not carry the name we expect: set --tls-server-name to \
                     a DNS name in the server's certificate (the default is the host of \
                     --server; when that is an IP address, certificates seldom list it)"
                }
                CertificateProblem::Expired => {
                    "the server's certificate is expired or not yet valid: renew it on the \
                     server, or check the clocks (retrying)"
                }
                CertificateProblem::Invalid => {
                    "the server's certificate is unusable: fix the certificate on the server"
                }
            }),
            Error::Tls(_) => Some(
                "is the server's component listener TLS (ejabberd: tls: true)? Drop --tls for a \
                 plain port; Prosody's component port has no TLS (retrying)",
            ),
            _ => None,
        }
    }
}

/// Why a stanza could not be queued for sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The stanza's `from` is outside the component's domain; the server would
    /// close the whole stream with `invalid-from`.
    #[error("refusing to send from {from:?}: not within the component domain {domain}")]
    ForeignFrom {
        /// The offending `from`.
        from: String,
        /// Our domain.
        domain: String,
    },
    /// The stanza's `from` or `to` is not a valid JID.
    #[error("invalid JID in stanza: {0}")]
    InvalidJid(String),
    /// The stanza has no `to`: a component's stanzas always need a recipient, and the
    /// server would only bounce it with `bad-request`.
    #[error("refusing to send a stanza without a 'to' address")]
    MissingTo,
    /// `try_send` found the outbound queue full.
    #[error("outbound queue is full")]
    QueueFull,
    /// The component has shut down; nothing will be sent any more.
    #[error("the component is shut down")]
    Closed,
}

/// Why an IQ request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The request has no `to`, so no reply could be matched to it.
    #[error("an IQ request needs a 'to' address")]
    MissingTo,
    /// No reply arrived in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection dropped before the reply arrived.
    #[error("the connection dropped before the reply arrived")]
    Disconnected,
}

/// Builds a stanza error with the RFC 6120 §8.3.3 error type for `condition`.
pub fn stanza_error(
    condition: xmpp_parsers::stanza_error::DefinedCondition,
    text: Option<&str>,
) -> xmpp_parsers::stanza_error::StanzaError {
    use xmpp_parsers::stanza_error::{DefinedCondition as C, ErrorType};
    let type_ = match condition {
        C::BadRequest | C::JidMalformed | C::NotAcceptable | C::PolicyViolation => {
            ErrorType::Modify
        }
        C::Forbidden | C::NotAuthorized | C::RegistrationRequired => ErrorType::Auth,
        C::ResourceConstraint | C::RemoteServerTimeout | C::UnexpectedRequest => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    let mut error = xmpp_parsers::stanza_error::StanzaError::new(
        type_,
        condition,
        "en",
        text.unwrap_or_default(),
    );
    if text.is_none() {
        error.texts.clear();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(condition: &str) -> Error {
        Error::Stream(StreamErrorInfo {
            condition: condition.into(),
            text: None,
        })
    }

    #[test]
    fn configuration_mistakes_are_fatal_with_a_hint() {
        for condition in [
            "not-authorized",
            "host-unknown",
            "improper-addressing",
            "invalid-namespace",
        ] {
            let error = info(condition);
            assert!(error.is_fatal(), "{condition} should be fatal");
            assert!(error.hint().is_some(), "{condition} should name a fix");
        }
        assert!(
            info("not-authorized")
                .hint()
                .unwrap_or("")
                .contains("secret")
        );
        assert!(info("host-unknown").hint().unwrap_or("").contains("domain"));
    }

    #[test]
    fn transient_conditions_are_retried() {
        for condition in [
            "conflict",
            "system-shutdown",
            "connection-timeout",
            "reset",
            "undefined-condition",
        ] {
            assert!(!info(condition).is_fatal(), "{condition} should be retried");
        }
        let conflict = info("conflict").hint().unwrap_or("");
        assert!(conflict.contains("another instance"), "{conflict}");
        let refused = Error::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(!refused.is_fatal());
        assert!(!Error::Closed.is_fatal());
    }
}
