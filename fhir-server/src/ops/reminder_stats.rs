//! `$reminder-stats` (on the system, the tenant): what reminders did, per week between
//! `start` and `end` (dates, at most 26 weeks apart), as Parameters
//! (`workflows::messaging::stats`): reminders sent by email and SMS, visits, reminded,
//! confirmed, cancelled by the patient, the confirmation rate and the no-show rates of
//! reminded and not reminded visits.

use super::{Operation, in_param, input, inputs, invalid_input as invalid, returns};
use crate::app::App;
use crate::error::FhirError;
use crate::rest::request::FhirRequest;
use crate::rest::response::FhirResponse;
use crate::workflows::messaging::stats;

/// The longest span asked at once.
const MOST_DAYS: i64 = 26 * 7;

pub const OPERATION: Operation = Operation {
    name: "reminder-stats",
    id: "reminder-stats",
    url: "urn:fhir-server:OperationDefinition/reminder-stats",
    title: "Reminder statistics",
    description: "Per week (Monday to Sunday in the practice's time zone): reminders sent by email and SMS, visits, visits reminded, confirmed and cancelled by the patient, the confirmation rate, and the no-show rates of reminded and not reminded visits.",
    types: &[],
    system: true,
    type_level: false,
    instance: false,
    affects_state: false,
    parameters: &[
        in_param("start", (1, "1"), "date", "The first day counted"),
        in_param(
            "end",
            (1, "1"),
            "date",
            "The day after the last one counted (at most 26 weeks after start)",
        ),
        returns(
            "Parameters",
            "A `week` parameter per week with figures, each with parts start, sent-email, sent-sms, appointments, reminded, confirmed, cancelled-by-patient, confirmation-rate, no-show-rate-reminded, no-show-rate-not-reminded",
        ),
    ],
    handler: |app, request, _| Box::pin(handle(app, request)),
};

fn day(inputs: &[(String, String)], name: &str) -> Result<jiff::civil::Date, FhirError> {
    input(inputs, name)
        .ok_or_else(|| invalid(name, format!("'{name}' is required (a date)")))?
        .parse()
        .map_err(|_| invalid(name, format!("'{name}' is a date (2027-03-01)")))
}

async fn handle(app: &App, request: &FhirRequest) -> Result<FhirResponse, FhirError> {
    let inputs = inputs(request)?;
    let (first, after) = (day(&inputs, "start")?, day(&inputs, "end")?);
    let days = (after - first).get_days();
    if days <= 0 || i64::from(days) > MOST_DAYS {
        return Err(invalid(
            "end",
            "'end' must be after 'start', by at most 26 weeks",
        ));
    }
    let settings = crate::workflows::messaging::settings::load(&app.store, request.tenant).await?;
    let zone = jiff::tz::TimeZone::get(&settings.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let instant = |date: jiff::civil::Date| {
        date.to_zoned(zone.clone())
            .map(|z| z.timestamp().as_microsecond())
            .map_err(|e| FhirError::bad_request(e.to_string()))
    };
    let weeks = stats::weeks(app, request.tenant, (instant(first)?, instant(after)?)).await?;
    Ok(FhirResponse::value(
        axum::http::StatusCode::OK,
        stats::parameters(&weeks),
    ))
}
