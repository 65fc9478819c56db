//! Public keys the server fetches from elsewhere: the JWKS URL of a client that signs its
//! assertions (private_key_jwt) and the JWKS of an outside identity provider a tenant
//! trusts. A set is kept as long as its `Cache-Control` allows (see
//! `smart_auth::external::keep_for`), fetched by one request at a time per URL, and fetched
//! again early only for a key id it lacks (a provider that rotated its keys), at most once
//! every [`REFETCH_AFTER`] seconds: a stream of tokens with made-up key ids cannot make the
//! server hammer the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Request;
use axum::http::header::{ACCEPT, CACHE_CONTROL, USER_AGENT};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::clock::now_seconds;

/// The longest a fetch may take, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS accepted (a real one is a few kilobytes).
const MAX_BYTES: usize = 256 * 1024;
/// How soon a set may be fetched again for a key id it lacks, or after a failed fetch.
pub const REFETCH_AFTER: i64 = 30;
/// How many URLs are remembered (they come from registered clients and trusted
/// providers, so a handful; past this the memory starts over).
const MAX_URLS: usize = 1_000;

pub use crate::channels::http::is_fetchable;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The fetched sets, by URL.
#[derive(Default)]
pub struct JwksCache {
    /// Made at the first fetch: loading the system's roots costs milliseconds, which a
    /// server that never fetches a key should not pay at every start.
    http: std::sync::OnceLock<HttpClient>,
    sets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Fetched>>>>,
}

/// One URL's set and when it was last fetched.
#[derive(Default)]
struct Fetched {
    keys: Option<Arc<Value>>,
    keep_until: i64,
    /// When a fetch was last tried (successful or not).
    tried_at: Option<i64>,
    /// Why the last fetch failed, while its keys are missing.
    failure: Option<String>,
}

impl JwksCache {
    /// The set at `url`: the kept one while fresh, else fetched now.
    pub async fn keys(&self, url: &str) -> Result<Arc<Value>, String> {
        let entry = self.entry(url);
        let mut fetched = entry.lock().await;
        let now = now_seconds();
        if let Some(keys) = &fetched.keys
            && now < fetched.keep_until
        {
            return Ok(keys.clone());
        }
        self.fetch_into(&mut fetched, url, now).await
    }

    /// The set at `url` that should verify `token`: the kept one, or, when that lacks the
    /// key id the token names, the set fetched again (no sooner than [`REFETCH_AFTER`]
    /// seconds after the last fetch).
    pub async fn keys_for(&self, url: &str, token: &str) -> Result<Arc<Value>, String> {
        let keys = self.keys(url).await?;
        match smart_auth::jwt::unverified_kid(token) {
            Some(kid) if !smart_auth::jwt::jwks_has_kid(&keys, &kid) => {
                let entry = self.entry(url);
                let mut fetched = entry.lock().await;
                self.fetch_into(&mut fetched, url, now_seconds()).await
            }
            _ => Ok(keys),
        }
    }

    fn entry(&self, url: &str) -> Arc<tokio::sync::Mutex<Fetched>> {
        let mut sets = self
            .sets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if sets.len() >= MAX_URLS && !sets.contains_key(url) {
            sets.clear();
        }
        sets.entry(url.to_owned()).or_default().clone()
    }

    /// Fetches into `fetched`, unless a fetch was tried less than [`REFETCH_AFTER`] seconds
    /// ago: then what that fetch got (its keys, or its failure) stands.
    async fn fetch_into(
        &self,
        fetched: &mut Fetched,
        url: &str,
        now: i64,
    ) -> Result<Arc<Value>, String> {
        if fetched.tried_at.is_some_and(|at| now - at < REFETCH_AFTER) {
            return match (&fetched.keys, &fetched.failure) {
                (Some(keys), _) => Ok(keys.clone()),
                (None, failure) => Err(failure.clone().unwrap_or_default()),
            };
        }
        fetched.tried_at = Some(now);
        match self.fetch(url).await {
            Ok((keys, keep_for)) => {
                let keys = Arc::new(keys);
                fetched.keys = Some(keys.clone());
                fetched.keep_until = now.saturating_add(keep_for);
                fetched.failure = None;
                Ok(keys)
            }
            Err(reason) => {
                let reason = format!("the JWKS at {url} could not be fetched: {reason}");
                tracing::warn!(%reason);
                fetched.keys = None;
                fetched.failure = Some(reason.clone());
                Err(reason)
            }
        }
    }

    /// One GET of `url`: the set, and how many seconds it may be kept.
    async fn fetch(&self, url: &str) -> Result<(Value, i64), String> {
        if !is_fetchable(url) {
            return Err("only https URLs (or http to this machine) are fetched".into());
        }
        let request = Request::get(url)
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .header(USER_AGENT, "fhir-server")
            .body(Empty::<Bytes>::new())
            .map_err(|error| error.to_string())?;
        let body = tokio::time::timeout(FETCH_TIMEOUT, async {
            let http = self.http.get_or_init(|| {
                Client::builder(TokioExecutor::new()).build(crate::channels::http::connector())
            });
            let response = http
                .request(request)
                .await
                .map_err(|error| error.to_string())?;
            if !response.status().is_success() {
                return Err(format!("it answered {}", response.status()));
            }
            let keep_for = smart_auth::external::keep_for(
                response
                    .headers()
                    .get(CACHE_CONTROL)
                    .and_then(|value| value.to_str().ok()),
            );
            let body = Limited::new(response.into_body(), MAX_BYTES)
                .collect()
                .await
                .map_err(|_| format!("it is not readable or larger than {MAX_BYTES} bytes"))?
                .to_bytes();
            Ok((body, keep_for))
        })
        .await
        .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))??;
        let (body, keep_for) = body;
        let keys: Value = serde_json::from_slice(&body).map_err(|_| "it is not JSON".to_owned())?;
        if !keys["keys"].is_array() {
            return Err("it is not a JWKS (no \"keys\" array)".into());
        }
        Ok((keys, i64::try_from(keep_for).unwrap_or(i64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::is_fetchable;

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        assert!(is_fetchable("https://idp.example/keys"));
        assert!(is_fetchable("http://127.0.0.1:8080/jwks.json"));
        assert!(is_fetchable("http://localhost/jwks"));
        assert!(is_fetchable("http://[::1]:9/jwks"));
        assert!(!is_fetchable("http://idp.example/keys"));
        assert!(!is_fetchable("file:///etc/passwd"));
        assert!(!is_fetchable("ftp://idp.example/keys"));
        assert!(!is_fetchable("not a url"));
        assert!(!is_fetchable("/relative/jwks.json"));
    }
}
