//! The audit trail above the store: the recorder that every request's record goes
//! through, their rendering as AuditEvents, and the check that the chain is whole
//! (`verify`). Records are sealed into the chain by the transaction that appends them
//! (`store::audit`).
//!
//! Writes are recorded by the store in the write's own transaction (`store::audit`).
//! Everything else (reads, searches, operations, refusals, sign-ins) is handed to the
//! [`Recorder`], which appends what has gathered every few milliseconds, in one
//! transaction per tenant: one commit for hundreds of reads. An answered read's record is
//! in memory until then; a normal shutdown flushes it ([`Recorder::stop`]); a `kill -9`
//! loses at most the last `--audit-flush-ms` (a second by default) of reads' records, never
//! a write's. Each append is a write, and on SQLite every write makes each read connection
//! drop its page cache: appending once a second rather than ten times costs reads less.

pub mod render;
pub mod retention;
pub mod verify;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::audit::Entry;
use crate::store::audit_batch::Batch;
use crate::store::{Store, TenantId};

/// Records gathered before a flush is started at once (a few MB: each flush's memory is
/// kept by the allocator for the next).
const FLUSH_AT: usize = 8_192;

/// Records held while the database cannot take them; past this, new ones are dropped
/// (and said so in the log), so that a dead database cannot take the server's memory.
const MAX_HELD: usize = 500_000;

/// Records gathered, each with its tenant, laid out as they are sealed (see
/// `store::audit_batch`: no record holds heap memory of its own until it is appended).
#[derive(Default)]
struct Gathered {
    tenants: Vec<TenantId>,
    records: Batch,
}

impl Gathered {
    fn with_capacity(capacity: usize) -> Gathered {
        Gathered {
            tenants: Vec::with_capacity(capacity),
            records: Batch::with_capacity(capacity),
        }
    }

    fn len(&self) -> usize {
        self.tenants.len()
    }

    /// The records by tenant, in the order gathered.
    fn by_tenant(&mut self) -> Vec<(TenantId, Batch)> {
        let first = self.tenants.first().copied();
        match first {
            None => Vec::new(),
            Some(only) if self.tenants.iter().all(|t| *t == only) => {
                self.tenants.clear();
                vec![(only, std::mem::take(&mut self.records))]
            }
            Some(_) => {
                let mut groups: Vec<(TenantId, Batch)> = Vec::new();
                for (n, tenant) in self.tenants.drain(..).enumerate() {
                    let at = match groups.iter().position(|(t, _)| *t == tenant) {
                        Some(at) => at,
                        None => {
                            groups.push((tenant, Batch::default()));
                            groups.len() - 1
                        }
                    };
                    groups[at].1.push_from(&self.records, n);
                }
                self.records.clear();
                groups
            }
        }
    }
}

/// Gathers records and appends them in batches.
pub struct Recorder {
    store: Store,
    enabled: bool,
    every: Duration,
    /// `--audit-retention-days` (in microseconds) and where the audit key is, when records
    /// are pruned (see `retention`).
    retention: std::sync::OnceLock<(i64, std::path::PathBuf)>,
    pending: Mutex<Gathered>,
    /// The buffers of the last flush, emptied, swapped in at the next: records gather
    /// into memory already touched (fresh megabytes each flush cost page faults).
    spare: Mutex<Gathered>,
    wake: Notify,
    /// Held by a flush, so that `stop` waits for one in flight.
    flushing: tokio::sync::Mutex<()>,
}

impl Recorder {
    /// A recorder for `store`; with `enabled` false it records nothing (the benchmark's
    /// "auditing off", never a production setting).
    pub fn new(store: Store, enabled: bool, every: Duration) -> Arc<Recorder> {
        Arc::new(Recorder {
            store,
            enabled,
            every,
            retention: std::sync::OnceLock::new(),
            pending: Mutex::new(Gathered::with_capacity(FLUSH_AT)),
            spare: Mutex::new(Gathered::with_capacity(FLUSH_AT)),
            wake: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Prunes records older than `days` (0: keeps them all), signing checkpoints with the
    /// key at `key_file` (made on first use).
    pub fn retain(&self, days: u64, key_file: std::path::PathBuf) {
        if days > 0 {
            let micros = i64::try_from(days).unwrap_or(i64::MAX / 86_400_000_000) * 86_400_000_000;
            let _ = self.retention.set((micros, key_file));
        }
    }

    /// Starts the flushing (and the pruning, every hour of the server's clock).
    pub fn start(self: &Arc<Self>) {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut pruned_at = i64::MIN;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(recorder.every) => {}
                    () = recorder.wake.notified() => {}
                }
                recorder.flush().await;
                let now = crate::clock::now_micros();
                if now.saturating_sub(pruned_at) >= retention::PRUNE_EVERY_MICROS {
                    pruned_at = now;
                    recorder.prune(now).await;
                }
            }
        });
    }

    async fn prune(&self, now: i64) {
        let Some((keep, key_file)) = self.retention.get() else {
            return;
        };
        let cutoff = now.saturating_sub(*keep);
        let prunable = match self.store.audit_tenants().await {
            Ok(tenants) => tenants,
            Err(_) => return,
        };
        if prunable.is_empty() {
            return;
        }
        let key = match retention::AuditKey::load_or_create(key_file) {
            Ok(key) => key,
            Err(error) => {
                tracing::error!(%error, "old audit records cannot be pruned without the audit key");
                return;
            }
        };
        match retention::prune(&self.store, &key, cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned audit records past their retention"),
            Err(error) => {
                tracing::warn!(?error, "pruning the audit trail failed; it will try again")
            }
        }
    }

    /// Gathers one record.
    pub fn record(&self, tenant: TenantId, entry: Entry) {
        if !self.enabled {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.len() >= MAX_HELD {
            tracing::error!("the audit trail cannot be written: a record was dropped");
            return;
        }
        pending.tenants.push(tenant);
        pending.records.push(&entry);
        if pending.len() == FLUSH_AT {
            self.wake.notify_one();
        }
    }

    /// Appends what has gathered; on failure keeps it for the next flush.
    pub async fn flush(&self) {
        let _flushing = self.flushing.lock().await;
        let Ok(mut taken) = self
            .spare
            .lock()
            .map(|mut spare| std::mem::take(&mut *spare))
        else {
            return;
        };
        match self.pending.lock() {
            Ok(mut pending) => std::mem::swap(&mut *pending, &mut taken),
            Err(_) => return,
        }
        let mut failed = Gathered::default();
        for (tenant, records) in taken.by_tenant() {
            let records = Arc::new(records);
            let appended = self.store.append_audit(tenant, records.clone()).await;
            // The store has let go of its share: the buffer comes back to be used again.
            let mut records = Arc::try_unwrap(records).unwrap_or_else(|shared| (*shared).clone());
            match appended {
                Ok(()) => {
                    records.clear();
                    if records.capacity() > taken.records.capacity() {
                        taken.records = records;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        ?error,
                        "audit records could not be appended; kept for the next try"
                    );
                    failed
                        .tenants
                        .extend(std::iter::repeat_n(tenant, records.len()));
                    failed.records.append(&mut records);
                }
            }
        }
        // Buffers that grew while the database could not take records go back to the
        // usual size rather than keep an outage's memory.
        if taken.records.is_larger_than(2 * FLUSH_AT) {
            taken = Gathered::with_capacity(FLUSH_AT);
        }
        if let Ok(mut spare) = self.spare.lock() {
            *spare = taken;
        }
        if failed.len() > 0
            && let Ok(mut pending) = self.pending.lock()
        {
            // Older records first, so that they keep their order in the trail.
            failed.tenants.append(&mut pending.tenants);
            failed.records.append(&mut pending.records);
            std::mem::swap(&mut *pending, &mut failed);
        }
    }

    /// Flushes what has gathered: a normal shutdown loses no record.
    pub async fn stop(&self) {
        self.flush().await;
    }
}
