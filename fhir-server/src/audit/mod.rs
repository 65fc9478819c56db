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
pub mod verify;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::audit::Entry;
use crate::store::{Store, TenantId};

/// Records gathered before a flush is started at once (about 10 MB).
const FLUSH_AT: usize = 32_768;

/// Records held while the database cannot take them; past this, new ones are dropped
/// (and said so in the log), so that a dead database cannot take the server's memory.
const MAX_HELD: usize = 500_000;

/// Gathers records and appends them in batches.
pub struct Recorder {
    store: Store,
    enabled: bool,
    every: Duration,
    pending: Mutex<Vec<(TenantId, Entry)>>,
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
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts the flushing.
    pub fn start(self: &Arc<Self>) {
        let recorder = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(recorder.every) => {}
                    () = recorder.wake.notified() => {}
                }
                recorder.flush().await;
            }
        });
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
        pending.push((tenant, entry));
        if pending.len() == FLUSH_AT {
            self.wake.notify_one();
        }
    }

    /// Appends what has gathered; on failure keeps it for the next flush.
    pub async fn flush(&self) {
        let _flushing = self.flushing.lock().await;
        let taken = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        let mut tenants: Vec<TenantId> = taken.iter().map(|(tenant, _)| *tenant).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let mut failed = Vec::new();
        let mut by_tenant = taken;
        for tenant in tenants {
            let (mine, rest): (Vec<_>, Vec<_>) =
                by_tenant.into_iter().partition(|(t, _)| *t == tenant);
            by_tenant = rest;
            let entries: Arc<[Entry]> = mine.into_iter().map(|(_, entry)| entry).collect();
            if let Err(error) = self.store.append_audit(tenant, entries.clone()).await {
                tracing::warn!(
                    ?error,
                    "audit records could not be appended; kept for the next try"
                );
                failed.extend(entries.iter().map(|entry| (tenant, entry.clone())));
            }
        }
        if !failed.is_empty()
            && let Ok(mut pending) = self.pending.lock()
        {
            failed.append(&mut pending);
            *pending = failed;
        }
    }

    /// Flushes what has gathered: a normal shutdown loses no record.
    pub async fn stop(&self) {
        self.flush().await;
    }
}
