//! Moving a booking to another time: the old appointment is kept, cancelled, and a new one
//! is booked with the R5 cross-version extension `previousAppointment` pointing at it, in
//! one database transaction (either both happen or neither: 409 naming who clashed when
//! the new time is taken). `$reschedule` moves to an opening the caller chose; the IVR
//! line moves a visit to the next opening with the same practitioner (`next_opening`).

use serde_json::{Value, json};

use super::availability::Span;
use super::booking;
use super::lookup;
use super::openings::{self, Ask, MOST_DAYS};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::format_instant;
use crate::store::Version;
use crate::store::transaction::{self, Transaction, TxAction, TxEntry};

/// The R5 cross-version extension naming the appointment a booking replaces.
pub const PREVIOUS_APPOINTMENT: &str =
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.previousAppointment";

/// Moves appointment `id` (at `version`, content `old`) to `proposed` (a proposed
/// Appointment); the new booking's version.
pub async fn move_to(
    app: &App,
    tenant: TenantId,
    (id, version): (&str, i64),
    old: Value,
    proposed: Value,
) -> Result<Version, FhirError> {
    let mut new = booking::booked(proposed)?;
    let new_id = crate::resource::new_id();
    new["id"] = json!(new_id);
    let mut extensions = new["extension"].as_array().cloned().unwrap_or_default();
    extensions.push(json!({"url": PREVIOUS_APPOINTMENT, "valueReference": {"reference": format!("Appointment/{id}")}}));
    new["extension"] = Value::Array(extensions);
    let cancelled = booking::cancelled(old, Some(json!({"text": "rescheduled"})))?;
    let put = |index: usize, resource_id: &str, resource: Value, if_match: Option<i64>| TxEntry {
        index,
        full_url: None,
        action: TxAction::Update {
            resource_type: "Appointment".into(),
            target: transaction::Target::Id(resource_id.to_owned()),
            resource,
            if_match,
        },
    };
    // Updates run in order: the old time is freed before the new one is claimed.
    let entries = vec![
        put(0, id, cancelled, Some(version)),
        put(1, &new_id, new, None),
    ];
    let results = app
        .store
        .transaction(tenant, Transaction::new(entries).in_order())
        .await
        .map_err(|failure| FhirError::from(failure.error))?;
    results
        .into_iter()
        .find(|result| result.index == 1)
        .and_then(|result| result.version)
        .ok_or_else(|| FhirError::internal("the new appointment was not written"))
}

/// `visit` proposed again at `span`: the same people and place, without what belonged to
/// the old booking (its id, Slots, hold, history).
pub fn proposed_at(visit: &Value, span: Span) -> Value {
    let mut proposed = visit.clone();
    if let Some(object) = proposed.as_object_mut() {
        for owned in [
            "id",
            "meta",
            "slot",
            "extension",
            "cancelationReason",
            "text",
        ] {
            object.remove(owned);
        }
    }
    proposed["status"] = json!("proposed");
    proposed["start"] = json!(format_instant(span.start));
    proposed["end"] = json!(format_instant(span.end));
    proposed
}

/// The next opening, from now on, on an active Schedule of `visit`'s practitioner, for
/// its patient (whose own bookings block); `None` when there is none in the next
/// [`MOST_DAYS`] days or the visit has no practitioner with a Schedule.
pub async fn next_opening(
    app: &App,
    tenant: TenantId,
    visit: &Value,
) -> Result<Option<Span>, FhirError> {
    Ok(next_openings(app, tenant, visit, 1)
        .await?
        .into_iter()
        .next())
}

/// The first `count` openings, as [`next_opening`] finds the first.
pub async fn next_openings(
    app: &App,
    tenant: TenantId,
    visit: &Value,
    count: usize,
) -> Result<Vec<Span>, FhirError> {
    let Some(practitioner) = crate::workflows::scheduling::practitioner_of(visit) else {
        return Ok(Vec::new());
    };
    let search = [
        ("actor".to_owned(), practitioner.to_owned()),
        ("active".to_owned(), "true".to_owned()),
    ];
    let Some(schedule) = lookup::all(app, tenant, "Schedule", &search)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(Vec::new());
    };
    let id = schedule["id"].as_str().unwrap_or_default().to_owned();
    let now = crate::clock::now_micros();
    let ask = Ask {
        within: Span {
            start: now,
            end: now + MOST_DAYS * 86_400_000_000,
        },
        schedules: vec![(id, schedule)],
        service: None,
        patient: super::patient_of(visit),
        count,
        not_before: now,
    };
    Ok(openings::find(app, tenant, ask).await?.0)
}
