//! Throwaway PKI for tests: a CA and one leaf certificate signed by it, for `localhost` and
//! `127.0.0.1`, written as PEM files. The leaf serves as both server and client identity
//! (no extended key usage, so either use is accepted).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The files of one generated PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The leaf certificate (`cert.pem`), signed by the CA.
    pub cert: PathBuf,
    /// The leaf's private key (`key.pem`).
    pub key: PathBuf,
}

impl TestPki {
    /// Generates a fresh CA and leaf into `dir` (which must exist).
    pub fn generate(dir: &Path) -> Result<TestPki, Box<dyn std::error::Error + Send + Sync>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "trawl test ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "trawl test component");
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

        let pki = TestPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.cert, leaf.pem())?;
        std::fs::write(&pki.key, leaf_key.serialize_pem())?;
        Ok(pki)
    }

    /// The flags for mutual TLS with these files.
    pub fn flags(&self) -> super::TlsFlags {
        super::TlsFlags {
            cert_file: Some(self.cert.clone()),
            key_file: Some(self.key.clone()),
            ca_file: Some(self.ca.clone()),
        }
    }
}
