//! HTTPS for the API server: a fresh CA and a serving certificate for
//! 127.0.0.1 per cluster. kubectl (client-go's clientcmd) only sends
//! credentials to an `https` server, as any real API server is; plain HTTP
//! on the same port still answers (detected by the first byte), so raw
//! loopback probes keep working.

use std::sync::Arc;

/// The CA (PEM, for kubeconfigs and clients) and the server's TLS config.
pub struct ServerTls {
    pub ca_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// A TLS record of type handshake starts every ClientHello.
pub const HANDSHAKE_BYTE: u8 = 0x16;

/// A fresh CA (`ca_name`) and a serving certificate for `names`, signed
/// by it: (CA, certificate, its key).
pub fn issue(
    ca_name: &str,
    names: &[&str],
) -> anyhow::Result<(rcgen::Certificate, rcgen::Certificate, rcgen::KeyPair)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca.as_ref().clone(), cert, key))
}

pub fn generate() -> anyhow::Result<ServerTls> {
    // The names a real API server's certificate carries for local clients.
    let (ca, cert, key) = issue(
        "kube-sim-ca",
        &[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default.svc",
        ],
    )?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    })
}
