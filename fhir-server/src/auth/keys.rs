//! The server's signing keys, as every process sees them: loaded from the database (made
//! there on first start), the newest signing, the retired ones still listed in the JWKS
//! (and still verifying) until their last tokens have expired. `keys rotate` adds a key
//! in another process; each server reloads the keys when a token names a kid it does not
//! know, and every minute.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use smart_auth::jwt::SigningKey;

use crate::clock::now_seconds;
use crate::error::FhirError;
use crate::store::Store;
use crate::store::auth::StoredKey;

/// How long a retired key is kept: the longest a token it signed can live, and a margin.
pub const RETIRED_KEY_KEPT_SECONDS: i64 = smart_auth::token::ACCESS_LIFETIME + 300;

/// How often the keys are read again, in seconds.
const RELOAD_SECONDS: i64 = 60;

struct Loaded {
    /// Newest first; the first signs.
    keys: Arc<Vec<SigningKey>>,
    at: i64,
}

pub struct KeyRing {
    loaded: RwLock<Option<Loaded>>,
    /// Serialises loading, so that a burst of requests on a fresh server makes one key.
    loading: tokio::sync::Mutex<()>,
}

impl Default for KeyRing {
    fn default() -> Self {
        KeyRing {
            loaded: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }
}

impl KeyRing {
    /// The keys, newest first, loaded (or made) when not yet loaded or stale.
    pub async fn keys(&self, store: &Store) -> Result<Arc<Vec<SigningKey>>, FhirError> {
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        self.reload(store).await
    }

    /// The keys, read again from the database now (a token named an unknown kid).
    pub async fn reload(&self, store: &Store) -> Result<Arc<Vec<SigningKey>>, FhirError> {
        let _loading = self.loading.lock().await;
        let mut stored = store.signing_keys().await?;
        if stored.iter().all(|key| key.retired_at.is_some()) {
            add_key(store).await?;
            stored = store.signing_keys().await?;
        }
        let keys: Vec<SigningKey> = stored
            .iter()
            .filter_map(|key| {
                let der = STANDARD.decode(&key.private_der).ok()?;
                SigningKey::from_pkcs1_der(&der).ok()
            })
            .collect();
        if keys.is_empty() {
            return Err(FhirError::internal("no usable signing key"));
        }
        let keys = Arc::new(keys);
        if let Ok(mut loaded) = self.loaded.write() {
            *loaded = Some(Loaded {
                keys: keys.clone(),
                at: now_seconds(),
            });
        }
        Ok(keys)
    }

    fn fresh(&self) -> Option<Arc<Vec<SigningKey>>> {
        let loaded = self.loaded.read().ok()?;
        let loaded = loaded.as_ref()?;
        (now_seconds() < loaded.at + RELOAD_SECONDS).then(|| loaded.keys.clone())
    }
}

/// Makes a key and stores it (several processes starting at once may each add one; the
/// newest signs, and all verify).
pub async fn add_key(store: &Store) -> Result<String, FhirError> {
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| FhirError::internal(e.to_string()))?
        .map_err(FhirError::internal)?;
    store
        .add_signing_key(&StoredKey {
            kid: key.kid.clone(),
            private_der: STANDARD.encode(key.pkcs1_der()),
            created_at: now_seconds(),
            retired_at: None,
        })
        .await?;
    Ok(key.kid)
}

/// `keys rotate`: a new key signs from now on; the others are retired, and those retired
/// long enough ago that their tokens have expired are removed.
pub async fn rotate(store: &Store) -> Result<String, FhirError> {
    let kid = add_key(store).await?;
    let now = now_seconds();
    store.retire_signing_keys_but(&kid, now).await?;
    store
        .drop_signing_keys_retired_before(now - RETIRED_KEY_KEPT_SECONDS)
        .await?;
    Ok(kid)
}
