//! PostgreSQL's way of inserting audit records (`Tx::insert_audit`): one statement, the
//! records' columns sent as arrays and UNNESTed into rows, beside their patients' rows and
//! the tenant's new head. Statements of 64 rows of bound values (the way before) cost
//! PostgreSQL a parse and a plan of some 1,300 parameters each, 128 of them for a batch of
//! 8,192 reads; the arrays are one statement whose text does not depend on the batch.

use sqlx::postgres::PgArguments;

use super::StoreError;
use super::audit::{INSERT_COLUMNS, Rows};
use super::audit_patient;
use super::pg_put::Statement;
use super::pg_sealed::column_arrays;

/// The statement that stores `rows` and moves the tenant's head.
pub fn statement(rows: &Rows<'_>) -> Result<(String, PgArguments), StoreError> {
    let mut s = Statement::new();
    let tid = s.arg(rows.tenant);
    let records: Vec<_> = rows.records().collect();
    let seqs = s.arg(records.iter().map(|r| r.seq).collect::<Vec<_>>());
    let columns = column_arrays(&mut s, rows.batch).join(", ");
    let prevs = s.arg(records.iter().map(|r| r.prev.hex()).collect::<Vec<_>>());
    let hashes = s.arg(records.iter().map(|r| r.hash.hex()).collect::<Vec<_>>());
    s.parts.push(format!(
        "audit_rows AS (INSERT INTO audit_log ({INSERT_COLUMNS}) SELECT {tid}, a.* \
         FROM UNNEST({seqs}::int8[], {columns}, {prevs}::text[], {hashes}::text[]) AS a)"
    ));
    let patient_rows = audit_patient::rows(rows.first, rows.batch);
    if !patient_rows.is_empty() {
        let epochs = s.arg(patient_rows.iter().map(|r| r.epoch).collect::<Vec<_>>());
        let patients = s.arg(patient_rows.iter().map(|r| r.patient).collect::<Vec<_>>());
        let seqs = s.arg(patient_rows.iter().map(|r| r.seq).collect::<Vec<_>>());
        let earlier = s.arg(
            patient_rows
                .iter()
                .map(|r| r.earlier.as_deref())
                .collect::<Vec<_>>(),
        );
        s.parts.push(format!(
            "audit_patients AS (INSERT INTO audit_patient (tid, epoch, patient, seq, earlier) \
             SELECT {tid}, p.* FROM UNNEST({epochs}::int8[], {patients}::text[], \
             {seqs}::int8[], {earlier}::text[]) AS p ON CONFLICT DO NOTHING)"
        ));
    }
    let head = s.arg(rows.head());
    s.finish_with(&format!(
        "UPDATE audit_sequence SET hash = {head} WHERE tid = {tid}"
    ))
}
