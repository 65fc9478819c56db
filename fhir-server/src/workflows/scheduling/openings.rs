//! The openings `Appointment/$find` offers: the times, earliest first, when every Schedule
//! asked about (a practitioner and a room, say) can take the visit, and the patient, when
//! named, has nothing else booked.

use serde_json::Value;

use super::availability::{Parameters, Span};
use super::busy::{self, Calendar};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;

/// The widest question: a span longer than this is refused (one request must not take
/// the server's time).
pub const MOST_DAYS: i64 = 62;

/// What is asked.
pub struct Ask {
    pub within: Span,
    /// The Schedules, by id, with their resources.
    pub schedules: Vec<(String, Value)>,
    /// A `HealthcareService/id` whose parameters apply.
    pub service: Option<(String, Value)>,
    /// `Patient/id`: their own appointments block too.
    pub patient: Option<String>,
    pub count: usize,
    /// Nothing starts before this (now).
    pub not_before: i64,
}

/// The openings and the calendars they were found on (the first one's parameters set
/// the visit's length and start times).
pub async fn find(
    app: &App,
    tenant: TenantId,
    ask: Ask,
) -> Result<(Vec<Span>, Vec<Calendar>), FhirError> {
    let mut calendars = Vec::with_capacity(ask.schedules.len());
    for (id, schedule) in ask.schedules {
        let service = ask.service.as_ref();
        let parameters = Parameters::of(
            &schedule,
            service.map(|(reference, _)| reference.as_str()),
            service.map(|(_, resource)| resource),
        )?;
        calendars.push(Calendar::read(app, tenant, (id, schedule), parameters, ask.within).await?);
    }
    let patient_held = match &ask.patient {
        Some(patient) => busy::patient_held(app, tenant, patient, ask.within).await?,
        None => Vec::new(),
    };
    let Some(first) = calendars.first() else {
        return Ok((Vec::new(), calendars));
    };
    let windows: Vec<Vec<Span>> = calendars
        .iter()
        .map(|c| c.parameters.open_spans(ask.within))
        .collect();
    let length = first.parameters.duration * 60_000_000;
    let mut starts: Vec<i64> = windows[0]
        .iter()
        .chain(&first.free)
        .flat_map(|span| first.parameters.starts_in(*span))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut found = Vec::new();
    for start in starts {
        let visit = Span {
            start,
            end: start + length,
        };
        if start < ask.within.start.max(ask.not_before) || visit.end > ask.within.end {
            continue;
        }
        let every = calendars
            .iter()
            .zip(&windows)
            .all(|(calendar, windows)| calendar.fits(visit, windows));
        if every && !patient_held.iter().any(|held| held.overlaps(visit)) {
            found.push(visit);
            if found.len() >= ask.count {
                break;
            }
        }
    }
    Ok((found, calendars))
}
