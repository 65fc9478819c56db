//! One tenant's rows, read out in one snapshot and written into another database in one
//! transaction (`fhir-server tenant export` / `tenant import`, which own the files).
//!
//! What moves: every version of every resource (the heads and the search index are rebuilt
//! from them), the accounts and other records of the authorization server, counters, the
//! scheduling claims and policies, the jobs still waiting (reminders, offers; not bulk
//! exports, whose files stay behind; their states are made to name the new tenant's
//! number), and the audit trail as it was sealed, with its checkpoint. The trail keeps
//! verifying on the new server: its records are sealed with the tenant's number on the
//! server where they were written, which the new server keeps as the tenant's `chain`
//! (migration 0011); a checkpoint is signed again with the new server's audit key (the
//! caller's `resign`).

use super::audit::{Checkpoint, Numbering};
use super::write::{NewVersion, Tx};
use super::{Method, Store, StoreError, TenantId};
use crate::error::FhirError;
use crate::search::sql::{Arg, Sql};

/// How a column's value travels (the rows themselves are text cells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    /// Text holding JSON (an account, a job's state).
    Json,
    /// A version's stored JSON (a BLOB or BYTEA).
    Body,
    /// The number the trail is sealed with (`COALESCE(chain, tid)`).
    Chain,
}

/// A table whose rows of one tenant move, with the columns that move (never `tid`).
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// More conditions on the rows that move (after `tid = ?`).
    only: &'static str,
    order: &'static str,
}

use Kind::{Body, Chain, Int, Json, Text};

/// The tables, in the order they are written and read back.
pub const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        columns: &[("name", Text), ("created_at", Int)],
        only: "",
        order: "tid",
    },
    Table {
        name: "resource_versions",
        columns: &[
            ("type", Text),
            ("id", Text),
            ("version", Int),
            ("last_updated", Int),
            ("method", Text),
            ("body", Body),
        ],
        only: "",
        order: "type, id, version",
    },
    Table {
        name: "auth_records",
        columns: &[
            ("kind", Text),
            ("key", Text),
            ("body", Json),
            ("expires_at", Int),
            ("used", Int),
        ],
        only: "",
        order: "kind, key",
    },
    Table {
        name: "counters",
        columns: &[("name", Text), ("value", Int)],
        only: "",
        order: "name",
    },
    Table {
        name: "time_policies",
        columns: &[
            ("schedule", Text),
            ("actor", Text),
            ("before_us", Int),
            ("after_us", Int),
            ("capacity", Int),
        ],
        only: "",
        order: "schedule, actor",
    },
    Table {
        name: "time_claims",
        columns: &[
            ("holder", Text),
            ("actor", Text),
            ("start_us", Int),
            ("end_us", Int),
            ("expires_us", Int),
        ],
        only: "",
        order: "holder, actor, start_us",
    },
    // Waiting work; a running job is queued again on the new server.
    Table {
        name: "jobs",
        columns: &[
            ("kind", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("expires_at", Int),
            ("run_at", Int),
            ("state", Json),
        ],
        only: " AND status IN ('queued', 'running') AND kind <> 'export'",
        order: "created_at, id",
    },
    Table {
        name: "audit_sequence",
        columns: &[("last", Int), ("hash", Text), ("chain", Chain)],
        only: "",
        order: "tid",
    },
    Table {
        name: "audit_checkpoint",
        columns: &[
            ("seq", Int),
            ("hash", Text),
            ("recorded", Int),
            ("signature", Text),
        ],
        only: "",
        order: "seq",
    },
    // In the order of `store::audit::COLUMNS` after its tid (see `audit::record_of`).
    Table {
        name: "audit_log",
        columns: &[
            ("seq", Int),
            ("recorded", Int),
            ("event", Text),
            ("action", Text),
            ("status", Int),
            ("user_id", Text),
            ("fhir_user", Text),
            ("client_id", Text),
            ("token", Text),
            ("address", Text),
            ("user_agent", Text),
            ("entity", Text),
            ("query", Text),
            ("via", Text),
            ("patients", Text),
            ("request_id", Text),
            ("purpose", Text),
            ("reason", Text),
            ("prev", Text),
            ("hash", Text),
        ],
        only: "",
        order: "seq",
    },
    Table {
        name: "audit_patient",
        columns: &[
            ("epoch", Int),
            ("patient", Text),
            ("seq", Int),
            ("earlier", Text),
        ],
        only: "",
        order: "epoch, patient, seq",
    },
];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// A row: its table, and its cells in the table's column order.
pub type Row = (&'static Table, Vec<Option<String>>);

/// Where an export's rows go, one at a time.
pub type Sink = Box<dyn FnMut(&'static Table, Vec<Option<String>>) -> Result<(), String> + Send>;

/// Where an import's rows come from, table after table in [`TABLES`] order.
pub type Source = Box<dyn Iterator<Item = Result<Row, String>> + Send>;

/// What an import needs besides the rows: the current version's validation, and the
/// signature of a checkpoint with the new server's audit key.
pub struct Checks {
    pub validate: fn(&serde_json::Value, &str) -> Result<(), String>,
    pub resign: Resign,
}

/// Signs a checkpoint of the tenant's trail (`audit::retention::AuditKey::sign`).
pub type Resign = Box<dyn Fn(TenantId, &Checkpoint) -> String + Send + Sync>;

/// The query that reads one table's rows of `tenant`, each column as text; `body`, the
/// backend's expression of the body BLOB as text.
pub(super) fn select(table: &Table, tenant: TenantId, body: &str, numbering: Numbering) -> Sql {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|(name, kind)| match kind {
            Int => format!("CAST({name} AS TEXT)"),
            Text | Json => (*name).to_owned(),
            Body => body.to_owned(),
            Chain => format!("CAST(COALESCE({name}, tid) AS TEXT)"),
        })
        .collect();
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {} FROM {} WHERE ",
        columns.join(", "),
        table.name
    ));
    if table.name == "audit_log" {
        // By its key's range: SQLite's trail has no index on its tid.
        numbering.push_range(&mut sql, tenant, None, None);
        sql.push(&format!(" ORDER BY {}", numbering.order()));
        return sql;
    }
    sql.push("tid = ");
    sql.bind(Arg::Int(tenant.get()));
    // Qualified: PostgreSQL names a `CAST(seq AS TEXT)` column `seq`, and would order by
    // that text.
    let order: Vec<String> = table
        .order
        .split(", ")
        .map(|column| format!("{}.{column}", table.name))
        .collect();
    sql.push(&format!("{} ORDER BY {}", table.only, order.join(", ")));
    sql
}

impl Store {
    /// Reads every row of `tenant` that moves, in one snapshot, into `sink`.
    pub async fn export_tenant(&self, tenant: TenantId, sink: Sink) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.export_tenant(tenant, sink).await,
            Store::Postgres(s) => s.export_tenant(tenant, sink).await,
        }
    }

    /// Writes the rows of an exported tenant as tenant `name`, in one transaction: all of
    /// them or, on the first bad row, none. The tenant must be new or hold nothing.
    pub async fn import_tenant(
        &self,
        name: &str,
        rows: Source,
        checks: Checks,
    ) -> Result<TenantId, StoreError> {
        match self {
            Store::Sqlite(s) => s.import_tenant(name.to_owned(), rows, checks).await,
            Store::Postgres(s) => s.import_tenant(name, rows, checks).await,
        }
    }
}

/// Rows of one table sent together.
const CHUNK: usize = 200;

fn refused(detail: impl Into<String>) -> StoreError {
    StoreError::Rejected(FhirError::bad_request(detail))
}

/// Writes the rows into the caller's transaction, whose tenant must hold nothing yet.
pub(super) async fn import<T: Tx>(
    tx: &mut T,
    rows: Source,
    checks: &Checks,
) -> Result<(), StoreError> {
    refuse_unless_empty(tx).await?;
    let mut batch: Vec<Vec<Option<String>>> = Vec::new();
    let mut batch_table: Option<&'static Table> = None;
    let mut resource: Vec<Vec<Option<String>>> = Vec::new();
    for row in rows {
        let (table, cells) = row.map_err(refused)?;
        if cells.len() != table.columns.len() {
            return Err(refused(format!(
                "{}: a row of {} values where there are {} columns",
                table.name,
                cells.len(),
                table.columns.len()
            )));
        }
        if table.name == "resource_versions" {
            let same = |other: &Vec<Option<String>>| other[..2] == cells[..2];
            if resource.first().is_some_and(|first| !same(first)) {
                put_resource(tx, &std::mem::take(&mut resource), checks).await?;
            }
            resource.push(cells);
            continue;
        }
        if batch_table.is_some_and(|t| t.name != table.name) || batch.len() == CHUNK {
            insert_rows(tx, batch_table, &std::mem::take(&mut batch), checks).await?;
        }
        batch_table = Some(table);
        batch.push(cells);
    }
    if !resource.is_empty() {
        put_resource(tx, &resource, checks).await?;
    }
    insert_rows(tx, batch_table, &batch, checks).await
}

/// Refuses a tenant that holds anything already.
async fn refuse_unless_empty<T: Tx>(tx: &mut T) -> Result<(), StoreError> {
    let tenant = tx.tenant().get();
    // Not `audit_log`, which SQLite has no index of tids for: a tenant with records has
    // its `audit_sequence` row.
    let checked = |t: &&Table| t.name != "tenants" && t.name != "audit_log";
    for table in TABLES.iter().filter(checked) {
        let mut sql = Sql::default();
        sql.push(&format!("SELECT 'found' FROM {} WHERE tid = ", table.name));
        sql.bind(Arg::Int(tenant));
        sql.push(" LIMIT 1");
        if !tx.rows(sql).await?.is_empty() {
            return Err(StoreError::Rejected(FhirError::conflict(format!(
                "the tenant is not empty (it has {}): import into a new tenant",
                table.name
            ))));
        }
    }
    Ok(())
}

/// Stores every version of one resource, oldest first; the last one indexed.
async fn put_resource<T: Tx>(
    tx: &mut T,
    versions: &[Vec<Option<String>>],
    checks: &Checks,
) -> Result<(), StoreError> {
    let (resource_type, id) = match &versions[0][..2] {
        [Some(t), Some(i)] => (t.as_str(), i.as_str()),
        _ => return Err(refused("resource_versions: a version without type or id")),
    };
    if crate::ids::ResourceType::parse(resource_type).is_none() || !crate::ids::is_valid_id(id) {
        return Err(refused(format!(
            "resource_versions: not a resource: {resource_type}/{id}"
        )));
    }
    let mut head = None;
    for (expected, (n, cells)) in (1..).zip(versions.iter().enumerate()) {
        let name = format!("{resource_type}/{id}");
        let int = |cell: &Option<String>| cell.as_deref().and_then(|c| c.parse::<i64>().ok());
        let (Some(version), Some(last_updated), Some(method)) =
            (int(&cells[2]), int(&cells[3]), cells[4].as_deref())
        else {
            return Err(refused(format!(
                "{name}: a version without its number or time"
            )));
        };
        if version != expected {
            return Err(refused(format!(
                "{name}: version {version} where {expected} was due"
            )));
        }
        let method = match method {
            "POST" | "PUT" | "PATCH" | "DELETE" => Method::parse(method),
            other => return Err(refused(format!("{name}: unknown method '{other}'"))),
        };
        let body = cells[5].as_deref().map(str::as_bytes);
        let last = n + 1 == versions.len();
        let index = match body {
            Some(body) => Some(check_body(body, (resource_type, id), last, checks)?),
            None => None,
        };
        tx.put(NewVersion {
            resource_type,
            id,
            version,
            last_updated,
            method,
            body,
            index: index.as_ref().and_then(Option::as_ref),
            head,
        })
        .await?;
        if head.is_none() && !last {
            head = tx.head(resource_type, id).await?;
        }
    }
    Ok(())
}

/// Checks a version's body is the resource it is filed as (and, for the current one,
/// valid); the current one's index rows.
fn check_body(
    body: &[u8],
    (resource_type, id): (&str, &str),
    current: bool,
    checks: &Checks,
) -> Result<Option<crate::index::IndexRows>, StoreError> {
    let name = format!("{resource_type}/{id}");
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| refused(format!("{name}: the stored JSON does not parse: {e}")))?;
    if value["resourceType"] != resource_type || value["id"] != id {
        return Err(refused(format!(
            "{name}: the stored JSON is another resource"
        )));
    }
    if !current {
        return Ok(None);
    }
    (checks.validate)(&value, resource_type).map_err(|e| refused(format!("{name}: {e}")))?;
    Ok(Some(crate::index::extract(resource_type, &value)))
}

/// Inserts a batch of one table's rows for the transaction's tenant.
async fn insert_rows<T: Tx>(
    tx: &mut T,
    table: Option<&'static Table>,
    rows: &[Vec<Option<String>>],
    checks: &Checks,
) -> Result<(), StoreError> {
    let Some(table) = table else { return Ok(()) };
    let tenant = tx.tenant();
    if table.name == "tenants" {
        let mut sql = Sql::default();
        sql.push("UPDATE tenants SET name = ");
        sql.bind(
            rows.first()
                .and_then(|r| r[0].clone())
                .map_or(Arg::Null, Arg::Text),
        );
        sql.push(" WHERE tid = ");
        sql.bind(Arg::Int(tenant.get()));
        tx.run(sql).await?;
        return Ok(());
    }
    let mut names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    if table.name == "jobs" {
        names.extend(["id", "status"]);
    }
    let keyed = table.name == "audit_log" && tx.numbering() == Numbering::Key;
    if keyed {
        names.push("key");
    }
    let mut sql = Sql::default();
    sql.push(&format!(
        "INSERT INTO {} (tid, {}) VALUES ",
        table.name,
        names.join(", ")
    ));
    for (n, cells) in rows.iter().enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" });
        sql.bind(Arg::Int(tenant.get()));
        for (cell, (column, kind)) in cells.iter().zip(table.columns) {
            sql.push(", ");
            let value = match (table.name, *column) {
                ("audit_checkpoint", "signature") => {
                    Some((checks.resign)(tenant, &checkpoint_of(cells)?))
                }
                ("jobs", "state") => Some(retarget_job(cell.as_deref(), tenant)?),
                _ => cell.clone(),
            };
            // Typed: PostgreSQL takes a NULL bound as text for no BIGINT column.
            let typed = matches!(kind, Int | Chain);
            sql.push(if typed { "CAST(" } else { "" });
            sql.bind(arg_of(table, column, *kind, value)?);
            sql.push(if typed { " AS BIGINT)" } else { "" });
        }
        if table.name == "jobs" {
            sql.push(", ");
            sql.bind(Arg::Text(super::jobs::new_job_id()));
            sql.push(", 'queued'");
        }
        if keyed {
            // The first column is the record's number.
            let seq: i64 = cells[0]
                .as_deref()
                .and_then(|seq| seq.parse().ok())
                .ok_or_else(|| refused("audit_log: a record without a number"))?;
            let key = Numbering::Key.key_of(tenant.get(), seq).ok_or_else(|| {
                refused(format!(
                    "audit_log: record {seq} of tenant {} is beyond what this database's \
                     trail can number (see migration 0015)",
                    tenant.get()
                ))
            })?;
            sql.push(", ");
            sql.bind(Arg::Int(key));
        }
        sql.push(")");
    }
    tx.run(sql).await?;
    Ok(())
}

/// A job's state with its tenant made the new one: every job names the tenant it works
/// for by number (`"tenant": 3`), which was the old server's.
fn retarget_job(state: Option<&str>, tenant: TenantId) -> Result<String, StoreError> {
    let bad = || refused("jobs.state: a job whose state is not a JSON object");
    let mut state: serde_json::Value =
        serde_json::from_str(state.ok_or_else(bad)?).map_err(|_| bad())?;
    let members = state.as_object_mut().ok_or_else(bad)?;
    if members.contains_key("tenant") {
        members.insert("tenant".into(), tenant.get().into());
    }
    Ok(state.to_string())
}

/// A cell as the argument its column takes.
fn arg_of(
    table: &Table,
    column: &str,
    kind: Kind,
    value: Option<String>,
) -> Result<Arg, StoreError> {
    Ok(match (kind, value) {
        (_, None) => Arg::Null,
        (Int | Chain, Some(text)) => {
            Arg::Int(text.parse().map_err(|_| {
                refused(format!("{}.{column}: '{text}' is not a number", table.name))
            })?)
        }
        (Text | Json | Body, Some(text)) => Arg::Text(text),
    })
}

/// A checkpoint row as signed: seq, hash, recorded.
fn checkpoint_of(cells: &[Option<String>]) -> Result<Checkpoint, StoreError> {
    let bad = || refused("audit_checkpoint: a checkpoint without its number, hash or time");
    let int = |cell: &Option<String>| cell.as_deref().and_then(|c| c.parse::<i64>().ok());
    Ok(Checkpoint {
        seq: int(&cells[0]).ok_or_else(bad)?,
        hash: cells[1].clone().ok_or_else(bad)?,
        recorded: int(&cells[2]).ok_or_else(bad)?,
        signature: String::new(),
    })
}
