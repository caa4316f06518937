//! HTTPS on the admin listener: the certificate chain and private key named by
//! `admin.tls_certificate` and `admin.tls_key` (PEM), read when `serve` starts and again when it
//! is told to reload (SIGHUP, `app`). A reload that fails — a file missing, no certificate or
//! key in it, a key that does not belong to the certificate — changes nothing: connections keep
//! being served with the files read last. Each connection takes the files current when it is
//! accepted, so a reload applies to the next connection.
//!
//! rustls with the ring provider; TLS 1.2 and 1.3, HTTP/1.1 announced by ALPN.

use std::path::Path;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::AdminTls;

/// Why the certificate or key could not be used; each names the key of the config to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {key} = {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key} = {path}: {what}")]
    Pem {
        key: &'static str,
        path: String,
        what: String,
    },
    #[error(
        "admin.tls_key = {key_path} cannot serve admin.tls_certificate = {certificate_path}: {reason}"
    )]
    Unusable {
        certificate_path: String,
        key_path: String,
        reason: rustls::Error,
    },
}

/// The admin listener's TLS: the files to read, and what was read from them last. Clones share
/// the current certificate, so a reload through one is seen by all.
#[derive(Clone)]
pub struct Tls {
    files: AdminTls,
    current: Arc<RwLock<Loaded>>,
}

/// A certificate and key that were read and found to fit.
#[derive(Clone)]
struct Loaded {
    acceptor: TlsAcceptor,
    fingerprint: String,
}

impl Tls {
    /// Reads the certificate and key; an error says which file is wrong and why.
    pub fn load(files: &AdminTls) -> Result<Self, TlsError> {
        let loaded = read(files)?;
        Ok(Tls {
            files: files.clone(),
            current: Arc::new(RwLock::new(loaded)),
        })
    }

    /// Reads the files again and serves the next connections with them; on error the files
    /// read last stay in use. Returns the new certificate's SHA-256 fingerprint.
    pub fn reload(&self) -> Result<String, TlsError> {
        let loaded = read(&self.files)?;
        let fingerprint = loaded.fingerprint.clone();
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(fingerprint)
    }

    /// SHA-256 of the server's certificate being served (lower-case hex, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it without colons).
    pub fn fingerprint(&self) -> String {
        self.loaded().fingerprint
    }

    /// The files, as configured.
    pub fn files(&self) -> &AdminTls {
        &self.files
    }

    /// What a newly accepted connection is served with.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.loaded().acceptor
    }

    fn loaded(&self) -> Loaded {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn read(files: &AdminTls) -> Result<Loaded, TlsError> {
    const CERTIFICATE: &str = "admin.tls_certificate";
    const KEY: &str = "admin.tls_key";
    let certificate_pem = read_file(CERTIFICATE, &files.certificate)?;
    let chain = CertificateDer::pem_slice_iter(&certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(CERTIFICATE, &files.certificate, &err))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            key: CERTIFICATE,
            path: files.certificate.display().to_string(),
            what: "no certificate in the file (PEM: -----BEGIN CERTIFICATE-----)".to_owned(),
        });
    };
    let fingerprint = hex(&Sha256::digest(leaf.as_ref()));
    let key_pem = read_file(KEY, &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::Pem {
            key: KEY,
            path: files.key.display().to_string(),
            what: "no private key in the file (PEM: -----BEGIN PRIVATE KEY-----, \
                   RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_owned(),
        },
        other => pem_error(KEY, &files.key, &other),
    })?;
    let unusable = |reason| TlsError::Unusable {
        certificate_path: files.certificate.display().to_string(),
        key_path: files.key.display().to_string(),
        reason,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(unusable)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(unusable)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
    })
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(key: &'static str, path: &Path, err: &pem::Error) -> TlsError {
    TlsError::Pem {
        key,
        path: path.display().to_string(),
        what: format!("not a valid PEM file: {err}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Certificates made for the unit tests (rcgen): a CA and server certificates it signs.
#[cfg(test)]
pub(crate) mod test_certificates {
    use std::path::Path;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    use crate::config::AdminTls;

    pub(crate) struct Ca(CertifiedIssuer<'static, KeyPair>);

    impl Ca {
        pub(crate) fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
        }

        /// The CA certificate, written to `dir/ca.pem`.
        pub(crate) fn write(&self, dir: &Path) -> std::path::PathBuf {
            let path = dir.join("ca.pem");
            std::fs::write(&path, self.0.pem()).unwrap();
            path
        }

        /// A certificate for 127.0.0.1 and its key, written to `files`; returns its DER.
        pub(crate) fn issue(&self, files: &AdminTls) -> Vec<u8> {
            let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
            let key = KeyPair::generate().unwrap();
            let certificate = params.signed_by(&key, &self.0).unwrap();
            std::fs::write(&files.certificate, certificate.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
            certificate.der().to_vec()
        }
    }

    /// `cert.pem` and `key.pem` in `dir`.
    pub(crate) fn files_in(dir: &Path) -> AdminTls {
        AdminTls {
            certificate: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_certificates::{Ca, files_in};
    use super::*;

    fn error_of(files: &AdminTls) -> String {
        Tls::load(files).err().expect("refused").to_string()
    }

    #[test]
    fn files_that_cannot_serve_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let message = error_of(&files);
        assert!(
            message.starts_with("cannot read admin.tls_certificate = ")
                && message.contains("No such file"),
            "{message}"
        );
        let ca = Ca::new();
        let der = ca.issue(&files);
        let tls = Tls::load(&files).unwrap();
        assert_eq!(tls.fingerprint(), hex(&Sha256::digest(&der)));

        let other = files_in(&dir.path().join("other"));
        std::fs::create_dir(dir.path().join("other")).unwrap();
        ca.issue(&other);
        let mismatched = AdminTls {
            certificate: files.certificate.clone(),
            key: other.key.clone(),
        };
        let message = error_of(&mismatched);
        assert!(
            message.starts_with("admin.tls_key = ")
                && message.contains("cannot serve admin.tls_certificate"),
            "{message}"
        );
        let no_key = AdminTls {
            certificate: files.certificate.clone(),
            key: files.certificate.clone(),
        };
        let message = error_of(&no_key);
        assert!(message.contains("no private key in the file"), "{message}");
        std::fs::write(&other.certificate, "renewal in progress").unwrap();
        let message = error_of(&other);
        assert!(
            message.starts_with("admin.tls_certificate = ")
                && message.contains("no certificate in the file"),
            "{message}"
        );
        // The key's text never appears in an error.
        let key_text = std::fs::read_to_string(&other.key).unwrap();
        let body = key_text.lines().nth(1).unwrap();
        assert!(!message.contains(body));
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_read_before() {
        let dir = tempfile::tempdir().unwrap();
        let files = files_in(dir.path());
        let ca = Ca::new();
        let first = ca.issue(&files);
        let tls = Tls::load(&files).unwrap();
        let shared = tls.clone();
        std::fs::write(&files.key, "").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(shared.fingerprint(), hex(&Sha256::digest(&first)));
        let second = ca.issue(&files);
        assert_eq!(tls.reload().unwrap(), hex(&Sha256::digest(&second)));
        assert_eq!(shared.fingerprint(), hex(&Sha256::digest(&second)));
    }
}
