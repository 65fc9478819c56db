//! SQLite's way of inserting audit records: one prepared single-row statement, each
//! row's values bound straight from the records. Multi-row statements cost the writer a
//! statement text, a copy of every value and a statement-cache lookup keyed by kilobytes
//! of text per 64 records; a prepared statement bound per row does none of that, and
//! SQLite runs it as fast. Each row is keyed by its number (`audit::Numbering::Key`).
//! The tenant's head (the last hash) is moved last, in the same transaction.

use rusqlite::{Connection, params};

use super::StoreError;
use super::audit::{INSERT_COLUMNS, Numbering, Rows, SEQ_BITS};

/// Placeholders for the 21 columns of [`INSERT_COLUMNS`].
const PLACEHOLDERS: &str = "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
     ?16, ?17, ?18, ?19, ?20, ?21";

pub(super) fn insert(conn: &Connection, rows: &Rows<'_>) -> Result<(), StoreError> {
    let last = rows.first + rows.batch.len() as i64 - 1;
    if !Numbering::Key.holds(rows.tenant, last) {
        return Err(StoreError::Database(format!(
            "the audit trail of tenant {} cannot number record {last} (see migration 0015)",
            rows.tenant
        )));
    }
    // The rowid (`key`, migration 0015) from the first two values.
    let statement = format!(
        "INSERT INTO audit_log (key, {INSERT_COLUMNS}) VALUES ((?1 << {SEQ_BITS}) | ?2, \
         {PLACEHOLDERS})"
    );
    let mut insert = conn.prepare_cached(&statement)?;
    for record in rows.records() {
        let view = record.view;
        insert.execute(params![
            rows.tenant,
            record.seq,
            view.recorded,
            view.event,
            view.action,
            view.status,
            view.user,
            view.fhir_user,
            view.client,
            view.token,
            view.address,
            view.user_agent,
            view.entity,
            view.query,
            view.via,
            view.patients,
            view.request_id,
            view.purpose,
            view.reason,
            record.prev,
            record.hash,
        ])?;
    }
    let mut patients = conn.prepare_cached(
        "INSERT INTO audit_patient (tid, epoch, patient, seq, earlier) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
    )?;
    for row in super::audit_patient::rows(rows.first, rows.batch) {
        patients.execute(params![
            rows.tenant,
            row.epoch,
            row.patient,
            row.seq,
            row.earlier
        ])?;
    }
    conn.prepare_cached("UPDATE audit_sequence SET hash = ?1 WHERE tid = ?2")?
        .execute(params![rows.head(), rows.tenant])?;
    Ok(())
}
