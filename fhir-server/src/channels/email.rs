//! Email over SMTP (lettre): STARTTLS required unless the relay is on this machine, the
//! relay's certificate checked against the system's roots and the practice's own CA. The
//! message's Message-ID is made from the message's key, so a message sent twice is the
//! same message to the relay and the reader's mail program.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Channel, Failure, Outgoing, Receipt};
use serde::{Deserialize, Serialize};

/// An SMTP relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (required, the default), `tls` (implicit TLS, port 465) or `none`
    /// (plain text: only to this machine, for a local relay).
    #[serde(default = "default_security")]
    pub security: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// A PEM certificate the relay's certificate may chain to, besides the system's roots
    /// (a practice's own CA).
    #[serde(default)]
    pub ca_certificate: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_security() -> String {
    "starttls".into()
}

impl EmailChannel {
    /// Checks the settings; the bad field and why.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.host.is_empty() || self.host.len() > 253 || self.host.contains(['/', ' ']) {
            return Err(("host", "a host name or address"));
        }
        let local = matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1");
        match self.security.as_str() {
            "starttls" | "tls" => {}
            "none" if local => {}
            "none" => {
                return Err((
                    "security",
                    "plain text SMTP only to this machine; use starttls or tls",
                ));
            }
            _ => return Err(("security", "starttls, tls or none")),
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(("from", "an address, or Name <address>"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(("password", "a username and a password go together"));
        }
        if let Some(pem) = &self.ca_certificate
            && !is_certificate(pem)
        {
            return Err(("ca_certificate", "a PEM certificate"));
        }
        Ok(())
    }
}

/// Whether `pem` holds certificates, each one a trust anchor can be made of.
fn is_certificate(pem: &str) -> bool {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let Ok(certificates) =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    !certificates.is_empty() && certificates.into_iter().all(|c| roots.add(c).is_ok())
}

/// The longest a delivery may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of Message-IDs (the sender's).
    domain: String,
}

/// The channels made so far, by their settings: each keeps a pool of open connections to
/// its relay, so a burst of reminders does not pay a TCP and TLS handshake per message.
static MADE: std::sync::Mutex<Option<HashMap<String, Arc<Email>>>> = std::sync::Mutex::new(None);
/// More distinct relays than this (tenants, or settings changed often) start the memory
/// over.
const MOST_KEPT: usize = 256;

impl Email {
    /// The channel for the relay `settings` name: the one made before for the same
    /// settings, or a new one.
    pub fn for_settings(settings: &EmailChannel) -> Result<Arc<Email>, Failure> {
        let key = serde_json::to_string(settings).unwrap_or_default();
        let mut made = MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let made = made.get_or_insert_with(HashMap::new);
        if let Some(email) = made.get(&key) {
            return Ok(email.clone());
        }
        if made.len() >= MOST_KEPT {
            made.clear();
        }
        let email = Arc::new(Email::new(settings)?);
        made.insert(key, email.clone());
        Ok(email)
    }

    /// A channel for the relay `settings` name (checked when they were saved).
    pub fn new(settings: &EmailChannel) -> Result<Email, Failure> {
        let permanent = |e: &dyn std::fmt::Display| Failure::Permanent(e.to_string());
        let from: Mailbox = settings.from.parse().map_err(|e| permanent(&e))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(TIMEOUT));
        if settings.security != "none" {
            let mut tls = TlsParameters::builder(settings.host.clone());
            if let Some(pem) = &settings.ca_certificate {
                let ca = Certificate::from_pem(pem.as_bytes()).map_err(|e| permanent(&e))?;
                tls = tls.add_root_certificate(ca);
            }
            let tls = tls.build_rustls().map_err(|e| permanent(&e))?;
            builder = builder.tls(match settings.security.as_str() {
                "tls" => Tls::Wrapper(tls),
                _ => Tls::Required(tls),
            });
        }
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let domain = from.email.domain().to_owned();
        Ok(Email {
            transport: builder.build(),
            from,
            domain,
        })
    }
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, message: &Outgoing) -> Result<Receipt, Failure> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|e| Failure::Permanent(format!("the address {}: {e}", message.to)))?;
        let email = Message::builder()
            .message_id(Some(format!("<{}@{}>", message.key, self.domain)))
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(message.text.clone())
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        match self.transport.send(email).await {
            Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
            Err(error) if error.is_permanent() => Err(Failure::Permanent(error.to_string())),
            Err(error) => Err(Failure::Transient(error.to_string())),
        }
    }
}
