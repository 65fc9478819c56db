//! The state every request shares: the store, the settings, and what is cached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;

use crate::auth::AuthState;
use crate::auth::proxies::Range;
use crate::config::ServeConfig;
use crate::error::FhirError;
use crate::store::{Store, TenantId};

/// Shared by all requests.
pub struct App {
    pub store: Store,
    pub config: ServeConfig,
    /// Signing keys, verified tokens and revocations.
    pub auth: AuthState,
    /// `--trusted-proxies`, parsed (checked when the server starts).
    pub trusted_proxies: Vec<Range>,
    /// The audit trail's recorder (started by `serve`).
    pub audit: Arc<crate::audit::Recorder>,
    /// `--rate-limit` and `--auth-rate-limit` (checked when the server starts).
    pub rate_limits: crate::auth::rate::Limits,
    /// Tenants known to exist, by name. Tenants are never removed, so a positive answer
    /// can be cached; an unknown name is looked up again each time (another server may
    /// create it).
    known_tenants: RwLock<HashMap<String, TenantId>>,
}

pub type SharedApp = Arc<App>;

impl App {
    pub fn new(store: Store, config: ServeConfig) -> SharedApp {
        let trusted_proxies =
            crate::auth::proxies::parse_all(&config.trusted_proxies).unwrap_or_default();
        let every = std::time::Duration::from_millis(config.audit_flush_ms.max(1));
        let audit = crate::audit::Recorder::new(store.clone(), config.audit, every);
        let rate = |text: &str| {
            crate::auth::rate::Limiter::new(
                crate::auth::rate::Rate::parse(text).unwrap_or_default(),
            )
        };
        let rate_limits = crate::auth::rate::Limits {
            api: rate(&config.rate_limit),
            auth: rate(&config.auth_rate_limit),
        };
        Arc::new(App {
            audit,
            rate_limits,
            store,
            config,
            auth: AuthState::default(),
            trusted_proxies,
            known_tenants: RwLock::new(HashMap::new()),
        })
    }

    /// The configured page sizes of search and history.
    pub fn page_limits(&self) -> crate::search::PageLimits {
        crate::search::PageLimits {
            default_count: self.config.default_count,
            max_count: self.config.max_count.max(1),
        }
    }

    /// The tenant named `name`, or 404 with an OperationOutcome when there is none.
    pub async fn tenant(&self, name: &str) -> Result<TenantId, FhirError> {
        let cached = self
            .known_tenants
            .read()
            .ok()
            .and_then(|known| known.get(name).copied());
        if let Some(tenant) = cached {
            return Ok(tenant);
        }
        if let Some(tenant) = self.store.tenant_id(name).await? {
            if let Ok(mut known) = self.known_tenants.write() {
                known.insert(name.to_owned(), tenant);
            }
            return Ok(tenant);
        }
        Err(FhirError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("Unknown tenant '{name}'"),
        ))
    }
}
