//! SQLite's way of inserting audit records: in blocks of at most 64, one `audit_block`
//! row each (`store::audit_block`, migration 0016), each record's bytes as the recorder
//! gathered them (`store::audit_batch`) beside its number and hashes, the block
//! compressed. A row per record, the way before, cost the writer about 2 µs a record
//! whatever the row held; a block costs that once for 64. The records' `audit_patient` rows follow, then the tenant's
//! head (the last hash), in the same transaction.

use rusqlite::{Connection, params};

use super::StoreError;
use super::audit::{Numbering, Rows, SEQ_BITS};
use super::audit_block;

pub(super) fn insert(conn: &Connection, rows: &Rows<'_>) -> Result<(), StoreError> {
    let last = rows.first + rows.batch.len() as i64 - 1;
    if !Numbering::Key.holds(rows.tenant, last) {
        return Err(StoreError::Database(format!(
            "the audit trail of tenant {} cannot number record {last} (see migration 0015)",
            rows.tenant
        )));
    }
    // One row per block (migration 0016): the key from the tenant and the first number.
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO audit_block (key, last, records) VALUES ((?1 << {SEQ_BITS}) | ?2, ?3, ?4)"
    ))?;
    let mut block = Vec::with_capacity(64 * 384);
    let mut room = Vec::new();
    let mut records = rows.records();
    for run in audit_block::runs(rows.first, rows.batch.len()) {
        block.clear();
        for record in records.by_ref().take(run.len()) {
            audit_block::push(&mut block, &record);
        }
        let stored = audit_block::compress(&block, &mut room);
        let (first, last) = (
            rows.first + run.start as i64,
            rows.first + run.end as i64 - 1,
        );
        insert.execute(params![rows.tenant, first, last, stored])?;
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
