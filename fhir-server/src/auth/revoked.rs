//! Revoked grants and tokens, as this process knows them: its own revocations at once,
//! every other process's from the database's revocation log, read every second
//! ([`follow`]). A token is checked against both sets on every request (two hash
//! look-ups), cached or not.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::now_seconds;
use crate::store::Store;

/// How often the revocation log is read.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Revoked {
    /// Grant ids and token ids (jti), each until it would have expired anyway.
    grants: RwLock<HashMap<String, i64>>,
    tokens: RwLock<HashMap<String, i64>>,
    /// The last log entry read.
    seen: AtomicI64,
    /// How many revocations are held: while none are, a request skips the look-ups.
    held: std::sync::atomic::AtomicUsize,
}

impl Revoked {
    /// Whether the token `jti` of `grant` was revoked.
    pub fn is_revoked(&self, jti: &str, grant: Option<&str>) -> bool {
        if self.held.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let token = self
            .tokens
            .read()
            .is_ok_and(|tokens| tokens.contains_key(jti));
        let grant = grant.is_some_and(|grant| {
            self.grants
                .read()
                .is_ok_and(|grants| grants.contains_key(grant))
        });
        token || grant
    }

    /// Notes a revocation (`grant` or `token`) until `expires_at`.
    pub fn note(&self, kind: &str, value: &str, expires_at: i64) {
        let set = if kind == "grant" {
            &self.grants
        } else {
            &self.tokens
        };
        if let Ok(mut set) = set.write() {
            // Counted before the entry shows, so a reader never skips one that is there.
            self.held.fetch_add(1, Ordering::SeqCst);
            if set.insert(value.to_owned(), expires_at).is_some() {
                self.held.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Reads the log past what was seen; forgets revocations whose tokens have expired.
    pub async fn catch_up(&self, store: &Store) {
        let seen = self.seen.load(Ordering::Relaxed);
        match store.revocations_after(seen).await {
            Ok(entries) => {
                for entry in &entries {
                    // The log does not keep expiry per row here: a revocation is kept as
                    // long as the longest-lived token could be.
                    let until = now_seconds() + smart_auth::token::ACCESS_LIFETIME;
                    self.note(&entry.kind, &entry.value, until);
                    self.seen.fetch_max(entry.seq, Ordering::Relaxed);
                }
            }
            Err(error) => tracing::warn!(?error, "cannot read the revocation log"),
        }
        let now = now_seconds();
        for set in [&self.grants, &self.tokens] {
            if let Ok(mut set) = set.write() {
                let before = set.len();
                set.retain(|_, until| *until > now);
                self.held.fetch_sub(before - set.len(), Ordering::SeqCst);
            }
        }
    }
}

/// Follows the revocation log for as long as the server runs, reads the registered
/// clients' origins every five seconds (for CORS), and now and then removes expired
/// codes, assertion ids and revocations from the database.
pub async fn follow(
    store: Store,
    revoked: std::sync::Arc<Revoked>,
    origins: std::sync::Arc<super::origins::RegisteredOrigins>,
) {
    let mut ticks: u64 = 0;
    loop {
        revoked.catch_up(&store).await;
        if ticks.is_multiple_of(5) {
            origins.refresh(&store).await;
        }
        if ticks.is_multiple_of(300)
            && let Err(error) = store.auth_purge_expired(now_seconds()).await
        {
            tracing::warn!(?error, "cannot remove expired authorization records");
        }
        ticks += 1;
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
