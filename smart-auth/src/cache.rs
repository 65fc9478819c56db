//! Verified access tokens, remembered: checking an RS256 signature costs about as much as a
//! whole read by id, and a client sends the same token with every request. Entries are
//! keyed by a seeded hash of the token (the cache holds no usable token), live until the token's
//! `exp`, and go at once when their grant is revoked. The cache is bounded: when full,
//! expired entries go first, then the oldest half.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

struct Entry<T> {
    claims: Arc<T>,
    tail: Tail,
    exp: i64,
    grant: Option<String>,
    /// When it was added (an insertion count), to evict the oldest first.
    added: u64,
}

struct Inner<T> {
    entries: HashMap<u64, Entry<T>>,
    added: u64,
}

/// A bounded cache of verified tokens' claims (or what the server made of them).
pub struct TokenCache<T = Value> {
    capacity: usize,
    /// The seed of the keys, random per process.
    seed: foldhash::fast::RandomState,
    inner: Mutex<Inner<T>>,
}

/// A token's key in the cache: a 64-bit hash of the whole token under this process's
/// random seed (foldhash; the seed is never shown, so no one can aim a token at another's
/// entry). Any change to a token, one character of its signature or of its claims, gives
/// another key and so a fresh verification.
fn key(seed: &foldhash::fast::RandomState, token: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    seed.hash_one(token)
}

/// The end of a token's signature, kept in its entry and compared on a hit: a second check
/// against a (vanishingly unlikely) collision of keys. Not a usable token.
const TAIL_LENGTH: usize = 32;
type Tail = [u8; TAIL_LENGTH];

fn tail(bytes: &[u8]) -> Tail {
    let end = &bytes[bytes.len().saturating_sub(TAIL_LENGTH)..];
    let mut tail = [0u8; TAIL_LENGTH];
    tail[..end.len()].copy_from_slice(end);
    tail
}

impl<T> TokenCache<T> {
    pub fn new(capacity: usize) -> TokenCache<T> {
        TokenCache {
            capacity: capacity.max(1),
            seed: foldhash::fast::RandomState::default(),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                added: 0,
            }),
        }
    }

    /// The claims of `token` if it was verified and has not expired by `now`.
    /// The claims of `token` (the bytes of the header as sent: a hit needs no check that
    /// they are text), if verified and not expired at `now`.
    pub fn get(&self, token: impl AsRef<[u8]>, now: i64) -> Option<Arc<T>> {
        let token = token.as_ref();
        let key = key(&self.seed, token);
        let inner = self.inner.lock().ok()?;
        inner
            .entries
            .get(&key)
            .filter(|entry| entry.exp > now && entry.tail == tail(token))
            .map(|entry| entry.claims.clone())
    }

    /// Remembers a verified token's claims until `exp`; `grant` names what revoking
    /// removes it.
    pub fn insert(
        &self,
        token: impl AsRef<[u8]>,
        claims: T,
        exp: i64,
        grant: Option<String>,
        now: i64,
    ) {
        let token = token.as_ref();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.entries.len() >= self.capacity {
            inner.entries.retain(|_, entry| entry.exp > now);
        }
        if inner.entries.len() >= self.capacity {
            let mut ages: Vec<u64> = inner.entries.values().map(|e| e.added).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            inner.entries.retain(|_, entry| entry.added > cut);
        }
        inner.added += 1;
        let added = inner.added;
        inner.entries.insert(
            key(&self.seed, token),
            Entry {
                claims: Arc::new(claims),
                tail: tail(token),
                exp,
                grant,
                added,
            },
        );
    }

    /// Forgets every token of `grant` (it was revoked).
    pub fn revoke_grant(&self, grant: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .entries
                .retain(|_, entry| entry.grant.as_deref() != Some(grant));
        }
    }

    /// Forgets one token (it was revoked by itself).
    pub fn revoke_token(&self, token: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.remove(&key(&self.seed, token.as_bytes()));
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_token_is_remembered_until_it_expires() {
        let cache = TokenCache::new(10);
        cache.insert("t1", json!({"scope": "patient/*.rs"}), 100, None, 0);
        assert_eq!(cache.get("t1", 99).unwrap()["scope"], "patient/*.rs");
        assert!(cache.get("t1", 100).is_none());
        assert!(cache.get("t2", 0).is_none());
    }

    #[test]
    fn a_changed_token_is_not_found() {
        let cache = TokenCache::new(10);
        cache.insert("head.claims.signature", json!({}), 100, None, 0);
        assert!(cache.get("head.claims.signature", 0).is_some());
        assert!(cache.get("head.claimz.signature", 0).is_none());
        assert!(cache.get("head.claims.Signature", 0).is_none());
    }

    #[test]
    fn revoking_forgets_at_once() {
        let cache = TokenCache::new(10);
        cache.insert("a", json!({}), 100, Some("g1".into()), 0);
        cache.insert("b", json!({}), 100, Some("g1".into()), 0);
        cache.insert("c", json!({}), 100, Some("g2".into()), 0);
        cache.revoke_grant("g1");
        assert!(cache.get("a", 0).is_none());
        assert!(cache.get("b", 0).is_none());
        assert!(cache.get("c", 0).is_some());
        cache.revoke_token("c");
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let cache = TokenCache::new(100);
        for n in 0..1000 {
            cache.insert(format!("t{n}"), json!({}), 10_000, None, 0);
            assert!(cache.len() <= 100);
        }
        // The newest are kept.
        assert!(cache.get("t999", 0).is_some());
        // Expired entries go before live ones.
        let cache = TokenCache::new(2);
        cache.insert("old", json!({}), 5, None, 0);
        cache.insert("live", json!({}), 100, None, 0);
        cache.insert("new", json!({}), 100, None, 10);
        assert!(cache.get("live", 10).is_some());
        assert!(cache.get("new", 10).is_some());
    }
}
