//! Typed reads for `$everything` and the bulk export jobs: a patient's compartment, what
//! its members reference, and a type's resources page by page. The SQL is planned in
//! `search::compartment` and run here, so the operations and jobs above write none.

use super::{Row, Store, StoreError};
use crate::ids::TenantId;
use crate::search::compartment::{self, Patients};
use crate::search::cursor::KeyValue;
use crate::search::sql::{self, KeyKind};

impl Store {
    /// The current resources with these res_ids, in no particular order.
    pub async fn current_by_res_ids(&self, res_ids: &[i64]) -> Result<Vec<Row>, StoreError> {
        // An empty `IN ()` list is not SQL PostgreSQL accepts; nothing to read anyway.
        if res_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.select_rows(sql::fetch_by_res_ids(res_ids), Vec::new())
            .await
    }

    /// The current resources of one type with these ids.
    pub async fn current_by_ids(
        &self,
        tenant: TenantId,
        resource_type: &str,
        ids: &[String],
    ) -> Result<Vec<Row>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.select_rows(sql::fetch_by_ids(tenant, resource_type, ids), Vec::new())
            .await
    }

    /// The res_ids of the resources that point at `Patient/{patient}` through one of the
    /// compartment parameter keys `keys` (see `search::compartment::compartment_keys`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn compartment_members(
        &self,
        tenant: TenantId,
        keys: &[i64],
        patient: &str,
    ) -> Result<Vec<i64>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .select_keys(compartment::members(tenant, keys, patient), Vec::new())
            .await?;
        Ok(rows.into_iter().map(|(res_id, _)| res_id).collect())
    }

    /// The (type, id) of the resources of the `targets` types that `res_ids` reference.
    pub async fn referenced_targets(
        &self,
        res_ids: &[i64],
        targets: &[&str],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if res_ids.is_empty() || targets.is_empty() {
            return Ok(Vec::new());
        }
        self.select_pairs(compartment::referenced(res_ids, targets))
            .await
    }

    /// Each of `res_ids` with the time it was last updated (microseconds).
    pub async fn last_updated_of(&self, res_ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        if res_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .select_keys(compartment::last_updated(res_ids), vec![KeyKind::Int])
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(res_id, keys)| match keys.first() {
                Some(KeyValue::Int(time)) => Some((res_id, *time)),
                _ => None,
            })
            .collect())
    }

    /// The types a tenant has current resources of, sorted.
    pub async fn stored_types(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
        let mut types: Vec<String> = self
            .select_pairs(compartment::types(tenant))
            .await?
            .into_iter()
            .map(|(resource_type, _)| resource_type)
            .collect();
        types.sort();
        Ok(types)
    }

    /// The next `page` current resources of a type in `patients` (updated at or after
    /// `since`), after res_id `after`, in res_id order.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn export_page(
        &self,
        tenant: TenantId,
        patients: &Patients<'_>,
        resource_type: &str,
        since: Option<i64>,
        (after, page): (i64, usize),
    ) -> Result<Vec<Row>, StoreError> {
        let sql = compartment::export_page(tenant, patients, resource_type, since, (after, page));
        self.select_rows(sql, Vec::new()).await
    }
}
