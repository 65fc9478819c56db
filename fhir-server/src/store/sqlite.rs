//! The embedded SQLite store.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every commit waits for
//! the disk. So all writes go to one writer thread that commits them in groups: it takes
//! every write waiting in its queue, runs each in its own savepoint (one failing write does
//! not spoil the others), commits once, and only then answers each caller. An acknowledged
//! write is on disk; many writers share one fsync.
//!
//! Reads use a small pool of read-only connections. WAL mode lets them run while the writer
//! commits. A point read is an index lookup in the page cache, so it runs inline on the
//! request's task; history and search, which may scan, run on the blocking pool.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};

use super::index_tables::{Cell, EachTable, IndexTable, each_table};
use super::write::{self, NewVersion, Tx};
use super::{
    CURRENT_AFTER, HistoryPage, HistoryQuery, Method, Outcome, Reindexed, Row, SQLITE_MIGRATIONS,
    StoreError, StoredBody, TenantId, Version, WriteOp, history,
};
use crate::index::IndexRows;
use crate::search::Query;
use crate::search::cursor::KeyValue;
use crate::search::sql::{self, Arg, KeyKind, Sql};

/// Called once the group's commit is known: `None` if it committed, else why it failed.
type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;
/// Runs a write on the writer's connection: whether it succeeded, and how to answer.
type Work = Box<dyn FnOnce(&mut Connection) -> (bool, Deliver) + Send>;

/// A unit of work for the writer thread.
struct Job {
    run: Work,
    /// Whether the work may fail after it has changed rows, as a normal outcome (an entry
    /// of a transaction bundle that fails). It then runs in a savepoint, undone alone.
    ///
    /// Other work checks before it writes (If-Match, conditional matches), so when it fails
    /// it has changed nothing. A savepoint for every write costs a copy of each page it
    /// first touches; without one, a write that fails half-way (a database error) spoils
    /// its group instead, which is then rolled back and answered with that error.
    may_fail_after_writing: bool,
}

/// Most writes committed together.
const MAX_GROUP: usize = 512;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    writer: mpsc::Sender<Job>,
    /// The bound on a request's search reads (see `limits`).
    timeout: Option<std::time::Duration>,
    /// Dropped to stop the checkpointer.
    checkpointing: mpsc::Sender<()>,
    /// The writer and the checkpointer, joined when the store goes.
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The store's threads end before it is gone. A command (`audit verify`, `backup`) that
/// returned while the checkpointer still copied pages raced the process's exit: an
/// encrypted database's pages are encrypted by OpenSSL, whose exit handler frees it, and
/// the command died of that after printing its answer (seen once in CI). So the writer
/// finishes what is queued and closes its connection, and the checkpointer stops, first.
impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channels ends both loops.
        self.writer = mpsc::channel().0;
        self.checkpointing = mpsc::channel().0;
        let current = std::thread::current().id();
        for thread in self.threads.drain(..) {
            // A last clone dropped on the writer thread itself (by a job) cannot wait
            // for that thread.
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            // The progress handler stopped it (see `blocking_read`).
            Some(rusqlite::ErrorCode::OperationInterrupted) => StoreError::Timeout,
            _ => StoreError::Database(error.to_string()),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, migrates it and starts the writer.
    pub fn open(
        path: &str,
        readers: usize,
        timeout: Option<std::time::Duration>,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        super::sqlite_memory::configure();
        let mut conn = Connection::open(path)?;
        super::sqlite_key::unlock(&conn)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(super::sqlite_key::explain)?;
        // The writer keeps a larger page cache (8 MiB instead of 2): every write touches
        // the pages of a dozen indexes, and evicting them costs a re-read per insert (from
        // the OS's cache: cheap). Measured with 100,000 Patients: 8 MiB writes as fast as
        // 32 MiB did and the server stays at 64 MB instead of 94; bulk loads (import,
        // transaction Bundles) are about 15% slower than with 32 MiB.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 10000;
             PRAGMA foreign_keys = OFF;
             PRAGMA cache_size = -8192;
             PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = 0;",
        )?;
        migrate(&mut conn)?;
        let (sender, receiver) = mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, receiver))
            .map_err(|e| StoreError::Database(format!("cannot start the writer: {e}")))?;
        let checkpointed = path.to_owned();
        let (checkpointing, stop) = mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointed, &stop))
            .map_err(|e| StoreError::Database(format!("cannot start the checkpointer: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers: Mutex::new(Vec::new()),
                max_idle_readers: readers.max(1),
                writer: sender,
                timeout,
                checkpointing,
                threads: vec![writer, checkpointer],
            }),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(Into::into)
        })
    }

    pub async fn create_tenant(&self, id: &str, name: Option<&str>) -> Result<bool, StoreError> {
        let (id, name) = (id.to_owned(), name.map(str::to_owned));
        self.run_write(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO NOTHING",
                params![id, name, crate::resource::now_micros()],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    pub fn tenant_id(&self, name: &str) -> Result<Option<TenantId>, StoreError> {
        self.with_reader(|conn| {
            let mut statement = conn.prepare_cached("SELECT tid FROM tenants WHERE id = ?1")?;
            Ok(statement.query_row([name], |row| row.get(0)).optional()?)
        })
    }

    /// A value of `store_meta`.
    pub fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.with_reader(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT value FROM store_meta WHERE name = ?1")?;
            Ok(statement.query_row([name], |row| row.get(0)).optional()?)
        })
    }

    pub async fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.run_write(move |conn| {
            conn.execute(
                "INSERT INTO store_meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            Ok(())
        })
        .await
    }

    /// The latest version, or the given one.
    pub fn read(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<Version>, StoreError> {
        self.with_reader(|conn| read_version(conn, tenant, resource_type, id, version))
    }

    pub async fn write(&self, tenant: TenantId, op: WriteOp) -> Result<Outcome, StoreError> {
        let attribution = super::provenance::current();
        self.run_write(move |conn| {
            let mut tx = SqliteTx {
                conn,
                tenant,
                attribution,
                audit: Vec::new(),
            };
            let outcome = futures::executor::block_on(write::apply(&mut tx, op))?;
            keep_for_group(tenant, &mut tx.audit);
            Ok(outcome)
        })
        .await
    }

    /// A transaction Bundle's writes, as one job of the writer in a savepoint of its own:
    /// its entries may fail after others wrote, and then all of them are undone.
    pub async fn transaction(
        &self,
        tenant: TenantId,
        transaction: super::transaction::Transaction,
    ) -> Result<Vec<super::transaction::TxResult>, super::transaction::TxFailure> {
        let attribution = super::provenance::current();
        self.queue_write(true, move |conn| {
            let mut tx = SqliteTx {
                conn,
                tenant,
                attribution,
                audit: Vec::new(),
            };
            let results =
                futures::executor::block_on(super::transaction::apply(&mut tx, transaction))?;
            keep_for_group(tenant, &mut tx.audit);
            Ok(results)
        })
        .await
    }

    pub async fn history(
        &self,
        tenant: TenantId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let select = history::select(tenant, query);
        let count = history::count(tenant, query);
        self.blocking_read(move |conn| {
            let mut statement = conn.prepare_cached(&select.text)?;
            let mut rows = statement.query(params_from_iter(select.args.iter()))?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let last_updated: i64 = row.get(4)?;
                let method: String = row.get(5)?;
                let body: Option<Vec<u8>> = row.get(6)?;
                entries.push((
                    (last_updated, seq),
                    Version {
                        resource_type: row.get(1)?,
                        id: row.get(2)?,
                        version: row.get(3)?,
                        last_updated,
                        method: Method::parse(&method),
                        body: body.map(Into::into),
                    },
                ));
            }
            let total = query_count(conn, &count)?;
            Ok(HistoryPage { entries, total })
        })
        .await
    }

    pub async fn select_rows(&self, sql: Sql, kinds: Vec<KeyKind>) -> Result<Vec<Row>, StoreError> {
        self.blocking_read(move |conn| select_rows(conn, &sql, &kinds))
            .await
    }

    pub async fn select_keys(
        &self,
        sql: Sql,
        kinds: Vec<KeyKind>,
    ) -> Result<Vec<(i64, Vec<KeyValue>)>, StoreError> {
        self.blocking_read(move |conn| {
            log_plan(conn, &sql);
            let mut statement = conn.prepare_cached(&sql.text)?;
            let mut rows = statement.query(params_from_iter(sql.args.iter()))?;
            let mut decoded = Vec::new();
            while let Some(row) = rows.next()? {
                let mut keys = Vec::with_capacity(kinds.len());
                for (i, kind) in kinds.iter().enumerate() {
                    keys.push(match kind {
                        KeyKind::Text => KeyValue::Text(row.get(1 + i)?),
                        KeyKind::Int => KeyValue::Int(row.get(1 + i)?),
                        KeyKind::Real => KeyValue::Real(row.get(1 + i)?),
                    });
                }
                decoded.push((row.get(0)?, keys));
            }
            Ok(decoded)
        })
        .await
    }

    pub async fn select_count(&self, sql: Sql) -> Result<i64, StoreError> {
        self.blocking_read(move |conn| {
            log_plan(conn, &sql);
            query_count(conn, &sql)
        })
        .await
    }

    pub async fn select_pairs(&self, sql: Sql) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking_read(move |conn| query_pairs(conn, &sql))
            .await
    }

    /// Every column of every row, as text (NULL as `None`).
    pub async fn select_texts(&self, sql: Sql) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        self.blocking_read(move |conn| query_texts(conn, &sql))
            .await
    }

    /// Audit blocks: `sql` selects their key, last number and records
    /// (`store::audit_block`).
    pub async fn select_blocks(&self, sql: Sql) -> Result<Vec<(i64, i64, Vec<u8>)>, StoreError> {
        self.blocking_read(move |conn| {
            let mut statement = conn.prepare_cached(&sql.text)?;
            let rows = statement.query_map(params_from_iter(sql.args.iter()), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Runs `statements` in one transaction of their own.
    pub async fn run_in_transaction(&self, statements: Vec<Sql>) -> Result<(), StoreError> {
        self.queue_write(true, move |conn| {
            for sql in &statements {
                conn.prepare_cached(&sql.text)?
                    .execute(params_from_iter(sql.args.iter()))?;
            }
            Ok(())
        })
        .await
    }

    /// Erases a patient in a transaction of its own (see `store::erase`).
    pub async fn erase_patient(
        &self,
        tenant: TenantId,
        patient: String,
        mentions: &'static str,
    ) -> Result<super::erase::Erased, StoreError> {
        self.run_write(move |conn| {
            let mut tx = SqliteTx {
                conn,
                tenant,
                attribution: None,
                audit: Vec::new(),
            };
            futures::executor::block_on(super::erase::erase(&mut tx, &patient, mentions))
        })
        .await
    }

    /// Reads a tenant's rows in one read transaction (one snapshot; see
    /// `store::tenant_copy`).
    pub async fn export_tenant(
        &self,
        tenant: TenantId,
        mut sink: super::tenant_copy::Sink,
    ) -> Result<(), StoreError> {
        self.blocking_read(move |conn| {
            conn.execute_batch("BEGIN")?;
            let read = (|| {
                for table in super::tenant_copy::TABLES {
                    let sql = super::tenant_copy::select(
                        table,
                        tenant,
                        "CAST(body AS TEXT)",
                        super::audit::Numbering::Key,
                    );
                    let mut statement = conn.prepare(&sql.text)?;
                    let columns = statement.column_count();
                    let mut rows = statement.query(params_from_iter(sql.args.iter()))?;
                    while let Some(row) = rows.next()? {
                        let cells = (0..columns).map(|i| row.get(i)).collect::<Result<_, _>>()?;
                        sink(table, cells).map_err(StoreError::Database)?;
                    }
                    if table.name == "audit_log" {
                        export_blocks(conn, tenant, table, &mut sink)?;
                    }
                }
                Ok(())
            })();
            conn.execute_batch("COMMIT")?;
            read
        })
        .await
    }

    /// Writes an exported tenant in a transaction of its own (see `store::tenant_copy`).
    pub async fn import_tenant(
        &self,
        name: String,
        rows: super::tenant_copy::Source,
        checks: super::tenant_copy::Checks,
    ) -> Result<TenantId, StoreError> {
        self.queue_write(true, move |conn| {
            conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, NULL, ?2) \
                 ON CONFLICT (id) DO NOTHING",
                params![name, crate::resource::now_micros()],
            )?;
            let tenant: TenantId =
                conn.query_row("SELECT tid FROM tenants WHERE id = ?1", [&name], |row| {
                    row.get(0)
                })?;
            let mut tx = SqliteTx {
                conn,
                tenant,
                attribution: None,
                audit: Vec::new(),
            };
            futures::executor::block_on(super::tenant_copy::import(&mut tx, rows, &checks))?;
            Ok(tenant)
        })
        .await
    }

    /// Appends audit records in a transaction of their own (see `store::audit`).
    pub async fn append_audit(
        &self,
        tenant: TenantId,
        batch: Arc<super::audit_batch::Batch>,
    ) -> Result<(), StoreError> {
        self.run_write(move |conn| {
            let mut tx = SqliteTx {
                conn,
                tenant,
                attribution: None,
                audit: Vec::new(),
            };
            futures::executor::block_on(super::audit::append(&mut tx, &batch))
        })
        .await
    }

    pub async fn execute(&self, sql: Sql) -> Result<u64, StoreError> {
        self.run_write(move |conn| {
            let changed = conn
                .prepare_cached(&sql.text)?
                .execute(params_from_iter(sql.args.iter()))?;
            Ok(changed as u64)
        })
        .await
    }

    /// A writing statement that returns two text columns (`RETURNING a, b`).
    pub async fn write_pairs(&self, sql: Sql) -> Result<Vec<(String, String)>, StoreError> {
        self.run_write(move |conn| query_pairs(conn, &sql)).await
    }

    pub async fn current_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBody>, StoreError> {
        self.blocking_read(move |conn| {
            let mut statement = conn.prepare_cached(CURRENT_AFTER)?;
            let rows = statement.query_map(params![after, limit as i64], |row| {
                Ok(StoredBody {
                    res_id: row.get(0)?,
                    tenant: row.get(1)?,
                    resource_type: row.get(2)?,
                    body: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Replaces the index rows of each resource, in one transaction.
    pub async fn replace_index(&self, batch: Vec<Reindexed>) -> Result<(), StoreError> {
        self.run_write(move |conn| {
            for item in &batch {
                delete_index(conn, item.res_id)?;
                insert_index(
                    conn,
                    item.tenant,
                    &[(item.res_id, item.resource_type.as_str(), &item.index)],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` on a pooled read connection, on the current thread.
    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.inner.with_reader(f)
    }

    /// Runs `f` on a pooled read connection, on the blocking pool. A request's read stops
    /// (`StoreError::Timeout`) at the statement timeout, or when the request is dropped
    /// (its client went away): SQLite's progress handler asks every 1,000 instructions.
    async fn blocking_read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = self.inner.clone();
        let deadline = super::limits::deadline(inner.timeout);
        let abandoned = super::limits::Abandoned::new();
        let stop = abandoned.flag();
        let result = tokio::task::spawn_blocking(move || {
            inner.with_reader(|conn| {
                conn.progress_handler(
                    1000,
                    Some(move || {
                        stop.load(std::sync::atomic::Ordering::Relaxed)
                            || deadline.is_some_and(|d| std::time::Instant::now() > d)
                    }),
                )?;
                let result = f(conn);
                conn.progress_handler(0, None::<fn() -> bool>)?;
                result
            })
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?;
        abandoned.finish();
        result
    }

    /// Queues `f` for the writer thread and waits until its group has committed. `f` must
    /// fail, if it fails, before it changes anything (see `Job`).
    async fn run_write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.queue_write(false, f).await
    }

    /// Queues `f` (see `Job` for `may_fail_after_writing`); its error type says how a
    /// failed commit is reported.
    async fn queue_write<R, E>(
        &self,
        may_fail_after_writing: bool,
        f: impl FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let run: Work = Box::new(move |conn: &mut Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |commit_error| {
                let result = match commit_error {
                    Some(error) if ok => Err(StoreError::Database(error.to_owned()).into()),
                    _ => result,
                };
                let _ = answer.send(result);
            });
            (ok, deliver)
        });
        let job = Job {
            run,
            may_fail_after_writing,
        };
        if self.inner.writer.send(job).is_err() {
            return Err(StoreError::Database("the SQLite writer has stopped".into()).into());
        }
        match answered.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Database("the SQLite writer dropped a write".into()).into()),
        }
    }
}

impl Inner {
    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self
            .readers
            .lock()
            .map(|mut pool| pool.pop())
            .unwrap_or(None);
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < self.max_idle_readers
        {
            pool.push(conn);
        }
        result
    }
}

fn open_reader(path: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    super::sqlite_key::unlock(&conn)?;
    conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The records of the tenant's audit blocks, after its `audit_log` rows, as rows of that
/// table: an export holds rows only (`store::audit_block`).
fn export_blocks(
    conn: &Connection,
    tenant: TenantId,
    table: &'static super::tenant_copy::Table,
    sink: &mut super::tenant_copy::Sink,
) -> Result<(), StoreError> {
    use super::audit_block::{decode, exported, first_of, select_all};
    let sql = select_all(tenant);
    let mut statement = conn.prepare(&sql.text)?;
    let mut rows = statement.query(params_from_iter(sql.args.iter()))?;
    while let Some(row) = rows.next()? {
        let (key, last, block): (i64, i64, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
        for record in decode(tenant.get(), (first_of(key), last), &block)? {
            sink(table, exported(&record)).map_err(StoreError::Database)?;
        }
    }
    Ok(())
}

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Copies committed pages from the WAL into the database file, beside the writer.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses its threshold, i.e.
/// on the one writer thread, where it held up every write queued behind it (a sixth of
/// the writer's time in a profile of a bulk load). Here a PASSIVE checkpoint, from a
/// connection of its own, copies pages without blocking the writer or readers, often
/// enough that little is ever left to copy. Under a steady stream of writes a passive
/// checkpoint never gets the WAL rewound, though, so the writer itself restarts it between
/// groups (see `restart_wal`). Ends when the database cannot be opened, or when `stop`'s
/// sender is dropped (the store is gone).
fn checkpoint_loop(path: &str, stop: &mpsc::Receiver<()>) {
    let Ok(conn) = Connection::open(path) else {
        return;
    };
    if super::sqlite_key::unlock(&conn).is_err() {
        return;
    }
    let _ = conn.execute_batch("PRAGMA busy_timeout = 1000;");
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_INTERVAL) {
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
}

/// WAL frames (pages) past which the writer restarts the WAL: 4,096 frames, 16 MiB.
const WAL_FRAMES_LIMIT: i32 = 4096;

/// The WAL file size SQLite trims the file back to when the WAL restarts (after a burst).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

std::thread_local! {
    /// Frames in the WAL after the writer's last commit, as SQLite's WAL hook reports
    /// them. Thread-local because the hook is a plain function; each store's writer is a
    /// thread of its own.
    static WAL_FRAMES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn record_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|cell| cell.set(frames));
    Ok(())
}

/// On the writer, between groups: once the WAL holds more than `WAL_FRAMES_LIMIT` frames,
/// checkpoints the few the checkpointer has not copied yet and restarts the WAL, so the
/// next commit writes from its start. (Another connection would starve here: the writer
/// takes the lock again at once.) The work is that of the last `CHECKPOINT_INTERVAL`, a
/// few milliseconds, where emptying a 64 MiB WAL at once held writes up for 100 ms.
fn restart_wal(conn: &Connection) {
    if WAL_FRAMES.with(std::cell::Cell::get) <= WAL_FRAMES_LIMIT {
        return;
    }
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(0) => WAL_FRAMES.with(|cell| cell.set(0)),
        // Busy (a reader still uses older frames): the next group retries.
        done => tracing::debug!(?done, "WAL restart postponed"),
    }
}

/// The writer thread: commits queued writes in groups until every sender is gone.
fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    conn.set_prepared_statement_cache_capacity(64);
    conn.wal_hook(Some(record_wal_frames));
    if let Err(error) = conn.execute_batch(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"))
    {
        tracing::warn!(%error, "cannot bound the WAL file size");
    }
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(&mut conn, group);
        restart_wal(&conn);
    }
}

thread_local! {
    /// The audit records of the writes of the writer thread's current group, per tenant,
    /// appended together just before the group commits ([`append_group_audit`]): one
    /// append per group rather than per write.
    static GROUP_AUDIT: std::cell::RefCell<Vec<(TenantId, Vec<super::audit::Entry>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps a succeeded write's audit records for its group's commit.
fn keep_for_group(tenant: TenantId, notes: &mut Vec<super::audit::Entry>) {
    if notes.is_empty() {
        return;
    }
    GROUP_AUDIT.with(|group| {
        let mut group = group.borrow_mut();
        match group.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, entries)) => entries.append(notes),
            None => group.push((tenant, std::mem::take(notes))),
        }
    });
}

/// Appends the group's audit records in its transaction, per tenant.
fn append_group_audit(conn: &mut Connection) -> Result<(), String> {
    let records = GROUP_AUDIT.with(|group| std::mem::take(&mut *group.borrow_mut()));
    for (tenant, entries) in records {
        let mut tx = SqliteTx {
            conn,
            tenant,
            attribution: None,
            audit: Vec::new(),
        };
        let batch = super::audit_batch::Batch::of(&entries);
        futures::executor::block_on(super::audit::append(&mut tx, &batch))
            .map_err(|e| format!("the audit records could not be written: {e:?}"))?;
    }
    Ok(())
}

fn forget_group_audit() {
    GROUP_AUDIT.with(|group| group.borrow_mut().clear());
}

/// Runs a group of writes in one transaction and answers each once the commit is known.
fn run_group(conn: &mut Connection, group: Vec<Job>) {
    let mut delivers: Vec<Deliver> = Vec::with_capacity(group.len());
    forget_group_audit();
    let mut open = begin(conn);
    for job in group {
        if let Err(message) = &open {
            fail(job, message);
            continue;
        }
        let before = conn.total_changes();
        let savepoint = job.may_fail_after_writing && conn.execute_batch("SAVEPOINT job").is_ok();
        let (ok, deliver) = match catch_unwind(AssertUnwindSafe(|| (job.run)(conn))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!("a write panicked; it was rolled back");
                (false, Box::new(|_: Option<&str>| {}) as Deliver)
            }
        };
        delivers.push(deliver);
        if savepoint {
            if !ok {
                let _ = conn.execute_batch("ROLLBACK TO job");
            }
            let _ = conn.execute_batch("RELEASE job");
        } else if !ok && conn.total_changes() != before {
            // Failed half-way with no savepoint: undo the whole group so far, answer its
            // writes with the failure, and go on with the rest in a new transaction.
            let _ = conn.execute_batch("ROLLBACK");
            forget_group_audit();
            let message = "a write failed part-way; the writes committed with it were \
                           rolled back, retry them";
            for deliver in delivers.drain(..) {
                deliver(Some(message));
            }
            open = begin(conn);
        }
    }
    if open.is_err() {
        for deliver in delivers {
            deliver(open.as_ref().err().map(String::as_str));
        }
        return;
    }
    let commit = append_group_audit(conn)
        .and_then(|()| conn.execute_batch("COMMIT").map_err(|e| e.to_string()));
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let commit_error = commit.err();
    for deliver in delivers {
        deliver(commit_error.as_deref());
    }
}

fn begin(conn: &Connection) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())
}

/// Answers a job that could not run (no transaction could begin) with `message`. The job
/// still runs, against an empty in-memory database, to obtain its answer channel; its
/// result is replaced by the failure.
fn fail(job: Job, message: &str) {
    let Ok(mut scratch) = Connection::open_in_memory() else {
        // Opening an in-memory database only fails when out of memory.
        std::process::abort()
    };
    let (_, deliver) = (job.run)(&mut scratch);
    forget_group_audit();
    deliver(Some(message));
}

/// Applies the embedded migrations that this database has not seen yet.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    for (version, name, script) in SQLITE_MIGRATIONS {
        let applied: bool = conn
            .prepare("SELECT 1 FROM schema_migrations WHERE version = ?1")?
            .exists([version])?;
        if applied {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(script)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, crate::resource::now_micros()],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied SQLite migration");
    }
    Ok(())
}

/// At debug level, logs SQLite's plan for a search statement (no values, only the plan).
fn log_plan(conn: &Connection, sql: &Sql) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let plan = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
        .and_then(|mut statement| {
            let rows = statement.query_map(params_from_iter(sql.args.iter()), |row| {
                row.get::<_, String>(3)
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        });
    if let Ok(plan) = plan {
        tracing::debug!(plan = %plan.join(" | "), "SQLite plan");
    }
}

/// An argument binds as itself, borrowed (no copy of its text).
impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{Null, ToSqlOutput};
        Ok(match self {
            Arg::Text(text) => ToSqlOutput::from(text.as_str()),
            Arg::Int(int) => ToSqlOutput::from(*int),
            Arg::Real(real) => ToSqlOutput::from(*real),
            Arg::Null => ToSqlOutput::from(Null),
        })
    }
}

fn query_count(conn: &Connection, count: &Sql) -> Result<i64, StoreError> {
    let mut statement = conn.prepare_cached(&count.text)?;
    Ok(statement.query_row(params_from_iter(count.args.iter()), |row| row.get(0))?)
}

/// Decodes page rows: res_id, type, id, version, last_updated, body, then sort keys.
fn select_rows(conn: &Connection, sql: &Sql, kinds: &[KeyKind]) -> Result<Vec<Row>, StoreError> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let mut rows = statement.query(params_from_iter(sql.args.iter()))?;
    let mut decoded = Vec::new();
    while let Some(row) = rows.next()? {
        let body: Option<Vec<u8>> = row.get(5)?;
        let mut keys = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            keys.push(match kind {
                KeyKind::Text => KeyValue::Text(row.get(6 + i)?),
                KeyKind::Int => KeyValue::Int(row.get(6 + i)?),
                KeyKind::Real => KeyValue::Real(row.get(6 + i)?),
            });
        }
        decoded.push(Row {
            res_id: row.get(0)?,
            version: Version {
                resource_type: row.get(1)?,
                id: row.get(2)?,
                version: row.get(3)?,
                last_updated: row.get(4)?,
                method: Method::Put,
                body: body.map(Into::into),
            },
            keys,
        });
    }
    Ok(decoded)
}

fn read_version(
    conn: &Connection,
    tenant: TenantId,
    resource_type: &str,
    id: &str,
    version: Option<i64>,
) -> Result<Option<Version>, StoreError> {
    let row = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Version> {
        let method: String = row.get(2)?;
        let body: Option<Vec<u8>> = row.get(3)?;
        Ok(Version {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version: row.get(0)?,
            last_updated: row.get(1)?,
            method: Method::parse(&method),
            body: body.map(Into::into),
        })
    };
    let found = match version {
        None => conn
            .prepare_cached(
                "SELECT version, last_updated, method, body FROM resource_versions \
                 WHERE tid = ?1 AND type = ?2 AND id = ?3 ORDER BY version DESC LIMIT 1",
            )?
            .query_row(params![tenant, resource_type, id], row)
            .optional()?,
        Some(version) => conn
            .prepare_cached(
                "SELECT version, last_updated, method, body FROM resource_versions \
                 WHERE tid = ?1 AND type = ?2 AND id = ?3 AND version = ?4",
            )?
            .query_row(params![tenant, resource_type, id, version], row)
            .optional()?,
    };
    Ok(found)
}

/// One write's view of the writer connection, inside the group's transaction.
struct SqliteTx<'a> {
    conn: &'a mut Connection,
    tenant: TenantId,
    attribution: Option<super::provenance::Attribution>,
    audit: Vec<super::audit::Entry>,
}

impl Tx for SqliteTx<'_> {
    async fn head(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<super::Head>, StoreError> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT res_id, version, last_updated, deleted FROM resources \
                 WHERE tid = ?1 AND type = ?2 AND id = ?3",
            )?
            .query_row(params![self.tenant, resource_type, id], |row| {
                Ok(super::Head {
                    res_id: row.get(0)?,
                    version: row.get(1)?,
                    last_updated: row.get(2)?,
                    deleted: row.get::<_, i64>(3)? != 0,
                })
            })
            .optional()?;
        Ok(head)
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
        )?;
        Ok(rows.into_iter().map(|row| row.version.id).collect())
    }

    async fn body(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let found = read_version(self.conn, self.tenant, resource_type, id, Some(version))?;
        Ok(found.and_then(|v| v.body.map(|b| b.to_vec())))
    }

    fn tenant(&self) -> TenantId {
        self.tenant
    }

    fn numbering(&self) -> super::audit::Numbering {
        super::audit::Numbering::Key
    }

    fn attribution(&self) -> Option<&super::provenance::Attribution> {
        self.attribution.as_ref()
    }

    fn audit_notes(&mut self) -> &mut Vec<super::audit::Entry> {
        &mut self.audit
    }

    async fn run(&mut self, sql: Sql) -> Result<u64, StoreError> {
        let changed = self
            .conn
            .prepare_cached(&sql.text)?
            .execute(params_from_iter(sql.args.iter()))?;
        Ok(changed as u64)
    }

    async fn rows(&mut self, sql: Sql) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        query_texts(self.conn, &sql)
    }

    async fn insert_audit(&mut self, rows: &super::audit::Rows<'_>) -> Result<(), StoreError> {
        super::sqlite_audit::insert(self.conn, rows)
    }

    async fn first_ints(&mut self, sql: Sql) -> Result<Vec<i64>, StoreError> {
        let mut statement = self.conn.prepare_cached(&sql.text)?;
        let columns = statement.column_count();
        let mut rows = statement.query(params_from_iter(sql.args.iter()))?;
        match rows.next()? {
            Some(row) => (0..columns)
                .map(|i| row.get::<_, i64>(i).map_err(StoreError::from))
                .collect(),
            None => Ok(Vec::new()),
        }
    }

    async fn lock_type(&mut self, _resource_type: &str) -> Result<(), StoreError> {
        // One writer thread: every write is already serialized.
        Ok(())
    }

    async fn put(&mut self, new: NewVersion<'_>) -> Result<(), StoreError> {
        let deleted = i64::from(new.body.is_none());
        self.conn
            .prepare_cached(
                "INSERT INTO resource_versions \
                 (tid, type, id, version, last_updated, method, deleted, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                self.tenant,
                new.resource_type,
                new.id,
                new.version,
                new.last_updated,
                new.method.as_str(),
                deleted,
                new.body
            ])?;
        let res_id = match new.head {
            Some(head) => {
                self.conn
                    .prepare_cached(
                        "UPDATE resources SET version = ?1, last_updated = ?2, deleted = ?3 \
                         WHERE res_id = ?4",
                    )?
                    .execute(params![new.version, new.last_updated, deleted, head.res_id])?;
                delete_index(self.conn, head.res_id)?;
                head.res_id
            }
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO resources (tid, type, id, version, last_updated, deleted) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        self.tenant,
                        new.resource_type,
                        new.id,
                        new.version,
                        new.last_updated,
                        deleted
                    ])?;
                self.conn.last_insert_rowid()
            }
        };
        if let Some(index) = new.index {
            insert_index(
                self.conn,
                self.tenant,
                &[(res_id, new.resource_type, index)],
            )?;
        }
        Ok(())
    }

    /// New resources: their version and head rows, then all their index rows at once, in
    /// each index's order (see `insert_index`).
    async fn create_many(
        &mut self,
        versions: &[(&Version, &IndexRows)],
    ) -> Result<(), (usize, StoreError)> {
        let mut items = Vec::with_capacity(versions.len());
        for (position, (version, index)) in versions.iter().enumerate() {
            let res_id = self
                .insert_new(version)
                .map_err(|error| (position, error))?;
            items.push((res_id, version.resource_type.as_str(), *index));
        }
        insert_index(self.conn, self.tenant, &items).map_err(|error| (0, error))
    }
}

impl SqliteTx<'_> {
    /// The version row and the head of a new resource; its res_id.
    fn insert_new(&mut self, version: &Version) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO resource_versions \
                 (tid, type, id, version, last_updated, method, deleted, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
            )?
            .execute(params![
                self.tenant,
                version.resource_type,
                version.id,
                version.version,
                version.last_updated,
                version.method.as_str(),
                version.body.as_deref()
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO resources (tid, type, id, version, last_updated, deleted) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )?
            .execute(params![
                self.tenant,
                version.resource_type,
                version.id,
                version.version,
                version.last_updated
            ])?;
        Ok(self.conn.last_insert_rowid())
    }
}

/// The rows of a statement that returns two text columns.
fn query_texts(conn: &Connection, sql: &Sql) -> Result<Vec<Vec<Option<String>>>, StoreError> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let columns = statement.column_count();
    let rows = statement.query_map(params_from_iter(sql.args.iter()), |row| {
        (0..columns).map(|i| row.get(i)).collect()
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn query_pairs(conn: &Connection, sql: &Sql) -> Result<Vec<(String, String)>, StoreError> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.args.iter()), |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes the index rows of one resource (a range of each table's primary key).
fn delete_index(conn: &Connection, res_id: i64) -> Result<(), StoreError> {
    for table in super::INDEX_TABLES {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE res_id = ?1"))?
            .execute([res_id])?;
    }
    Ok(())
}

/// Inserts the index rows of resources: `(res_id, resource type, rows)` each. `OR IGNORE`:
/// a row that is already there (two values that index alike) is the same fact once.
///
/// Each table's rows are inserted in the order of its lookup index (key, then value), not
/// resource by resource: a batch of creates then walks each b-tree once, from one page to
/// the next, where resource order sent it to a random page for every row (an import of
/// 200,000 resources spent most of its writer's time there).
fn insert_index(
    conn: &Connection,
    tenant: TenantId,
    items: &[(i64, &str, &IndexRows)],
) -> Result<(), StoreError> {
    each_table(&mut IndexInsert {
        conn,
        tenant,
        items,
    })
}

/// The index rows of a batch, inserted table by table (see `insert_index`).
struct IndexInsert<'a> {
    conn: &'a Connection,
    tenant: TenantId,
    items: &'a [(i64, &'a str, &'a IndexRows)],
}

impl EachTable for IndexInsert<'_> {
    type Error = StoreError;

    fn table<T: IndexTable>(&mut self) -> Result<(), StoreError> {
        let rows = in_lookup_order::<T>(self.items);
        if rows.is_empty() {
            return Ok(());
        }
        let sql = INDEX_INSERTS.get(T::NAME).map_or("", String::as_str);
        let mut statement = self.conn.prepare_cached(sql)?;
        for (key, res_id, row) in rows {
            let head = [
                Cell::Int(res_id),
                Cell::Int(key),
                Cell::Int(self.tenant.get()),
            ];
            let cells = (0..T::COLUMNS.len()).map(|column| row.cell(column));
            statement.execute(params_from_iter(head.into_iter().chain(cells)))?;
        }
        Ok(())
    }
}

/// The INSERT of each index table, written once from its description (a create writes
/// several tables; building the text each time was a cost on the one writer).
static INDEX_INSERTS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    let mut inserts = IndexInserts(HashMap::new());
    let Ok(()) = each_table(&mut inserts);
    inserts.0
});

struct IndexInserts(HashMap<&'static str, String>);

impl EachTable for IndexInserts {
    type Error = std::convert::Infallible;

    fn table<T: IndexTable>(&mut self) -> Result<(), Self::Error> {
        let placeholders: Vec<String> = (1..=T::COLUMNS.len() + 3)
            .map(|i| format!("?{i}"))
            .collect();
        let sql = format!(
            "INSERT OR IGNORE INTO {} (res_id, key, tid, {}) VALUES ({})",
            T::NAME,
            T::COLUMNS.join(", "),
            placeholders.join(", ")
        );
        self.0.insert(T::NAME, sql);
        Ok(())
    }
}

/// The rows of one table across the items, with their key and res_id, in the order of the
/// table's lookup index when there are several resources.
fn in_lookup_order<'r, T: IndexTable>(
    items: &[(i64, &'r str, &'r IndexRows)],
) -> Vec<(i64, i64, &'r T)> {
    let mut all: Vec<(i64, i64, &T)> = Vec::new();
    for &(res_id, resource_type, index) in items {
        for row in T::rows(index) {
            all.push((crate::index::key(resource_type, row.param()), res_id, row));
        }
    }
    if items.len() > 1 {
        all.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.2.lookup_order(b.2))
                .then(a.1.cmp(&b.1))
        });
    }
    all
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{Null, ToSqlOutput};
        Ok(match *self {
            Cell::Int(value) => ToSqlOutput::from(value),
            Cell::Small(value) => ToSqlOutput::from(value),
            Cell::Float(value) => ToSqlOutput::from(value),
            Cell::Text(text) | Cell::OptionalText(Some(text)) => ToSqlOutput::from(text),
            Cell::OptionalText(None) => ToSqlOutput::from(Null),
        })
    }
}

/// A tenant binds and reads as its `tid`.
impl rusqlite::ToSql for TenantId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.get()))
    }
}

impl rusqlite::types::FromSql for TenantId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(value).map(TenantId::from_stored)
    }
}
