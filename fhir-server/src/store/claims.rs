//! Nobody booked twice: the upkeep of `time_claims` and `time_policies` (migration 0008)
//! inside every write's transaction, for both databases. What a resource claims is
//! `index::claims`'s; here each claim is checked against the actor's capacity and stored.
//!
//! An actor's claims are checked and written under a lock on that actor (PostgreSQL: an
//! advisory lock held to the commit; SQLite: the one writer), taken in the order of the
//! actors' names, so two bookings of the same time on several server processes are decided
//! one after the other and the second sees the first.

use serde_json::Value;

use super::StoreError;
use super::write::Tx;
use crate::error::FhirError;
use crate::index::claims::{self, Claim, LONGEST_CLAIM, Policy};
use crate::resource::format_instant;
use crate::search::sql::{Arg, Sql};

/// How far before a claim's start the claims that may overlap it can begin: the longest
/// claim, and two days of buffers.
const REACH_BACK: i64 = LONGEST_CLAIM + 2 * 24 * 3600 * 1_000_000;

/// The most actors one appointment may claim time for: each costs a lock and a look-up in
/// the write's transaction, so one request must not bring thousands.
const MOST_CLAIMANTS: usize = 100;

/// Whether writes of `resource_type` keep claims or policies up to date, or are held to
/// them (a Slot: `store::slots`).
pub fn concerns(resource_type: &str) -> bool {
    matches!(resource_type, "Appointment" | "Schedule" | "Slot")
}

/// Brings the claims (an Appointment) or policies (a Schedule) of `resource_type/id` in
/// line with `resource`, its new content (`None`: deleted), before the version is written.
/// 409 when a claim would exceed an actor's capacity, having written nothing.
pub(super) async fn after_write<T: Tx>(
    tx: &mut T,
    (resource_type, id): (&str, &str),
    resource: Option<&Value>,
    now: i64,
) -> Result<(), StoreError> {
    match resource_type {
        "Appointment" => {
            let claims = resource
                .map(|r| claims::appointment_claims(r, now))
                .unwrap_or_default();
            claim_time(tx, id, &claims, now).await
        }
        "Schedule" => {
            let policies = resource.map(claims::schedule_policies).unwrap_or_default();
            set_policies(tx, id, &policies).await
        }
        _ => Ok(()),
    }
}

fn tenant_clause<T: Tx>(tx: &T, sql: &mut Sql, table: &str) {
    sql.push(&format!("{table} WHERE tid = "));
    sql.bind(Arg::Int(tx.tenant().get()));
}

/// Checks every claim first (so that a refusal writes nothing: the SQLite writer commits
/// several writes together and must not be left with half of one), then replaces the
/// holder's claims.
async fn claim_time<T: Tx>(
    tx: &mut T,
    holder: &str,
    claims: &[Claim],
    now: i64,
) -> Result<(), StoreError> {
    if claims.len() > MOST_CLAIMANTS {
        return Err(StoreError::Rejected(
            FhirError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                format!(
                    "An appointment that holds time has at most {MOST_CLAIMANTS} practitioners, rooms, devices and patients"
                ),
            )
            .at("Appointment.participant"),
        ));
    }
    let mut widened = Vec::with_capacity(claims.len());
    for claim in claims {
        if claims::is_slot(&claim.actor) {
            // A Slot records that it is taken; its capacity is its people's.
            super::slots::bookable(tx, &claim.actor).await?;
            widened.push((claim, claim.start, claim.end));
            continue;
        }
        if claim.end - claim.start > LONGEST_CLAIM {
            return Err(StoreError::Rejected(
                FhirError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "business-rule",
                    "An appointment that holds time lasts at most 7 days",
                )
                .at("Appointment.end"),
            ));
        }
        tx.lock_type(&format!("time:{}", claim.actor)).await?;
        let (before, after, capacity) = policy_of(tx, &claim.actor).await?;
        let (start, end) = (claim.start - before, claim.end + after);
        let taken = overlapping(tx, holder, &claim.actor, (start, end), now).await?;
        if taken >= capacity {
            return Err(StoreError::Rejected(FhirError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!(
                    "{} is already booked between {} and {} (buffers included; capacity {capacity})",
                    claim.actor,
                    format_instant(claim.start),
                    format_instant(claim.end)
                ),
            )));
        }
        widened.push((claim, start, end));
    }
    let tenant = tx.tenant().get();
    tx.run(delete_of(tenant, "time_claims", ("holder", holder)))
        .await?;
    for (claim, start, end) in widened {
        tx.run(insert_claim(tenant, holder, claim, (start, end)))
            .await?;
    }
    Ok(())
}

/// An actor's buffers and capacity: the widest buffers and the smallest capacity its
/// active Schedules set; none, one place.
async fn policy_of<T: Tx>(tx: &mut T, actor: &str) -> Result<(i64, i64, i64), StoreError> {
    let mut sql = Sql::default();
    sql.push(
        "SELECT CAST(COALESCE(MAX(before_us), 0) AS BIGINT), \
         CAST(COALESCE(MAX(after_us), 0) AS BIGINT), \
         CAST(COALESCE(MIN(capacity), 1) AS BIGINT) FROM ",
    );
    tenant_clause(tx, &mut sql, "time_policies");
    sql.push(" AND actor = ");
    sql.bind_text(actor);
    let row = tx.first_ints(sql).await?;
    match row.as_slice() {
        [before, after, capacity] => Ok((*before, *after, *capacity)),
        _ => Ok((0, 0, 1)),
    }
}

/// How many live claims of other holders on `actor` overlap `(start, end)`.
async fn overlapping<T: Tx>(
    tx: &mut T,
    holder: &str,
    actor: &str,
    (start, end): (i64, i64),
    now: i64,
) -> Result<i64, StoreError> {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) FROM ");
    tenant_clause(tx, &mut sql, "time_claims");
    sql.push(" AND actor = ");
    sql.bind_text(actor);
    sql.push(" AND start_us < ");
    sql.bind(Arg::Int(end));
    sql.push(" AND start_us > ");
    sql.bind(Arg::Int(start - REACH_BACK));
    sql.push(" AND end_us > ");
    sql.bind(Arg::Int(start));
    sql.push(" AND holder <> ");
    sql.bind_text(holder);
    sql.push(" AND (expires_us IS NULL OR expires_us > ");
    sql.bind(Arg::Int(now));
    sql.push(")");
    Ok(tx.first_ints(sql).await?.first().copied().unwrap_or(0))
}

async fn set_policies<T: Tx>(
    tx: &mut T,
    schedule: &str,
    policies: &[Policy],
) -> Result<(), StoreError> {
    let tenant = tx.tenant().get();
    tx.run(delete_of(tenant, "time_policies", ("schedule", schedule)))
        .await?;
    for policy in policies {
        tx.run(insert_policy(tenant, schedule, policy)).await?;
    }
    Ok(())
}

/// The statement that removes the rows of `table` whose `column` is `value`.
pub(super) fn delete_of(tenant: i64, table: &str, (column, value): (&str, &str)) -> Sql {
    let mut sql = Sql::default();
    sql.push(&format!("DELETE FROM {table} WHERE tid = "));
    sql.bind(Arg::Int(tenant));
    sql.push(&format!(" AND {column} = "));
    sql.bind_text(value);
    sql
}

/// The statement that stores `holder`'s claim, widened to `[start, end)`.
pub(super) fn insert_claim(
    tenant: i64,
    holder: &str,
    claim: &Claim,
    (start, end): (i64, i64),
) -> Sql {
    let mut insert = Sql::default();
    insert.push(
        "INSERT INTO time_claims (tid, holder, actor, start_us, end_us, expires_us) VALUES (",
    );
    insert.bind(Arg::Int(tenant));
    for arg in [
        Arg::Text(holder.to_owned()),
        Arg::Text(claim.actor.clone()),
        Arg::Int(start),
        Arg::Int(end),
    ] {
        insert.push(", ");
        insert.bind(arg);
    }
    match claim.expires {
        Some(expires) => {
            insert.push(", ");
            insert.bind(Arg::Int(expires));
            insert.push(")");
        }
        None => insert.push(", NULL)"),
    }
    insert
}

/// The statement that stores what `schedule` sets for one actor.
pub(super) fn insert_policy(tenant: i64, schedule: &str, policy: &Policy) -> Sql {
    let mut insert = Sql::default();
    insert.push(
        "INSERT INTO time_policies (tid, schedule, actor, before_us, after_us, capacity) VALUES (",
    );
    insert.bind(Arg::Int(tenant));
    for arg in [
        Arg::Text(schedule.to_owned()),
        Arg::Text(policy.actor.clone()),
        Arg::Int(policy.before),
        Arg::Int(policy.after),
        Arg::Int(policy.capacity),
    ] {
        insert.push(", ");
        insert.bind(arg);
    }
    // A Schedule naming the same actor twice sets its policy once.
    insert.push(") ON CONFLICT DO NOTHING");
    insert
}

/// Queues the offer of the time `previous` held and `next` does not (see
/// `index::claims::freed`) to the waitlist, in the write's own transaction (an outbox: the
/// offer is made if and only if the change commits). The job's state is what
/// `workflows::scheduling::waitlist` reads.
pub(super) async fn queue_freed<T: Tx>(
    tx: &mut T,
    previous: &Value,
    next: Option<&Value>,
    now: i64,
) -> Result<(), StoreError> {
    let Some(freed) = claims::freed(previous, next, now) else {
        return Ok(());
    };
    let state = serde_json::json!({
        "tenant": tx.tenant().get(), "start": freed.start, "end": freed.end, "actors": freed.actors,
    });
    let id = super::jobs::new_job_id();
    let insert = super::jobs::insert_job(
        &id,
        tx.tenant(),
        ("waitlist-offer", &state.to_string()),
        None,
    );
    tx.run(insert).await.map(|_| ())
}
