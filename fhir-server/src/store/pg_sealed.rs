//! The audit records of a PostgreSQL create statement (`pg_put::creates`), numbered,
//! sealed and stored by that statement itself.
//!
//! An audited batch of creates was a transaction of four round trips (BEGIN, the creates
//! taking the numbers, the sealed records, COMMIT), holding the tenant's `audit_sequence`
//! row from the first statement to the commit: the statements in flight waited for each
//! other's round trips, and creates cost a quarter more with auditing on. Now the one
//! statement does it all and the lock lasts as long as that statement:
//!
//! - `audit_locked` locks the tenant's sequence row (`FOR UPDATE`: under READ COMMITTED,
//!   after waiting for another write, it reads the row as that write committed it);
//! - `audit_sealed`, a recursive CTE, chains the hashes in SQL over the same bytes as
//!   `audit::seal_hash`: the hash before, the tenant's chain number and the record's
//!   number, each length-prefixed (laid out here in SQL), then the rest of the record,
//!   laid out by the server (`audit::push_seal_tail`) and sent as bytes;
//! - the records, one `audit_patient` row per record and patient, and the row's new last
//!   number and hash are written beside the resources.
//!
//! A tenant without a sequence row has nothing to lock: the statement then writes nothing
//! at all (its resource rows are guarded by [`GUARD`]) and returns no row, and the caller
//! makes the row and runs the statement again.
//!
//! Taking the lock after the resource rows instead (so that two statements in flight
//! would write those side by side) measured worse: PostgreSQL spent 100–180 µs more per
//! create.

use super::audit::{Entry, INSERT_COLUMNS};
use super::audit_batch::{Batch, View};
use super::audit_patient::EPOCH_BITS;
use super::pg_put::Statement;

/// The condition every resource row of an audited create statement is written under.
pub const GUARD: &str = "EXISTS (SELECT 1 FROM audit_locked)";

/// What an audited create statement returns: a row when its records were stored.
pub const RESULT: &str = "SELECT 1 FROM audit_locked";

/// The columns of `INSERT_COLUMNS` between `seq` and `prev`, as `audit_new` names them.
const COLUMNS: &str = "recorded, event, action, status, user_id, fhir_user, client_id, token, \
     address, user_agent, entity, query, via, patients, request_id, purpose, reason";

/// Adds the CTEs that lock the sequence row of tenant `tid` (a placeholder) and store
/// `entries` sealed. `audit_locked` comes first, for the resource rows' [`GUARD`].
pub fn push(s: &mut Statement, tid: &str, entries: &[Entry]) {
    s.recursive = true;
    s.parts.insert(
        0,
        format!(
            "audit_locked AS (SELECT last, hash, CAST(COALESCE(chain, tid) AS TEXT) AS chain \
             FROM audit_sequence WHERE tid = {tid} FOR UPDATE)"
        ),
    );
    push_new(s, entries);
    // A field of the seal: its length (four bytes, big-endian), then its bytes.
    let field =
        |text: &str| format!("int4send(octet_length({text})) || convert_to({text}, 'UTF8')");
    s.parts.push(format!(
        "audit_sealed (n, seq, prev, hash) AS (\
         SELECT 0::int8, last, NULL::text, hash FROM audit_locked \
         UNION ALL \
         SELECT a.n, s.seq + 1, s.hash, encode(sha256({prev} || {chain} || {seq} || a.tail), 'hex') \
         FROM audit_sealed s JOIN audit_new a ON a.n = s.n + 1 CROSS JOIN audit_locked l)",
        prev = field("s.hash"),
        chain = field("l.chain"),
        seq = field("CAST(s.seq + 1 AS TEXT)"),
    ));
    s.parts.push(format!(
        "audit_rows AS (INSERT INTO audit_log ({INSERT_COLUMNS}) \
         SELECT {tid}, s.seq, a.{list}, s.prev, s.hash \
         FROM audit_new a JOIN audit_sealed s ON s.n = a.n)",
        list = COLUMNS.replace(", ", ", a."),
    ));
    push_patients(s, tid, entries);
    s.parts.push(format!(
        "audit_head AS (UPDATE audit_sequence SET last = h.seq, hash = h.hash \
         FROM (SELECT seq, hash FROM audit_sealed ORDER BY n DESC LIMIT 1) AS h \
         WHERE audit_sequence.tid = {tid})"
    ));
}

/// `audit_new`: the records' columns ([`COLUMNS`]), each sealed tail and each number `n`
/// from 1.
fn push_new(s: &mut Statement, entries: &[Entry]) {
    let batch = Batch::of(entries);
    let tails: Vec<&[u8]> = (0..batch.len()).map(|n| batch.tail(n)).collect();
    let mut arrays = column_arrays(s, &batch);
    arrays.push(format!("{}::bytea[]", s.arg(tails)));
    s.parts.push(format!(
        "audit_new AS (SELECT * FROM UNNEST({}) WITH ORDINALITY AS a({COLUMNS}, tail, n))",
        arrays.join(", ")
    ));
}

/// The records' [`COLUMNS`] as array arguments, one a column (`$4::text[]`), to be
/// UNNESTed into rows: one statement stores any number of records, and its text does not
/// depend on how many.
pub fn column_arrays(s: &mut Statement, batch: &Batch) -> Vec<String> {
    let views: Vec<View<'_>> = batch.views().collect();
    let numbers = |s: &mut Statement, column: fn(&View<'_>) -> i64| {
        let values: Vec<i64> = views.iter().map(column).collect();
        format!("{}::int8[]", s.arg(values))
    };
    let recorded = numbers(s, |v| v.recorded);
    let status = numbers(s, |v| i64::from(v.status));
    let texts = |s: &mut Statement, column: for<'v> fn(&View<'v>) -> Option<&'v str>| {
        let values: Vec<Option<&str>> = views.iter().map(column).collect();
        format!("{}::text[]", s.arg(values))
    };
    vec![
        recorded,
        texts(s, |v| Some(v.event)),
        texts(s, |v| Some(v.action)),
        status,
        texts(s, |v| v.user),
        texts(s, |v| v.fhir_user),
        texts(s, |v| v.client),
        texts(s, |v| v.token),
        texts(s, |v| v.address),
        texts(s, |v| v.user_agent),
        texts(s, |v| v.entity),
        texts(s, |v| v.query),
        texts(s, |v| v.via),
        texts(s, |v| v.patients),
        texts(s, |v| v.request_id),
        texts(s, |v| v.purpose),
        texts(s, |v| v.reason),
    ]
}

/// `audit_patients`: one row per record and patient it names (a batch's rows of one
/// patient are not merged as `audit_patient::rows` merges them: the numbers are known
/// only here, in SQL; a lookup reads either form).
fn push_patients(s: &mut Statement, tid: &str, entries: &[Entry]) {
    let (numbers, names): (Vec<i64>, Vec<&str>) = entries
        .iter()
        .enumerate()
        .flat_map(|(n, entry)| {
            entry
                .patients
                .iter()
                .map(move |patient| (n as i64 + 1, patient.as_str()))
        })
        .unzip();
    if numbers.is_empty() {
        return;
    }
    let (numbers, names) = (s.arg(numbers), s.arg(names));
    s.parts.push(format!(
        "audit_patients AS (INSERT INTO audit_patient (tid, epoch, patient, seq, earlier) \
         SELECT {tid}, s.seq >> {EPOCH_BITS}, p.patient, s.seq, NULL \
         FROM UNNEST({numbers}::int8[], {names}::text[]) AS p(n, patient) \
         JOIN audit_sealed s ON s.n = p.n ON CONFLICT DO NOTHING)"
    ));
}
