//! Holding, booking and cancelling an opening: the Appointment versions `$hold`, `$book`
//! and `$cancel` write, and what each asks of the Appointment it starts from. That nobody
//! is booked twice is the store's rule (`store::claims`), so that it holds on every write
//! path, these operations included; here, only the shape of each state.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::availability::Span;
use super::busy::span_of;
use crate::error::FhirError;
use crate::index::claims::HOLD_EXPIRES_URL;

/// The statuses an appointment cannot leave for booked or cancelled.
const FINISHED: &[&str] = &["fulfilled", "cancelled", "noshow", "entered-in-error"];

fn conflict(diagnostics: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::CONFLICT, "business-rule", diagnostics)
}

/// The visit's span: 400 without a start and an end.
pub fn visit_of(appointment: &Value) -> Result<Span, FhirError> {
    span_of(appointment).ok_or_else(|| {
        FhirError::bad_request("The appointment needs a start before its end")
            .at("Appointment.start")
    })
}

/// For a patient's token (`own`: `Patient/id`): the appointment must be the patient's, and
/// no other patient's.
pub fn confine_to_patient(appointment: &Value, own: &str) -> Result<(), FhirError> {
    let patients: Vec<&str> = appointment["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .filter(|r| r.starts_with("Patient/"))
        .collect();
    if patients.is_empty() || patients.iter().any(|p| *p != own) {
        return Err(crate::auth::enforce::forbidden(
            "A patient's token may hold and book appointments for its own patient only",
        )
        .at("Appointment.participant"));
    }
    Ok(())
}

fn without_hold(extensions: &Value) -> Vec<Value> {
    extensions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] != HOLD_EXPIRES_URL)
        .cloned()
        .collect()
}

fn set_extensions(appointment: &mut Value, extensions: Vec<Value>) {
    if let Some(object) = appointment.as_object_mut() {
        if extensions.is_empty() {
            object.shift_remove("extension");
        } else {
            object.insert("extension".into(), Value::Array(extensions));
        }
    }
}

fn set_participants(appointment: &mut Value, status: &str) {
    for participant in appointment["participant"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        participant["status"] = json!(status);
    }
}

/// A proposed Appointment held until `expires` (an instant): pending, its participants
/// tentative, and the hold's end on it.
pub fn held(mut appointment: Value, expires: &str) -> Result<Value, FhirError> {
    let status = appointment["status"].as_str().unwrap_or("proposed");
    if status != "proposed" {
        return Err(conflict(format!(
            "Only a proposed appointment can be held; this one is {status}"
        )));
    }
    appointment["status"] = json!("pending");
    set_participants(&mut appointment, "tentative");
    let mut extensions = without_hold(&appointment["extension"]);
    extensions.push(json!({"url": HOLD_EXPIRES_URL, "valueInstant": expires}));
    set_extensions(&mut appointment, extensions);
    Ok(appointment)
}

/// The appointment booked: from proposed, or from pending (a hold, whose end goes).
pub fn booked(mut appointment: Value) -> Result<Value, FhirError> {
    let status = appointment["status"]
        .as_str()
        .unwrap_or("proposed")
        .to_owned();
    if !matches!(status.as_str(), "proposed" | "pending") {
        return Err(conflict(format!(
            "Only a proposed or held (pending) appointment can be booked; this one is {status}"
        )));
    }
    appointment["status"] = json!("booked");
    set_participants(&mut appointment, "accepted");
    let extensions = without_hold(&appointment["extension"]);
    set_extensions(&mut appointment, extensions);
    Ok(appointment)
}

/// The appointment cancelled, with `reason` (a CodeableConcept), which frees its time.
pub fn cancelled(mut appointment: Value, reason: Option<Value>) -> Result<Value, FhirError> {
    let status = appointment["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if FINISHED.contains(&status.as_str()) {
        return Err(conflict(format!(
            "A {status} appointment cannot be cancelled"
        )));
    }
    appointment["status"] = json!("cancelled");
    if let Some(reason) = reason {
        appointment["cancelationReason"] = reason;
    }
    let extensions = without_hold(&appointment["extension"]);
    set_extensions(&mut appointment, extensions);
    Ok(appointment)
}

/// The appointment in `status` (arrived, checked-in, fulfilled, noshow): whether it may
/// go there is the state machine's to say (`fhir::appointment_status`), on every write.
pub fn moved_to(mut appointment: Value, status: &str) -> Value {
    appointment["status"] = json!(status);
    appointment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposed() -> Value {
        json!({"resourceType": "Appointment", "status": "proposed",
            "start": "2027-03-15T09:00:00Z", "end": "2027-03-15T09:30:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "needs-action"}]})
    }

    #[test]
    fn hold_then_book_then_cancel() {
        let hold = held(proposed(), "2027-03-01T00:05:00Z").unwrap();
        assert_eq!(hold["status"], "pending");
        assert_eq!(hold["extension"][0]["url"], HOLD_EXPIRES_URL);
        let booking = booked(hold).unwrap();
        assert_eq!(booking["status"], "booked");
        assert_eq!(booking["participant"][0]["status"], "accepted");
        assert!(booking.get("extension").is_none(), "the hold's end goes");
        assert!(booked(booking.clone()).is_err(), "booked twice");
        let reason = json!({"text": "patient asked"});
        let gone = cancelled(booking, Some(reason.clone())).unwrap();
        assert_eq!(
            (gone["status"].as_str(), &gone["cancelationReason"]),
            (Some("cancelled"), &reason)
        );
        assert_eq!(
            cancelled(gone.clone(), None).unwrap_err().status,
            StatusCode::CONFLICT
        );
        assert!(
            booked(gone).is_err(),
            "a cancelled appointment is not booked again"
        );
    }

    #[test]
    fn a_patient_books_only_for_itself() {
        assert!(confine_to_patient(&proposed(), "Patient/p1").is_ok());
        assert!(confine_to_patient(&proposed(), "Patient/p2").is_err());
        let mut nobody = proposed();
        nobody["participant"] = json!([{"actor": {"reference": "Practitioner/d"}}]);
        assert!(confine_to_patient(&nobody, "Patient/p1").is_err());
    }
}
