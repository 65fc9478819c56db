//! The audit trail's records (migration 0010): one compact row per access, numbered per
//! tenant in commit order and sealed into a hash chain.
//!
//! - A write made for a request is recorded in the write's own database transaction: the
//!   store notes each version it writes ([`note`]) and appends the notes just before the
//!   commit ([`flush`]), so a write and its record commit or vanish together.
//! - Everything else (reads, searches, refusals, sign-ins) is appended in batches by the
//!   server's recorder (`audit::Recorder`) through [`Store::append_audit`].
//! - Either way the appending transaction takes the records' numbers from the tenant's
//!   `audit_sequence` row, which also holds the hash of the last record: the upsert (on
//!   PostgreSQL's coalesced creates, a `FOR UPDATE` in the create statement itself,
//!   `store::pg_sealed`) holds that row's lock to the commit, so numbers are taken
//!   without gaps and in commit order, by any number of processes on one database, and
//!   the transaction that holds the lock is the one sealer of the chain at that moment:
//!   it hashes its records in order (`hash = SHA-256(prev || the record)`, `prev` the
//!   hash before) and leaves the last hash in the row for the next. No record is ever
//!   stored unsealed, so there is no unsealed tail; `verify` reports a record without a
//!   seal as tampering.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::audit_batch::Batch;
use super::audit_block;
use super::audit_patient::epoch_of;
use super::write::Tx;
use super::{Store, StoreError, TenantId};
use crate::search::sql::{Arg, Sql};

/// The hash before a tenant's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Numbers around a time's place in the trail also searched by time, for records of
/// processes whose clocks differ a little.
const CLOCK_SLACK: i64 = 10_000;

/// Bits of a record's number in SQLite's `audit_log.key` (migration 0015).
pub const SEQ_BITS: u32 = 44;

/// How a tenant's records are found by their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// PostgreSQL: the primary key `(tid, seq)`.
    TidSeq,
    /// SQLite: the rowid, `key = tid << SEQ_BITS | seq`, the table's only b-tree
    /// (migration 0015: a second one, on `(tid, seq)`, cost the writer a fifth).
    Key,
}

impl Numbering {
    /// Whether record `seq` of tenant `tid` can be stored.
    pub fn holds(self, tid: i64, seq: i64) -> bool {
        self == Numbering::TidSeq
            || ((0..1 << (63 - SEQ_BITS)).contains(&tid) && (0..1 << SEQ_BITS).contains(&seq))
    }

    /// The key a row of record `seq` of tenant `tid` is stored under, when this database
    /// keys them so (None on PostgreSQL, and for numbers beyond [`Numbering::holds`]).
    pub fn key_of(self, tid: i64, seq: i64) -> Option<i64> {
        (self == Numbering::Key && self.holds(tid, seq)).then(|| Self::key(tid, seq))
    }

    /// The key of record `seq` (clamped to the tenant's range) of tenant `tid`.
    fn key(tid: i64, seq: i64) -> i64 {
        tid.saturating_mul(1 << SEQ_BITS)
            .saturating_add(seq.clamp(0, 1 << SEQ_BITS))
    }

    /// A condition: the tenant's records numbered from `from` and below `below` (either
    /// open), in the form that reads a range of this database's key.
    pub(super) fn push_range(
        self,
        sql: &mut Sql,
        tenant: TenantId,
        from: Option<i64>,
        below: Option<i64>,
    ) {
        let tid = tenant.get();
        match self {
            Numbering::TidSeq => {
                sql.push("tid = ");
                sql.bind(Arg::Int(tid));
                for (clause, value) in [(" AND seq >= ", from), (" AND seq < ", below)] {
                    if let Some(value) = value {
                        sql.push(clause);
                        sql.bind(Arg::Int(value));
                    }
                }
            }
            Numbering::Key => {
                sql.push("key >= ");
                sql.bind(Arg::Int(Self::key(tid, from.unwrap_or(0))));
                sql.push(" AND key < ");
                sql.bind(Arg::Int(Self::key(tid, below.unwrap_or(1 << SEQ_BITS))));
            }
        }
    }

    /// ` AND` a condition: the tenant's records numbered `seqs`.
    fn push_in(self, sql: &mut Sql, tenant: TenantId, seqs: &[i64]) {
        let (column, list): (&str, Vec<String>) = match self {
            Numbering::TidSeq => ("seq", seqs.iter().map(i64::to_string).collect()),
            Numbering::Key => (
                "key",
                seqs.iter()
                    .map(|seq| Self::key(tenant.get(), *seq).to_string())
                    .collect(),
            ),
        };
        sql.push(&format!(" AND {column} IN ({})", list.join(", ")));
    }

    /// The column that orders records by number.
    pub(super) fn order(self) -> &'static str {
        match self {
            Numbering::TidSeq => "audit_log.seq",
            Numbering::Key => "audit_log.key",
        }
    }
}

/// The most patients one record names.
const MAX_PATIENTS: usize = 20;

/// Who asks, and from where: the same for every record of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    /// The signed-in user (`sub`, the account name), if any.
    pub user: Option<String>,
    /// The user's FHIR resource (`Practitioner/7`).
    pub fhir_user: Option<String>,
    /// The client (`anonymous` without authorization).
    pub client: Option<String>,
    /// The token's id (`jti`): never the token itself.
    pub token: Option<String>,
    /// The caller's address (the proxy's forwarded one only from a trusted proxy).
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// `BTG` when the user broke the glass.
    pub purpose: Option<String>,
    /// The reason the user gave for breaking the glass.
    pub reason: Option<String>,
}

/// One access, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub recorded: i64,
    /// The interaction (`read`, `search-type`, `create`, ...), the operation (`$book`), or
    /// the authorization event (`login`, `login-failed`, `token`, ...).
    pub event: String,
    /// BALP's action: C, R, U, D or E (execute: searches and operations).
    pub action: &'static str,
    /// The HTTP status answered.
    pub status: u16,
    pub agent: Arc<Agent>,
    /// What was touched: `Patient/7/_history/2`, `Patient` (a search), an operation.
    pub entity: Option<String>,
    /// A search's query string, as sent.
    pub query: Option<String>,
    /// The request a write came through when it was not a plain write (`$book`,
    /// `transaction`).
    pub via: Option<String>,
    /// The patients it concerns (ids).
    pub patients: Vec<String>,
}

/// A record as stored: its tenant, number, content and seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The tenant number the record is sealed with: its tenant's tid, or for a tenant
    /// moved from another server, the number it had there (see migration 0011).
    pub tenant: i64,
    pub seq: i64,
    pub entry: Entry,
    pub prev: Option<String>,
    pub hash: Option<String>,
}

/// Where a tenant's trail begins after pruning: the last pruned record's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub recorded: i64,
    pub signature: String,
}

/// What a search of the trail asks for; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient: Option<String>,
    /// A user, fhirUser or client.
    pub agent: Option<String>,
    /// `Type/id` (any version) or `Type/id/_history/n`.
    pub entity: Option<String>,
    pub event: Option<String>,
    pub purpose: Option<String>,
    /// Recorded at or after (microseconds).
    pub since: Option<i64>,
    /// Recorded before (microseconds).
    pub until: Option<i64>,
    /// Only records numbered below this (the next page, newest first).
    pub before: Option<i64>,
    pub limit: usize,
}

/// The columns of a record, each as text, in the order [`parse_row`] reads them.
/// (PostgreSQL names `CAST(seq AS TEXT)` `seq`: an `ORDER BY` must name
/// `audit_log.seq`, or it sorts the text.)
const COLUMNS: &str = "CAST(tid AS TEXT), CAST(seq AS TEXT), CAST(recorded AS TEXT), event, \
     action, CAST(status AS TEXT), user_id, fhir_user, client_id, token, address, user_agent, \
     entity, query, via, patients, request_id, purpose, reason, prev, hash";

/// Notes a version written for the current request (nothing without one), to be appended
/// by [`flush`] in the same transaction.
pub(super) fn note<T: Tx>(tx: &mut T, target: (&str, &str, i64), event: &str, body: Option<&[u8]>) {
    if let Some(entry) = written(tx.attribution(), target, event, body) {
        tx.audit_notes().push(entry);
    }
}

/// The record of a version written for a request (none for a write of the server's own).
pub(super) fn written(
    attribution: Option<&super::provenance::Attribution>,
    (resource_type, id, version): (&str, &str, i64),
    event: &str,
    body: Option<&[u8]>,
) -> Option<Entry> {
    let attribution = attribution?;
    let agent = attribution.agent.clone()?;
    attribution
        .audited
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let via = (attribution.activity != event).then(|| attribution.activity.clone());
    let action = match event {
        "create" => "C",
        "delete" => "D",
        _ => "U",
    };
    Some(Entry {
        recorded: crate::clock::now_micros(),
        event: event.to_owned(),
        action,
        status: 200,
        agent,
        entity: Some(format!("{resource_type}/{id}/_history/{version}")),
        query: None,
        via,
        patients: body.map_or_else(Vec::new, |body| patients_of(resource_type, id, body)),
    })
}

/// Appends the records noted in this transaction.
pub(super) async fn flush<T: Tx>(tx: &mut T) -> Result<(), StoreError> {
    let entries = std::mem::take(tx.audit_notes());
    if entries.is_empty() {
        return Ok(());
    }
    append(tx, &Batch::of(&entries)).await
}

/// Appends `entries` to the tenant's trail in the caller's transaction, sealed. The
/// upsert takes the numbers and locks the tenant's `audit_sequence` row until the
/// transaction commits. (PostgreSQL's coalesced creates lock, seal and store in their
/// own statement: `store::pg_sealed`.)
pub(super) async fn append<T: Tx>(tx: &mut T, batch: &Batch) -> Result<(), StoreError> {
    let tenant = tx.tenant().get();
    let mut take = Sql::default();
    take.push(
        "INSERT INTO audit_sequence (tid, last, hash) VALUES (?, ?, ?) ON CONFLICT (tid) \
         DO UPDATE SET last = audit_sequence.last + excluded.last \
         RETURNING CAST(last AS TEXT), hash, CAST(COALESCE(chain, tid) AS TEXT)",
    );
    take.args = vec![
        Arg::Int(tenant),
        Arg::Int(batch.len() as i64),
        Arg::Text(GENESIS.to_owned()),
    ];
    let taken = tx.rows(take).await?;
    let bad = || StoreError::Database("no audit sequence number".into());
    let mut cells = taken.into_iter().next().ok_or_else(bad)?.into_iter();
    let last = cells.next().flatten().and_then(|l| l.parse::<i64>().ok());
    let prev = cells.next().flatten();
    // The number the tenant's records are sealed with (see migration 0011).
    let chain = cells.next().flatten().and_then(|c| c.parse::<i64>().ok());
    let (Some(last), Some(prev), Some(chain)) = (last, prev, chain) else {
        return Err(bad());
    };
    let first = last - batch.len() as i64 + 1;
    let mut seals: Vec<Seal> = Vec::with_capacity(batch.len());
    for n in 0..batch.len() {
        let before = seals.last().map_or(prev.as_str(), Seal::hex);
        let numbered = (chain, first + n as i64);
        seals.push(seal_of(before, numbered, batch.tail(n)));
    }
    let rows = Rows {
        tenant,
        first,
        batch,
        prev: &prev,
        seals: &seals,
    };
    tx.insert_audit(&rows).await
}

/// Sealed records ready to be inserted (numbered `first..`), as `append` hands them to
/// the store (`Tx::insert_audit`).
pub struct Rows<'a> {
    pub tenant: i64,
    pub first: i64,
    pub batch: &'a Batch,
    /// The hash before the first record.
    pub prev: &'a str,
    /// Each record's seal, in order.
    pub seals: &'a [Seal],
}

/// A record's hash, as the 32 bytes a block keeps (`store::audit_block`) and as the
/// lowercase hex that the next record is sealed over and a row keeps: made once, so that
/// neither is converted from the other per record.
#[derive(Clone, Copy)]
pub struct Seal {
    raw: [u8; 32],
    hex: [u8; 64],
}

impl Seal {
    fn of(raw: [u8; 32]) -> Seal {
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(raw) {
            pair.copy_from_slice(&hex_pair(byte));
        }
        Seal { raw, hex }
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    pub fn hex(&self) -> &str {
        // Always ASCII digits (`of`).
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }
}

/// One sealed record, borrowed: its number, the hash before it, its own, and its bytes
/// after those ([`push_seal_tail`]; its fields are `Batch::view`'s). The hash before the
/// first record of an append is the tenant's stored head, as text (`Prev::Head`).
pub struct Sealed<'a> {
    pub seq: i64,
    pub prev: Prev<'a>,
    pub hash: &'a Seal,
    pub tail: &'a [u8],
}

/// The hash a record is sealed after.
#[derive(Clone, Copy)]
pub enum Prev<'a> {
    /// The tenant's head as stored, before the first record of an append.
    Head(&'a str),
    /// The record before, in the same append.
    Record(&'a Seal),
}

impl Prev<'_> {
    pub fn hex(&self) -> &str {
        match self {
            Prev::Head(head) => head,
            Prev::Record(seal) => seal.hex(),
        }
    }
}

/// The columns of `audit_log` an insert names.
pub const INSERT_COLUMNS: &str = "tid, seq, recorded, event, action, status, user_id, \
     fhir_user, client_id, token, address, user_agent, entity, query, via, patients, \
     request_id, purpose, reason, prev, hash";

impl<'a> Rows<'a> {
    /// Each record with its number and seal.
    pub fn records(&self) -> impl Iterator<Item = Sealed<'a>> + '_ {
        (0..self.batch.len()).map(|n| Sealed {
            seq: self.first + n as i64,
            tail: self.batch.tail(n),
            prev: match n.checked_sub(1) {
                None => Prev::Head(self.prev),
                Some(before) => Prev::Record(&self.seals[before]),
            },
            hash: &self.seals[n],
        })
    }

    /// The hash the tenant's trail ends with once these are stored.
    pub fn head(&self) -> &'a str {
        self.seals.last().map_or(self.prev, Seal::hex)
    }
}

/// The patients a stored resource concerns: a Patient itself, and every patient it
/// references. The stored form is our own compact JSON, so the references are found by
/// scanning for `"reference":"` rather than by parsing the whole resource (this runs for
/// every audited read).
pub fn patients_of(resource_type: &str, id: &str, body: &[u8]) -> Vec<String> {
    let mut patients = Vec::new();
    if resource_type == "Patient" {
        patients.push(id.to_owned());
    }
    const MARK: &[u8] = b"\"reference\":\"";
    let mut rest = body;
    while let Some(at) = memchr::memmem::find(rest, MARK) {
        rest = &rest[at + MARK.len()..];
        let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
        if let Some(patient) = patient_in(&rest[..end])
            && !patients.iter().any(|p| p == patient)
        {
            patients.push(patient.to_owned());
            if patients.len() >= MAX_PATIENTS {
                break;
            }
        }
        rest = &rest[end..];
    }
    patients
}

/// The id of `Patient/{id}` or `{base}/Patient/{id}` (not a versioned or other reference).
fn patient_in(reference: &[u8]) -> Option<&str> {
    let reference = std::str::from_utf8(reference).ok()?;
    let (before, id) = reference.rsplit_once("Patient/")?;
    let whole_segment = before.is_empty() || before.ends_with('/');
    let plain_id = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (whole_segment && plain_id).then_some(id)
}

/// The hash that seals `record` after `prev`: SHA-256 over `prev` and every field of the
/// record, each length-prefixed (so no two records encode alike), as lowercase hex.
pub fn seal_hash(prev: &str, record: &Stored) -> String {
    let mut tail = Vec::with_capacity(256);
    push_seal_tail(&mut tail, &record.entry);
    seal_of(prev, (record.tenant, record.seq), &tail)
        .hex()
        .to_owned()
}

/// [`seal_hash`] of a record numbered `seq` in `tenant`'s trail, laid out as `tail`
/// ([`push_seal_tail`]). The fields before the tail are laid out on the stack and hashed
/// with the tail in two pieces (a hasher fed forty small pieces spends more on the
/// feeding than on the hashing; one copied into a buffer spends it on the copy).
fn seal_of(prev: &str, (tenant, seq): (i64, i64), tail: &[u8]) -> Seal {
    let (mut tenant_digits, mut seq_digits) = ([0u8; 20], [0u8; 20]);
    let fields = [
        prev.as_bytes(),
        decimal(tenant, &mut tenant_digits),
        decimal(seq, &mut seq_digits),
    ];
    let mut hasher = Sha256::new();
    // A stored head is 64 bytes; anything longer (a trail edited behind the server's back)
    // is hashed field by field, as the chain defines it.
    let mut head = [0u8; 4 * 3 + 64 + 20 + 20];
    let mut at = 0;
    for field in fields {
        let length = (field.len() as u32).to_be_bytes();
        match head.get_mut(at..at + 4 + field.len()) {
            Some(room) => {
                room[..4].copy_from_slice(&length);
                room[4..].copy_from_slice(field);
                at += room.len();
            }
            None => {
                hasher.update(&head[..at]);
                at = 0;
                hasher.update(length);
                hasher.update(field);
            }
        }
    }
    hasher.update(&head[..at]);
    hasher.update(tail);
    Seal::of(hasher.finalize().into())
}

/// The part of a record's sealed bytes after its `prev`, tenant and number (each of those
/// a field of [`push_field`], numbers in decimal). PostgreSQL's creates seal their
/// records in SQL over these bytes (`store::pg_sealed`); the recorder gathers records so
/// (`store::audit_batch`).
pub(super) fn push_seal_tail(buffer: &mut Vec<u8>, entry: &Entry) {
    let agent = &entry.agent;
    // Numbers as decimal text, written on the stack.
    let mut digits = [0u8; 20];
    for number in [entry.recorded, i64::from(entry.status)] {
        push_field(buffer, Some(decimal(number, &mut digits)));
    }
    push_field(buffer, Some(entry.event.as_bytes()));
    push_field(buffer, Some(entry.action.as_bytes()));
    for value in [
        &agent.user,
        &agent.fhir_user,
        &agent.client,
        &agent.token,
        &agent.address,
        &agent.user_agent,
        &entry.entity,
        &entry.query,
        &entry.via,
    ] {
        push_field(buffer, bytes_of(value));
    }
    push_patients(buffer, &entry.patients);
    for value in [&agent.request_id, &agent.purpose, &agent.reason] {
        push_field(buffer, bytes_of(value));
    }
}

/// One sealed field: its length as four bytes, big-endian, then the bytes; an absent one
/// is the length `u32::MAX` alone (so no two records encode alike).
fn push_field(buffer: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) => {
            buffer.extend_from_slice(&(value.len() as u32).to_be_bytes());
            buffer.extend_from_slice(value);
        }
        None => buffer.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// The patients' field: their ids space-separated, none when there are none.
fn push_patients(buffer: &mut Vec<u8>, patients: &[String]) {
    if patients.is_empty() {
        return push_field(buffer, None);
    }
    let length = patients.iter().map(String::len).sum::<usize>() + patients.len() - 1;
    buffer.extend_from_slice(&(length as u32).to_be_bytes());
    for (n, patient) in patients.iter().enumerate() {
        if n > 0 {
            buffer.push(b' ');
        }
        buffer.extend_from_slice(patient.as_bytes());
    }
}

fn bytes_of(value: &Option<String>) -> Option<&[u8]> {
    value.as_deref().map(str::as_bytes)
}

/// `number` in decimal, in `buffer`.
/// Written by hand: through `write!` the formatting machinery cost more than the digits
/// (four numbers a record, every record sealed).
pub(super) fn decimal(number: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut rest = number.unsigned_abs();
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if number < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.extend(hex_pair(byte).map(char::from));
    }
    text
}

/// A byte's two lowercase hex digits.
fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 15)],
    ]
}

/// A row read with [`COLUMNS`].
/// A record from its cells in `COLUMNS` order after the tid (an exported trail's row),
/// sealed with `chain`.
pub fn record_of(chain: i64, cells: Vec<Option<String>>) -> Result<Stored, StoreError> {
    let mut row = Vec::with_capacity(cells.len() + 1);
    row.push(Some(chain.to_string()));
    row.extend(cells);
    parse_row(row)
}

/// A stored action (BALP's C, R, U, D or E) as the constant it was recorded from; `?` for
/// anything else (a trail edited behind the server's back: `verify` reports the record).
pub(super) fn action_of(stored: Option<&str>) -> &'static str {
    match stored {
        Some("C") => "C",
        Some("R") => "R",
        Some("U") => "U",
        Some("D") => "D",
        Some("E") => "E",
        _ => "?",
    }
}

fn parse_row(row: Vec<Option<String>>) -> Result<Stored, StoreError> {
    let bad = || StoreError::Database("an audit record could not be read".into());
    let mut cells = row.into_iter();
    let mut next = || cells.next().ok_or_else(bad);
    let int = |cell: Option<String>| cell.and_then(|c| c.parse::<i64>().ok()).ok_or_else(bad);
    let tenant = int(next()?)?;
    let seq = int(next()?)?;
    let recorded = int(next()?)?;
    let event = next()?.ok_or_else(bad)?;
    let action = action_of(next()?.as_deref());
    let status = u16::try_from(int(next()?)?).map_err(|_| bad())?;
    let agent = Agent {
        user: next()?,
        fhir_user: next()?,
        client: next()?,
        token: next()?,
        address: next()?,
        user_agent: next()?,
        request_id: None,
        purpose: None,
        reason: None,
    };
    let entity = next()?;
    let query = next()?;
    let via = next()?;
    let patients = next()?
        .map(|p| p.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    let agent = Agent {
        request_id: next()?,
        purpose: next()?,
        reason: next()?,
        ..agent
    };
    Ok(Stored {
        tenant,
        seq,
        entry: Entry {
            recorded,
            event,
            action,
            status,
            agent: Arc::new(agent),
            entity,
            query,
            via,
            patients,
        },
        prev: next()?,
        hash: next()?,
    })
}

/// A search's statement: `filter` over the numbers `first..end`, and for a search by
/// patient, over the records `audit_patient` listed (`seqs`); at most `limit` records.
fn search_sql(
    (numbering, tenant): (Numbering, TenantId),
    filter: &Filter,
    (first, end): (Option<i64>, Option<i64>),
    seqs: Option<&[i64]>,
    limit: usize,
) -> Sql {
    let mut sql = Sql::default();
    sql.push(&format!("SELECT {COLUMNS} FROM audit_log WHERE "));
    let below = [end, filter.before].into_iter().flatten().min();
    numbering.push_range(&mut sql, tenant, first, below);
    if let Some(seqs) = seqs {
        numbering.push_in(&mut sql, tenant, seqs);
    }
    if let Some(agent) = &filter.agent {
        sql.push(" AND (fhir_user = ");
        sql.bind(Arg::Text(agent.clone()));
        sql.push(" OR user_id = ");
        sql.bind(Arg::Text(agent.clone()));
        sql.push(" OR client_id = ");
        sql.bind(Arg::Text(agent.clone()));
        sql.push(")");
    }
    if let Some(entity) = &filter.entity {
        sql.push(" AND (entity = ");
        sql.bind(Arg::Text(entity.clone()));
        sql.push(" OR entity LIKE ");
        let escaped = entity
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        sql.bind(Arg::Text(format!("{escaped}/\\_history/%")));
        sql.push(" ESCAPE '\\')");
    }
    for (column, value) in [("event", &filter.event), ("purpose", &filter.purpose)] {
        if let Some(value) = value {
            sql.push(&format!(" AND {column} = "));
            sql.bind(Arg::Text(value.clone()));
        }
    }
    for (clause, value) in [
        (" AND recorded >= ", filter.since),
        (" AND recorded < ", filter.until),
    ] {
        if let Some(value) = value {
            sql.push(clause);
            sql.bind(Arg::Int(value));
        }
    }
    sql.push(&format!(" ORDER BY {} DESC LIMIT ", numbering.order()));
    sql.bind(Arg::Int(limit as i64));
    sql
}

/// Records of rows and of blocks, each list in order, as one list in order (newest first
/// when `newest_first`), at most `limit`. A number found in both (a trail edited behind
/// the server's back) is kept twice, for `verify` to report.
fn merged(rows: Vec<Stored>, blocks: Vec<Stored>, limit: usize, newest_first: bool) -> Vec<Stored> {
    if blocks.is_empty() {
        return rows;
    }
    if rows.is_empty() {
        return blocks;
    }
    let mut all = rows;
    all.extend(blocks);
    if newest_first {
        all.sort_by_key(|record| std::cmp::Reverse(record.seq));
    } else {
        all.sort_by_key(|record| record.seq);
    }
    all.truncate(limit);
    all
}

fn tenant_arg(tenant: TenantId) -> Arg {
    Arg::Int(tenant.get())
}

impl Store {
    /// Appends records (reads, searches, refusals, sign-ins) in a transaction of their own.
    pub async fn append_audit(
        &self,
        tenant: TenantId,
        batch: Arc<Batch>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.append_audit(tenant, batch).await,
            Store::Postgres(s) => s.append_audit(tenant, batch).await,
        }
    }

    /// How this database finds records by number.
    pub(super) fn numbering(&self) -> Numbering {
        match self {
            Store::Sqlite(_) => Numbering::Key,
            Store::Postgres(_) => Numbering::TidSeq,
        }
    }

    pub(super) async fn audit_texts(
        &self,
        sql: Sql,
    ) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        match self {
            Store::Sqlite(s) => s.select_texts(sql).await,
            Store::Postgres(s) => s.select_texts(&sql).await,
        }
    }

    /// Tenants with a trail.
    pub async fn audit_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT CAST(tid AS TEXT) FROM audit_sequence ORDER BY audit_sequence.tid");
        let rows = self.audit_texts(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .filter_map(|tid| tid.parse::<i64>().ok())
            .map(TenantId::from_stored)
            .collect())
    }

    /// Up to `limit` records numbered above `after`, oldest first.
    pub async fn audit_records(
        &self,
        tenant: TenantId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut records = self.audit_records_stored(tenant, after, limit).await?;
        let chain = self.audit_chain(tenant).await?;
        for record in &mut records {
            record.tenant = chain;
        }
        Ok(records)
    }

    /// [`Store::audit_records`] as stored, each `tenant` the tid (not the chain number).
    async fn audit_records_stored(
        &self,
        tenant: TenantId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        let from = after.saturating_add(1);
        let mut sql = Sql::default();
        sql.push(&format!("SELECT {COLUMNS} FROM audit_log WHERE "));
        let numbering = self.numbering();
        numbering.push_range(&mut sql, tenant, Some(from), None);
        sql.push(&format!(" ORDER BY {} LIMIT ", numbering.order()));
        sql.bind(Arg::Int(limit as i64));
        let rows = self.audit_page(sql).await?;
        let all = (from, 1 << SEQ_BITS);
        let blocks = self
            .audit_block_scan(tenant, all, false, (limit, &|_| true))
            .await?;
        Ok(merged(rows, blocks, limit, false))
    }

    /// The first record numbered above `after`, if any.
    async fn audit_first_after(
        &self,
        tenant: TenantId,
        after: i64,
    ) -> Result<Option<Stored>, StoreError> {
        Ok(self
            .audit_records_stored(tenant, after, 1)
            .await?
            .into_iter()
            .next())
    }

    /// The number the tenant's records are sealed with (see [`Stored::tenant`]).
    pub async fn audit_chain(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let chain = self.audit_sequence_column(tenant, "chain").await?;
        Ok(chain.unwrap_or(tenant.get()))
    }

    /// An integer column of the tenant's `audit_sequence` row, if it has one.
    async fn audit_sequence_column(
        &self,
        tenant: TenantId,
        column: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT CAST({column} AS TEXT) FROM audit_sequence WHERE tid = "
        ));
        sql.bind(tenant_arg(tenant));
        let rows = self.audit_texts(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .and_then(|value| value.parse().ok()))
    }

    /// The records a search asks for, newest first.
    pub async fn audit_search(
        &self,
        tenant: TenantId,
        filter: &Filter,
    ) -> Result<Vec<Stored>, StoreError> {
        // Times become a range of numbers first (records are numbered in the order they
        // were recorded, give or take the clocks of several processes), so that a search
        // by date reads that range of the primary key; the trail keeps no index of times,
        // which would cost a write per record.
        let first = match filter.since {
            Some(since) => Some(
                self.audit_seq_at(tenant, since)
                    .await?
                    .saturating_sub(CLOCK_SLACK),
            ),
            None => None,
        };
        let end = match filter.until {
            Some(until) => Some(
                self.audit_seq_at(tenant, until)
                    .await?
                    .saturating_add(CLOCK_SLACK),
            ),
            None => None,
        };
        if filter.patient.is_none() {
            let sql = search_sql(
                (self.numbering(), tenant),
                filter,
                (first, end),
                None,
                filter.limit,
            );
            let rows = self.audit_page(sql).await?;
            let below = [end, filter.before].into_iter().flatten().min();
            let range = (first.unwrap_or(0), below.unwrap_or(1 << SEQ_BITS));
            let keep = |record: &Stored| audit_block::matches(filter, record);
            let blocks = self
                .audit_block_scan(tenant, range, true, (filter.limit, &keep))
                .await?;
            return Ok(merged(rows, blocks, filter.limit, true));
        }
        // By patient: the records `audit_patient` lists for the patient, newest first.
        let upper = match [end, filter.before].into_iter().flatten().min() {
            Some(upper) => upper,
            None => self.audit_last_taken(tenant).await? + 1,
        };
        self.audit_search_by_patient(tenant, filter, (first, end), upper)
            .await
    }

    /// The records numbered `seqs` (newest first) that a search by patient asks for, at
    /// most `limit`, newest first: `filter` over the numbers `first..end`.
    pub(super) async fn audit_numbered(
        &self,
        tenant: TenantId,
        filter: &Filter,
        (first, end): (Option<i64>, Option<i64>),
        (seqs, limit): (&[i64], usize),
    ) -> Result<Vec<Stored>, StoreError> {
        let sql = search_sql(
            (self.numbering(), tenant),
            filter,
            (first, end),
            Some(seqs),
            limit,
        );
        let rows = self.audit_page(sql).await?;
        let below = [end, filter.before].into_iter().flatten().min();
        let range = first.unwrap_or(0)..below.unwrap_or(i64::MAX);
        let keep =
            |record: &Stored| range.contains(&record.seq) && audit_block::matches(filter, record);
        let blocks = self.audit_block_numbers(tenant, seqs, &keep).await?;
        Ok(merged(rows, blocks, limit, true))
    }

    pub(super) async fn audit_page(&self, sql: Sql) -> Result<Vec<Stored>, StoreError> {
        self.audit_texts(sql)
            .await?
            .into_iter()
            .map(parse_row)
            .collect()
    }

    /// The first number recorded at or after `time` (one past the last when none is): a
    /// binary search over the numbers, one point read per step.
    pub async fn audit_seq_at(&self, tenant: TenantId, time: i64) -> Result<i64, StoreError> {
        let (mut low, mut high) = (0_i64, self.audit_last_taken(tenant).await? + 1);
        while low < high {
            let middle = low + (high - low) / 2;
            let recorded = self
                .audit_first_after(tenant, middle - 1)
                .await?
                .map(|record| record.entry.recorded);
            match recorded {
                Some(recorded) if recorded < time => low = middle + 1,
                _ => high = middle,
            }
        }
        Ok(low)
    }

    /// The first record kept and the last recorded before `cutoff`, when there is any
    /// such record to prune.
    pub async fn audit_prunable(
        &self,
        tenant: TenantId,
        cutoff: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let first = self.audit_first_after(tenant, -1).await?.map(|r| r.seq);
        let Some(first) = first else {
            return Ok(None);
        };
        let before_cutoff = self.audit_seq_at(tenant, cutoff).await? - 1;
        let last = self.audit_block_end(tenant, before_cutoff).await?;
        Ok((last >= first).then_some((first, last)))
    }

    /// Removes the records up to `checkpoint.seq`, and keeps the checkpoint, in one
    /// transaction (a second process pruning the same records at once fails on the
    /// checkpoint's key and changes nothing).
    pub async fn audit_prune(
        &self,
        tenant: TenantId,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let mut keep = Sql::default();
        keep.push("INSERT INTO audit_checkpoint (tid, seq, hash, recorded, signature) VALUES (");
        for (n, value) in [
            tenant_arg(tenant),
            Arg::Int(checkpoint.seq),
            Arg::Text(checkpoint.hash.clone()),
            Arg::Int(checkpoint.recorded),
            Arg::Text(checkpoint.signature.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            keep.push(if n == 0 { "" } else { ", " });
            keep.bind(value);
        }
        keep.push(")");
        let mut statements = vec![keep];
        let mut records = Sql::default();
        records.push("DELETE FROM audit_log WHERE ");
        let below = Some(checkpoint.seq.saturating_add(1));
        self.numbering()
            .push_range(&mut records, tenant, None, below);
        statements.push(records);
        if self.numbering() == Numbering::Key {
            // Whole blocks only: `audit_prunable` stops at a block's end.
            let mut blocks = Sql::default();
            blocks.push("DELETE FROM audit_block WHERE ");
            Numbering::Key.push_range(&mut blocks, tenant, None, below);
            blocks.push(" AND last <= ");
            blocks.bind(Arg::Int(checkpoint.seq));
            statements.push(blocks);
        }
        let mut patients = Sql::default();
        patients.push("DELETE FROM audit_patient WHERE tid = ");
        patients.bind(tenant_arg(tenant));
        // A range of the key's epochs, not a scan of the tenant's rows.
        patients.push(" AND epoch <= ");
        patients.bind(Arg::Int(epoch_of(checkpoint.seq)));
        patients.push(" AND seq <= ");
        patients.bind(Arg::Int(checkpoint.seq));
        statements.push(patients);
        match self {
            Store::Sqlite(s) => s.run_in_transaction(statements).await,
            Store::Postgres(s) => s.run_in_transaction(statements).await,
        }
    }

    /// One record by its number.
    pub async fn audit_record(
        &self,
        tenant: TenantId,
        seq: i64,
    ) -> Result<Option<Stored>, StoreError> {
        Ok(self
            .audit_records(tenant, seq - 1, 1)
            .await?
            .into_iter()
            .find(|r| r.seq == seq))
    }

    /// The last number taken for the tenant's trail (0 before its first record).
    pub async fn audit_last_taken(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let last = self.audit_sequence_column(tenant, "last").await?;
        Ok(last.unwrap_or(0))
    }

    /// Where the tenant's trail begins, if it was pruned.
    pub async fn audit_checkpoint(
        &self,
        tenant: TenantId,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let mut sql = Sql::default();
        sql.push(
            "SELECT CAST(seq AS TEXT), hash, CAST(recorded AS TEXT), signature \
             FROM audit_checkpoint WHERE tid = ",
        );
        sql.bind(tenant_arg(tenant));
        sql.push(" ORDER BY audit_checkpoint.seq DESC LIMIT 1");
        let rows = self.audit_texts(sql).await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let mut cells = row.into_iter().map(Option::unwrap_or_default);
        let mut next = || cells.next().unwrap_or_default();
        let seq = next().parse().unwrap_or(0);
        let hash = next();
        let recorded = next().parse().unwrap_or(0);
        Ok(Some(Checkpoint {
            seq,
            hash,
            recorded,
            signature: next(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_sealed_as_the_standard_library_writes_them() {
        let mut digits = [0u8; 20];
        for number in [
            0,
            7,
            -7,
            10,
            99,
            100,
            1_700_000_000_123_456,
            i64::MAX,
            i64::MIN,
        ] {
            let written = super::decimal(number, &mut digits);
            assert_eq!(written, number.to_string().as_bytes());
        }
    }

    use super::*;

    #[test]
    fn patients_are_found_in_references() {
        let body = br#"{"resourceType":"Appointment","participant":[{"actor":{"reference":"Patient/p1"}},{"actor":{"reference":"Practitioner/d"}},{"actor":{"reference":"http://x/fhir/Patient/p2"}},{"actor":{"reference":"Patient/p1"}}],"basedOn":[{"reference":"NotPatient/x"}]}"#;
        assert_eq!(patients_of("Appointment", "a", body), ["p1", "p2"]);
        assert_eq!(patients_of("Patient", "me", b"{}"), ["me"]);
        assert!(patients_of("Observation", "o", br#"{"reference":"Patient/"}"#).is_empty());
    }

    #[test]
    fn every_field_changes_the_seal() {
        let record = Stored {
            tenant: 1,
            seq: 1,
            entry: Entry {
                recorded: 5,
                event: "read".into(),
                action: "R",
                status: 200,
                agent: Arc::new(Agent::default()),
                entity: Some("Patient/1/_history/1".into()),
                query: None,
                via: None,
                patients: vec!["1".into()],
            },
            prev: None,
            hash: None,
        };
        let base = seal_hash(GENESIS, &record);
        let mut other = record.clone();
        other.entry.entity = Some("Patient/2/_history/1".into());
        assert_ne!(seal_hash(GENESIS, &other), base);
        let mut other = record.clone();
        other.entry.query = Some(String::new());
        assert_ne!(
            seal_hash(GENESIS, &other),
            base,
            "empty differs from absent"
        );
        assert_ne!(seal_hash(&base, &record), base);
    }

    /// The seal is SHA-256 over every field length-prefixed, whether the fields before
    /// the record fit the stack's room (a stored head) or not (a head edited to be longer).
    #[test]
    fn a_seal_hashes_its_fields_as_laid_out() {
        let tail = b"\x00\x00\x00\x02ok";
        for prev in [GENESIS.to_owned(), "f".repeat(200), String::new()] {
            let mut laid_out = Vec::new();
            for field in [prev.as_str(), "12", "345"] {
                push_field(&mut laid_out, Some(field.as_bytes()));
            }
            laid_out.extend_from_slice(tail);
            assert_eq!(
                seal_of(&prev, (12, 345), tail).hex(),
                hex(&Sha256::digest(&laid_out)),
                "prev of {} bytes",
                prev.len()
            );
        }
    }
}
