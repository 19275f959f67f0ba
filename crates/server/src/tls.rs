//! TLS for the server: a given certificate and key (PEM), or a self-signed certificate for local use,
//! made once with rcgen and kept in the state directory so clients can trust it with `--tls-ca`.
//! ring is the one crypto provider, named explicitly (the workspace also builds aws-lc for OpenDAL).

use crate::ServerOptions;
use mvault_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tls_err(what: &str, path: &Path, err: impl std::fmt::Display) -> Error {
    Error::Usage(format!("TLS {what} {}: {err}", path.display()))
}

/// The server's rustls config and the certificate file clients should trust.
pub fn server_config(opts: &ServerOptions) -> Result<(rustls::ServerConfig, PathBuf)> {
    let (cert, key) = match (&opts.tls_cert, &opts.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => self_signed(&opts.state_dir)?,
        _ => return Err(Error::Usage("give both --tls-cert and --tls-key, or neither for a self-signed one".into())),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| tls_err("certificate", &cert, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_err("certificate", &cert, e))?;
    let pk = PrivateKeyDer::from_pem_file(&key).map_err(|e| tls_err("key", &key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("config", &cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, pk)
        .map_err(|e| tls_err("certificate and key", &cert, e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((cfg, cert))
}

/// The state directory's self-signed certificate for localhost, made on first use.
fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("server-cert.pem");
    let key = dir.join("server-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    // Private: it holds the server's TLS key.
    mvault_core::private::dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| Error::Usage(format!("make a certificate: {e}")))?;
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| Error::io("write", &cert, e))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .map_err(|e| Error::io("write", &key, e))?;
        f.write_all(ck.signing_key.serialize_pem().as_bytes()).map_err(|e| Error::io("write", &key, e))?;
    }
    Ok((cert, key))
}
