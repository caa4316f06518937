//! Certificates for the admin listener's HTTPS, made for each test (rcgen): a CA, and server
//! certificates for 127.0.0.1 and `localhost` that it signs, written as PEM files; and a TLS
//! client that tells which certificate a server presents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A certificate authority of the test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM files in a directory.
pub struct ServerCertificate {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER-encoded: what a client sees in the handshake.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate (PEM), as a client's `--ca-file` takes it.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).expect("write CA certificate");
    }

    /// A certificate for 127.0.0.1 and `localhost` with serial number `serial`, signed by this
    /// CA, with a new key; written to `dir` as `server-<serial>.pem` and `server-<serial>.key`.
    pub fn issue(&self, dir: &Path, serial: u64) -> ServerCertificate {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params.serial_number = Some(SerialNumber::from(serial));
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, format!("xmpp-broadcast admin {serial}"));
        params.distinguished_name = subject;
        let key = KeyPair::generate().expect("server key");
        let certificate = params.signed_by(&key, &self.issuer).expect("sign");
        let certificate_path = dir.join(format!("server-{serial}.pem"));
        let key_path = dir.join(format!("server-{serial}.key"));
        std::fs::write(&certificate_path, certificate.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        ServerCertificate {
            certificate: certificate_path,
            key: key_path,
            der: certificate.der().to_vec(),
        }
    }
}

/// The certificate the server at `address` (`127.0.0.1:port`) presents in a TLS handshake that
/// trusts the CA certificate in `ca_file`; an error if the handshake fails.
pub async fn presented_certificate(address: &str, ca_file: &Path) -> Result<Vec<u8>, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).expect("read CA file") {
        roots
            .add(certificate.expect("CA PEM"))
            .expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = TcpStream::connect(address)
        .await
        .map_err(|err| err.to_string())?;
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let name = ServerName::try_from(host.to_owned()).expect("server name");
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, socket)
        .await
        .map_err(|err| err.to_string())?;
    let (_, session) = stream.get_ref();
    let chain = session.peer_certificates().ok_or("no certificate")?;
    Ok(chain[0].to_vec())
}
