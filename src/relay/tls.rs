//! TLS for `hyco serve`: a certificate and key from PEM files, or a self-signed
//! certificate for throwaway relays, kept on disk so its fingerprint survives restarts.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::fingerprint;

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads a PEM certificate chain and private key. Returns the config and the leaf's
/// fingerprint.
pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<(Arc<rustls::ServerConfig>, String)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    let Some(leaf) = chain.first() else { bail!("no certificate in {}", cert.display()) };
    let print = fingerprint::of(leaf);
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading private key {}", key.display()))?;
    Ok((server_config(chain, key)?, print))
}

/// A self-signed certificate for `names`, created in `dir` (as `self-signed.crt` and
/// `self-signed.key`, the key 0600) on first use and reused after.
pub fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<(Arc<rustls::ServerConfig>, String)> {
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if !cert_path.exists() || !key_path.exists() {
        let certified = rcgen::generate_simple_self_signed(names.to_vec()).context("generating a certificate")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::fsutil::write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, certified.cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    }
    from_pem_files(&cert_path, &key_path)
}
