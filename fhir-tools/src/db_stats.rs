//! `fhir-server db-stats`: how much room the stored resources take, and how much the
//! search index adds on top.
//!
//! The search issue bounds the index at three times the stored size, so this splits every
//! table and index of the database in four: the data tables (`resource_versions`,
//! `resources`, `tenants`), the indexes on those, the search index (the `idx_*` tables and
//! their indexes) and the rest (migrations, catalog). SQLite sizes come from the `dbstat`
//! virtual table (compiled into rusqlite's bundled SQLite), which counts the pages of each
//! b-tree; PostgreSQL's from `pg_table_size` (heap, TOAST, free-space and visibility maps)
//! and `pg_relation_size` for each index. The database is only read.

use std::collections::BTreeMap;

use clap::Args;
use rusqlite::{Connection, OpenFlags};
use sqlx::{Connection as _, PgConnection, Row};

#[derive(Debug, Clone, Args)]
pub struct DbStatsConfig {
    /// `postgres://user@host/db` for PostgreSQL; otherwise an SQLite file path
    /// (optionally `sqlite://PATH`).
    #[arg(
        long = "database",
        env = "FHIR_DATABASE_URL",
        default_value = "./data/fhir.db"
    )]
    pub url: String,
}

/// The tables that hold the resources themselves.
const DATA_TABLES: &[&str] = &["resource_versions", "resources", "tenants"];

/// One table or index.
struct Object {
    name: String,
    /// The table it belongs to (itself for a table).
    table: String,
    is_index: bool,
    bytes: u64,
    rows: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    DataTables,
    DataIndexes,
    SearchIndex,
    Other,
}

impl Object {
    fn group(&self) -> Group {
        if DATA_TABLES.contains(&self.table.as_str()) {
            if self.is_index {
                Group::DataIndexes
            } else {
                Group::DataTables
            }
        } else if self.table.starts_with("idx_") {
            Group::SearchIndex
        } else {
            Group::Other
        }
    }
}

/// What the report shows beside the objects.
struct Database {
    description: String,
    objects: Vec<Object>,
    /// Current resources by type.
    per_type: Result<Vec<(String, u64)>, String>,
}

pub async fn run(config: DbStatsConfig) -> Result<(), String> {
    let url = config.url.as_str();
    let database = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres(url).await?
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url)
            .to_owned();
        tokio::task::spawn_blocking(move || sqlite(&path))
            .await
            .map_err(|e| e.to_string())??
    };
    print(&database);
    Ok(())
}

fn sqlite(path: &str) -> Result<Database, String> {
    // Read-only, and without creating a missing file.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(in_file(path))?;
    let pages = Pages::read(&conn, path)?;
    let mut sizes = sqlite_sizes(&conn, path)?;
    let mut objects = sqlite_schema(&conn, path, &mut sizes)?;
    // The catalog itself, and anything dbstat knows that the schema does not list.
    for (name, bytes) in sizes {
        objects.push(Object {
            table: name.clone(),
            name,
            is_index: false,
            bytes,
            rows: None,
        });
    }
    count_sqlite_rows(&conn, &mut objects);
    let per_type = sqlite_per_type(&conn);
    Ok(Database {
        description: pages.describe(path),
        objects,
        per_type,
    })
}

/// An SQLite error, prefixed with the file it is about.
fn in_file(path: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("{path}: {e}")
}

/// The pages of an SQLite file, from its pragmas.
struct Pages {
    size: u64,
    count: u64,
    free: u64,
}

impl Pages {
    fn read(conn: &Connection, path: &str) -> Result<Pages, String> {
        let pragma = |name: &str| -> Result<u64, String> {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(in_file(path))
        };
        Ok(Pages {
            size: pragma("page_size")?,
            count: pragma("page_count")?,
            free: pragma("freelist_count")?,
        })
    }

    /// The report's first line: the pages, and what the file and its WAL take on disk.
    fn describe(&self, path: &str) -> String {
        let file_bytes =
            |suffix: &str| std::fs::metadata(format!("{path}{suffix}")).map_or(0, |m| m.len());
        format!(
            "SQLite {path}: {} pages of {} bytes ({}), {} free; file {}, WAL {}",
            self.count,
            self.size,
            size(self.count * self.size),
            self.free,
            size(file_bytes("")),
            size(file_bytes("-wal"))
        )
    }
}

/// The bytes of every table and index, by name, from the `dbstat` virtual table.
fn sqlite_sizes(conn: &Connection, path: &str) -> Result<BTreeMap<String, u64>, String> {
    let error = in_file(path);
    let mut statement = conn
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
        .map_err(|e| format!("{path}: the dbstat table is not available: {e}"))?;
    let rows = statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(&error)?;
    let mut sizes = BTreeMap::new();
    for row in rows {
        let (name, bytes) = row.map_err(&error)?;
        sizes.insert(name, bytes as u64);
    }
    Ok(sizes)
}

/// The tables and indexes the schema lists, each with its size taken out of `sizes`
/// (which keeps what the schema does not list).
fn sqlite_schema(
    conn: &Connection,
    path: &str,
    sizes: &mut BTreeMap<String, u64>,
) -> Result<Vec<Object>, String> {
    let error = in_file(path);
    let mut statement = conn
        .prepare(
            "SELECT type, name, tbl_name FROM sqlite_schema \
             WHERE type IN ('table', 'index') ORDER BY tbl_name, type DESC, name",
        )
        .map_err(&error)?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(&error)?;
    let mut objects = Vec::new();
    for row in rows {
        let (kind, name, table) = row.map_err(&error)?;
        objects.push(Object {
            bytes: sizes.remove(&name).unwrap_or(0),
            is_index: kind == "index",
            name,
            table,
            rows: None,
        });
    }
    Ok(objects)
}

/// The rows of each table; a table that cannot be counted is left without.
fn count_sqlite_rows(conn: &Connection, objects: &mut [Object]) {
    for object in objects.iter_mut().filter(|o| !o.is_index) {
        let quoted = object.name.replace('"', "\"\"");
        object.rows = conn
            .query_row(&format!("SELECT count(*) FROM \"{quoted}\""), [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
            .map(|n| n as u64);
    }
}

/// Current (not deleted) resources by type.
fn sqlite_per_type(conn: &Connection) -> Result<Vec<(String, u64)>, String> {
    let count = || {
        let mut statement = conn.prepare(
            "SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type ORDER BY type",
        )?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        rows.collect::<Result<Vec<_>, _>>()
    };
    count().map_err(|e: rusqlite::Error| e.to_string())
}

async fn postgres(url: &str) -> Result<Database, String> {
    let error = |e: sqlx::Error| format!("PostgreSQL: {e}");
    let mut conn = PgConnection::connect(url).await.map_err(error)?;
    let rows = sqlx::query(
        "SELECT c.relname::text, c.relkind::text, coalesce(t.relname, c.relname)::text,
                CASE WHEN c.relkind IN ('i', 'I') THEN pg_relation_size(c.oid)
                     ELSE pg_table_size(c.oid) END
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_index i ON i.indexrelid = c.oid
         LEFT JOIN pg_class t ON t.oid = i.indrelid
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'i', 'I')
         ORDER BY 3, 2 DESC, 1",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(error)?;
    let mut objects = Vec::new();
    for row in rows {
        let kind: String = row.get(1);
        objects.push(Object {
            name: row.get(0),
            table: row.get(2),
            is_index: kind == "i" || kind == "I",
            bytes: row.get::<i64, _>(3) as u64,
            rows: None,
        });
    }
    for object in objects.iter_mut().filter(|o| !o.is_index) {
        let quoted = object.name.replace('"', "\"\"");
        let sql = format!("SELECT count(*) FROM \"{quoted}\"");
        object.rows = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .ok()
            .map(|n| n as u64);
    }
    let per_type = sqlx::query_as::<_, (String, i64)>(
        "SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type ORDER BY type",
    )
    .fetch_all(&mut conn)
    .await
    .map(|rows| rows.into_iter().map(|(t, n)| (t, n as u64)).collect())
    .map_err(|e| e.to_string());
    let (database, total): (String, i64) =
        sqlx::query_as("SELECT current_database()::text, pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await
            .map_err(error)?;
    Ok(Database {
        description: format!("PostgreSQL database {database}: {}", size(total as u64)),
        objects,
        per_type,
    })
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn print(database: &Database) {
    println!("{}", database.description);
    match &database.per_type {
        Ok(per_type) => {
            let total: u64 = per_type.iter().map(|(_, n)| n).sum();
            let list: Vec<String> = per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!("current resources: {total} ({})", list.join(", "));
        }
        Err(error) => println!("current resources: cannot count ({error})"),
    }
    let titles = [
        (Group::DataTables, "data tables"),
        (Group::DataIndexes, "indexes on the data tables"),
        (
            Group::SearchIndex,
            "search index (idx_* tables and their indexes)",
        ),
        (Group::Other, "other"),
    ];
    let mut totals: BTreeMap<Group, u64> = BTreeMap::new();
    for (group, title) in titles {
        let members: Vec<&Object> = database
            .objects
            .iter()
            .filter(|o| o.group() == group)
            .collect();
        let total: u64 = members.iter().map(|o| o.bytes).sum();
        totals.insert(group, total);
        println!("\n{title}: {}", size(total));
        for object in members {
            let what = if object.is_index {
                format!("index on {}", object.table)
            } else {
                object
                    .rows
                    .map_or_else(|| "table".to_owned(), |n| format!("table, {n} rows"))
            };
            println!("  {:<44} {:>12}  {what}", object.name, size(object.bytes));
        }
    }
    let get = |group| totals.get(&group).copied().unwrap_or(0) as f64;
    let (data, data_indexes, search) = (
        get(Group::DataTables),
        get(Group::DataIndexes),
        get(Group::SearchIndex),
    );
    println!();
    println!(
        "search index / data tables:                      {:.2}",
        search / data.max(1.0)
    );
    println!(
        "search index / (data tables + their indexes):    {:.2}",
        search / (data + data_indexes).max(1.0)
    );
    println!(
        "(search index + indexes on data) / data tables:  {:.2}",
        (search + data_indexes) / data.max(1.0)
    );
}
