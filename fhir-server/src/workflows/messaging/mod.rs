//! Patient messaging on the schedule itself: appointment reminders, planned when an
//! appointment is booked (and planned again or dropped when it moves or is cancelled) and
//! sent at their time by the tenant's channels (`crate::channels`), every message a FHIR
//! record: a CommunicationRequest for each planned reminder, a Communication for each
//! sent (or not sent, with the reason).
//!
//! The work runs as jobs on the database's queue (`jobs::runner`): the store queues a
//! `reminder-plan` job in the same transaction as the appointment's change (an outbox,
//! `store::outbox`); planning queues a `reminder-send` job per reminder, due at its time.

pub mod broadcast;
pub mod deadline;
pub mod links;
pub mod outbound;
pub mod plan;
pub mod render;
pub mod reoffer;
pub mod replies;
pub mod secure;
pub mod send;
pub mod settings;
pub mod stats;
pub mod voice;

use serde_json::{Value, json};

pub use crate::workflows::scheduling::patient_of;

/// Groups the reminders of one appointment (`CommunicationRequest.groupIdentifier`, whose
/// value is the appointment's id).
pub const REMINDERS_OF: &str = "urn:fhir-server:appointment-reminders";
/// The key of a sent message (`Communication.identifier`): the job's id, also the email's
/// Message-ID.
pub const MESSAGE_KEY: &str = "urn:fhir-server:message-key";
/// A message's id at Twilio (`Communication.identifier`): what delivery reports name.
pub const TWILIO_SID: &str = "urn:fhir-server:twilio-message-sid";
/// A Patient's or Location's IANA time zone (the R5 core extension, usable in R4).
pub const TIME_ZONE_URL: &str = "http://hl7.org/fhir/StructureDefinition/tz-code";

/// The category of a reminder (CommunicationRequest and Communication).
pub fn reminder_category() -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category",
        "code": "reminder"}]}])
}

/// Starts the messaging workers.
pub fn start(app: crate::app::SharedApp) {
    plan::start(app.clone());
    send::start(app.clone());
    deadline::start(app.clone());
    secure::notice::start(app.clone());
    reoffer::start(app.clone());
    broadcast::start_workers(app);
}
