//! Writing resources out as NDJSON, one file per type: the work of a bulk export job
//! (`$export`) and of `fhir-server export`.
//!
//! Each type is read in pages of `PAGE` current resources in res_id order (a keyset, so a
//! page costs the same however far the export has gone) and each resource is written as
//! it is stored, one line each: memory stays flat whatever the size of the database.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::search::compartment::Patients;
use crate::store::{Store, StoreError, TenantId};

/// Resources read per page.
const PAGE: usize = 2000;

/// Which resources an export covers (Bulk Data: system, Patient or Group level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scope {
    /// Every resource.
    All,
    /// The patients (all, or those listed) and the resources in their compartments.
    Patients(Option<Vec<String>>),
}

/// One file written: the type, its path, and how many resources it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub file: String,
    pub count: usize,
}

/// The types an export writes when the client names none: every type the tenant has (all
/// resources), or the Patient compartment's types (patient and group exports).
pub async fn default_types(
    store: &Store,
    tenant: TenantId,
    scope: &Scope,
) -> Result<Vec<String>, StoreError> {
    if let Scope::Patients(_) = scope {
        let mut types: Vec<String> = fhir_model::compartment::patient_compartment()
            .keys()
            .cloned()
            .collect();
        types.sort();
        return Ok(types);
    }
    store.stored_types(tenant).await
}

/// Writes the resources of each type of `types` in `scope` (updated at or after `since`)
/// to `dir/<Type>.ndjson`. `progress` hears of each page written (type, resources so far
/// in it) and returns whether to go on; a stop leaves the files written so far. Types
/// without resources get no file.
pub async fn write_files(
    store: &Store,
    tenant: TenantId,
    scope: &Scope,
    types: &[String],
    since: Option<i64>,
    dir: &Path,
    mut progress: impl FnMut(&str, usize) -> bool + Send,
) -> Result<Vec<OutputFile>, String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut outputs = Vec::new();
    for resource_type in types {
        let path = dir.join(format!("{resource_type}.ndjson"));
        let count = write_type(
            store,
            tenant,
            scope,
            resource_type,
            since,
            &path,
            &mut progress,
        )
        .await?;
        match count {
            Some(0) => {
                let _ = tokio::fs::remove_file(&path).await;
            }
            Some(count) => outputs.push(OutputFile {
                resource_type: resource_type.clone(),
                file: file_name(&path),
                count,
            }),
            None => return Ok(outputs),
        }
    }
    Ok(outputs)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes one type's file; `None` when `progress` asked to stop.
async fn write_type(
    store: &Store,
    tenant: TenantId,
    scope: &Scope,
    resource_type: &str,
    since: Option<i64>,
    path: &PathBuf,
    progress: &mut (impl FnMut(&str, usize) -> bool + Send),
) -> Result<Option<usize>, String> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let (mut after, mut count) = (0, 0);
    loop {
        let patients = patients_of(scope);
        let rows = store
            .export_page(tenant, &patients, resource_type, since, (after, PAGE))
            .await
            .map_err(|e| format!("cannot read {resource_type}: {e:?}"))?;
        let Some(last) = rows.last().map(|r| r.res_id) else {
            break;
        };
        for row in &rows {
            if let Some(body) = &row.version.body {
                out.write_all(body)
                    .await
                    .and(out.write_all(b"\n").await)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                count += 1;
            }
        }
        after = last;
        if !progress(resource_type, count) {
            return Ok(None);
        }
        if rows.len() < PAGE {
            break;
        }
    }
    out.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Some(count))
}

/// The patients whose compartments the scope covers (every resource for `All`).
fn patients_of(scope: &Scope) -> Patients<'_> {
    match scope {
        Scope::All => Patients::All,
        Scope::Patients(ids) => Patients::Compartments(ids.as_deref()),
    }
}
