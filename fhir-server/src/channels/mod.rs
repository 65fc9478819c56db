//! The ways a message leaves the server, behind one small trait: the messaging workflows
//! (`workflows::messaging`) decide what to say to whom and when; a channel only delivers.
//!
//! Delivery is at least once, with a stable key per message (the job's id): a channel that
//! failed before the far side accepted the message reports a [`Failure`] and the job is
//! retried; a message accepted twice (the process died between the acceptance and the
//! record of it) carries the same key both times (the email's Message-ID), so the far
//! side can tell.

pub mod email;
pub mod http;
pub mod twilio;

use std::future::Future;

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Stable across retries of the same message.
    pub key: String,
    /// The address: an email address, a phone number.
    pub to: String,
    pub subject: String,
    pub text: String,
    /// Where the far side reports what became of the message (an SMS's delivery), if it
    /// can.
    pub callback: Option<String>,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again later (a connection refused or dropped, a 4xx reply).
    Transient(String),
    /// Trying again will not help (the address refused, a 5xx reply).
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(why) => write!(f, "temporary failure: {why}"),
            Failure::Permanent(why) => write!(f, "permanent failure: {why}"),
        }
    }
}

/// What the far side called the delivered message (an SMTP queue id, a message SID).
pub type Receipt = String;

/// A way to deliver messages.
pub trait Channel: Send + Sync {
    /// The FHIR medium of what it sends (`v3-ParticipationMode`).
    fn medium(&self) -> &'static str;
    /// Delivers `message`; `Ok` once the far side accepted it.
    fn send(&self, message: &Outgoing) -> impl Future<Output = Result<Receipt, Failure>> + Send;
}
