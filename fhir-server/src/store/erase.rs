//! Erasure of a patient (`Patient/{id}/$erase`, GDPR article 17): the Patient and every
//! resource that ever referenced it (every version of it: its history goes too), with
//! their search index rows and time claims, in one transaction, permanently. The audit
//! trail is kept (it is the record of who saw what, kept for legal retention); so are
//! resources that never named the patient (a Practitioner, a Schedule).
//!
//! "Ever referenced" is found in the stored versions themselves, not only in the index of
//! current ones: a resource deleted before the erasure still has versions that name the
//! patient.

use std::collections::BTreeMap;

use super::write::Tx;
use super::{INDEX_TABLES, Store, StoreError, TenantId};
use crate::search::sql::{Arg, Sql};

/// What was erased: versions removed, by type.
pub type Erased = BTreeMap<String, usize>;

/// The most res_ids or ids in one `IN (...)` list.
const CHUNK: usize = 500;

impl Store {
    /// Erases `Patient/{patient}` and everything that ever referenced it (see the module).
    pub async fn erase_patient(
        &self,
        tenant: TenantId,
        patient: &str,
    ) -> Result<Erased, StoreError> {
        let patient = patient.to_owned();
        match self {
            Store::Sqlite(s) => {
                // SQLite compares the body BLOB with the pattern as bytes.
                s.erase_patient(tenant, patient, "instr(body, CAST(? AS BLOB)) > 0")
                    .await
            }
            Store::Postgres(s) => {
                s.erase_patient(
                    tenant,
                    patient,
                    "position(convert_to(?, 'UTF8') in body) > 0",
                )
                .await
            }
        }
    }
}

/// Erases in the caller's transaction; `mentions` is the backend's test of a version's
/// body for the bound pattern.
pub(super) async fn erase<T: Tx>(
    tx: &mut T,
    patient: &str,
    mentions: &str,
) -> Result<Erased, StoreError> {
    let tenant = tx.tenant().get();
    let mut find = Sql::default();
    // Each resource with a version that names the patient, and how many versions it has
    // in all (its deletion, which names nobody, goes too).
    find.push(
        "SELECT v.type, v.id, (SELECT CAST(COUNT(*) AS TEXT) FROM resource_versions a \
         WHERE a.tid = v.tid AND a.type = v.type AND a.id = v.id) \
         FROM resource_versions v WHERE v.tid = ",
    );
    find.bind(Arg::Int(tenant));
    find.push(" AND v.type <> 'AuditEvent' AND ((v.type = 'Patient' AND v.id = ");
    find.bind(Arg::Text(patient.to_owned()));
    find.push(&format!(") OR {mentions}) GROUP BY v.tid, v.type, v.id"));
    // `Patient/p1"`: the end of a reference to p1, relative or absolute, not to p10.
    find.args.push(Arg::Text(format!("Patient/{patient}\"")));
    let found = tx.rows(find).await?;
    let mut erased = Erased::new();
    let mut targets: Vec<(String, String)> = Vec::new();
    for row in found {
        let mut cells = row.into_iter();
        let (Some(Some(resource_type)), Some(Some(id)), Some(Some(count))) =
            (cells.next(), cells.next(), cells.next())
        else {
            continue;
        };
        *erased.entry(resource_type.clone()).or_default() += count.parse::<usize>().unwrap_or(0);
        targets.push((resource_type, id));
    }
    for chunk in targets.chunks(CHUNK) {
        remove(tx, tenant, chunk).await?;
    }
    let mut claims = Sql::default();
    claims.push("DELETE FROM time_claims WHERE tid = ");
    claims.bind(Arg::Int(tenant));
    claims.push(" AND actor = ");
    claims.bind(Arg::Text(format!("Patient/{patient}")));
    tx.run(claims).await?;
    Ok(erased)
}

/// Removes these resources: index rows, heads, every version, their time claims.
async fn remove<T: Tx>(
    tx: &mut T,
    tenant: i64,
    targets: &[(String, String)],
) -> Result<(), StoreError> {
    let mut heads = Sql::default();
    heads.push("SELECT CAST(res_id AS TEXT) FROM resources WHERE tid = ");
    heads.bind(Arg::Int(tenant));
    heads.push(" AND (");
    for (n, (resource_type, id)) in targets.iter().enumerate() {
        if n > 0 {
            heads.push(" OR ");
        }
        heads.push("(type = ");
        heads.bind(Arg::Text(resource_type.clone()));
        heads.push(" AND id = ");
        heads.bind(Arg::Text(id.clone()));
        heads.push(")");
    }
    heads.push(")");
    let res_ids: Vec<i64> = tx
        .rows(heads)
        .await?
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .filter_map(|res_id| res_id.parse().ok())
        .collect();
    if !res_ids.is_empty() {
        let list = res_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        for table in INDEX_TABLES.iter().chain(&["resources"]) {
            let mut delete = Sql::default();
            delete.push(&format!("DELETE FROM {table} WHERE res_id IN ({list})"));
            tx.run(delete).await?;
        }
    }
    for (resource_type, id) in targets {
        let mut versions = Sql::default();
        versions.push("DELETE FROM resource_versions WHERE tid = ");
        versions.bind(Arg::Int(tenant));
        versions.push(" AND type = ");
        versions.bind(Arg::Text(resource_type.clone()));
        versions.push(" AND id = ");
        versions.bind(Arg::Text(id.clone()));
        tx.run(versions).await?;
        if resource_type == "Appointment" {
            let mut claims = Sql::default();
            claims.push("DELETE FROM time_claims WHERE tid = ");
            claims.bind(Arg::Int(tenant));
            claims.push(" AND holder = ");
            claims.bind(Arg::Text(id.clone()));
            tx.run(claims).await?;
        }
    }
    Ok(())
}
