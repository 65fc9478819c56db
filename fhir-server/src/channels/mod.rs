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
    /// Where the patient's answer goes (the keys pressed on a call), if it can have one.
    pub reply_to: Option<String>,
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

/// The code system of our channel names in `Communication.medium`.
pub const CHANNEL_SYSTEM: &str = "urn:fhir-server:CodeSystem/message-channel";

/// `Communication.medium` of a message by `channel`: its name, and the closest mode of
/// HL7's `v3-ParticipationMode` (which has no code for a text message: written).
pub fn medium(channel: &str) -> serde_json::Value {
    let mode = match channel {
        "email" => "EMAILWRIT",
        "voice" => "PHONE",
        _ => "WRITTEN",
    };
    serde_json::json!([{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "code": mode},
        {"system": CHANNEL_SYSTEM, "code": channel}]}])
}

/// What the far side called the delivered message (an SMTP queue id, a message SID).
pub type Receipt = String;

/// A way to deliver messages.
pub trait Channel: Send + Sync {
    /// Its name (`email`, `sms`, `voice`): the code of `Communication.medium` in
    /// [`CHANNEL_SYSTEM`].
    fn name(&self) -> &'static str;
    /// Delivers `message`; `Ok` once the far side accepted it.
    fn send(&self, message: &Outgoing) -> impl Future<Output = Result<Receipt, Failure>> + Send;
}
