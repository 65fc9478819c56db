//! The claims of what was stored before the store kept them (migration 0008 added
//! `time_claims` and `time_policies`; live writes keep them since): at start-up, once per
//! database, every current Schedule's policies and every current Appointment's claims
//! are written, so that an appointment booked before the upgrade blocks its time at once,
//! not only when it is next written.
//!
//! The backfill records what is there and refuses nothing: data already double-booked
//! stays as it was (the next write of either appointment is checked). An appointment that
//! already has claims was written by a live write since, and is left alone.

use std::collections::HashMap;

use super::claims::{delete_of, insert_claim, insert_policy};
use super::{Store, StoreError, TenantId};
use crate::index::claims::{self, Claim};
use crate::search::sql::{Arg, Sql};

/// The `store_meta` entry saying the backfill ran.
const CLAIMS_BUILT: &str = "time_claims_built";

/// What the walk found: Schedules with their policies, Appointments with their claims.
#[derive(Default)]
struct Found {
    schedules: Vec<(TenantId, String, Vec<claims::Policy>)>,
    appointments: Vec<(TenantId, String, Vec<Claim>)>,
}

impl Store {
    /// Writes the claims and policies of resources stored before they were kept, once.
    pub async fn ensure_claims_current(&self) -> Result<(), StoreError> {
        if self.meta(CLAIMS_BUILT).await?.is_some() {
            return Ok(());
        }
        let found = self.walk_for_claims().await?;
        let mut buffers: HashMap<(TenantId, &str), (i64, i64)> = HashMap::new();
        for (tenant, schedule, policies) in &found.schedules {
            self.execute(delete_of(
                tenant.get(),
                "time_policies",
                ("schedule", schedule),
            ))
            .await?;
            for policy in policies {
                self.execute(insert_policy(tenant.get(), schedule, policy))
                    .await?;
                let widest = buffers.entry((*tenant, &policy.actor)).or_default();
                *widest = (widest.0.max(policy.before), widest.1.max(policy.after));
            }
        }
        let mut written = 0usize;
        for (tenant, holder, claims) in &found.appointments {
            if self.has_claims(*tenant, holder).await? {
                continue;
            }
            for claim in claims {
                let (before, after) = match claims::is_slot(&claim.actor) {
                    true => (0, 0),
                    false => buffers
                        .get(&(*tenant, claim.actor.as_str()))
                        .copied()
                        .unwrap_or_default(),
                };
                let span = (claim.start - before, claim.end + after);
                self.execute(insert_claim(tenant.get(), holder, claim, span))
                    .await?;
            }
            written += 1;
        }
        if written > 0 {
            tracing::info!(
                appointments = written,
                "claims of earlier appointments written"
            );
        }
        self.set_meta(CLAIMS_BUILT, "1").await
    }

    /// Every current Schedule and every current Appointment that claims time.
    async fn walk_for_claims(&self) -> Result<Found, StoreError> {
        const BATCH: usize = 500;
        let now = crate::resource::now_micros();
        let (mut found, mut after) = (Found::default(), 0);
        loop {
            let stored = match self {
                Store::Sqlite(s) => s.current_after(after, BATCH).await?,
                Store::Postgres(s) => s.current_after(after, BATCH).await?,
            };
            let Some(last) = stored.last().map(|s| s.res_id) else {
                return Ok(found);
            };
            after = last;
            for s in stored {
                if !matches!(s.resource_type.as_str(), "Schedule" | "Appointment") {
                    continue;
                }
                let Ok(resource) = serde_json::from_slice::<serde_json::Value>(&s.body) else {
                    continue;
                };
                let id = resource["id"].as_str().unwrap_or_default().to_owned();
                if s.resource_type == "Schedule" {
                    let policies = claims::schedule_policies(&resource);
                    found.schedules.push((s.tenant, id, policies));
                    continue;
                }
                let claims = claims::appointment_claims(&resource, now);
                if !claims.is_empty() {
                    found.appointments.push((s.tenant, id, claims));
                }
            }
        }
    }

    async fn has_claims(&self, tenant: TenantId, holder: &str) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT COUNT(*) FROM time_claims WHERE tid = ");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(" AND holder = ");
        sql.bind_text(holder);
        Ok(self.select_count(sql).await? > 0)
    }
}
