//! Verified access tokens, remembered: checking an RS256 signature costs about as much as a
//! whole read by id, and a client sends the same token with every request. Entries are
//! keyed by the end of the token's signature (the cache holds no usable token), live until the token's
//! `exp`, and go at once when their grant is revoked. The cache is bounded: when full,
//! expired entries go first, then the oldest half.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

struct Entry<T> {
    claims: Arc<T>,
    exp: i64,
    grant: Option<String>,
    /// When it was added (an insertion count), to evict the oldest first.
    added: u64,
}

struct Inner<T> {
    entries: HashMap<Key, Entry<T>>,
    added: u64,
}

/// A bounded cache of verified tokens' claims (or what the server made of them).
pub struct TokenCache<T = Value> {
    capacity: usize,
    inner: Mutex<Inner<T>>,
}

/// How many of a token's last characters key it in the cache: 264 bits of its signature.
const KEY_LENGTH: usize = 44;

/// A JWT's key in the cache: its last [`KEY_LENGTH`] characters, the end of its signature,
/// which is not a usable token. A valid signature binds its header and claims and is
/// unpredictable, so no two verified tokens end alike; and a token whose claims were
/// altered under a copied signature can only find what the holder of the original already
/// had. No hash is computed and nothing is searched: the look-up costs next to nothing.
type Key = [u8; KEY_LENGTH];

fn key(token: &str) -> Key {
    let bytes = token.as_bytes();
    let tail = &bytes[bytes.len().saturating_sub(KEY_LENGTH)..];
    let mut key = [0u8; KEY_LENGTH];
    key[..tail.len()].copy_from_slice(tail);
    key
}

impl<T> TokenCache<T> {
    pub fn new(capacity: usize) -> TokenCache<T> {
        TokenCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                added: 0,
            }),
        }
    }

    /// The claims of `token` if it was verified and has not expired by `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<T>> {
        let inner = self.inner.lock().ok()?;
        inner
            .entries
            .get(&key(token))
            .filter(|entry| entry.exp > now)
            .map(|entry| entry.claims.clone())
    }

    /// Remembers a verified token's claims until `exp`; `grant` names what revoking
    /// removes it.
    pub fn insert(&self, token: &str, claims: T, exp: i64, grant: Option<String>, now: i64) {
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
            key(token),
            Entry {
                claims: Arc::new(claims),
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
            inner.entries.remove(&key(token));
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
            cache.insert(&format!("t{n}"), json!({}), 10_000, None, 0);
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
