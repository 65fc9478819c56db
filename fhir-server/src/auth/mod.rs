//! Authorization on the resource server's side: who is asking (the [`principal`] of a
//! bearer token), what they may do ([`enforce`]), and the state behind it: signing keys,
//! verified tokens, revocations, the tenant's clients, users and roles ([`accounts`]), and
//! the outside identity providers it trusts ([`issuers`]). The protocol rules themselves are the `smart-auth` crate's; the
//! endpoints that issue tokens are in `http::auth`.

pub mod accounts;
pub mod constraint;
pub mod enforce;
pub mod issuers;
pub mod jwks;
pub mod keys;
pub mod messages;
pub mod origins;
pub mod principal;
pub mod proxies;
pub mod rate;
pub mod registry;
pub mod revoked;

use std::sync::Arc;

use smart_auth::cache::TokenCache;

pub use principal::Principal;

/// How many verified tokens are remembered.
const CACHED_TOKENS: usize = 100_000;

/// The authorization state every request shares.
pub struct AuthState {
    pub keys: keys::KeyRing,
    pub cache: TokenCache<Principal>,
    pub revoked: Arc<revoked::Revoked>,
    pub origins: Arc<origins::RegisteredOrigins>,
    /// The JWKS fetched from clients' JWKS URLs and trusted identity providers.
    pub jwks: jwks::JwksCache,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            keys: keys::KeyRing::default(),
            cache: TokenCache::new(CACHED_TOKENS),
            revoked: Arc::new(revoked::Revoked::default()),
            origins: Arc::new(origins::RegisteredOrigins::default()),
            jwks: jwks::JwksCache::default(),
        }
    }
}
