//! The state every request shares: the store, the settings, and what is cached.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;

use crate::config::ServeConfig;
use crate::error::FhirError;
use crate::store::Store;

/// Shared by all requests.
pub struct App {
    pub store: Store,
    pub config: ServeConfig,
    /// Tenants known to exist. Tenants are never removed, so a positive answer can be
    /// cached; an unknown id is looked up again each time (another server may create it).
    known_tenants: RwLock<HashSet<String>>,
    /// The CapabilityStatement, built once: what the server supports does not change while
    /// it runs.
    pub capabilities: serde_json::Value,
}

pub type SharedApp = Arc<App>;

impl App {
    pub fn new(store: Store, config: ServeConfig) -> SharedApp {
        Arc::new(App {
            store,
            config,
            known_tenants: RwLock::new(HashSet::from(["default".to_owned()])),
            capabilities: crate::interaction::capabilities::statement(),
        })
    }

    /// The configured page sizes of search and history.
    pub fn page_limits(&self) -> crate::search::PageLimits {
        crate::search::PageLimits {
            default_count: self.config.default_count,
            max_count: self.config.max_count.max(1),
        }
    }

    /// Ok if the tenant exists, else 404 with an OperationOutcome.
    pub async fn check_tenant(&self, tenant: &str) -> Result<(), FhirError> {
        if self
            .known_tenants
            .read()
            .map(|known| known.contains(tenant))
            .unwrap_or(false)
        {
            return Ok(());
        }
        if self.store.tenant_exists(tenant).await? {
            if let Ok(mut known) = self.known_tenants.write() {
                known.insert(tenant.to_owned());
            }
            return Ok(());
        }
        Err(FhirError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("Unknown tenant '{tenant}'"),
        ))
    }
}
