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
struct Statement {
    parts: Vec<String>,
    args: PgArguments,
    error: Option<sqlx::error::BoxDynError>,
}

impl Statement {
    fn new() -> Statement {
        Statement {
            parts: Vec::new(),
            args: PgArguments::default(),
            error: None,
        }
    }

    /// Adds an argument and returns its placeholder.
    fn arg<'t, T: Encode<'t, Postgres> + Type<Postgres>>(&mut self, value: T) -> String {
        if let Err(error) = self.args.add(value) {
            self.error.get_or_insert(error);
        }
        format!("${}", self.args.len())
    }

    /// `WITH <parts> SELECT res_id FROM rid`, with its arguments.
    fn finish(self) -> Result<(String, PgArguments), StoreError> {
        match self.error {
            Some(error) => Err(StoreError::Database(format!(
                "cannot encode the write's arguments: {error}"
            ))),
            None => Ok((
                format!("WITH {} SELECT res_id FROM rid", self.parts.join(", ")),
                self.args,
            )),
        }
    }
}

/// Creates `resources` (of one tenant) in one statement.
pub fn creates(
    tenant: TenantId,
    resources: &[NewResource<'_>],
) -> Result<(String, PgArguments), StoreError> {
    let mut s = Statement::new();
    let tid = s.arg(tenant as i32);
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
    s.parts.push(format!(
        "rid AS (SELECT g.n, nextval('resources_res_id_seq') AS res_id \
         FROM generate_series(1::int8, {count}) AS g(n))"
    ));
    s.parts.push(format!(
        "new AS (SELECT * FROM UNNEST({types}::text[], {ids}::text[], {times}::int8[], \
         {methods}::text[], {bodies}::bytea[]) \
         WITH ORDINALITY AS u(type, id, last_updated, method, body, n))"
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
    s.finish()
}

/// Writes a new version of one resource, or only its index rows.
pub fn statement(
    tenant: TenantId,
    resource_type: &str,
    target: &Target<'_>,
    index: &IndexRows,
) -> Result<(String, PgArguments), StoreError> {
    let mut s = Statement::new();
    let tid = s.arg(tenant as i32);
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
    /// Collects one column of a table's rows across the resources.
    fn column<'r, R: 'r, V>(
        resources: &[(i64, &'r str, &'r IndexRows)],
        rows: impl Fn(&'r IndexRows) -> &'r [R],
        value: impl Fn(i64, &'r str, &'r R) -> V,
    ) -> Vec<V> {
        resources
            .iter()
            .flat_map(|&(n, resource_type, index)| {
                rows(index).iter().map(move |row| (n, resource_type, row))
            })
            .map(|(n, resource_type, row)| value(n, resource_type, row))
            .collect()
    }
    let insert = |s: &mut Statement, table: &str, columns: &str, arrays: Vec<String>| {
        let names: Vec<String> = (0..arrays.len()).map(|i| format!("c{i}")).collect();
        s.parts.push(format!(
            "ins_{table} AS (INSERT INTO {table} (res_id, tid, {columns}) \
             SELECT rid.res_id, {tid}, u.{} FROM UNNEST({}) AS u(n, {}) JOIN rid ON rid.n = u.n)",
            names[1..].join(", u."),
            arrays.join(", "),
            names[1..].join(", ")
        ));
    };
    macro_rules! array {
        ($rows:expr, $cast:literal, |$n:ident, $t:ident, $r:ident| $value:expr) => {{
            let values = column(resources, $rows, |$n, $t, $r| $value);
            format!("{}::{}", s.arg(values), $cast)
        }};
    }
    let has = |rows: fn(&IndexRows) -> usize| resources.iter().any(|(_, _, i)| rows(i) > 0);
    if has(|i| i.tokens.len()) {
        let arrays = vec![
            array!(|i| i.tokens.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.tokens.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.tokens.as_slice(), "text[]", |_n, _t, r| r
                .system
                .as_str()),
            array!(|i| i.tokens.as_slice(), "text[]", |_n, _t, r| r
                .code
                .as_str()),
        ];
        insert(s, "idx_token", "key, system, code", arrays);
    }
    if has(|i| i.strings.len()) {
        let arrays = vec![
            array!(|i| i.strings.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.strings.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.strings.as_slice(), "int2[]", |_n, _t, r| i16::from(
                r.part
            )),
            array!(|i| i.strings.as_slice(), "text[]", |_n, _t, r| r
                .norm
                .as_str()),
            array!(|i| i.strings.as_slice(), "text[]", |_n, _t, r| r
                .exact
                .as_str()),
            array!(|i| i.strings.as_slice(), "text[]", |_n, _t, r| r
                .long
                .as_deref()),
        ];
        insert(
            s,
            "idx_string",
            "key, part, value_norm, value_exact, value_long",
            arrays,
        );
    }
    if has(|i| i.dates.len()) {
        let arrays = vec![
            array!(|i| i.dates.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.dates.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.dates.as_slice(), "int8[]", |_n, _t, r| r.low),
            array!(|i| i.dates.as_slice(), "int8[]", |_n, _t, r| r.high),
            array!(|i| i.dates.as_slice(), "int2[]", |_n, _t, r| i16::from(
                r.is_short()
            )),
        ];
        insert(s, "idx_date", "key, low, high, short", arrays);
    }
    if has(|i| i.references.len()) {
        let arrays = vec![
            array!(|i| i.references.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.references.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.references.as_slice(), "text[]", |_n, _t, r| r
                .target_type
                .as_str()),
            array!(|i| i.references.as_slice(), "text[]", |_n, _t, r| r
                .target_id
                .as_str()),
            array!(|i| i.references.as_slice(), "text[]", |_n, _t, r| r
                .url
                .as_str()),
        ];
        insert(
            s,
            "idx_reference",
            "key, target_type, target_id, url",
            arrays,
        );
    }
    if has(|i| i.numbers.len()) {
        let arrays = vec![
            array!(|i| i.numbers.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.numbers.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.numbers.as_slice(), "float8[]", |_n, _t, r| r.value),
        ];
        insert(s, "idx_number", "key, value", arrays);
    }
    if has(|i| i.quantities.len()) {
        let arrays = vec![
            array!(|i| i.quantities.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.quantities.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.quantities.as_slice(), "float8[]", |_n, _t, r| r.value),
            array!(|i| i.quantities.as_slice(), "text[]", |_n, _t, r| r
                .system
                .as_str()),
            array!(|i| i.quantities.as_slice(), "text[]", |_n, _t, r| r
                .code
                .as_str()),
        ];
        insert(s, "idx_quantity", "key, value, system, code", arrays);
    }
    if has(|i| i.uris.len()) {
        let arrays = vec![
            array!(|i| i.uris.as_slice(), "int8[]", |n, _t, _r| n),
            array!(|i| i.uris.as_slice(), "int4[]", |_n, t, r| key(t, &r.param)
                as i32),
            array!(|i| i.uris.as_slice(), "text[]", |_n, _t, r| r
                .value
                .as_str()),
        ];
        insert(s, "idx_uri", "key, value", arrays);
    }
    if has(|i| i.ref_dates.len()) {
        let arrays = vec![
            array!(|i| i.ref_dates.as_slice(), "int8[]", |n, _t, _r| n),
            array!(
                |i| i.ref_dates.as_slice(),
                "int4[]",
                |_n, t, r| key(t, &r.param) as i32
            ),
            array!(|i| i.ref_dates.as_slice(), "text[]", |_n, _t, r| r
                .target_type
                .as_str()),
            array!(|i| i.ref_dates.as_slice(), "text[]", |_n, _t, r| r
                .target_id
                .as_str()),
            array!(|i| i.ref_dates.as_slice(), "int8[]", |_n, _t, r| r.low),
            array!(|i| i.ref_dates.as_slice(), "int8[]", |_n, _t, r| r.high),
            array!(|i| i.ref_dates.as_slice(), "int2[]", |_n, _t, r| i16::from(
                r.is_short()
            )),
        ];
        insert(
            s,
            "idx_ref_date",
            "key, target_type, target_id, low, high, short",
            arrays,
        );
    }
}
