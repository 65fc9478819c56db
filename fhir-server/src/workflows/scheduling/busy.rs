//! What holds a Schedule's time, read from the data: its Slots (`busy`, `busy-tentative`
//! and `busy-unavailable` block their time, `free` ones are openings of their own, as an
//! EHR publishes them) and the appointments of its actors that hold time, widened by the
//! Schedule's buffers (a visit's preparation and clean-up are its time too); and a
//! patient's own appointments.

use serde_json::Value;

use super::availability::{Parameters, Span};
use super::lookup::{self, instant};
use crate::app::App;
use crate::error::FhirError;
use crate::ids::TenantId;
use crate::resource::parse_instant;

pub use crate::index::claims::HOLDING;

/// How far before a question's start an appointment or Slot that reaches into it may
/// begin (longer ones are not seen: split a long block into days).
const REACH: i64 = 7 * 24 * 3600 * 1_000_000;

/// Something that holds time on a calendar.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub span: Span,
    /// A `busy-unavailable` Slot: no visit at all, whatever the capacity.
    pub closed: bool,
}

/// One Schedule, as a question about its time needs it.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub id: String,
    pub schedule: Value,
    pub parameters: Parameters,
    /// Appointments (with buffers) and blocking Slots.
    pub held: Vec<Held>,
    /// `free` Slots: open whatever the weekly windows say.
    pub free: Vec<Span>,
}

impl Calendar {
    /// Reads what holds the time of `schedule` within `within`.
    pub async fn read(
        app: &App,
        tenant: TenantId,
        (id, schedule): (String, Value),
        parameters: Parameters,
        within: Span,
    ) -> Result<Calendar, FhirError> {
        let range = |param: &str| {
            vec![
                (
                    param.to_owned(),
                    format!("ge{}", instant(within.start - REACH)),
                ),
                (param.to_owned(), format!("lt{}", instant(within.end))),
            ]
        };
        let mut held = Vec::new();
        let mut free = Vec::new();
        let mut slot_params = vec![("schedule".to_owned(), format!("Schedule/{id}"))];
        slot_params.extend(range("start"));
        for slot in lookup::all(app, tenant, "Slot", &slot_params).await? {
            let Some(span) = span_of(&slot) else { continue };
            match slot["status"].as_str() {
                Some("free") => free.push(span),
                Some("busy" | "busy-tentative") => held.push(Held {
                    span,
                    closed: false,
                }),
                Some("busy-unavailable") => held.push(Held { span, closed: true }),
                _ => {}
            }
        }
        let widen = |span: Span| Span {
            start: span.start - parameters.buffer_before * 60_000_000,
            end: span.end + parameters.buffer_after * 60_000_000,
        };
        for actor in actors(&schedule) {
            let mut params = vec![
                ("actor".to_owned(), actor),
                ("status".to_owned(), HOLDING.join(",")),
            ];
            params.extend(range("date"));
            for appointment in lookup::all(app, tenant, "Appointment", &params).await? {
                if lapsed(&appointment) {
                    continue;
                }
                if let Some(span) = span_of(&appointment) {
                    held.push(Held {
                        span: widen(span),
                        closed: false,
                    });
                }
            }
        }
        Ok(Calendar {
            id,
            schedule,
            parameters,
            held,
            free,
        })
    }

    /// Whether a visit of `visit` fits: inside a weekly window or a free Slot, and with
    /// its buffers, sharing its time with fewer than the capacity and with no closed time.
    pub fn fits(&self, visit: Span, windows: &[Span]) -> bool {
        let inside = windows.iter().chain(&self.free).any(|w| w.contains(visit));
        if !inside {
            return false;
        }
        let p = &self.parameters;
        let widened = Span {
            start: visit.start - p.buffer_before * 60_000_000,
            end: visit.end + p.buffer_after * 60_000_000,
        };
        let mut sharing = 0u32;
        for held in &self.held {
            if held.span.overlaps(widened) {
                if held.closed {
                    return false;
                }
                sharing += 1;
            }
        }
        sharing < p.capacity
    }
}

/// Whether `appointment` is a hold that has lapsed (it holds nothing any more).
fn lapsed(appointment: &Value) -> bool {
    let now = crate::clock::now_micros();
    appointment["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == crate::index::claims::HOLD_EXPIRES_URL)
        .filter_map(|e| e["valueInstant"].as_str().and_then(parse_instant))
        .any(|expires| expires <= now)
}

/// The references of a Schedule's actors (`Practitioner/7`, `Location/room-2`).
pub fn actors(schedule: &Value) -> Vec<String> {
    schedule["actor"]
        .as_array()
        .map(|actors| {
            actors
                .iter()
                .filter_map(|a| a["reference"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `[start, end)` of a Slot or an Appointment, when it has both.
pub fn span_of(resource: &Value) -> Option<Span> {
    let start = parse_instant(resource["start"].as_str()?)?;
    let end = parse_instant(resource["end"].as_str()?)?;
    (start < end).then_some(Span { start, end })
}

/// The time `patient`'s own appointments hold within `within`.
pub async fn patient_held(
    app: &App,
    tenant: TenantId,
    patient: &str,
    within: Span,
) -> Result<Vec<Span>, FhirError> {
    let params = vec![
        ("patient".to_owned(), patient.to_owned()),
        ("status".to_owned(), HOLDING.join(",")),
        (
            "date".to_owned(),
            format!("ge{}", instant(within.start - REACH)),
        ),
        ("date".to_owned(), format!("lt{}", instant(within.end))),
    ];
    Ok(lookup::all(app, tenant, "Appointment", &params)
        .await?
        .iter()
        .filter(|appointment| !lapsed(appointment))
        .filter_map(span_of)
        .collect())
}
