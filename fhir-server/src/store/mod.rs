//! Storage: one behaviour, two databases.
//!
//! SQLite is the embedded default (one file, zero set-up); PostgreSQL serves production and
//! several server processes. Both keep every version of every resource as the JSON it is
//! served as, a head row per resource, and search-index rows for current versions. Every
//! row, key and query leads with the tenant.

pub mod audit;
pub mod audit_batch;
pub mod audit_block;
mod audit_patient;
pub mod auth;
pub mod backup;
mod claims;
mod claims_backfill;
mod coalesce;
mod compartment;
mod counters;
pub mod erase;
mod history;
mod index_tables;
pub mod jobs;
pub mod limits;
pub mod outbox;
mod pg_audit;
mod pg_creates;
mod pg_put;
mod pg_reads;
mod pg_sealed;
pub mod postgres;
pub mod provenance;
pub mod search;
mod slots;
pub mod sqlite;
mod sqlite_audit;
pub mod sqlite_key;
mod sqlite_memory;
pub mod tenant_copy;
pub mod transaction;
pub mod write;

use bytes::Bytes;

use crate::error::FhirError;
use crate::index::IndexRows;
use crate::search::cursor::KeyValue;
use crate::search::sql::{KeyKind, Sql};
pub use write::{Outcome, WriteOp};

/// The SQL migrations, embedded so the binary needs no files beside it.
pub const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "search_index",
        include_str!("../../../migrations/sqlite/0002_search_index.sql"),
    ),
    (
        3,
        "compact_keys",
        include_str!("../../../migrations/sqlite/0003_compact_keys.sql"),
    ),
    (
        4,
        "jobs",
        include_str!("../../../migrations/sqlite/0004_jobs.sql"),
    ),
    (
        5,
        "counters",
        include_str!("../../../migrations/sqlite/0005_counters.sql"),
    ),
    (
        6,
        "long_strings",
        include_str!("../../../migrations/sqlite/0006_long_strings.sql"),
    ),
    (
        7,
        "auth",
        include_str!("../../../migrations/sqlite/0007_auth.sql"),
    ),
    (
        8,
        "time_claims",
        include_str!("../../../migrations/sqlite/0008_time_claims.sql"),
    ),
    (
        9,
        "job_times",
        include_str!("../../../migrations/sqlite/0009_job_times.sql"),
    ),
    (
        10,
        "audit",
        include_str!("../../../migrations/sqlite/0010_audit.sql"),
    ),
    (
        11,
        "audit chain",
        include_str!("../../../migrations/sqlite/0011_audit_chain.sql"),
    ),
    (
        12,
        "audit rowid",
        include_str!("../../../migrations/sqlite/0012_audit_rowid.sql"),
    ),
    (
        13,
        "audit patient epochs",
        include_str!("../../../migrations/sqlite/0013_audit_patient_epochs.sql"),
    ),
    (
        14,
        "audit patient groups",
        include_str!("../../../migrations/sqlite/0014_audit_patient_groups.sql"),
    ),
    (
        15,
        "audit keyed by number",
        include_str!("../../../migrations/sqlite/0015_audit_keyed_by_number.sql"),
    ),
    (
        16,
        "audit blocks",
        include_str!("../../../migrations/sqlite/0016_audit_blocks.sql"),
    ),
];
pub const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "search_index",
        include_str!("../../../migrations/postgres/0002_search_index.sql"),
    ),
    (
        3,
        "compact_keys",
        include_str!("../../../migrations/postgres/0003_compact_keys.sql"),
    ),
    (
        4,
        "jobs",
        include_str!("../../../migrations/postgres/0004_jobs.sql"),
    ),
    (
        5,
        "counters",
        include_str!("../../../migrations/postgres/0005_counters.sql"),
    ),
    (
        6,
        "long_strings",
        include_str!("../../../migrations/postgres/0006_long_strings.sql"),
    ),
    (
        7,
        "auth",
        include_str!("../../../migrations/postgres/0007_auth.sql"),
    ),
    (
        8,
        "time_claims",
        include_str!("../../../migrations/postgres/0008_time_claims.sql"),
    ),
    (
        9,
        "job_times",
        include_str!("../../../migrations/postgres/0009_job_times.sql"),
    ),
    (
        10,
        "audit",
        include_str!("../../../migrations/postgres/0010_audit.sql"),
    ),
    (
        11,
        "audit chain",
        include_str!("../../../migrations/postgres/0011_audit_chain.sql"),
    ),
    (
        12,
        "audit patient epochs",
        include_str!("../../../migrations/postgres/0012_audit_patient_epochs.sql"),
    ),
    (
        13,
        "audit patient groups",
        include_str!("../../../migrations/postgres/0013_audit_patient_groups.sql"),
    ),
];

pub use crate::ids::TenantId;

/// What made a version, as history reports it (`request.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(text: &str) -> Method {
        match text {
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    pub method: Method,
    /// The JSON as served; `None` for a delete.
    pub body: Option<Bytes>,
}

impl Version {
    pub fn is_deleted(&self) -> bool {
        self.method == Method::Delete
    }
}

/// The head of a resource: its current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub res_id: i64,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
}

/// A history request: system (no type), type (no id) or instance level.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    /// Only versions at or after this instant (microseconds).
    pub since: Option<i64>,
    pub count: usize,
    /// Keyset cursor: versions strictly older than (last_updated, seq).
    pub before: Option<(i64, i64)>,
}

/// One page of history, newest first; each entry carries its cursor key.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub entries: Vec<((i64, i64), Version)>,
    pub total: i64,
}

/// A search row: a current version with its res_id and the values of its sort keys.
#[derive(Debug, Clone)]
pub struct Row {
    pub res_id: i64,
    pub version: Version,
    pub keys: Vec<KeyValue>,
}

/// A current resource as `reindex` reads it.
#[derive(Debug)]
pub struct StoredBody {
    pub res_id: i64,
    pub tenant: TenantId,
    pub resource_type: String,
    pub body: Vec<u8>,
}

/// Whether any string of `value` holds a control character.
fn holds_control_character(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains(fhir_model::validate::is_control),
        serde_json::Value::Array(items) => items.iter().any(holds_control_character),
        serde_json::Value::Object(members) => members.iter().any(|(key, value)| {
            key.contains(fhir_model::validate::is_control) || holds_control_character(value)
        }),
        _ => false,
    }
}

/// A resource's new index rows, as `reindex` writes them.
#[derive(Debug)]
pub struct Reindexed {
    pub res_id: i64,
    pub tenant: TenantId,
    pub resource_type: String,
    pub index: IndexRows,
}

/// The current, non-deleted resources after `res_id`, with their bodies.
pub const CURRENT_AFTER: &str = "SELECT r.res_id, r.tid, r.type, v.body FROM resources r \
    JOIN resource_versions v ON v.tid = r.tid AND v.type = r.type AND v.id = r.id \
    AND v.version = r.version WHERE r.res_id > ? AND r.deleted = 0 ORDER BY r.res_id LIMIT ?";

/// Why a store call failed.
#[derive(Debug)]
pub enum StoreError {
    /// The request breaks a rule (412, 409, ...): answered as is.
    Rejected(FhirError),
    /// A concurrent writer got there first (unique key, serialization): retry.
    Conflict,
    /// The database failed.
    Database(String),
    /// The statement ran past the statement timeout (or its client went away).
    Timeout,
    /// No connection came free in time: the server is overloaded.
    Busy,
}

impl From<StoreError> for FhirError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(error) => error,
            StoreError::Conflict => {
                FhirError::conflict("A concurrent write changed this resource; retry")
            }
            StoreError::Database(detail) => FhirError::internal(detail),
            StoreError::Timeout => FhirError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "The request took longer than this server allows (the statement timeout); ask for less",
            ),
            StoreError::Busy => FhirError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "The server is too busy to answer now; retry shortly",
            ),
        }
    }
}

/// The store: SQLite or PostgreSQL.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The search-index tables, whose rows follow the current version.
const INDEX_TABLES: [&str; 8] = [
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_reference",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_ref_date",
];

/// The `store_meta` entry that names the rules the search index was built with.
const INDEX_FINGERPRINT: &str = "index_fingerprint";

/// How many times a write is retried after losing a race on a unique key.
const WRITE_RETRIES: usize = 3;

impl Store {
    /// Opens the database named by `url` (`postgres://...`, `sqlite://PATH` or a file
    /// path) and runs its migrations.
    /// Opens (and migrates) the database; `timeout` bounds each statement of a request
    /// (see `limits`), none for the command-line tools.
    pub async fn open(
        url: &str,
        pool_size: u32,
        timeout: Option<std::time::Duration>,
    ) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(
                postgres::PgStore::open(url, pool_size, timeout).await?,
            ))
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            Ok(Store::Sqlite(sqlite::SqliteStore::open(
                path,
                pool_size as usize,
                timeout,
            )?))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// Creates a tenant; `false` if it already existed.
    pub async fn create_tenant(&self, id: &str, name: Option<&str>) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.create_tenant(id, name).await,
            Store::Postgres(s) => s.create_tenant(id, name).await,
        }
    }

    /// The id of the tenant named `name`, if it exists.
    pub async fn tenant_id(&self, name: &str) -> Result<Option<TenantId>, StoreError> {
        match self {
            Store::Sqlite(s) => s.tenant_id(name),
            Store::Postgres(s) => s.tenant_id(name).await,
        }
    }

    /// The current version of a resource (a delete version if it was deleted).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn read(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        match self {
            Store::Sqlite(s) => s.read(tenant, resource_type, id, None),
            Store::Postgres(s) => s.read(tenant, resource_type, id, None).await,
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn vread(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Version>, StoreError> {
        match self {
            Store::Sqlite(s) => s.read(tenant, resource_type, id, Some(version)),
            Store::Postgres(s) => s.read(tenant, resource_type, id, Some(version)).await,
        }
    }

    /// Applies a write in its own transaction; acknowledged only once committed.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn write(&self, tenant: TenantId, op: WriteOp) -> Result<Outcome, StoreError> {
        let mut op = op;
        for attempt in 0.. {
            // Keep a copy for a retry only when a race is possible (PostgreSQL).
            let retry = match self {
                Store::Postgres(_) if attempt < WRITE_RETRIES => Some(op.clone()),
                _ => None,
            };
            let result = match self {
                Store::Sqlite(s) => s.write(tenant, op).await,
                Store::Postgres(s) => s.write(tenant, op).await,
            };
            match (result, retry) {
                (Err(StoreError::Conflict), Some(again)) => op = again,
                (result, _) => return result,
            }
        }
        unreachable!("the retry loop returns")
    }

    /// Applies a transaction Bundle's writes in one database transaction: all of them or,
    /// on the first failure (whose entry it names), none. A PostgreSQL transaction that
    /// loses a race with another writer (a new id taken, a serialization failure) is run
    /// again from the start, as a single write is.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn transaction(
        &self,
        tenant: TenantId,
        transaction: transaction::Transaction,
    ) -> Result<Vec<transaction::TxResult>, transaction::TxFailure> {
        let mut transaction = transaction;
        for attempt in 0.. {
            let retry = match self {
                Store::Postgres(_) if attempt < WRITE_RETRIES && transaction.may_conflict() => {
                    Some(transaction.clone())
                }
                _ => None,
            };
            let result = match self {
                Store::Sqlite(s) => s.transaction(tenant, transaction).await,
                Store::Postgres(s) => s.transaction(tenant, transaction).await,
            };
            match (result, retry) {
                (
                    Err(transaction::TxFailure {
                        error: StoreError::Conflict,
                        ..
                    }),
                    Some(again),
                ) => transaction = again,
                (result, _) => return result,
            }
        }
        unreachable!("the retry loop returns")
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn history(
        &self,
        tenant: TenantId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        match self {
            Store::Sqlite(s) => s.history(tenant, query).await,
            Store::Postgres(s) => s.history(tenant, query).await,
        }
    }

    /// Runs a page query (see `search::sql`), decoding `kinds` sort keys after the
    /// standard columns.
    pub(in crate::store) async fn select_rows(
        &self,
        sql: Sql,
        kinds: Vec<KeyKind>,
    ) -> Result<Vec<Row>, StoreError> {
        match self {
            Store::Sqlite(s) => s.select_rows(sql, kinds).await,
            Store::Postgres(s) => s.select_rows(&sql, &kinds).await,
        }
    }

    /// Rebuilds the search index of every current resource, in batches of res_id order;
    /// `progress` is told how many were done so far, and `found` of each resource holding a
    /// control character (stored before the validator refused them: see
    /// `fhir_model::validate::is_control`). Runs beside normal traffic: each batch is its
    /// own transaction.
    pub async fn reindex(
        &self,
        mut progress: impl FnMut(usize),
        mut found: impl FnMut(&str),
    ) -> Result<usize, StoreError> {
        const BATCH: usize = 500;
        let (mut after, mut done) = (0, 0);
        loop {
            let stored = match self {
                Store::Sqlite(s) => s.current_after(after, BATCH).await?,
                Store::Postgres(s) => s.current_after(after, BATCH).await?,
            };
            let Some(last) = stored.last().map(|s| s.res_id) else {
                break;
            };
            let batch: Vec<Reindexed> = stored
                .into_iter()
                .map(|s| {
                    let resource: serde_json::Value =
                        serde_json::from_slice(&s.body).unwrap_or_default();
                    if holds_control_character(&resource) {
                        let id = resource["id"].as_str().unwrap_or_default();
                        found(&format!("{}/{id}", s.resource_type));
                    }
                    let index = crate::index::extract(&s.resource_type, &resource);
                    Reindexed {
                        res_id: s.res_id,
                        tenant: s.tenant,
                        resource_type: s.resource_type,
                        index,
                    }
                })
                .collect();
            done += batch.len();
            match self {
                Store::Sqlite(s) => s.replace_index(batch).await?,
                Store::Postgres(s) => s.replace_index(batch).await?,
            }
            progress(done);
            after = last;
        }
        self.set_meta(INDEX_FINGERPRINT, &crate::index::fingerprint())
            .await?;
        Ok(done)
    }

    /// Rebuilds the search index when it was built with other rules than this server's
    /// (`index::fingerprint`): after a migration that reshaped it, or a registry change.
    /// Several servers starting at once may each rebuild it; every batch is idempotent.
    pub async fn ensure_index_current(&self) -> Result<(), StoreError> {
        let wanted = crate::index::fingerprint();
        if self.meta(INDEX_FINGERPRINT).await?.as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        tracing::info!("the search index was built with other rules; rebuilding it");
        let started = std::time::Instant::now();
        let done = self
            .reindex(
                |done| {
                    if done % 50_000 == 0 {
                        tracing::info!(done, "reindexing");
                    }
                },
                |_| {},
            )
            .await?;
        tracing::info!(
            resources = done,
            seconds = started.elapsed().as_secs_f64(),
            "search index rebuilt"
        );
        Ok(())
    }

    async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.meta(name),
            Store::Postgres(s) => s.meta(name).await,
        }
    }

    async fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_meta(name, value).await,
            Store::Postgres(s) => s.set_meta(name, value).await,
        }
    }

    /// Runs an ids query (`search::sql::select_ids`): res_id, then `kinds` sort keys.
    pub(in crate::store) async fn select_keys(
        &self,
        sql: Sql,
        kinds: Vec<KeyKind>,
    ) -> Result<Vec<(i64, Vec<KeyValue>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.select_keys(sql, kinds).await,
            Store::Postgres(s) => s.select_keys(&sql, &kinds).await,
        }
    }

    /// Runs a `SELECT COUNT(*)`.
    pub(in crate::store) async fn select_count(&self, sql: Sql) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.select_count(sql).await,
            Store::Postgres(s) => s.select_count(&sql).await,
        }
    }

    /// Runs a statement that writes (see `search::sql::Sql`); the rows it changed.
    pub(in crate::store) async fn execute(&self, sql: Sql) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.execute(sql).await,
            Store::Postgres(s) => s.execute(&sql).await,
        }
    }

    /// Runs a statement that writes and returns two text columns (`... RETURNING a, b`).
    pub(in crate::store) async fn write_pairs(
        &self,
        sql: Sql,
    ) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.write_pairs(sql).await,
            Store::Postgres(s) => s.select_pairs(&sql).await,
        }
    }

    /// Runs a query of two text columns.
    pub(in crate::store) async fn select_pairs(
        &self,
        sql: Sql,
    ) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.select_pairs(sql).await,
            Store::Postgres(s) => s.select_pairs(&sql).await,
        }
    }
}
