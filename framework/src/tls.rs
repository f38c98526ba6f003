//! Direct TLS to the server's component port (`--tls`), for a server on another host.
//!
//! XEP-0114 itself is plain TCP; ejabberd can wrap an `ejabberd_service` listener in TLS
//! (`tls: true`). Certificates are always verified: against the operator's own CA file
//! (`--tls-ca`, which then is the *only* trust anchor) or else against the platform's
//! roots (`rustls-platform-verifier`). The name checked is `--tls-server-name`, by default
//! the host part of `--server` (an IP address is checked against the certificate's IP
//! addresses, which most certificates do not list: then the error says to pass a name).
//!
//! The crates are rustls's own (`tokio-rustls`, `rustls-platform-verifier`) with the
//! pure-Rust `ring` provider, so building needs no cmake or extra C toolchain.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, RootCertStore};

use crate::error::{CertificateProblem, Error};

/// Validated TLS settings: whom to trust and which name the certificate must carry.
#[derive(Clone)]
pub struct TlsConfig {
    server_name: ServerName<'static>,
    ca_file: Option<PathBuf>,
    connector: TlsConnector,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts only the CA certificates in the PEM file `ca_file` when given, else the
    /// platform's roots, and expects a certificate for `server_name` (a DNS name or an IP
    /// address). A missing or empty CA file or an invalid name is an [`Error::Config`].
    pub fn new(server_name: &str, ca_file: Option<&Path>) -> Result<Self, Error> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            Error::Config(format!(
                "{server_name:?} is not a valid TLS server name (a DNS name or an IP address)"
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS setup: {e}")))?;
        let config = match ca_file {
            Some(path) => builder.with_root_certificates(read_ca_file(path)?),
            None => {
                let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| {
                    Error::Config(format!(
                        "cannot load the system's CA certificates ({e}): install them \
                         (Debian: ca-certificates) or pass --tls-ca FILE"
                    ))
                })?;
                builder
                    .dangerous() // Not dangerous: the platform verifier does full verification.
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
        }
        .with_no_client_auth();
        Ok(TlsConfig {
            server_name: name,
            ca_file: ca_file.map(Path::to_path_buf),
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }

    /// Runs the TLS handshake over an open TCP connection. A certificate that fails
    /// verification becomes [`Error::Certificate`]; anything else is an I/O error.
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| self.classify(e))
    }

    fn classify(&self, error: std::io::Error) -> Error {
        let cause = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let problem = match cause {
            Some(rustls::Error::InvalidCertificate(cert)) => match cert {
                CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => CertificateProblem::WrongName,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => CertificateProblem::Expired,
                _ => CertificateProblem::Invalid,
            },
            _ => return Error::Tls(error),
        };
        Error::Certificate {
            server_name: self.server_name(),
            problem,
            detail: error.to_string(),
        }
    }
}

/// Every certificate in a PEM file, as the only trust anchors.
fn read_ca_file(path: &Path) -> Result<RootCertStore, Error> {
    let bad = |what: String| Error::Config(format!("--tls-ca {}: {what}", path.display()));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    Ok(roots)
}

/// The host part of `HOST:PORT` (`[v6]:PORT` too), the default TLS server name.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_the_host_of_server() {
        assert_eq!(host_of("xmpp.example.org:5347"), "xmpp.example.org");
        assert_eq!(host_of("127.0.0.1:5347"), "127.0.0.1");
        assert_eq!(host_of("[::1]:5347"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn bad_ca_files_and_names_are_config_errors() {
        let dir = std::env::temp_dir().join(format!("xc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        for path in [empty, dir.join("missing.pem")] {
            let error = TlsConfig::new("localhost", Some(&path)).expect_err("refused");
            assert!(
                matches!(&error, Error::Config(m) if m.contains("--tls-ca")),
                "{error}"
            );
            assert!(error.is_fatal());
        }
        let error = TlsConfig::new("not a name", None).expect_err("refused");
        assert!(matches!(&error, Error::Config(m) if m.contains("server name")));
        std::fs::remove_dir_all(dir).ok();
    }
}
