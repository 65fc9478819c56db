//! The one PostgreSQL statement that writes versions: the version rows, the heads, and the
//! search-index rows, as a data-modifying CTE, so a write costs one round trip. One
//! statement creates any number of resources (see `creates`); an update or a reindex
//! writes one (see `statement`).
//!
//! The statement names only the index tables that get rows. A Patient has token, string
//! and date rows, but no number, quantity, reference or uri ones; with every table in the
//! statement, PostgreSQL planned, opened and ran all seven inserts for each write (a tenth
//! of its time in a profile of creates). The sub-statements share one snapshot, so the
//! DELETEs of an update remove only the old index rows, never those inserted beside them.
//!
//! Every form has a `rid(n, res_id)` relation: the res_id of the n-th resource written.
//! Index rows carry their resource's n and join it.

use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Encode, Postgres, Type};

use super::audit::Entry;
use super::index_tables::{Cell, EachTable, IndexTable, each_table};
use super::pg_sealed;
use super::{StoreError, TenantId};
use crate::index::{IndexRows, key};

/// The version row of an update.
pub struct VersionRow<'a> {
    pub id: &'a str,
    pub version: i64,
    pub last_updated: i64,
    pub method: &'a str,
    /// `None` for a delete.
    pub body: Option<&'a [u8]>,
}

/// What `statement` writes besides the index rows.
pub enum Target<'a> {
    /// A new version of resource `res_id`: its old index rows go.
    Update(VersionRow<'a>, i64),
    /// Only the index rows of resource `res_id` (reindexing).
    Reindex(i64),
}

/// A resource to create: its version 1.
pub struct NewResource<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub last_updated: i64,
    /// POST, or PUT for an update that creates.
    pub method: &'a str,
    pub body: &'a [u8],
    pub index: &'a IndexRows,
}

/// SQL text with its arguments, numbered as they are added.
pub struct Statement {
    /// The CTEs, in order.
    pub parts: Vec<String>,
    /// `WITH RECURSIVE`: some CTE refers to itself.
    pub recursive: bool,
    args: PgArguments,
    error: Option<sqlx::error::BoxDynError>,
}

impl Statement {
    pub(super) fn new() -> Statement {
        Statement {
            parts: Vec::new(),
            recursive: false,
            args: PgArguments::default(),
            error: None,
        }
    }

    /// Adds an argument and returns its placeholder.
    pub fn arg<'t, T: Encode<'t, Postgres> + Type<Postgres>>(&mut self, value: T) -> String {
        if let Err(error) = self.args.add(value) {
            self.error.get_or_insert(error);
        }
        format!("${}", self.args.len())
    }

    /// `WITH <parts> SELECT res_id FROM rid`, with its arguments.
    fn finish(self) -> Result<(String, PgArguments), StoreError> {
        self.finish_with("SELECT res_id FROM rid")
    }

    /// `WITH <parts> <select>`, with its arguments.
    pub(super) fn finish_with(self, select: &str) -> Result<(String, PgArguments), StoreError> {
        match self.error {
            Some(error) => Err(StoreError::Database(format!(
                "cannot encode the write's arguments: {error}"
            ))),
            None => Ok((
                format!(
                    "WITH {}{} {select}",
                    if self.recursive { "RECURSIVE " } else { "" },
                    self.parts.join(", ")
                ),
                self.args,
            )),
        }
    }
}

/// Creates `resources` (of one tenant) in one statement. With `audit` records the
/// statement also stores them, sealed (`pg_sealed`), and returns a row only when it could
/// (else it wrote nothing).
pub fn creates(
    tenant: TenantId,
    resources: &[NewResource<'_>],
    audit: &[Entry],
) -> Result<(String, PgArguments), StoreError> {
    let mut s = Statement::new();
    let tid = s.arg(tenant.get() as i32);
    let count = s.arg(resources.len() as i64);
    let types = s.arg(
        resources
            .iter()
            .map(|r| r.resource_type)
            .collect::<Vec<_>>(),
    );
    let ids = s.arg(resources.iter().map(|r| r.id).collect::<Vec<_>>());
    let times = s.arg(resources.iter().map(|r| r.last_updated).collect::<Vec<_>>());
    let methods = s.arg(resources.iter().map(|r| r.method).collect::<Vec<_>>());
    let bodies = s.arg(resources.iter().map(|r| r.body).collect::<Vec<_>>());
    let guard = if audit.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", pg_sealed::GUARD)
    };
    s.parts.push(format!(
        "rid AS (SELECT g.n, nextval('resources_res_id_seq') AS res_id \
         FROM generate_series(1::int8, {count}) AS g(n){guard})"
    ));
    s.parts.push(format!(
        "new AS (SELECT * FROM UNNEST({types}::text[], {ids}::text[], {times}::int8[], \
         {methods}::text[], {bodies}::bytea[]) \
         WITH ORDINALITY AS u(type, id, last_updated, method, body, n){guard})"
    ));
    s.parts.push(format!(
        "version AS (INSERT INTO resource_versions \
         (tid, type, id, version, last_updated, method, deleted, body) \
         SELECT {tid}, type, id, 1, last_updated, method, 0, body FROM new ORDER BY n)"
    ));
    s.parts.push(format!(
        "head AS (INSERT INTO resources (res_id, tid, type, id, version, last_updated, deleted) \
         SELECT rid.res_id, {tid}, new.type, new.id, 1, new.last_updated, 0 \
         FROM new JOIN rid ON rid.n = new.n)"
    ));
    let indexes: Vec<(i64, &str, &IndexRows)> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (i as i64 + 1, r.resource_type, r.index))
        .collect();
    push_index_inserts(&mut s, &tid, &indexes);
    if audit.is_empty() {
        return s.finish();
    }
    pg_sealed::push(&mut s, &tid, audit);
    s.finish_with(pg_sealed::RESULT)
}

/// Writes a new version of one resource, or only its index rows.
pub fn statement(
    tenant: TenantId,
    resource_type: &str,
    target: &Target<'_>,
    index: &IndexRows,
) -> Result<(String, PgArguments), StoreError> {
    let mut s = Statement::new();
    let tid = s.arg(tenant.get() as i32);
    let res_id = match target {
        Target::Update(row, res_id) => {
            let resource_type = s.arg(resource_type);
            let id = s.arg(row.id);
            let version = s.arg(row.version);
            let last_updated = s.arg(row.last_updated);
            let method = s.arg(row.method);
            let deleted = s.arg(i16::from(row.body.is_none()));
            let body = s.arg(row.body);
            s.parts.push(format!(
                "version AS (INSERT INTO resource_versions \
                 (tid, type, id, version, last_updated, method, deleted, body) \
                 VALUES ({tid}, {resource_type}, {id}, {version}, {last_updated}, {method}, \
                 {deleted}, {body}))"
            ));
            let res_id = s.arg(*res_id);
            s.parts.push(format!(
                "rid AS (UPDATE resources SET version = {version}, \
                 last_updated = {last_updated}, deleted = {deleted} \
                 WHERE res_id = {res_id} RETURNING 1::int8 AS n, res_id)"
            ));
            res_id
        }
        Target::Reindex(res_id) => {
            let res_id = s.arg(*res_id);
            s.parts.push(format!(
                "rid AS (SELECT 1::int8 AS n, {res_id}::bigint AS res_id)"
            ));
            res_id
        }
    };
    for table in super::INDEX_TABLES {
        s.parts.push(format!(
            "del_{table} AS (DELETE FROM {table} WHERE res_id = {res_id})"
        ));
    }
    push_index_inserts(&mut s, &tid, &[(1, resource_type, index)]);
    s.finish()
}

/// One insert per index table that has rows: the rows of every resource as parallel
/// arrays led by the resource's n, joined to its res_id in `rid`.
fn push_index_inserts(s: &mut Statement, tid: &str, resources: &[(i64, &str, &IndexRows)]) {
    let Ok(()) = each_table(&mut IndexInsert { s, tid, resources });
}

/// The index rows of a statement's resources, table by table (see `push_index_inserts`).
struct IndexInsert<'a> {
    s: &'a mut Statement,
    tid: &'a str,
    resources: &'a [(i64, &'a str, &'a IndexRows)],
}

impl EachTable for IndexInsert<'_> {
    type Error = std::convert::Infallible;

    fn table<T: IndexTable>(&mut self) -> Result<(), Self::Error> {
        let rows: Vec<(i64, &str, &T)> = self
            .resources
            .iter()
            .flat_map(|&(n, resource_type, index)| {
                T::rows(index)
                    .iter()
                    .map(move |row| (n, resource_type, row))
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let s = &mut *self.s;
        let ns: Vec<i64> = rows.iter().map(|(n, _, _)| *n).collect();
        let keys: Vec<i32> = rows
            .iter()
            .map(|(_, t, row)| key(t, row.param()) as i32)
            .collect();
        let mut arrays = vec![
            format!("{}::int8[]", s.arg(ns)),
            format!("{}::int4[]", s.arg(keys)),
        ];
        for column in 0..T::COLUMNS.len() {
            let array = column_array(rows.iter().map(|(_, _, row)| row.cell(column)));
            arrays.push(array.bind(s));
        }
        let names: Vec<String> = (1..arrays.len()).map(|i| format!("c{i}")).collect();
        s.parts.push(format!(
            "ins_{table} AS (INSERT INTO {table} (res_id, tid, key, {columns}) \
             SELECT rid.res_id, {tid}, u.{names} FROM UNNEST({arrays}) AS u(n, {list}) \
             JOIN rid ON rid.n = u.n)",
            table = T::NAME,
            columns = T::COLUMNS.join(", "),
            tid = self.tid,
            names = names.join(", u."),
            arrays = arrays.join(", "),
            list = names.join(", "),
        ));
        Ok(())
    }
}

/// One column of a table's rows, as the typed array PostgreSQL unnests.
enum ColumnArray<'r> {
    Int(Vec<i64>),
    Small(Vec<i16>),
    Float(Vec<f64>),
    Text(Vec<Option<&'r str>>),
}

/// The column of `cells`, typed by their kind (a table's column has one kind).
fn column_array<'r>(cells: impl Iterator<Item = Cell<'r>>) -> ColumnArray<'r> {
    let mut cells = cells.peekable();
    let mut array = match cells.peek() {
        Some(Cell::Int(_)) => ColumnArray::Int(Vec::new()),
        Some(Cell::Small(_)) => ColumnArray::Small(Vec::new()),
        Some(Cell::Float(_)) => ColumnArray::Float(Vec::new()),
        Some(Cell::Text(_) | Cell::OptionalText(_)) | None => ColumnArray::Text(Vec::new()),
    };
    for cell in cells {
        match (&mut array, cell) {
            (ColumnArray::Int(values), Cell::Int(value)) => values.push(value),
            (ColumnArray::Small(values), Cell::Small(value)) => values.push(value),
            (ColumnArray::Float(values), Cell::Float(value)) => values.push(value),
            (ColumnArray::Text(values), Cell::Text(text)) => values.push(Some(text)),
            (ColumnArray::Text(values), Cell::OptionalText(text)) => values.push(text),
            // `IndexTable::cells` gives each column one kind; nothing else is built.
            _ => {}
        }
    }
    array
}

impl ColumnArray<'_> {
    /// Binds the array; its placeholder with the cast PostgreSQL needs to unnest it.
    fn bind(self, s: &mut Statement) -> String {
        match self {
            ColumnArray::Int(values) => format!("{}::int8[]", s.arg(values)),
            ColumnArray::Small(values) => format!("{}::int2[]", s.arg(values)),
            ColumnArray::Float(values) => format!("{}::float8[]", s.arg(values)),
            ColumnArray::Text(values) => format!("{}::text[]", s.arg(values)),
        }
    }
}
