//! The rules of a Slot's life, held on every write path like the appointment's (see
//! `fhir::appointment_status`): a Slot ends after it starts; `entered-in-error` is final;
//! and a Slot that an appointment holding time is booked into (`Appointment.slot`, recorded
//! as a claim on `Slot/{id}` by `index::claims`) cannot be closed (`busy-unavailable`,
//! `entered-in-error`), moved to other times or another Schedule, or deleted under it,
//! nor can an appointment be booked into a closed one.
//!
//! Both sides lock the Slot's row first (PostgreSQL `FOR UPDATE`, through `Tx::head`),
//! then the lock on its claims (`time:Slot/{id}`), in that order, so a booking and a
//! closing of the same Slot on several server processes are decided one after the other.

use serde_json::Value;

use super::StoreError;
use super::write::{Tx, stored_resource};
use crate::error::FhirError;
use crate::search::sql::{Arg, Sql};
use axum::http::StatusCode;

/// The statuses in which a Slot takes no appointment.
const CLOSED: &[&str] = &["busy-unavailable", "entered-in-error"];

/// Refuses a booking into `slot` (`Slot/{id}`) when that Slot is closed; a Slot that is not
/// (yet) stored holds nothing.
pub(super) async fn bookable<T: Tx>(tx: &mut T, slot: &str) -> Result<(), StoreError> {
    let id = slot.trim_start_matches("Slot/");
    let head = tx.head("Slot", id).await?;
    tx.lock_type(&format!("time:{slot}")).await?;
    // A Slot created while this waited for the lock is seen now.
    let head = match head {
        Some(head) => Some(head),
        None => tx.head("Slot", id).await?,
    };
    let Some(head) = head.filter(|head| !head.deleted) else {
        return Ok(());
    };
    let stored = stored_resource(tx, "Slot", id, head.version).await?;
    let status = stored.as_ref().and_then(|s| s["status"].as_str());
    match status {
        Some(status) if CLOSED.contains(&status) => Err(refused(
            StatusCode::CONFLICT,
            format!("{slot} is {status}: no appointment can be booked into it"),
            "Appointment.slot",
        )),
        _ => Ok(()),
    }
}

/// Checks the write of Slot `id` from `previous` (its current content, if any) to `next`
/// (`None`: deleted), before the version is stored.
pub(super) async fn check_write<T: Tx>(
    tx: &mut T,
    id: &str,
    previous: Option<&Value>,
    next: Option<&Value>,
    now: i64,
) -> Result<(), StoreError> {
    if let Some(next) = next {
        let instant = |name: &str| next[name].as_str().and_then(crate::resource::parse_instant);
        if let (Some(start), Some(end)) = (instant("start"), instant("end"))
            && end <= start
        {
            return Err(refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A Slot must end after it starts".to_owned(),
                "Slot.end",
            ));
        }
    }
    let status = |slot: Option<&Value>| slot.and_then(|s| s["status"].as_str()).map(str::to_owned);
    let (was, becomes) = (status(previous), status(next));
    if was.as_deref() == Some("entered-in-error") && next.is_some() && becomes != was {
        return Err(refused(
            StatusCode::CONFLICT,
            "A Slot entered in error is final: it cannot change status".to_owned(),
            "Slot.status",
        ));
    }
    let moved = match (previous, next) {
        (Some(previous), Some(next)) => {
            ["start", "end"]
                .iter()
                .any(|name| previous[*name] != next[*name])
                || previous["schedule"]["reference"] != next["schedule"]["reference"]
        }
        _ => false,
    };
    let closing = becomes.as_deref().is_none_or(|s| CLOSED.contains(&s));
    if !(moved || closing) {
        return Ok(());
    }
    let slot = format!("Slot/{id}");
    tx.lock_type(&format!("time:{slot}")).await?;
    let taken = taken(tx, &slot, now).await?;
    if taken == 0 {
        return Ok(());
    }
    let change = match (next, moved) {
        (None, _) => "deleted".to_owned(),
        (Some(_), true) => "moved".to_owned(),
        (Some(_), false) => format!("made {}", becomes.unwrap_or_default()),
    };
    Err(refused(
        StatusCode::CONFLICT,
        format!(
            "{slot} cannot be {change}: {taken} appointment(s) holding time are booked into it (cancel or move them first)"
        ),
        if next.is_some() {
            "Slot.status"
        } else {
            "Slot"
        },
    ))
}

/// How many live claims (appointments holding time, not lapsed holds) are on `slot`.
async fn taken<T: Tx>(tx: &mut T, slot: &str, now: i64) -> Result<i64, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) FROM time_claims WHERE tid = ");
    sql.bind(Arg::Int(tx.tenant().get()));
    sql.push(" AND actor = ");
    sql.bind_text(slot);
    sql.push(" AND end_us > ");
    sql.bind(Arg::Int(now));
    sql.push(" AND (expires_us IS NULL OR expires_us > ");
    sql.bind(Arg::Int(now));
    sql.push(")");
    Ok(tx.first_ints(sql).await?.first().copied().unwrap_or(0))
}

fn refused(status: StatusCode, message: String, element: &str) -> StoreError {
    let code = match status {
        StatusCode::CONFLICT => "business-rule",
        _ => "invariant",
    };
    StoreError::Rejected(FhirError::new(status, code, message).at(element))
}
