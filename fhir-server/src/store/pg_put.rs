//! The one PostgreSQL statement that writes a version: the version row, the head, and the
//! search-index rows, as a data-modifying CTE, so a write costs one round trip.
//!
//! The statement names only the index tables that get rows. A Patient has token, string
//! and date rows, but no number, quantity, reference or uri ones; with every table in the
//! statement, PostgreSQL planned, opened and ran all seven inserts for each write (a tenth
//! of its time in a profile of creates). The sub-statements share one snapshot, so the
//! DELETEs of an update remove only the old index rows, never those inserted beside them.

use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Encode, Postgres, Type};

use super::{StoreError, TenantId};
use crate::index::{IndexRows, key};

/// The version row of a write.
pub struct VersionRow<'a> {
    pub id: &'a str,
    pub version: i64,
    pub last_updated: i64,
    pub method: &'a str,
    /// `None` for a delete.
    pub body: Option<&'a [u8]>,
}

/// What the statement writes besides the index rows.
pub enum Target<'a> {
    /// A new resource: its first version and its head.
    New(VersionRow<'a>),
    /// A new version of resource `res_id`: its old index rows go.
    Update(VersionRow<'a>, i64),
    /// Only the index rows of resource `res_id` (reindexing).
    Reindex(i64),
}

/// SQL text with its arguments, numbered as they are added.
struct Statement {
    text: String,
    args: PgArguments,
    error: Option<sqlx::error::BoxDynError>,
}

impl Statement {
    /// Adds an argument and returns its placeholder.
    fn arg<'t, T: Encode<'t, Postgres> + Type<Postgres>>(&mut self, value: T) -> String {
        if let Err(error) = self.args.add(value) {
            self.error.get_or_insert(error);
        }
        format!("${}", self.args.len())
    }
}

/// The statement and its arguments.
pub fn statement(
    tenant: TenantId,
    resource_type: &str,
    target: &Target<'_>,
    index: &IndexRows,
) -> Result<(String, PgArguments), StoreError> {
    let mut s = Statement {
        text: String::with_capacity(2048),
        args: PgArguments::default(),
        error: None,
    };
    let tid = s.arg(tenant as i32);
    let mut parts: Vec<String> = Vec::new();
    match target {
        Target::New(row) | Target::Update(row, _) => {
            let resource_type = s.arg(resource_type);
            let id = s.arg(row.id);
            let version = s.arg(row.version);
            let last_updated = s.arg(row.last_updated);
            let method = s.arg(row.method);
            let deleted = s.arg(i16::from(row.body.is_none()));
            let body = s.arg(row.body);
            parts.push(format!(
                "version AS (INSERT INTO resource_versions \
                 (tid, type, id, version, last_updated, method, deleted, body) \
                 VALUES ({tid}, {resource_type}, {id}, {version}, {last_updated}, {method}, \
                 {deleted}, {body}))"
            ));
            parts.push(match target {
                Target::Update(_, res_id) => {
                    let res_id = s.arg(*res_id);
                    format!(
                        "head AS (UPDATE resources SET version = {version}, \
                         last_updated = {last_updated}, deleted = {deleted} \
                         WHERE res_id = {res_id} RETURNING res_id)"
                    )
                }
                _ => format!(
                    "head AS (INSERT INTO resources \
                     (tid, type, id, version, last_updated, deleted) \
                     VALUES ({tid}, {resource_type}, {id}, {version}, {last_updated}, \
                     {deleted}) RETURNING res_id)"
                ),
            });
        }
        Target::Reindex(res_id) => {
            let res_id = s.arg(*res_id);
            parts.push(format!("head AS (SELECT {res_id}::bigint AS res_id)"));
        }
    }
    if let Target::Update(_, res_id) | Target::Reindex(res_id) = target {
        let res_id = s.arg(*res_id);
        for table in super::INDEX_TABLES {
            parts.push(format!(
                "del_{table} AS (DELETE FROM {table} WHERE res_id = {res_id})"
            ));
        }
    }
    let keys = |params: &mut dyn Iterator<Item = &str>| -> Vec<i32> {
        params
            .map(|param| key(resource_type, param) as i32)
            .collect()
    };
    // Each index table: its rows as parallel arrays, unnested beside the head's res_id.
    let mut insert = |table: &str, columns: &str, arrays: Vec<String>| {
        let names: Vec<String> = (0..arrays.len()).map(|i| format!("c{i}")).collect();
        parts.push(format!(
            "ins_{table} AS (INSERT INTO {table} (res_id, tid, {columns}) \
             SELECT head.res_id, {tid}, u.{} FROM head, UNNEST({}) AS u({}))",
            names.join(", u."),
            arrays.join(", "),
            names.join(", ")
        ));
    };
    if !index.tokens.is_empty() {
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut index.tokens.iter().map(|r| r.param.as_str())))
            ),
            format!("{}::text[]", s.arg(texts(&index.tokens, |r| &r.system))),
            format!("{}::text[]", s.arg(texts(&index.tokens, |r| &r.code))),
        ];
        insert("idx_token", "key, system, code", arrays);
    }
    if !index.strings.is_empty() {
        let strings = &index.strings;
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut strings.iter().map(|r| r.param.as_str())))
            ),
            format!(
                "{}::int2[]",
                s.arg(
                    strings
                        .iter()
                        .map(|r| i16::from(r.part))
                        .collect::<Vec<i16>>()
                )
            ),
            format!("{}::text[]", s.arg(texts(strings, |r| &r.norm))),
            format!("{}::text[]", s.arg(texts(strings, |r| &r.exact))),
        ];
        insert("idx_string", "key, part, value_norm, value_exact", arrays);
    }
    if !index.dates.is_empty() {
        let dates = &index.dates;
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut dates.iter().map(|r| r.param.as_str())))
            ),
            format!(
                "{}::int8[]",
                s.arg(dates.iter().map(|r| r.low).collect::<Vec<i64>>())
            ),
            format!(
                "{}::int8[]",
                s.arg(dates.iter().map(|r| r.high).collect::<Vec<i64>>())
            ),
            format!(
                "{}::int2[]",
                s.arg(
                    dates
                        .iter()
                        .map(|r| i16::from(r.is_short()))
                        .collect::<Vec<i16>>()
                )
            ),
        ];
        insert("idx_date", "key, low, high, short", arrays);
    }
    if !index.references.is_empty() {
        let references = &index.references;
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut references.iter().map(|r| r.param.as_str())))
            ),
            format!("{}::text[]", s.arg(texts(references, |r| &r.target_type))),
            format!("{}::text[]", s.arg(texts(references, |r| &r.target_id))),
            format!("{}::text[]", s.arg(texts(references, |r| &r.url))),
        ];
        insert("idx_reference", "key, target_type, target_id, url", arrays);
    }
    if !index.numbers.is_empty() {
        let numbers = &index.numbers;
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut numbers.iter().map(|r| r.param.as_str())))
            ),
            format!(
                "{}::float8[]",
                s.arg(numbers.iter().map(|r| r.value).collect::<Vec<f64>>())
            ),
        ];
        insert("idx_number", "key, value", arrays);
    }
    if !index.quantities.is_empty() {
        let quantities = &index.quantities;
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut quantities.iter().map(|r| r.param.as_str())))
            ),
            format!(
                "{}::float8[]",
                s.arg(quantities.iter().map(|r| r.value).collect::<Vec<f64>>())
            ),
            format!("{}::text[]", s.arg(texts(quantities, |r| &r.system))),
            format!("{}::text[]", s.arg(texts(quantities, |r| &r.code))),
        ];
        insert("idx_quantity", "key, value, system, code", arrays);
    }
    if !index.uris.is_empty() {
        let arrays = vec![
            format!(
                "{}::int4[]",
                s.arg(keys(&mut index.uris.iter().map(|r| r.param.as_str())))
            ),
            format!("{}::text[]", s.arg(texts(&index.uris, |r| &r.value))),
        ];
        insert("idx_uri", "key, value", arrays);
    }
    s.text.push_str("WITH ");
    s.text.push_str(&parts.join(", "));
    s.text.push_str(" SELECT res_id FROM head");
    match s.error {
        Some(error) => Err(StoreError::Database(format!(
            "cannot encode the write's arguments: {error}"
        ))),
        None => Ok((s.text, s.args)),
    }
}

fn texts<'r, T>(rows: &'r [T], field: impl Fn(&'r T) -> &'r str) -> Vec<&'r str> {
    rows.iter().map(field).collect()
}
