//! TLS (`--tls-cert`, `--tls-key`): rustls with ring, TLS 1.3 and 1.2 only, rustls's
//! default suites (ECDHE key exchange and AEAD ciphers only: no RSA key exchange, no CBC,
//! no RC4). The certificate and key are read again when either file changes (checked
//! every few seconds), so a renewed certificate (Let's Encrypt, an internal CA) is served
//! without a restart; new connections get it, open ones keep theirs. A file that does not
//! load keeps the old certificate in service, and says so in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the files are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The `Strict-Transport-Security` every answer over TLS carries: a year, subdomains too.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The server's certificate, as loaded now.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    /// When the files were last changed, as of the last load.
    loaded_at: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    /// Loads the certificate chain and key (PEM); an error names the file and why.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, String> {
        let config = server_config(cert, key)?;
        Ok(Arc::new(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(config)),
            loaded_at: RwLock::new(changed_at(cert, key)),
        }))
    }

    /// An acceptor with the certificate as it is now.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let config = self.current.read().ok()?.clone();
        Some(TlsAcceptor::from(config))
    }

    /// Reloads the files when they changed, every few seconds, for as long as the server
    /// runs.
    pub fn watch(self: &Arc<Self>) {
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                tls.reload_if_changed();
            }
        });
    }

    fn reload_if_changed(&self) {
        let now = changed_at(&self.cert, &self.key);
        if self.loaded_at.read().is_ok_and(|at| *at == now) {
            return;
        }
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(config);
                }
                if let Ok(mut at) = self.loaded_at.write() {
                    *at = now;
                }
                tracing::info!("the TLS certificate changed on disk and was loaded again");
            }
            Err(error) => {
                tracing::warn!(%error, "the TLS certificate changed on disk but does not load; the old one stays in service");
            }
        }
    }
}

fn changed_at(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    // The crate's one provider (ring), as the outbound clients use it.
    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("--tls-cert / --tls-key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
