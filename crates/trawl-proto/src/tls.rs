//! mTLS between the roles of a cluster, by the flags `--grpc.tls-cert-file`,
//! `--grpc.tls-key-file` and `--grpc.tls-ca-file`.
//!
//! One set of flags configures both sides of a process: its gRPC server presents the
//! certificate and key, and every gRPC client it opens (Raft peers, coordinator forwarding,
//! worker → coordinator, querier → coordinator and workers) presents the same pair as its
//! client identity.
//!
//! Valid combinations (anything else is refused at startup, naming the flag or file):
//! - none of the flags: plaintext (`http://`), the default;
//! - cert + key + CA: mutual TLS. The server requires a client certificate signed by the CA;
//!   clients verify the server against the CA;
//! - cert + key: TLS without client certificates. Clients trust the certificates in the
//!   cert file (a certificate shared by every component, possibly self-signed).
//!
//! A CA alone, or half a cert/key pair, is an error: either would leave a link silently
//! plaintext or silently unauthenticated. The server name checked on the server's
//! certificate is the host part of the address dialled (a DNS name or an IP address SAN).

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// A TLS flag combination or file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only some of the flags that must come together were given.
    #[error("{0}")]
    Flags(String),
    /// A file could not be read.
    #[error("{flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{flag} {}: {what}", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        what: String,
    },
    /// The certificate and key do not form a usable server identity.
    #[error("--grpc.tls-cert-file {} / --grpc.tls-key-file {}: {reason}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// An address is not a valid URI.
    #[error("address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
}

/// The three TLS flags, to `#[command(flatten)]` into a role's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsFlags {
    /// Certificate (PEM, leaf first) presented by the gRPC server and, as client identity, by
    /// this process's gRPC clients. Enables TLS; needs --grpc.tls-key-file.
    #[arg(long = "grpc.tls-cert-file", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --grpc.tls-cert-file.
    #[arg(long = "grpc.tls-key-file", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign every component's certificate: the server requires
    /// client certificates signed by it (mutual TLS) and clients verify servers against it.
    #[arg(long = "grpc.tls-ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The validated TLS settings of one process: both the server and the client side.
#[derive(Debug, Clone)]
pub struct Tls {
    server: ServerTlsConfig,
    client: ClientTls,
    mutual: bool,
}

/// The client side: trust anchors for servers and the identity presented to them.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: ClientTlsConfig,
}

impl TlsFlags {
    /// Flags as `/api/v1/status/flags` shows them (empty when unset, as Prometheus does).
    pub fn flags(&self) -> [(&'static str, String); 3] {
        let show = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        [
            ("grpc.tls-cert-file", show(&self.cert_file)),
            ("grpc.tls-key-file", show(&self.key_file)),
            ("grpc.tls-ca-file", show(&self.ca_file)),
        ]
    }

    /// Reads and checks the files. `Ok(None)` when no flag is set (plaintext).
    pub fn load(&self) -> Result<Option<Tls>, TlsError> {
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (None, None) => {
                return match &self.ca_file {
                    None => Ok(None),
                    Some(_) => Err(TlsError::Flags(
                        "--grpc.tls-ca-file needs --grpc.tls-cert-file and --grpc.tls-key-file"
                            .into(),
                    )),
                };
            }
            (Some(_), None) => {
                return Err(TlsError::Flags(
                    "--grpc.tls-cert-file needs --grpc.tls-key-file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Flags(
                    "--grpc.tls-key-file needs --grpc.tls-cert-file".into(),
                ));
            }
            (Some(c), Some(k)) => (c, k),
        };
        let cert_pem = read("--grpc.tls-cert-file", cert)?;
        check_certs("--grpc.tls-cert-file", cert, &cert_pem)?;
        let key_pem = read("--grpc.tls-key-file", key)?;
        check_key(key, &key_pem)?;
        let identity = Identity::from_pem(&cert_pem, &key_pem);

        let (roots, mutual) = match &self.ca_file {
            Some(ca) => {
                let ca_pem = read("--grpc.tls-ca-file", ca)?;
                check_certs("--grpc.tls-ca-file", ca, &ca_pem)?;
                (Certificate::from_pem(ca_pem), true)
            }
            None => (Certificate::from_pem(&cert_pem), false),
        };

        let mut server = ServerTlsConfig::new().identity(identity.clone());
        if mutual {
            server = server.client_ca_root(roots.clone());
        }
        // Builds the acceptor once now, so a key that does not match its certificate (or
        // is of an unsupported kind) fails at startup rather than on the first connection.
        Server::builder()
            .tls_config(server.clone())
            .map_err(|e| TlsError::Identity {
                cert: cert.clone(),
                key: key.clone(),
                reason: error_chain(&e),
            })?;
        let client = ClientTlsConfig::new()
            .ca_certificate(roots)
            .identity(identity);
        Ok(Some(Tls {
            server,
            client: ClientTls { config: client },
            mutual,
        }))
    }
}

impl Tls {
    /// The server side, for [`server_builder`].
    pub fn server(&self) -> &ServerTlsConfig {
        &self.server
    }

    /// The client side, for [`endpoint`].
    pub fn client(&self) -> &ClientTls {
        &self.client
    }

    /// Whether servers require client certificates (a CA was given).
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }
}

impl ClientTls {
    /// The tonic configuration (no server name: [`endpoint`] takes it from the address).
    pub fn config(&self) -> &ClientTlsConfig {
        &self.config
    }
}

/// An endpoint for `addr` (`host:port`, or a URI with a scheme): `https://` with TLS,
/// `http://` without. A scheme in `addr` is kept, except that TLS turns `http` into `https`.
/// The server name verified is the host part of the address.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, TlsError> {
    let uri = uri(addr, tls.is_some());
    let ep = Endpoint::from_shared(uri).map_err(|e| TlsError::Address {
        addr: addr.to_string(),
        reason: error_chain(&e),
    })?;
    match tls {
        None => Ok(ep),
        Some(t) => ep
            .tls_config(t.config.clone())
            .map_err(|e| TlsError::Address {
                addr: addr.to_string(),
                reason: error_chain(&e),
            }),
    }
}

/// The URI dialled for `addr`, by whether TLS is on.
pub fn uri(addr: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match addr.split_once("://") {
        None => format!("{scheme}://{addr}"),
        Some(("http", rest)) if tls => format!("https://{rest}"),
        Some(_) => addr.to_string(),
    }
}

/// A tonic server builder, serving TLS when `tls` is given.
pub fn server_builder(tls: Option<&ServerTlsConfig>) -> Result<Server, TlsError> {
    with_tls(Server::builder(), tls)
}

/// Adds TLS to a server builder that already carries layers (e.g.
/// [`crate::server::GrpcLimits::server`]); `None` leaves it plaintext. The configuration was
/// checked by [`TlsFlags::load`], so an error here is unexpected, but reported, never a panic.
pub fn with_tls<L>(
    server: Server<L>,
    tls: Option<&ServerTlsConfig>,
) -> Result<Server<L>, TlsError> {
    match tls {
        None => Ok(server),
        Some(cfg) => server
            .tls_config(cfg.clone())
            .map_err(|e| TlsError::Flags(format!("tls server configuration: {}", error_chain(&e)))),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn check_certs(flag: &'static str, path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    use rustls::pki_types::pem::PemObject;
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        c.map_err(|e| TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            what: format!("not PEM certificates: {e}"),
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            what: "no PEM certificate (BEGIN CERTIFICATE) found".into(),
        });
    }
    Ok(())
}

fn check_key(path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        flag: "--grpc.tls-key-file",
        path: path.to_path_buf(),
        what: format!("no PEM private key found: {e}"),
    })?;
    Ok(())
}

/// An error with its sources: tonic's transport errors say little at the top level.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(any(test, feature = "test-certs"))]
pub mod test_certs;

#[cfg(test)]
mod tests;
