//! Walks a tenant's trail and reports the first record that was changed, removed or
//! inserted behind the server's back, or that it is whole (with how much of its end is
//! not sealed yet).

use serde::Serialize;

use crate::store::audit::{GENESIS, Stored, seal_hash};
use crate::store::{Store, StoreError, TenantId};

/// Records read at a time.
const PAGE: usize = 10_000;

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Report {
    /// The chain holds from the start (or the checkpoint) to `head`.
    Intact {
        /// The first record kept (after pruning, the one after the checkpoint).
        first: i64,
        /// The last sealed record, and its hash.
        head: i64,
        hash: String,
    },
    /// A record without a seal: the server writes none (each is sealed by the transaction
    /// that appends it), so it was put in, or its seal taken off, behind its back.
    Unsealed { seq: i64 },
    /// A record's content no longer matches its seal.
    Changed { seq: i64 },
    /// Records are missing (`from` to `to`, both included).
    Removed { from: i64, to: i64 },
    /// A record that was never sealed into the chain where it stands.
    Inserted { seq: i64 },
    /// The record before `seq` is not the one `seq` was sealed after: it was removed
    /// (and the numbers after it moved down) or replaced.
    RemovedBefore { seq: i64 },
    /// The checkpoint that begins the trail does not carry a valid signature.
    BadCheckpoint { seq: i64 },
    /// The exported head given to compare with is not in the trail as it was.
    HeadMismatch { seq: i64 },
}

impl Report {
    pub fn is_intact(&self) -> bool {
        matches!(self, Report::Intact { .. })
    }
}

/// Where the walk is.
struct Walk {
    expected: i64,
    /// The hash of the record before, and of the one before that.
    prev: String,
    prev_prev: Option<String>,
    head: i64,
}

/// Walks the tenant's trail; `head`, a head exported earlier (`audit head`), must still
/// be in it with the same hash. `checkpoint_valid` judges a checkpoint's signature.
pub async fn verify(
    store: &Store,
    tenant: TenantId,
    head: Option<(i64, &str)>,
    checkpoint_valid: impl Fn(&crate::store::audit::Checkpoint) -> bool,
) -> Result<Report, StoreError> {
    let start = match store.audit_checkpoint(tenant).await? {
        Some(checkpoint) => {
            if !checkpoint_valid(&checkpoint) {
                return Ok(Report::BadCheckpoint {
                    seq: checkpoint.seq,
                });
            }
            (checkpoint.seq, checkpoint.hash)
        }
        None => (0, GENESIS.to_owned()),
    };
    let mut chain = Chain::new(start, head);
    if let Some(problem) = walk(store, tenant, &mut chain, i64::MAX).await? {
        return Ok(problem);
    }
    Ok(chain.finish(store.audit_last_taken(tenant).await?))
}

/// The first problem in the tenant's trail from its start (or checkpoint, whose signature
/// is not judged here) up to record `upto`, if any. Pruning asks before it removes records:
/// a broken stretch stays, with the evidence of what was done to it, until someone looks.
pub async fn problem_up_to(
    store: &Store,
    tenant: TenantId,
    upto: i64,
) -> Result<Option<Report>, StoreError> {
    let start = match store.audit_checkpoint(tenant).await? {
        Some(checkpoint) => (checkpoint.seq, checkpoint.hash),
        None => (0, GENESIS.to_owned()),
    };
    walk(store, tenant, &mut Chain::new(start, None), upto).await
}

/// Takes the store's records after where `chain` stands, up to record `upto`, page by
/// page; the first problem, if any.
async fn walk(
    store: &Store,
    tenant: TenantId,
    chain: &mut Chain<'_>,
    upto: i64,
) -> Result<Option<Report>, StoreError> {
    let mut after = chain.walk.head;
    while after < upto {
        let page = store.audit_records(tenant, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in page.iter().take_while(|record| record.seq <= upto) {
            if let Some(problem) = chain.check(record) {
                return Ok(Some(problem));
            }
        }
    }
    Ok(None)
}

/// A walk along a trail, record by record, from a start (0 and [`GENESIS`], or a
/// checkpoint): the store's (`verify`) or a file's (`tenant import`).
pub struct Chain<'a> {
    walk: Walk,
    first: i64,
    kept_hash: String,
    head: Option<(i64, &'a str)>,
}

impl<'a> Chain<'a> {
    /// A walk from `(seq, hash)`; `head`, an exported head, must be met on the way.
    pub fn new((seq, hash): (i64, String), head: Option<(i64, &'a str)>) -> Chain<'a> {
        Chain {
            walk: Walk {
                expected: seq + 1,
                prev: hash.clone(),
                prev_prev: None,
                head: seq,
            },
            first: seq + 1,
            kept_hash: hash,
            head,
        }
    }

    /// Takes the next record; the problem it shows, if any.
    pub fn check(&mut self, record: &Stored) -> Option<Report> {
        if let Some(problem) = step(&mut self.walk, record) {
            return Some(problem);
        }
        if let (Some((seq, hash)), Some(sealed)) = (self.head, &record.hash)
            && record.seq == seq
            && sealed != hash
        {
            return Some(Report::HeadMismatch { seq });
        }
        self.kept_hash = self.walk.prev.clone();
        None
    }

    /// The verdict once every record was taken; `taken`, the last number handed out.
    pub fn finish(self, taken: i64) -> Report {
        if taken >= self.walk.expected {
            return Report::Removed {
                from: self.walk.expected,
                to: taken,
            };
        }
        if let Some((seq, _)) = self.head
            && seq > self.walk.head
        {
            return Report::HeadMismatch { seq };
        }
        Report::Intact {
            first: self.first,
            head: self.walk.head,
            hash: self.kept_hash,
        }
    }
}

/// Checks one record against the walk so far; the problem it shows, if any.
fn step(walk: &mut Walk, record: &Stored) -> Option<Report> {
    if record.seq > walk.expected {
        return Some(Report::Removed {
            from: walk.expected,
            to: record.seq - 1,
        });
    }
    walk.expected = record.seq + 1;
    let Some(hash) = &record.hash else {
        return Some(Report::Unsealed { seq: record.seq });
    };
    let prev = record.prev.as_deref().unwrap_or_default();
    if prev != walk.prev {
        if walk.prev_prev.as_deref() == Some(prev) {
            // It follows the record two back: the one between was put in.
            return Some(Report::Inserted {
                seq: record.seq - 1,
            });
        }
        // Sealed one place further on: the numbers were moved down over a removed one.
        let moved = Stored {
            seq: record.seq + 1,
            ..record.clone()
        };
        if seal_hash(prev, &moved) == *hash {
            return Some(Report::RemovedBefore { seq: record.seq });
        }
        return Some(Report::Changed { seq: record.seq });
    }
    if seal_hash(prev, record) != *hash {
        return Some(Report::Changed { seq: record.seq });
    }
    walk.prev_prev = Some(std::mem::replace(&mut walk.prev, hash.clone()));
    walk.head = record.seq;
    None
}
