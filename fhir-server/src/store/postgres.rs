//! The PostgreSQL store, for production and for several server processes on one database.
//!
//! Each write is one transaction at READ COMMITTED: `head` locks the resource row
//! (`FOR UPDATE`), so concurrent updates of one resource queue behind each other and the
//! If-Match check sees the committed version; conditional writes take a transaction-scoped
//! advisory lock per tenant and type. A race on a new id (two update-as-create on one id)
//! ends in a unique-key violation, which the caller retries. PostgreSQL's own group commit
//! shares WAL flushes between concurrent commits (`synchronous_commit` stays on).

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row as _};

use super::pg_put;
use super::write::{self, NewVersion, Tx};
use super::{
    CURRENT_AFTER, Head, HistoryPage, HistoryQuery, Method, Outcome, POSTGRES_MIGRATIONS,
    Reindexed, Row, StoreError, StoredBody, TenantId, Version, WriteOp, history,
};
use crate::index::IndexRows;
use crate::search::Query;
use crate::search::cursor::KeyValue;
use crate::search::sql::{self, Arg, KeyKind, Sql};

#[derive(Clone)]
pub struct PgStore {
    /// The connections of requests: each statement bounded by the statement timeout.
    bounded: PgPool,
    /// A few connections without the bound, for background work (see `limits`).
    unbounded: PgPool,
    /// Reads by id, coalesced into batches.
    reads: super::pg_reads::Reads,
    /// Unconditional creates, coalesced into batches.
    creates: super::pg_creates::Creates,
    /// Resources written by transactions since the maintenance last ran: a bulk load
    /// wakes it at once (see `note_bulk_writes`).
    bulk_writes: Arc<std::sync::atomic::AtomicUsize>,
    maintenance: Arc<tokio::sync::Notify>,
}

/// Resources written in transactions after which the table statistics are refreshed at
/// once rather than at the next tick: right after a bulk load, stale statistics make
/// PostgreSQL plan searches as scans (a soak after loading 2,000 patients timed out
/// until ANALYZE ran).
const BULK_WRITES: usize = 2_000;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error
            && let Some(code) = db.code()
        {
            match code.as_ref() {
                "23505" | "40001" | "40P01" => return StoreError::Conflict,
                // query_canceled: the statement timeout (or a cancel) stopped it.
                "57014" => return StoreError::Timeout,
                _ => {}
            }
        }
        if matches!(error, sqlx::Error::PoolTimedOut) {
            return StoreError::Busy;
        }
        StoreError::Database(error.to_string())
    }
}

/// A key for `migrate`'s advisory lock, so that several servers starting at once apply each
/// migration once.
const MIGRATION_LOCK: i64 = 0x0046_4849_525f_4d49;
/// The advisory lock that keeps several servers from analyzing the same tables at once.
const ANALYZE_LOCK: i64 = 0x0046_4849_525f_414e;
/// How often the table statistics are checked.
const ANALYZE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

impl PgStore {
    pub async fn open(
        url: &str,
        pool_size: u32,
        timeout: Option<std::time::Duration>,
    ) -> Result<PgStore, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Database(format!("bad PostgreSQL URL: {e}")))?;
        let bounded = pool_options(pool_size.max(2), timeout)
            .connect_with(options.clone())
            .await?;
        let unbounded = match timeout {
            Some(_) => pool_options(4, None).connect_lazy_with(options),
            None => bounded.clone(),
        };
        let reads = super::pg_reads::Reads::start(bounded.clone());
        let creates = super::pg_creates::Creates::start(bounded.clone());
        let store = PgStore {
            bounded,
            unbounded,
            reads,
            creates,
            bulk_writes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            maintenance: Arc::new(tokio::sync::Notify::new()),
        };
        super::limits::in_background(store.migrate()).await?;
        // Maintenance runs in the background (its first round at once), so a large
        // database does not delay the start.
        let maintained = store.clone();
        tokio::spawn(super::limits::in_background(async move {
            let mut ticks = tokio::time::interval(ANALYZE_INTERVAL);
            loop {
                let after_bulk = tokio::select! {
                    _ = ticks.tick() => false,
                    () = maintained.maintenance.notified() => true,
                };
                maintained
                    .bulk_writes
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                if let Err(error) = maintained.analyze_changed_tables(after_bulk).await {
                    tracing::warn!(?error, "table statistics refresh failed");
                }
            }
        }));
        Ok(store)
    }

    /// Counts resources written by a transaction; past `BULK_WRITES`, wakes the maintenance.
    fn note_bulk_writes(&self, written: usize) {
        let before = self
            .bulk_writes
            .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
        if before < BULK_WRITES && before + written >= BULK_WRITES {
            self.maintenance.notify_one();
        }
    }

    /// The connections a statement of the current task runs on: background work gets the
    /// unbounded ones.
    fn pool(&self) -> &PgPool {
        if super::limits::is_background() {
            &self.unbounded
        } else {
            &self.bounded
        }
    }

    /// Vacuums and analyzes our tables that changed much since they were last analyzed.
    /// Autovacuum normally does this, but it may be off (as on the development machine) or
    /// slow to start. Without statistics PostgreSQL plans a read by id as a scan of every
    /// resource of the type; without vacuum's visibility map, index-only scans (counts,
    /// search drivers) still visit every heap row. ANALYZE also invalidates cached plans
    /// made from stale statistics. Neither blocks reads or writes. Several servers on one
    /// database take turns through an advisory lock.
    /// After a bulk load (`everything`) every table is done: the writers' statistics may
    /// not have reached pg_stat yet (a backend flushes them up to 10 s later when idle).
    async fn analyze_changed_tables(&self, everything: bool) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(ANALYZE_LOCK)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if !locked {
            return Ok(());
        }
        let stale = sqlx::query(
            "SELECT relname FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() \
             AND (relname IN ('resources', 'resource_versions') OR relname LIKE 'idx\\_%') \
             AND ($1 OR n_mod_since_analyze > 1000 + 0.2 * n_live_tup \
                  OR n_ins_since_vacuum + n_dead_tup > 1000 + 0.2 * n_live_tup \
                  OR (last_analyze IS NULL AND last_autoanalyze IS NULL AND n_mod_since_analyze > 0))",
        )
        .bind(everything)
        .fetch_all(&mut *conn)
        .await;
        let result = match stale {
            Ok(rows) => {
                let mut result = Ok(());
                for row in rows {
                    let table: String = row.try_get(0)?;
                    // The name comes from the fixed list above, never from a request.
                    let statement = format!("VACUUM (ANALYZE) {table}");
                    if let Err(error) = sqlx::raw_sql(AssertSqlSafe(statement))
                        .execute(&mut *conn)
                        .await
                    {
                        result = Err(error.into());
                    }
                }
                result
            }
            Err(error) => Err(error.into()),
        };
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(ANALYZE_LOCK)
            .execute(&mut *conn)
            .await?;
        result
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        let result = apply_migrations(&mut conn).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        result
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    pub async fn create_tenant(&self, id: &str, name: Option<&str>) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(crate::resource::now_micros())
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn tenant_id(&self, name: &str) -> Result<Option<TenantId>, StoreError> {
        let row = sqlx::query("SELECT tid FROM tenants WHERE id = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => Ok(Some(TenantId::from_stored(i64::from(
                row.try_get::<i32, _>(0)?,
            )))),
            None => Ok(None),
        }
    }

    /// A value of `store_meta`.
    pub async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM store_meta WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    pub async fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO store_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn read(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<Version>, StoreError> {
        if version.is_none() {
            return self.reads.current(tenant, resource_type, id).await;
        }
        let mut conn = self.pool().acquire().await?;
        read_version(&mut conn, tenant, resource_type, id, version).await
    }

    pub async fn write(&self, tenant: TenantId, op: WriteOp) -> Result<Outcome, StoreError> {
        let coalesced = matches!(
            &op,
            WriteOp::Create { resource_type, if_none_exist: None, .. }
                if !super::claims::concerns(resource_type)
        );
        if coalesced
            && let WriteOp::Create {
                resource_type,
                mut resource,
                index,
                ..
            } = op
        {
            // An unconditional create depends on nothing stored: it joins the others of the
            // moment in one statement (see `pg_creates`).
            let now = crate::resource::now_micros();
            let id = crate::resource::new_id();
            let index = write::own(&resource_type, &mut resource, None, index);
            let version = write::first_version(&resource_type, &mut resource, &id, now);
            let audit = super::audit::written(
                super::provenance::current().as_ref(),
                (&resource_type, &id, 1),
                "create",
                version.body.as_deref(),
            );
            let created = self.creates.create(tenant, version, index, audit).await?;
            return Ok(Outcome::Created(created));
        }
        let mut tx = self.pool().begin().await?;
        let outcome = {
            let mut pg = PgTx {
                conn: &mut tx,
                tenant,
                attribution: super::provenance::current(),
                audit: Vec::new(),
            };
            match write::apply(&mut pg, op).await {
                Ok(outcome) => super::audit::flush(&mut pg).await.map(|()| outcome),
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(outcome) => {
                tx.commit().await?;
                Ok(outcome)
            }
            Err(error) => {
                tx.rollback().await?;
                Err(error)
            }
        }
    }

    /// A transaction Bundle's writes in one PostgreSQL transaction.
    pub async fn transaction(
        &self,
        tenant: TenantId,
        transaction: super::transaction::Transaction,
    ) -> Result<Vec<super::transaction::TxResult>, super::transaction::TxFailure> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let outcome = {
            let mut pg = PgTx {
                conn: &mut tx,
                tenant,
                attribution: super::provenance::current(),
                audit: Vec::new(),
            };
            match super::transaction::apply(&mut pg, transaction).await {
                Ok(results) => super::audit::flush(&mut pg)
                    .await
                    .map(|()| results)
                    .map_err(super::transaction::TxFailure::from),
                Err(failure) => Err(failure),
            }
        };
        match outcome {
            Ok(results) => {
                tx.commit().await.map_err(StoreError::from)?;
                self.note_bulk_writes(results.len());
                Ok(results)
            }
            Err(failure) => {
                tx.rollback().await.map_err(StoreError::from)?;
                Err(failure)
            }
        }
    }

    pub async fn history(
        &self,
        tenant: TenantId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let select = history::select(tenant, query);
        let rows = bind(&select).fetch_all(self.pool()).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            let last_updated: i64 = row.try_get(4)?;
            let method: String = row.try_get(5)?;
            let body: Option<Vec<u8>> = row.try_get(6)?;
            entries.push((
                (last_updated, seq),
                Version {
                    resource_type: row.try_get(1)?,
                    id: row.try_get(2)?,
                    version: row.try_get(3)?,
                    last_updated,
                    method: Method::parse(&method),
                    body: body.map(Into::into),
                },
            ));
        }
        let total = count(self.pool(), &history::count(tenant, query)).await?;
        Ok(HistoryPage { entries, total })
    }

    pub async fn select_rows(&self, sql: &Sql, kinds: &[KeyKind]) -> Result<Vec<Row>, StoreError> {
        let mut conn = Cancellable::acquire(self.pool()).await?;
        let rows = select_rows(conn.conn()?, sql, kinds).await?;
        conn.release();
        Ok(rows)
    }

    pub async fn current_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBody>, StoreError> {
        let mut sql = Sql::default();
        let mut parts = CURRENT_AFTER.split('?');
        sql.push(parts.next().unwrap_or_default());
        sql.bind(Arg::Int(after));
        sql.push(parts.next().unwrap_or_default());
        sql.bind(Arg::Int(limit as i64));
        sql.push(parts.next().unwrap_or_default());
        let rows = bind(&sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredBody {
                    res_id: row.try_get(0)?,
                    tenant: TenantId::from_stored(i64::from(row.try_get::<i32, _>(1)?)),
                    resource_type: row.try_get(2)?,
                    body: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Replaces the index rows of each resource, in one transaction.
    pub async fn replace_index(&self, batch: Vec<Reindexed>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for item in &batch {
            let target = pg_put::Target::Reindex(item.res_id);
            let (text, args) =
                pg_put::statement(item.tenant, &item.resource_type, &target, &item.index)?;
            sqlx::query_with(AssertSqlSafe(text), args)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn select_keys(
        &self,
        sql: &Sql,
        kinds: &[KeyKind],
    ) -> Result<Vec<(i64, Vec<KeyValue>)>, StoreError> {
        let mut conn = Cancellable::acquire(self.pool()).await?;
        let rows = bind(sql).fetch_all(conn.conn()?).await?;
        conn.release();
        let mut decoded = Vec::with_capacity(rows.len());
        for row in rows {
            let mut keys = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                keys.push(match kind {
                    KeyKind::Text => KeyValue::Text(row.try_get(1 + i)?),
                    KeyKind::Int => KeyValue::Int(row.try_get(1 + i)?),
                    KeyKind::Real => KeyValue::Real(row.try_get(1 + i)?),
                });
            }
            decoded.push((row.try_get(0)?, keys));
        }
        Ok(decoded)
    }

    pub async fn select_count(&self, sql: &Sql) -> Result<i64, StoreError> {
        let mut conn = Cancellable::acquire(self.pool()).await?;
        let total = count(conn.conn()?, sql).await?;
        conn.release();
        Ok(total)
    }

    pub async fn execute(&self, sql: &Sql) -> Result<u64, StoreError> {
        Ok(bind(sql).execute(self.pool()).await?.rows_affected())
    }

    /// Every column of every row, as text (NULL as `None`).
    pub async fn select_texts(&self, sql: &Sql) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        let rows = bind(sql).fetch_all(self.pool()).await?;
        rows.iter().map(texts_of).collect()
    }

    /// Runs `statements` in one transaction of their own.
    pub async fn run_in_transaction(&self, statements: Vec<Sql>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for sql in &statements {
            bind(sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Erases a patient in a transaction of its own (see `store::erase`).
    pub async fn erase_patient(
        &self,
        tenant: TenantId,
        patient: String,
        mentions: &'static str,
    ) -> Result<super::erase::Erased, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut pg = PgTx {
            conn: &mut tx,
            tenant,
            attribution: None,
            audit: Vec::new(),
        };
        let erased = super::erase::erase(&mut pg, &patient, mentions).await?;
        tx.commit().await?;
        Ok(erased)
    }

    /// Reads a tenant's rows in one repeatable-read transaction (one snapshot; see
    /// `store::tenant_copy`).
    pub async fn export_tenant(
        &self,
        tenant: TenantId,
        mut sink: super::tenant_copy::Sink,
    ) -> Result<(), StoreError> {
        use futures::TryStreamExt;
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        for table in super::tenant_copy::TABLES {
            let sql = super::tenant_copy::select(
                table,
                tenant,
                "convert_from(body, 'UTF8')",
                super::audit::Numbering::TidSeq,
            );
            let mut rows = bind(&sql).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                sink(table, texts_of(&row)?).map_err(StoreError::Database)?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes an exported tenant in a transaction of its own (see `store::tenant_copy`).
    pub async fn import_tenant(
        &self,
        name: &str,
        rows: super::tenant_copy::Source,
        checks: super::tenant_copy::Checks,
    ) -> Result<TenantId, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, NULL, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(name)
        .bind(crate::resource::now_micros())
        .execute(&mut *tx)
        .await?;
        let tid: i32 = sqlx::query("SELECT tid FROM tenants WHERE id = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let tenant = TenantId::from_stored(i64::from(tid));
        let mut pg = PgTx {
            conn: &mut tx,
            tenant,
            attribution: None,
            audit: Vec::new(),
        };
        super::tenant_copy::import(&mut pg, rows, &checks).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// Appends audit records in a transaction of their own (see `store::audit`).
    pub async fn append_audit(
        &self,
        tenant: TenantId,
        batch: std::sync::Arc<super::audit_batch::Batch>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut pg = PgTx {
            conn: &mut tx,
            tenant,
            attribution: None,
            audit: Vec::new(),
        };
        super::audit::append(&mut pg, &batch).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn select_pairs(&self, sql: &Sql) -> Result<Vec<(String, String)>, StoreError> {
        let rows = bind(sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }
}

async fn apply_migrations(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, name, script) in POSTGRES_MIGRATIONS {
        let applied = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if applied {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(*script))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(crate::resource::now_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied PostgreSQL migration");
    }
    Ok(())
}

/// Every column of a row as text (NULL as `None`).
fn texts_of(row: &sqlx::postgres::PgRow) -> Result<Vec<Option<String>>, StoreError> {
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .map_err(StoreError::from)
        })
        .collect()
}

/// Renumbers `?` placeholders to `$1, $2, ...` and binds the arguments.
fn bind(sql: &Sql) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut text = String::with_capacity(sql.text.len() + 16);
    let mut n = 0;
    for c in sql.text.chars() {
        if c == '?' {
            n += 1;
            text.push('$');
            text.push_str(&n.to_string());
        } else {
            text.push(c);
        }
    }
    let mut query = sqlx::query(AssertSqlSafe(text));
    for arg in &sql.args {
        query = match arg {
            Arg::Text(value) => query.bind(value.as_str()),
            Arg::Int(value) => query.bind(*value),
            Arg::Real(value) => query.bind(*value),
            Arg::Null => query.bind(None::<String>),
        };
    }
    query
}

async fn count<'e>(executor: impl sqlx::PgExecutor<'e>, sql: &Sql) -> Result<i64, StoreError> {
    let row = bind(sql).fetch_one(executor).await?;
    Ok(row.try_get(0)?)
}

/// Decodes page rows: res_id, type, id, version, last_updated, body, then sort keys.
async fn select_rows(
    conn: &mut PgConnection,
    sql: &Sql,
    kinds: &[KeyKind],
) -> Result<Vec<Row>, StoreError> {
    let rows = bind(sql).fetch_all(&mut *conn).await?;
    let mut decoded = Vec::with_capacity(rows.len());
    for row in rows {
        let body: Option<Vec<u8>> = row.try_get(5)?;
        let mut keys = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            keys.push(match kind {
                KeyKind::Text => KeyValue::Text(row.try_get(6 + i)?),
                KeyKind::Int => KeyValue::Int(row.try_get(6 + i)?),
                KeyKind::Real => KeyValue::Real(row.try_get(6 + i)?),
            });
        }
        decoded.push(Row {
            res_id: row.try_get(0)?,
            version: Version {
                resource_type: row.try_get(1)?,
                id: row.try_get(2)?,
                version: row.try_get(3)?,
                last_updated: row.try_get(4)?,
                method: Method::Put,
                body: body.map(Into::into),
            },
            keys,
        });
    }
    Ok(decoded)
}

pub(super) async fn read_version(
    conn: &mut PgConnection,
    tenant: TenantId,
    resource_type: &str,
    id: &str,
    version: Option<i64>,
) -> Result<Option<Version>, StoreError> {
    let row = match version {
        None => {
            sqlx::query(
                "SELECT version, last_updated, method, body FROM resource_versions \
                 WHERE tid = $1 AND type = $2 AND id = $3 ORDER BY version DESC LIMIT 1",
            )
            .bind(tenant.get())
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        }
        Some(version) => {
            sqlx::query(
                "SELECT version, last_updated, method, body FROM resource_versions \
                 WHERE tid = $1 AND type = $2 AND id = $3 AND version = $4",
            )
            .bind(tenant.get())
            .bind(resource_type)
            .bind(id)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let method: String = row.try_get(2)?;
    let body: Option<Vec<u8>> = row.try_get(3)?;
    Ok(Some(Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version: row.try_get(0)?,
        last_updated: row.try_get(1)?,
        method: Method::parse(&method),
        body: body.map(Into::into),
    }))
}

/// One write's transaction.
pub(super) struct PgTx<'a> {
    pub(super) conn: &'a mut PgConnection,
    pub(super) tenant: TenantId,
    pub(super) attribution: Option<super::provenance::Attribution>,
    pub(super) audit: Vec<super::audit::Entry>,
}

impl Tx for PgTx<'_> {
    async fn head(&mut self, resource_type: &str, id: &str) -> Result<Option<Head>, StoreError> {
        let row = sqlx::query(
            "SELECT res_id, version, last_updated, deleted FROM resources \
             WHERE tid = $1 AND type = $2 AND id = $3 FOR UPDATE",
        )
        .bind(self.tenant.get())
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&mut *self.conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Head {
            res_id: row.try_get(0)?,
            version: row.try_get(1)?,
            last_updated: row.try_get(2)?,
            deleted: row.try_get::<i16, _>(3)? != 0,
        }))
    }

    async fn matches(
        &mut self,
        resource_type: &str,
        query: &Query,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let query = Query {
            resource_type: resource_type.to_owned(),
            sort: Vec::new(),
            cursor: None,
            ..query.clone()
        };
        let rows = select_rows(
            self.conn,
            &sql::select_page(self.tenant, &query, limit),
            &[],
        )
        .await?;
        Ok(rows.into_iter().map(|row| row.version.id).collect())
    }

    async fn body(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let found = read_version(self.conn, self.tenant, resource_type, id, Some(version)).await?;
        Ok(found.and_then(|v| v.body.map(|b| b.to_vec())))
    }

    /// An advisory lock on (tenant, type), held to the end of the transaction.
    fn tenant(&self) -> TenantId {
        self.tenant
    }

    fn attribution(&self) -> Option<&super::provenance::Attribution> {
        self.attribution.as_ref()
    }

    fn audit_notes(&mut self) -> &mut Vec<super::audit::Entry> {
        &mut self.audit
    }

    async fn run(&mut self, sql: Sql) -> Result<u64, StoreError> {
        Ok(bind(&sql).execute(&mut *self.conn).await?.rows_affected())
    }

    async fn insert_audit(&mut self, rows: &super::audit::Rows<'_>) -> Result<(), StoreError> {
        let (text, args) = super::pg_audit::statement(rows)?;
        sqlx::query_with(AssertSqlSafe(text), args)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn rows(&mut self, sql: Sql) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        let rows = bind(&sql).fetch_all(&mut *self.conn).await?;
        rows.iter().map(texts_of).collect()
    }

    async fn first_ints(&mut self, sql: Sql) -> Result<Vec<i64>, StoreError> {
        let Some(row) = bind(&sql).fetch_optional(&mut *self.conn).await? else {
            return Ok(Vec::new());
        };
        (0..row.len())
            .map(|i| row.try_get::<i64, _>(i).map_err(StoreError::from))
            .collect()
    }

    async fn lock_type(&mut self, resource_type: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(type_lock_key(self.tenant, resource_type))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// The heads in one statement, each locked.
    async fn heads(&mut self, targets: &[(&str, &str)]) -> Result<Vec<Option<Head>>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let types: Vec<&str> = targets.iter().map(|(t, _)| *t).collect();
        let ids: Vec<&str> = targets.iter().map(|(_, i)| *i).collect();
        let rows = sqlx::query(
            "SELECT k.n, r.res_id, r.version, r.last_updated, r.deleted \
             FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS k(type, id, n) \
             JOIN resources r ON r.tid = $3 AND r.type = k.type AND r.id = k.id \
             ORDER BY r.res_id FOR UPDATE OF r",
        )
        .bind(&types)
        .bind(&ids)
        .bind(self.tenant.get())
        .fetch_all(&mut *self.conn)
        .await?;
        let mut heads = vec![None; targets.len()];
        for row in rows {
            let n: i64 = row.try_get(0)?;
            if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| heads.get_mut(i)) {
                *slot = Some(Head {
                    res_id: row.try_get(1)?,
                    version: row.try_get(2)?,
                    last_updated: row.try_get(3)?,
                    deleted: row.try_get::<i16, _>(4)? != 0,
                });
            }
        }
        Ok(heads)
    }

    /// New resources in one statement (see `pg_put::creates`).
    async fn create_many(
        &mut self,
        versions: &[(&Version, &IndexRows)],
    ) -> Result<(), (usize, StoreError)> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut resources = Vec::with_capacity(versions.len());
        for (position, (version, index)) in versions.iter().enumerate() {
            let Some(body) = version.body.as_deref() else {
                return Err((
                    position,
                    StoreError::Database("a create without a body".into()),
                ));
            };
            resources.push(pg_put::NewResource {
                resource_type: &version.resource_type,
                id: &version.id,
                last_updated: version.last_updated,
                method: version.method.as_str(),
                body,
                index,
            });
        }
        let (text, args) =
            pg_put::creates(self.tenant, &resources, &[]).map_err(|error| (0, error))?;
        sqlx::query_with(AssertSqlSafe(text), args)
            .execute(&mut *self.conn)
            .await
            .map_err(|error| (0, StoreError::from(error)))?;
        Ok(())
    }

    /// One statement per version (see `pg_put`).
    async fn put(&mut self, new: NewVersion<'_>) -> Result<(), StoreError> {
        let empty = IndexRows::default();
        let index = new.index.unwrap_or(&empty);
        let (text, args) = match (new.head, new.body) {
            (None, Some(body)) => pg_put::creates(
                self.tenant,
                &[pg_put::NewResource {
                    resource_type: new.resource_type,
                    id: new.id,
                    last_updated: new.last_updated,
                    method: new.method.as_str(),
                    body,
                    index,
                }],
                &[],
            )?,
            (head, body) => {
                let Some(head) = head else {
                    return Err(StoreError::Database(format!(
                        "no resource {}/{} to delete",
                        new.resource_type, new.id
                    )));
                };
                let row = pg_put::VersionRow {
                    id: new.id,
                    version: new.version,
                    last_updated: new.last_updated,
                    method: new.method.as_str(),
                    body,
                };
                let target = pg_put::Target::Update(row, head.res_id);
                pg_put::statement(self.tenant, new.resource_type, &target, index)?
            }
        };
        sqlx::query_with(AssertSqlSafe(text), args)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

/// The advisory lock key of (tenant, type): FNV-1a, so that every server process, whatever
/// its build, takes the same key (std's hasher may change between Rust releases).
fn type_lock_key(tenant: TenantId, resource_type: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant
        .get()
        .to_le_bytes()
        .iter()
        .chain(resource_type.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// A pool's options: each connection's statements bounded by `timeout`, if any, and
/// checked for a vanished client every second, so that a query whose request was dropped
/// (its connection closed, see `Cancellable`) stops instead of running to its end.
fn pool_options(size: u32, timeout: Option<std::time::Duration>) -> PgPoolOptions {
    let timeout_ms = timeout.map_or(0, |t| t.as_millis().max(1));
    PgPoolOptions::new()
        .max_connections(size)
        // The default pings every connection before handing it out: a round trip per
        // query. A broken connection fails its query instead, and the pool drops it.
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let set = format!("SET statement_timeout = {timeout_ms}");
                sqlx::query(AssertSqlSafe(set)).execute(&mut *conn).await?;
                // PostgreSQL 14 and later; older servers just lack the check.
                let _ = sqlx::query("SET client_connection_check_interval = 1000")
                    .execute(&mut *conn)
                    .await;
                Ok(())
            })
        })
}

/// A connection running a request's statement: closed, not returned to the pool, when the
/// request is dropped before the statement ends (its client went away), so that PostgreSQL
/// cancels the statement.
struct Cancellable(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Cancellable {
    async fn acquire(pool: &PgPool) -> Result<Cancellable, StoreError> {
        Ok(Cancellable(Some(pool.acquire().await?)))
    }

    fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.0
            .as_deref_mut()
            .ok_or_else(|| StoreError::Database("the connection was released".into()))
    }

    /// The statement ended: the connection goes back to the pool.
    fn release(mut self) {
        self.0.take();
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}
