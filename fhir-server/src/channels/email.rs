//! Email over SMTP (lettre): STARTTLS required unless the relay is on this machine, the
//! relay's certificate checked against the system's roots and the practice's own CA. The
//! message's Message-ID is made from the message's key, so a message sent twice is the
//! same message to the relay and the reader's mail program.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Channel, Failure, Outgoing, Receipt};
use crate::workflows::messaging::settings::EmailChannel;

/// The longest a delivery may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of Message-IDs (the sender's).
    domain: String,
}

impl Email {
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
    fn medium(&self) -> &'static str {
        "EMAILWRIT"
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
