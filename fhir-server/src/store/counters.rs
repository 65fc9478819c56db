//! A tenant's counters (migration 0005): numbers that must never repeat, such as X12
//! interchange control numbers (ISA13) and derived patient control numbers.

use super::{Store, StoreError, TenantId};
use crate::search::sql::{Arg, Sql};

impl Store {
    /// The next value of the tenant's counter `name` (1 the first time), taken with one
    /// atomic upsert, so two servers on one database never get the same value.
    pub async fn next_counter(&self, tenant: TenantId, name: &str) -> Result<i64, StoreError> {
        let mut sql = Sql::default();
        sql.push("INSERT INTO counters (tid, name, value) VALUES (");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(", ");
        sql.bind_text(name);
        sql.push(
            ", 1) ON CONFLICT (tid, name) DO UPDATE SET value = counters.value + 1 \
             RETURNING CAST(value AS TEXT), name",
        );
        let rows = self.write_pairs(sql).await?;
        rows.first()
            .and_then(|(value, _)| value.parse().ok())
            .ok_or_else(|| StoreError::Database("the counter did not answer".into()))
    }
}
