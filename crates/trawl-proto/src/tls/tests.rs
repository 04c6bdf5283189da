// Proto messages end in `..Default::default()` (fields may be added to the contract).
#![allow(clippy::needless_update)]

use std::net::SocketAddr;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::{Request, Response, Status};

use super::test_certs::TestPki;
use super::*;
use crate::v1::RaftMessage;
use crate::v1::raft_client::RaftClient;
use crate::v1::raft_server::{Raft, RaftServer};

/// Answers every call with its own payload.
#[derive(Debug)]
struct Echo;

#[tonic::async_trait]
impl Raft for Echo {
    async fn append_entries(
        &self,
        r: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(r.into_inner()))
    }
    async fn vote(&self, r: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(r.into_inner()))
    }
    async fn install_snapshot(
        &self,
        r: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Ok(Response::new(r.into_inner()))
    }
}

async fn serve(tls: Option<&Tls>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let builder = server_builder(tls.map(|t| t.server())).unwrap();
    let mut builder = builder;
    tokio::spawn(async move {
        let _ = builder
            .add_service(RaftServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    addr
}

async fn call(ep: Endpoint) -> Result<Vec<u8>, String> {
    let ch = ep.connect().await.map_err(|e| error_chain(&e))?;
    let msg = RaftMessage {
        payload: b"ping".to_vec(),
        ..Default::default()
    };
    RaftClient::new(ch)
        .vote(msg)
        .await
        .map(|r| r.into_inner().payload)
        .map_err(|e| e.to_string())
}

fn pki() -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path()).unwrap();
    (dir, pki)
}

fn custom_client(addr: &str, cfg: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(cfg)
        .unwrap()
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_signed_by_the_ca() {
    let (_d, pki) = pki();
    let tls = pki.flags().load().unwrap().unwrap();
    assert!(tls.is_mutual());
    let addr = serve(Some(&tls)).await;
    for host in [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ] {
        let ep = endpoint(&host, Some(tls.client())).unwrap();
        assert_eq!(call(ep).await, Ok(b"ping".to_vec()), "via {host}");
    }
}

#[tokio::test]
async fn mutual_tls_rejects_a_client_without_a_certificate() {
    let (_d, pki) = pki();
    let tls = pki.flags().load().unwrap().unwrap();
    let addr = serve(Some(&tls)).await;
    let ca = Certificate::from_pem(std::fs::read(&pki.ca).unwrap());
    let ep = custom_client(&addr.to_string(), ClientTlsConfig::new().ca_certificate(ca));
    assert!(call(ep).await.is_err());
}

#[tokio::test]
async fn mutual_tls_rejects_a_client_certificate_from_another_ca() {
    let (_d, pki) = pki();
    let (_d2, other) = pki_other();
    let tls = pki.flags().load().unwrap().unwrap();
    let addr = serve(Some(&tls)).await;
    let ca = Certificate::from_pem(std::fs::read(&pki.ca).unwrap());
    let id = Identity::from_pem(
        std::fs::read(&other.cert).unwrap(),
        std::fs::read(&other.key).unwrap(),
    );
    let ep = custom_client(
        &addr.to_string(),
        ClientTlsConfig::new().ca_certificate(ca).identity(id),
    );
    assert!(call(ep).await.is_err());
}

fn pki_other() -> (tempfile::TempDir, TestPki) {
    pki()
}

#[tokio::test]
async fn a_client_rejects_a_server_from_another_ca() {
    let (_d, pki) = pki();
    let (_d2, other) = pki_other();
    let server = pki.flags().load().unwrap().unwrap();
    let client = other.flags().load().unwrap().unwrap();
    let addr = serve(Some(&server)).await;
    let ep = endpoint(&addr.to_string(), Some(client.client())).unwrap();
    assert!(call(ep).await.is_err());
}

#[tokio::test]
async fn a_plaintext_client_cannot_talk_to_a_tls_server() {
    let (_d, pki) = pki();
    let tls = pki.flags().load().unwrap().unwrap();
    let addr = serve(Some(&tls)).await;
    let ep = endpoint(&addr.to_string(), None).unwrap();
    assert!(call(ep).await.is_err());
}

#[tokio::test]
async fn plaintext_by_default() {
    assert!(TlsFlags::default().load().unwrap().is_none());
    let addr = serve(None).await;
    let ep = endpoint(&addr.to_string(), None).unwrap();
    assert_eq!(call(ep).await, Ok(b"ping".to_vec()));
}

#[tokio::test]
async fn cert_and_key_without_ca_is_tls_without_client_certificates() {
    let (d, pki) = pki();
    // The cert file carries the chain up to its CA, which clients then trust.
    let chain = d.path().join("chain.pem");
    let mut pem = std::fs::read(&pki.cert).unwrap();
    pem.extend(std::fs::read(&pki.ca).unwrap());
    std::fs::write(&chain, pem).unwrap();
    let flags = TlsFlags {
        cert_file: Some(chain),
        key_file: Some(pki.key.clone()),
        ca_file: None,
    };
    let tls = flags.load().unwrap().unwrap();
    assert!(!tls.is_mutual());
    let addr = serve(Some(&tls)).await;
    let ep = endpoint(&addr.to_string(), Some(tls.client())).unwrap();
    assert_eq!(call(ep).await, Ok(b"ping".to_vec()));
    // No client certificate is asked for.
    let ca = Certificate::from_pem(std::fs::read(&pki.ca).unwrap());
    let ep = custom_client(&addr.to_string(), ClientTlsConfig::new().ca_certificate(ca));
    assert_eq!(call(ep).await, Ok(b"ping".to_vec()));
}

#[test]
fn incomplete_flag_combinations_are_refused() {
    let (_d, pki) = pki();
    let full = pki.flags();
    let cases = [
        (
            TlsFlags {
                cert_file: None,
                key_file: None,
                ..full.clone()
            },
            "--grpc.tls-ca-file needs",
        ),
        (
            TlsFlags {
                key_file: None,
                ..full.clone()
            },
            "--grpc.tls-cert-file needs --grpc.tls-key-file",
        ),
        (
            TlsFlags {
                cert_file: None,
                ..full.clone()
            },
            "--grpc.tls-key-file needs --grpc.tls-cert-file",
        ),
    ];
    for (flags, want) in cases {
        let err = flags.load().unwrap_err().to_string();
        assert!(err.contains(want), "{flags:?}: {err}");
    }
}

#[test]
fn bad_files_are_named_in_the_error() {
    let (d, pki) = pki();
    let missing = d.path().join("missing.pem");
    let garbage = d.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();
    let full = pki.flags();
    let cases = [
        (
            TlsFlags {
                cert_file: Some(missing.clone()),
                ..full.clone()
            },
            "--grpc.tls-cert-file",
            &missing,
        ),
        (
            TlsFlags {
                key_file: Some(missing.clone()),
                ..full.clone()
            },
            "--grpc.tls-key-file",
            &missing,
        ),
        (
            TlsFlags {
                ca_file: Some(missing.clone()),
                ..full.clone()
            },
            "--grpc.tls-ca-file",
            &missing,
        ),
        (
            TlsFlags {
                cert_file: Some(garbage.clone()),
                ..full.clone()
            },
            "--grpc.tls-cert-file",
            &garbage,
        ),
        (
            TlsFlags {
                key_file: Some(garbage.clone()),
                ..full.clone()
            },
            "--grpc.tls-key-file",
            &garbage,
        ),
        (
            TlsFlags {
                ca_file: Some(garbage.clone()),
                ..full.clone()
            },
            "--grpc.tls-ca-file",
            &garbage,
        ),
        (
            // A key that is PEM but not the certificate's.
            TlsFlags {
                key_file: Some(pki_other_key(d.path())),
                ..full.clone()
            },
            "--grpc.tls-key-file",
            &d.path().join("other").join("key.pem"),
        ),
    ];
    for (flags, flag, path) in cases {
        let err = flags.load().unwrap_err().to_string();
        assert!(err.contains(flag), "{flags:?}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "{flags:?}: {err}"
        );
    }
}

fn pki_other_key(dir: &std::path::Path) -> std::path::PathBuf {
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    TestPki::generate(&other).unwrap().key
}

#[test]
fn uri_scheme_follows_tls() {
    assert_eq!(uri("h:1", false), "http://h:1");
    assert_eq!(uri("h:1", true), "https://h:1");
    assert_eq!(uri("http://h:1", true), "https://h:1");
    assert_eq!(uri("http://h:1", false), "http://h:1");
    assert_eq!(uri("https://h:1", true), "https://h:1");
}

#[test]
fn flags_parse_with_prometheus_style_names() {
    use clap::Parser;
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        tls: TlsFlags,
    }
    let cli = Cli::try_parse_from([
        "x",
        "--grpc.tls-cert-file=c",
        "--grpc.tls-key-file",
        "k",
        "--grpc.tls-ca-file=a",
    ])
    .unwrap();
    assert_eq!(
        cli.tls.cert_file.as_deref(),
        Some(std::path::Path::new("c"))
    );
    assert_eq!(cli.tls.key_file.as_deref(), Some(std::path::Path::new("k")));
    assert_eq!(cli.tls.ca_file.as_deref(), Some(std::path::Path::new("a")));
}
