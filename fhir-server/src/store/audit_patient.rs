//! Which audit records concern which patient (`audit_patient`, for `AuditEvent?patient=`
//! and `$access-log`): one row per patient per appended batch and epoch, not one per
//! record (migration 0014).
//!
//! A row is keyed `(tid, epoch, patient, seq)`, `seq` the last of the batch's records of
//! that patient in that epoch, and lists the batch's earlier ones in `earlier`: the steps
//! back from `seq`, in decimal, comma-separated (`"3,40"`: `seq - 3`, `seq - 43`). A
//! practice reads the same few charts over and over, so a batch of thousands of records
//! names far fewer patients: the writer inserts one row where it inserted ten (each row a
//! seek and a write at the key's right edge, a fifth of an audited read's writer cost).
//!
//! Rows of different batches never interleave: a batch's records are numbered in one
//! unbroken run (`store::audit`), so newest-first by `seq` is newest-first by record.
//! Pruning removes the rows whose `seq` is pruned; a row some of whose earlier records
//! were pruned stays until its last one is, and the lookup finds nothing for those.
//!
//! PostgreSQL's coalesced creates number their records in SQL (`store::pg_sealed`) and
//! write one row per record and patient, `earlier` empty: the same key, read alike.

use std::collections::HashMap;

use super::audit::{Filter, Stored};
use super::audit_batch::Batch;
use super::{Store, StoreError, TenantId};
use crate::search::sql::{Arg, Sql};

/// Records per epoch (`seq >> EPOCH_BITS`): the table is keyed by epoch first, so that a
/// batch writes at its right edge (migration 0013).
pub const EPOCH_BITS: u32 = 13;

/// Epochs a search by patient looks up per statement, newest first.
const EPOCHS_PER_QUERY: i64 = 1024;

/// Rows read per statement (each lists at most an epoch's records).
const ROWS_PER_QUERY: i64 = 64;

/// Records fetched per statement once their numbers are known.
const SEQS_PER_QUERY: usize = 500;

/// The epoch of record `seq`.
pub fn epoch_of(seq: i64) -> i64 {
    seq >> EPOCH_BITS
}

/// One row of `audit_patient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRow<'a> {
    pub epoch: i64,
    pub patient: &'a str,
    /// The last of the batch's records of the patient in the epoch.
    pub seq: i64,
    /// The steps back to the others, newest first (None when there are none).
    pub earlier: Option<String>,
}

/// The rows for `entries` numbered from `first`, sorted by epoch and patient so that a
/// batch touches each leaf of the key once.
///
/// Each (epoch, patient) is found in a hash table and keeps its last record; each record
/// of it links back to the one before. A tree of a list per patient, the way before,
/// cost the writer a tenth of its time in lookups and small allocations.
pub fn rows(first: i64, batch: &Batch) -> Vec<PatientRow<'_>> {
    /// A record of a patient's: its number and the one before it (`NONE` for none).
    const NONE: usize = usize::MAX;
    let mut last_of: HashMap<(i64, &str), usize, foldhash::fast::RandomState> = HashMap::default();
    let mut mentions: Vec<(i64, usize)> = Vec::with_capacity(batch.len());
    for (n, view) in batch.views().enumerate() {
        let seq = first + n as i64;
        for patient in view.patients() {
            let last = last_of.entry((epoch_of(seq), patient)).or_insert(NONE);
            // A record that names a patient twice is listed once.
            if *last != NONE && mentions[*last].0 == seq {
                continue;
            }
            mentions.push((seq, *last));
            *last = mentions.len() - 1;
        }
    }
    let mut groups: Vec<((i64, &str), usize)> = last_of.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut before = Vec::new();
    groups
        .into_iter()
        .map(|((epoch, patient), last)| {
            let seq = mentions[last].0;
            before.clear();
            let mut at = mentions[last].1;
            while at != NONE {
                before.push(mentions[at].0);
                at = mentions[at].1;
            }
            before.reverse();
            PatientRow {
                epoch,
                patient,
                seq,
                earlier: steps_back(seq, &before),
            }
        })
        .collect()
}

/// `"3,40"` for `last` 50 and `before` `[7, 47]`.
fn steps_back(last: i64, before: &[i64]) -> Option<String> {
    if before.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(before.len() * 4);
    let mut at = last;
    for &seq in before.iter().rev() {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(itoa_buffer(at - seq, &mut [0u8; 20]));
        at = seq;
    }
    Some(text)
}

fn itoa_buffer(number: i64, buffer: &mut [u8; 20]) -> &str {
    let digits = super::audit::decimal(number, buffer);
    std::str::from_utf8(digits).unwrap_or_default()
}

/// The records a row lists, newest first; a step that is not a positive number ends the
/// list (a row edited behind the server's back lists less, never a wrong record twice).
fn listed(seq: i64, earlier: Option<&str>) -> impl Iterator<Item = i64> + '_ {
    let steps = earlier
        .unwrap_or_default()
        .split(',')
        .filter(|step| !step.is_empty())
        .map(|step| step.parse::<i64>().ok().filter(|s| *s > 0));
    std::iter::once(seq).chain(steps.scan(seq, |at, step| {
        let step = step?;
        *at -= step;
        Some(*at)
    }))
}

impl Store {
    /// The records of `filter.patient` (a search by patient) numbered from `first` and
    /// below `upper`, newest first, at most `filter.limit`; `search` makes the statement
    /// that reads a list of numbers with the rest of the filter.
    pub(super) async fn audit_search_by_patient(
        &self,
        tenant: TenantId,
        filter: &Filter,
        (from, end): (Option<i64>, Option<i64>),
        upper: i64,
    ) -> Result<Vec<Stored>, StoreError> {
        let first = from.unwrap_or(0);
        let Some(patient) = &filter.patient else {
            return Ok(Vec::new());
        };
        let lowest = epoch_of(first.max(0));
        let mut high = epoch_of(upper);
        let mut found = Vec::new();
        while high >= lowest {
            let low = (high - EPOCHS_PER_QUERY + 1).max(lowest);
            let mut below = None;
            loop {
                let rows = self
                    .audit_patient_rows(tenant, patient, (low, high), below)
                    .await?;
                let Some((last_seq, _)) = rows.last() else {
                    break;
                };
                below = Some(*last_seq);
                let seqs: Vec<i64> = rows
                    .iter()
                    .flat_map(|(seq, earlier)| listed(*seq, earlier.as_deref()))
                    .filter(|seq| (first..upper).contains(seq))
                    .collect();
                for chunk in seqs.chunks(SEQS_PER_QUERY) {
                    let left = filter.limit - found.len();
                    let numbered = (chunk, left);
                    found.extend(
                        self.audit_numbered(tenant, filter, (from, end), numbered)
                            .await?,
                    );
                    if found.len() >= filter.limit {
                        return Ok(found);
                    }
                }
                if rows.len() < ROWS_PER_QUERY as usize {
                    break;
                }
            }
            high = low - 1;
        }
        Ok(found)
    }

    /// Rows of the patient in the epochs `low..=high`, below `below` if given, newest
    /// first: (seq, earlier).
    async fn audit_patient_rows(
        &self,
        tenant: TenantId,
        patient: &str,
        (low, high): (i64, i64),
        below: Option<i64>,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        // Each epoch a seek of the key (tid, epoch, patient, seq).
        let epochs: Vec<String> = (low..=high).rev().map(|e| e.to_string()).collect();
        let mut sql = Sql::default();
        sql.push("SELECT CAST(seq AS TEXT), earlier FROM audit_patient WHERE tid = ");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(&format!(
            " AND epoch IN ({}) AND patient = ",
            epochs.join(", ")
        ));
        sql.bind(Arg::Text(patient.to_owned()));
        if let Some(below) = below {
            sql.push(" AND seq < ");
            sql.bind(Arg::Int(below));
        }
        sql.push(" ORDER BY audit_patient.seq DESC LIMIT ");
        sql.bind(Arg::Int(ROWS_PER_QUERY));
        let rows = self.audit_texts(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut cells = row.into_iter();
                let seq = cells.next().flatten()?.parse().ok()?;
                Some((seq, cells.next().flatten()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{Agent, Entry};

    fn entry(patients: &[&str]) -> Entry {
        Entry {
            recorded: 0,
            event: "read".into(),
            action: "R",
            status: 200,
            agent: std::sync::Arc::new(Agent::default()),
            entity: None,
            query: None,
            via: None,
            patients: patients.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn a_batch_makes_one_row_per_patient_and_epoch_listing_its_records() {
        // Records 8190..=8195: the epoch changes at 8192.
        let entries = [
            entry(&["a"]),
            entry(&["b", "a"]),
            entry(&["a", "a"]),
            entry(&["a"]),
            entry(&[]),
            entry(&["a", "b"]),
        ];
        let batch = Batch::of(&entries);
        let rows = rows(8190, &batch);
        let summary: Vec<(i64, &str, i64, Option<&str>)> = rows
            .iter()
            .map(|r| (r.epoch, r.patient, r.seq, r.earlier.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (0, "a", 8191, Some("1")),
                (0, "b", 8191, None),
                (1, "a", 8195, Some("2,1")),
                (1, "b", 8195, None),
            ]
        );
        let listed_a: Vec<i64> = listed(8195, Some("2,1")).collect();
        assert_eq!(listed_a, [8195, 8193, 8192]);
        let listed_b: Vec<i64> = listed(8191, Some("1")).collect();
        assert_eq!(listed_b, [8191, 8190]);
    }

    #[test]
    fn a_row_edited_behind_the_servers_back_lists_less() {
        assert_eq!(listed(100, Some("5,x,5")).collect::<Vec<_>>(), [100, 95]);
        assert_eq!(listed(100, Some("5,-3")).collect::<Vec<_>>(), [100, 95]);
        assert_eq!(listed(100, Some("")).collect::<Vec<_>>(), [100]);
        assert_eq!(listed(100, None).collect::<Vec<_>>(), [100]);
    }
}
