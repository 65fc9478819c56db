//! The SQL of a patient's compartment and of bulk export pages: which resources point at a
//! patient, what they reference, and a type's resources page by page. Planned here, beside
//! the other search SQL, and run by the store; `$everything` and the export jobs build none
//! of their own.

use super::sql::{self, Arg, Sql};
use crate::ids::TenantId;

/// The index keys of the Patient compartment's parameters of the types `wanted` keeps.
pub fn compartment_keys(wanted: &impl Fn(&str) -> bool) -> Vec<i64> {
    fhir_model::compartment::patient_compartment()
        .iter()
        .filter(|(resource_type, _)| wanted(resource_type))
        .flat_map(|(resource_type, params)| {
            params
                .iter()
                .map(|param| crate::index::slot(resource_type, param).0)
        })
        .collect()
}

/// The res_ids of the resources that point at `Patient/{id}` through one of `keys`.
pub fn members(tenant: TenantId, keys: &[i64], id: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT DISTINCT x.res_id FROM idx_reference x WHERE x.tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(" AND x.key IN (");
    push_list(&mut sql, keys.iter().map(|k| Arg::Int(*k)));
    sql.push(") AND x.target_id = ");
    sql.bind_text(id);
    sql.push(" AND x.target_type = 'Patient'");
    sql
}

/// The (type, id) pairs of the `targets` types that the resources `res_ids` reference.
pub fn referenced(res_ids: &[i64], targets: &[&str]) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE x.res_id IN (");
    push_list(&mut sql, res_ids.iter().map(|r| Arg::Int(*r)));
    sql.push(") AND x.target_id <> '' AND x.target_type IN (");
    push_list(&mut sql, targets.iter().map(|t| Arg::Text((*t).to_owned())));
    sql.push(")");
    sql
}

/// The res_ids and last-updated times of the resources `res_ids`.
pub fn last_updated(res_ids: &[i64]) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT res_id, last_updated FROM resources WHERE res_id IN (");
    push_list(&mut sql, res_ids.iter().map(|r| Arg::Int(*r)));
    sql.push(")");
    sql
}

/// The types of a tenant's current resources (each twice: a pair query).
pub fn types(tenant: TenantId) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT DISTINCT type, type FROM resources WHERE tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(" AND deleted = 0");
    sql
}

/// Which patients an export page is limited to: none (every resource), or the
/// compartments of these patients (`None`: of every patient).
pub enum Patients<'a> {
    All,
    Compartments(Option<&'a [String]>),
}

/// The next `page` resources of a type (updated at or after `since`), after res_id `after`.
pub fn export_page(
    tenant: TenantId,
    patients: &Patients<'_>,
    resource_type: &str,
    since: Option<i64>,
    (after, page): (i64, usize),
) -> Sql {
    let mut sql = sql::current_page(tenant, resource_type, after);
    if let Some(since) = since {
        sql.push(" AND q.last_updated >= ");
        sql.bind(Arg::Int(since));
    }
    match patients {
        Patients::All => {}
        Patients::Compartments(ids) if resource_type == "Patient" => {
            if let Some(ids) = ids {
                sql.push(" AND q.id IN (");
                push_list(&mut sql, ids.iter().map(|id| Arg::Text(id.clone())));
                sql.push(")");
            }
        }
        Patients::Compartments(ids) => push_in_compartments(&mut sql, tenant, resource_type, *ids),
    }
    sql.push(" ORDER BY q.res_id LIMIT ");
    sql.bind(Arg::Int(page as i64));
    sql
}

/// `AND q.res_id IN (resources in some (listed) patient's compartment)`.
fn push_in_compartments(
    sql: &mut Sql,
    tenant: TenantId,
    resource_type: &str,
    ids: Option<&[String]>,
) {
    let keys: Vec<Arg> = fhir_model::compartment::patient_compartment_params(resource_type)
        .iter()
        .map(|param| Arg::Int(crate::index::slot(resource_type, param).0))
        .collect();
    sql.push(" AND q.res_id IN (SELECT x.res_id FROM idx_reference x WHERE x.tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(" AND x.key IN (");
    push_list(sql, keys.into_iter());
    sql.push(") AND x.target_type = 'Patient'");
    if let Some(ids) = ids {
        sql.push(" AND x.target_id IN (");
        push_list(sql, ids.iter().map(|id| Arg::Text(id.clone())));
        sql.push(")");
    }
    sql.push(")");
}

/// The items of an `IN (...)` list; `NULL` (which matches nothing) for none, as an empty
/// list is not SQL PostgreSQL accepts (a Group without Patient members).
fn push_list(sql: &mut Sql, values: impl Iterator<Item = Arg>) {
    let mut empty = true;
    for (i, value) in values.enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(value);
        empty = false;
    }
    if empty {
        sql.push("NULL");
    }
}
