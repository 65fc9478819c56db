//! The browser origins of the registered clients' redirect URIs: SMART asks that a
//! browser app may call the token endpoint and the API from its own origin, so these are
//! allowed by CORS beside the configured `--cors-origins`. Read from the database when the
//! server starts and every few seconds after (a client registered by another process, or
//! by the command line, is let in within that time), and at once when this process
//! registers one.

use std::collections::HashSet;
use std::sync::RwLock;

use super::accounts::{Client, origin_of};
use crate::store::Store;
use crate::store::auth::RecordKind;

#[derive(Default)]
pub struct RegisteredOrigins {
    origins: RwLock<HashSet<String>>,
}

impl RegisteredOrigins {
    /// Whether `origin` (as a browser sends it) is a registered client's.
    pub fn contains(&self, origin: &str) -> bool {
        self.origins
            .read()
            .is_ok_and(|origins| origins.contains(origin))
    }

    /// Reads the clients of every tenant again.
    pub async fn refresh(&self, store: &Store) {
        let rows = match store.auth_list_every_tenant(RecordKind::Client).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(?error, "cannot read the registered clients for CORS");
                return;
            }
        };
        let origins: HashSet<String> = rows
            .iter()
            .filter_map(|(_, body)| serde_json::from_str::<Client>(body).ok())
            .flat_map(|client| {
                client
                    .redirect_uris
                    .iter()
                    .filter_map(|uri| origin_of(uri))
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Ok(mut known) = self.origins.write() {
            *known = origins;
        }
    }
}
