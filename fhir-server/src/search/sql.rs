//! Turns a [`Query`] into SQL that both databases run.
//!
//! Each clause becomes a predicate on the head table: `res_id IN (a subquery on the
//! parameter's index table)`, so every lookup uses an index that leads with the tenant and
//! the parameter's key (`index::key`, which names the resource type and parameter). Chains nest such subqueries through `idx_reference`; `_has` runs one in reverse.
//! Values are always bound as parameters, never spliced into the text, so a search value
//! cannot change the SQL that runs. The text uses `?` placeholders; the PostgreSQL store
//! renumbers them to `$1, $2, ...`.

use super::cursor::{Cursor, KeyValue};
use super::query::{
    Clause, Condition, DateBound, Include, Prefix, Query, SortKey, SortKind, Table,
};
use crate::ids::TenantId;
use crate::index::bounded::{self, MAX_INDEXED_BYTES, equality_key};
use crate::index::{self, identifier_key, text_key};
use crate::params::dates;
use crate::params::registry;

/// A bound SQL argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A NULL text.
    Null,
    Text(String),
    Int(i64),
    Real(f64),
}

/// SQL text with its arguments, in placeholder order.
#[derive(Debug, Clone, Default)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub fn bind(&mut self, arg: Arg) {
        self.text.push('?');
        self.args.push(arg);
    }

    /// Appends another fragment, with its arguments.
    pub fn append(&mut self, other: Sql) {
        self.text.push_str(&other.text);
        self.args.extend(other.args);
    }

    pub fn bind_text(&mut self, value: &str) {
        self.bind(Arg::Text(value.to_owned()));
    }

    fn bind_key(&mut self, key: &KeyValue) {
        self.bind(match key {
            KeyValue::Text(t) => Arg::Text(t.clone()),
            KeyValue::Int(i) => Arg::Int(*i),
            KeyValue::Real(r) => Arg::Real(*r),
        });
    }
}

/// How a sort key's value is decoded from a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Text,
    Int,
    Real,
}

/// The largest string, for sorting missing values after every present one.
const TEXT_MAX: &str = "\u{10FFFF}";

pub fn key_kinds(query: &Query) -> Vec<KeyKind> {
    query.sort.iter().map(key_kind).collect()
}

fn key_kind(key: &SortKey) -> KeyKind {
    match &key.kind {
        SortKind::Id => KeyKind::Text,
        SortKind::LastUpdated => KeyKind::Int,
        SortKind::Index { table, .. } => match table {
            Table::Date => KeyKind::Int,
            Table::Number | Table::Quantity => KeyKind::Real,
            _ => KeyKind::Text,
        },
    }
}

/// The value a missing sort key takes: after every present value, in either direction.
fn missing_value(kind: KeyKind, descending: bool) -> Arg {
    match (kind, descending) {
        (KeyKind::Text, false) => Arg::Text(TEXT_MAX.to_owned()),
        (KeyKind::Text, true) => Arg::Text(String::new()),
        (KeyKind::Int, false) => Arg::Int(i64::MAX),
        (KeyKind::Int, true) => Arg::Int(i64::MIN),
        (KeyKind::Real, false) => Arg::Real(f64::MAX),
        (KeyKind::Real, true) => Arg::Real(f64::MIN),
    }
}

/// One page of matches in the query's order: after (or, for a backward cursor, before) the
/// cursor, at most `limit` rows. A backward page comes out in reverse order.
pub fn select_page(tenant: TenantId, query: &Query, limit: usize) -> Sql {
    ordered_matches(tenant, query, limit, true)
}

/// Like [`select_page`], without the bodies: `res_id`, then the sort keys. Index-only, so
/// fetching more ids than a page (to learn the total at once) stays cheap.
pub fn select_ids(tenant: TenantId, query: &Query, limit: usize) -> Sql {
    ordered_matches(tenant, query, limit, false)
}

fn ordered_matches(tenant: TenantId, query: &Query, limit: usize, bodies: bool) -> Sql {
    let backward = query.cursor.as_ref().is_some_and(|c| !c.forward);
    let mut sql = Sql::default();
    sql.push(if bodies {
        "SELECT q.res_id, q.type, q.id, q.version, q.last_updated, v.body"
    } else {
        "SELECT q.res_id"
    });
    for i in 0..query.sort.len() {
        sql.push(&format!(", q.k{i}"));
    }
    // The head row is read only for what it alone has: page rows, or sorting by id or time.
    let head = bodies
        || query
            .sort
            .iter()
            .any(|key| matches!(key.kind, SortKind::Id | SortKind::LastUpdated));
    sql.push(if head {
        " FROM (SELECT r.res_id, r.type, r.id, r.version, r.last_updated"
    } else {
        " FROM (SELECT r.res_id"
    });
    for (i, key) in query.sort.iter().enumerate() {
        sql.push(", ");
        push_sort_expression(&mut sql, &query.resource_type, key);
        sql.push(&format!(" AS k{i}"));
    }
    sql.push(" ");
    push_match(
        &mut sql,
        tenant,
        &query.resource_type,
        "r",
        &query.clauses,
        0,
        head,
    );
    sql.push(") q");
    if bodies {
        sql.push(" JOIN resource_versions v ON v.tid = ");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(" AND v.type = q.type AND v.id = q.id AND v.version = q.version");
    }
    if let Some(cursor) = &query.cursor {
        sql.push(" WHERE ");
        push_keyset(&mut sql, &query.sort, cursor, backward);
    }
    sql.push(" ORDER BY ");
    for (i, key) in query.sort.iter().enumerate() {
        let descending = key.descending != backward;
        sql.push(&format!(
            "q.k{i} {}, ",
            if descending { "DESC" } else { "ASC" }
        ));
    }
    sql.push(if backward {
        "q.res_id DESC"
    } else {
        "q.res_id ASC"
    });
    sql.push(" LIMIT ");
    sql.bind(Arg::Int(limit as i64));
    sql
}

/// Page rows of the current resources with these res_ids (in no particular order).
///
/// The res_ids come from a query of this tenant, so the only condition is on res_id: with
/// a tenant condition beside it, SQLite chose the tenant-leading index and scanned the
/// tenant's every head row instead of looking the ids up.
pub fn fetch_by_res_ids(res_ids: &[i64]) -> Sql {
    let mut sql = Sql::default();
    sql.push(PAGE_SELECT);
    sql.push(" WHERE q.res_id IN (");
    push_ints(&mut sql, res_ids);
    sql.push(") AND q.deleted = 0");
    sql
}

/// Page rows of the current resources of one type after res_id `after` (callers add
/// conditions on `q`, then the order and limit): the pages of an export.
pub fn current_page(tenant: TenantId, resource_type: &str, after: i64) -> Sql {
    let mut sql = fetch_head(tenant);
    sql.push(" AND q.type = ");
    sql.bind_text(resource_type);
    sql.push(" AND q.res_id > ");
    sql.bind(Arg::Int(after));
    sql
}

/// How many resources match (ignoring the cursor).
pub fn count(tenant: TenantId, query: &Query) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) ");
    push_match(
        &mut sql,
        tenant,
        &query.resource_type,
        "r",
        &query.clauses,
        0,
        false,
    );
    sql
}

/// Entries strictly after (before, going backward) the cursor in the sort order.
fn push_keyset(sql: &mut Sql, sort: &[SortKey], cursor: &Cursor, backward: bool) {
    let keys: Vec<(String, bool)> = sort
        .iter()
        .enumerate()
        .map(|(i, key)| (format!("q.k{i}"), key.descending != backward))
        .chain(std::iter::once(("q.res_id".to_owned(), backward)))
        .collect();
    let values: Vec<KeyValue> = cursor
        .keys
        .iter()
        .cloned()
        .chain(std::iter::once(KeyValue::Int(cursor.res_id)))
        .collect();
    sql.push("(");
    for i in 0..keys.len().min(values.len()) {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for j in 0..i {
            sql.push(&format!("{} = ", keys[j].0));
            sql.bind_key(&values[j]);
            sql.push(" AND ");
        }
        let (column, descending) = &keys[i];
        sql.push(&format!(
            "{column} {} ",
            if *descending { "<" } else { ">" }
        ));
        sql.bind_key(&values[i]);
        sql.push(")");
    }
    sql.push(")");
}

fn push_sort_expression(sql: &mut Sql, resource_type: &str, key: &SortKey) {
    let kind = key_kind(key);
    match &key.kind {
        SortKind::Id => sql.push("r.id"),
        SortKind::LastUpdated => sql.push("r.last_updated"),
        SortKind::Index { table, param } => {
            let (low, high) = match table {
                Table::String => ("MIN(s.value_norm)", "MAX(s.value_norm)"),
                Table::Token => ("MIN(s.code)", "MAX(s.code)"),
                Table::Date => ("MIN(s.low)", "MAX(s.high)"),
                Table::Reference => ("MIN(s.target_id)", "MAX(s.target_id)"),
                Table::Number | Table::Quantity => ("MIN(s.value)", "MAX(s.value)"),
                Table::Uri => ("MIN(s.value)", "MAX(s.value)"),
            };
            sql.push("COALESCE((SELECT ");
            sql.push(if key.descending { high } else { low });
            sql.push(&format!(
                " FROM {} s WHERE s.res_id = r.res_id AND ",
                table.name()
            ));
            push_key(sql, "s", resource_type, param);
            sql.push("), ");
            sql.bind(missing_value(kind, key.descending));
            sql.push(")");
        }
    }
}

/// `FROM ... WHERE ...` over the head rows (as `alias`) of current resources of
/// `resource_type` that match all `clauses`.
///
/// The most selective clause drives: it becomes a set of res_ids read from its index, the
/// outer side of a `CROSS JOIN` with the head table (SQLite keeps a CROSS JOIN's left side
/// outer; with `res_id IN (...)` it was free to walk the whole head table in res_id order
/// instead). When the next clause is selective too, the driver is the intersection of
/// both ranges, read from covering indexes, so "this schedule" and "this week" are each
/// scanned once. The other clauses, most selective first, probe each candidate's own
/// index rows.
///
/// `head`: whether the caller reads the head row's columns (`id`, `version`, ...) through
/// `alias`. When it does not, and no clause needs them, the head table is left out and
/// `alias` is the driver's set of res_ids: index rows exist only for current, non-deleted
/// versions, and a row's tenant and key already say whose and of which type it is. That
/// spares a head lookup per match, which for a name prefix matching thousands of patients
/// was most of the time of the search and of its count.
fn push_match(
    sql: &mut Sql,
    tenant: TenantId,
    resource_type: &str,
    alias: &str,
    clauses: &[Clause],
    depth: usize,
    head: bool,
) {
    let (driver, rest) = choose_driver(tenant, resource_type, clauses, depth);
    if driver.text.is_empty() {
        sql.push(&format!("FROM resources {alias} WHERE "));
    } else if !head && !rest.iter().any(|c| needs_head(c)) {
        sql.push("FROM (SELECT DISTINCT s.res_id FROM (");
        sql.append(driver);
        sql.push(&format!(") s) {alias} WHERE 1 = 1"));
        for clause in rest {
            sql.push(" AND ");
            push_clause(sql, tenant, resource_type, alias, clause, depth);
        }
        return;
    } else {
        let set = format!("d{depth}");
        sql.push("FROM (SELECT DISTINCT s.res_id FROM (");
        sql.append(driver);
        sql.push(&format!(
            ") s) {set} CROSS JOIN resources {alias} WHERE {alias}.res_id = {set}.res_id AND "
        ));
    }
    sql.push(&format!("{alias}.tid = "));
    sql.bind(Arg::Int(tenant.get()));
    sql.push(&format!(" AND {alias}.type = "));
    sql.bind_text(resource_type);
    sql.push(&format!(" AND {alias}.deleted = 0"));
    for clause in rest {
        sql.push(" AND ");
        push_clause(sql, tenant, resource_type, alias, clause, depth);
    }
}

/// The res_ids of every match, unordered and possibly repeated, for a query that a
/// driving clause and index probes answer alone (no sort, nothing read from the head
/// row); `None` for any other. The caller sorts and removes repeats: in memory that is
/// far cheaper than the two temporary b-trees (DISTINCT, then ORDER BY) SQLite builds
/// for it, which were most of the time of a name prefix matching 9,000 patients.
pub fn select_match_ids(tenant: TenantId, query: &Query) -> Option<Sql> {
    if !query.sort.is_empty() {
        return None;
    }
    let (driver, rest) = choose_driver(tenant, &query.resource_type, &query.clauses, 0);
    if driver.text.is_empty() || rest.iter().any(|c| needs_head(c)) {
        return None;
    }
    let mut sql = Sql::default();
    sql.push("SELECT r.res_id FROM (");
    sql.append(driver);
    sql.push(") r WHERE 1 = 1");
    for clause in rest {
        sql.push(" AND ");
        push_clause(&mut sql, tenant, &query.resource_type, "r", clause, 0);
    }
    Some(sql)
}

/// Picks the clauses that drive a match (see `push_match`) and writes their res_ids as a
/// `SELECT res_id ...` (empty when none can drive); returns the clauses left to probe,
/// most selective first.
fn choose_driver<'q>(
    tenant: TenantId,
    resource_type: &str,
    clauses: &'q [Clause],
    depth: usize,
) -> (Sql, Vec<&'q Clause>) {
    let mut ordered: Vec<&Clause> = clauses.iter().collect();
    ordered.sort_by_key(|c| rank(c));
    let mut driver = Sql::default();
    if let Some(pair) = find_pair(resource_type, &ordered) {
        push_pair_select(&mut driver, tenant, resource_type, &pair);
        let rest = ordered
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pair.reference_at && *i != pair.date_at)
            .map(|(_, c)| *c)
            .collect();
        return (driver, rest);
    }
    let rest = match ordered.as_slice() {
        [first, second, others @ ..]
            if rank(second) <= 2
                && plain_index(first).is_some()
                && plain_index(second).is_some() =>
        {
            for (i, clause) in [first, second].into_iter().enumerate() {
                if i > 0 {
                    driver.push(" INTERSECT ");
                }
                if let Some(index) = plain_index(clause) {
                    push_index_select(&mut driver, tenant, resource_type, index);
                }
            }
            others.to_vec()
        }
        [first, others @ ..]
            if rank(first) < 9
                && push_driver_set(&mut driver, tenant, resource_type, first, depth) =>
        {
            others.to_vec()
        }
        all => all.to_vec(),
    };
    (driver, rest)
}

/// A reference clause with fixed targets and a date clause that the index keeps as a pair
/// (`registry::REFERENCE_DATE_PAIRS`), found among a query's clauses.
struct Pair<'q> {
    reference_at: usize,
    date_at: usize,
    name: String,
    targets: &'q [Condition],
    bounds: &'q [DateBound],
}

fn find_pair<'q>(resource_type: &str, clauses: &[&'q Clause]) -> Option<Pair<'q>> {
    for (reference_at, clause) in clauses.iter().enumerate() {
        let Clause::Index {
            table: Table::Reference,
            param: reference,
            any: targets,
            negate: false,
        } = clause
        else {
            continue;
        };
        let fixed = |c: &Condition| {
            matches!(
                c,
                Condition::Reference {
                    target_id: Some(_),
                    url: None,
                    ..
                }
            )
        };
        if targets.is_empty() || !targets.iter().all(fixed) {
            continue;
        }
        for (date_at, other) in clauses.iter().enumerate() {
            if let Clause::Index {
                table: Table::Date,
                param: date,
                any,
                negate: false,
            } = other
                && let [Condition::Date(bounds)] = any.as_slice()
                && registry::is_pair(resource_type, reference, date)
            {
                return Some(Pair {
                    reference_at,
                    date_at,
                    name: registry::pair_name(reference, date),
                    targets,
                    bounds,
                });
            }
        }
    }
    None
}

/// The res_ids of a pair's rows in the date window, for each target: per target, the
/// short and the long rows as two ranges of the lookup index (see `push_index_select`).
fn push_pair_select(sql: &mut Sql, tenant: TenantId, resource_type: &str, pair: &Pair<'_>) {
    sql.push("SELECT res_id FROM (");
    let mut first = true;
    for target in pair.targets {
        let Condition::Reference {
            target_type,
            target_id: Some(target_id),
            ..
        } = target
        else {
            continue;
        };
        for short in [true, false] {
            if !first {
                sql.push(" UNION ALL ");
            }
            first = false;
            sql.push("SELECT x.res_id FROM idx_ref_date x WHERE x.tid = ");
            sql.bind(Arg::Int(tenant.get()));
            sql.push(" AND x.key = ");
            sql.bind(Arg::Int(index::key(resource_type, &pair.name)));
            sql.push(" AND x.target_id = ");
            sql.bind_text(target_id);
            if let Some(target_type) = target_type {
                sql.push(" AND x.target_type = ");
                sql.bind_text(target_type);
            }
            sql.push(" AND ");
            push_date_branch(sql, pair.bounds, short);
        }
    }
    sql.push(") pairs");
}

/// Whether a clause reads the head row (its id or time) rather than index rows.
fn needs_head(clause: &Clause) -> bool {
    match clause {
        Clause::Id(_) | Clause::LastUpdated(_) | Clause::Has { .. } => true,
        Clause::AnyOf(members) => members.iter().any(needs_head),
        Clause::Index { .. } | Clause::Missing { .. } | Clause::Chain { .. } => false,
    }
}

/// Writes the res_ids of the resources of `resource_type` that meet `clause`, as a
/// `SELECT res_id ...`; `false` (writing nothing) when the clause cannot be a driver.
fn push_driver_set(
    sql: &mut Sql,
    tenant: TenantId,
    resource_type: &str,
    clause: &Clause,
    depth: usize,
) -> bool {
    let heads = format!("h{depth}");
    match clause {
        Clause::Index { .. } => match plain_index(clause) {
            Some(index) => {
                push_index_select(sql, tenant, resource_type, index);
                true
            }
            None => false,
        },
        Clause::Chain { param, targets } => {
            push_chain_select(sql, tenant, resource_type, param, targets, depth);
            true
        }
        Clause::Id(_) | Clause::Has { .. } => {
            sql.push(&format!(
                "SELECT {heads}.res_id FROM resources {heads} WHERE {heads}.tid = "
            ));
            sql.bind(Arg::Int(tenant.get()));
            sql.push(&format!(" AND {heads}.type = "));
            sql.bind_text(resource_type);
            sql.push(" AND ");
            push_clause(sql, tenant, resource_type, &heads, clause, depth);
            true
        }
        Clause::AnyOf(members) if members.iter().all(|m| plain_index(m).is_some()) => {
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    sql.push(" UNION ");
                }
                push_driver_set(sql, tenant, resource_type, member, depth);
            }
            !members.is_empty()
        }
        _ => false,
    }
}

/// The res_ids of `resource_type` resources whose `param` references a target that meets
/// its type's clauses.
fn push_chain_select(
    sql: &mut Sql,
    tenant: TenantId,
    resource_type: &str,
    param: &str,
    targets: &[(String, Vec<Clause>)],
    depth: usize,
) {
    let inner = format!("r{}", depth + 1);
    sql.push("SELECT x.res_id FROM idx_reference x WHERE ");
    push_index_head(sql, tenant, resource_type, param);
    sql.push(" AND (");
    for (i, (target_type, clauses)) in targets.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(x.target_type = ");
        sql.bind_text(target_type);
        sql.push(&format!(" AND x.target_id IN (SELECT {inner}.id "));
        push_match(sql, tenant, target_type, &inner, clauses, depth + 1, true);
        sql.push("))");
    }
    sql.push(")");
}

/// An index clause that can be read as a range of its lookup index.
fn plain_index(clause: &Clause) -> Option<(Table, &str, &[Condition])> {
    match clause {
        Clause::Index {
            table,
            param,
            any,
            negate: false,
        } => Some((*table, param, any)),
        _ => None,
    }
}

/// `SELECT x.res_id FROM <table> x WHERE <tenant, type, param> AND (<any>)`.
fn push_index_select(
    sql: &mut Sql,
    tenant: TenantId,
    resource_type: &str,
    (table, param, any): (Table, &str, &[Condition]),
) {
    if let [Condition::Date(bounds)] = any {
        // Short and long rows as two index ranges: with an OR between them, SQLite would
        // scan every row of the parameter instead.
        sql.push("SELECT res_id FROM (");
        for short in [true, false] {
            if !short {
                sql.push(" UNION ALL ");
            }
            sql.push("SELECT x.res_id FROM idx_date x WHERE ");
            push_index_head(sql, tenant, resource_type, param);
            sql.push(" AND ");
            push_date_branch(sql, bounds, short);
        }
        sql.push(") dates");
        return;
    }
    sql.push(&format!("SELECT x.res_id FROM {} x WHERE ", table.name()));
    push_index_head(sql, tenant, resource_type, param);
    sql.push(" AND ");
    push_any(sql, any, push_condition);
}

/// How selective a clause is likely to be: lower drives the query.
fn rank(clause: &Clause) -> u8 {
    match clause {
        Clause::Id(_) => 0,
        Clause::Index { negate: true, .. } | Clause::Missing { .. } => 9,
        Clause::Index { param, any, .. } => any
            .iter()
            .map(|c| condition_rank(param, c))
            .max()
            .unwrap_or(9),
        Clause::Chain { .. } | Clause::Has { .. } => 3,
        Clause::AnyOf(clauses) => clauses.iter().map(rank).max().unwrap_or(9),
        Clause::LastUpdated(_) => 5,
    }
}

fn condition_rank(param: &str, condition: &Condition) -> u8 {
    match condition {
        Condition::Reference {
            target_id: Some(_), ..
        }
        | Condition::Reference { url: Some(_), .. } => 1,
        Condition::Token {
            system: Some(_),
            code: Some(_),
        } => 1,
        Condition::Token { .. } if param.contains("identifier") => 1,
        Condition::StringExact(_) | Condition::UriEquals(_) => 1,
        Condition::Date(bounds)
            if bounds.len() > 1
                || matches!(
                    bounds[..],
                    [DateBound {
                        prefix: Prefix::Eq | Prefix::Ap,
                        ..
                    }]
                ) =>
        {
            2
        }
        Condition::StringPrefix(prefix) if prefix.chars().count() >= 3 => 2,
        Condition::Token { .. } | Condition::Number { .. } | Condition::Quantity { .. } => 3,
        Condition::StringPrefix(_) | Condition::Date(_) => 5,
        _ => 6,
    }
}

/// Writes `clause` as a predicate on the head row `alias` (a row of `resources`).
fn push_clause(
    sql: &mut Sql,
    tenant: TenantId,
    resource_type: &str,
    alias: &str,
    clause: &Clause,
    depth: usize,
) {
    match clause {
        Clause::Id(ids) => {
            sql.push(&format!("{alias}.id IN ("));
            push_texts(sql, ids);
            sql.push(")");
        }
        Clause::LastUpdated(any) => push_last_updated(sql, alias, any),
        Clause::Index {
            table,
            param,
            any,
            negate,
        } => push_index_exists(sql, resource_type, alias, (*table, param, any), *negate),
        Clause::Missing {
            table,
            param,
            missing,
        } => push_missing(sql, resource_type, alias, *table, param, *missing),
        Clause::Chain { param, targets } => {
            sql.push(&format!("{alias}.res_id IN ("));
            push_chain_select(sql, tenant, resource_type, param, targets, depth);
            sql.push(")");
        }
        Clause::Has {
            source_type,
            param,
            clauses,
        } => {
            let inner = format!("r{}", depth + 1);
            sql.push(&format!(
                "{alias}.id IN (SELECT x.target_id FROM idx_reference x WHERE "
            ));
            push_index_head(sql, tenant, source_type, param);
            sql.push(" AND x.target_type = ");
            sql.bind_text(resource_type);
            sql.push(&format!(" AND x.res_id IN (SELECT {inner}.res_id "));
            push_match(sql, tenant, source_type, &inner, clauses, depth + 1, false);
            sql.push("))");
        }
        Clause::AnyOf(clauses) => {
            sql.push("(");
            for (i, clause) in clauses.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                push_clause(sql, tenant, resource_type, alias, clause, depth);
            }
            sql.push(")");
        }
    }
}

/// `_lastUpdated` on the head row's own column: a point in time, not an index row's range,
/// so each bound is written by [`push_point_date`].
fn push_last_updated(sql: &mut Sql, alias: &str, any: &[Condition]) {
    let column = format!("{alias}.last_updated");
    push_any(sql, any, |sql, condition| match condition {
        Condition::Date(bounds) => {
            sql.push("1 = 1");
            for bound in bounds {
                sql.push(" AND ");
                push_point_date(sql, &column, *bound);
            }
        }
        _ => sql.push("1 = 0"),
    });
}

/// `[NOT] EXISTS` an index row of the resource under the parameter's key that meets one of
/// the conditions: the form of an index clause that does not drive the query.
fn push_index_exists(
    sql: &mut Sql,
    resource_type: &str,
    alias: &str,
    (table, param, any): (Table, &str, &[Condition]),
    negate: bool,
) {
    sql.push(&format!(
        "{}EXISTS (SELECT 1 FROM {} x WHERE x.res_id = {alias}.res_id AND ",
        if negate { "NOT " } else { "" },
        table.name()
    ));
    push_key(sql, "x", resource_type, param);
    sql.push(" AND ");
    push_any(sql, any, push_condition);
    sql.push(")");
}

/// `:missing=true|false`: whether the resource has an index row under any of the keys
/// that keep the parameter's element (see [`element_keys`]).
fn push_missing(
    sql: &mut Sql,
    resource_type: &str,
    alias: &str,
    table: Table,
    param: &str,
    missing: bool,
) {
    // Missing: no row under any of the element's keys; present: a row under one.
    sql.push("(");
    for (i, (table, key)) in element_keys(table, param).iter().enumerate() {
        if i > 0 {
            sql.push(if missing { " AND " } else { " OR " });
        }
        sql.push(&format!(
            "{}EXISTS (SELECT 1 FROM {} x WHERE x.res_id = {alias}.res_id AND ",
            if missing { "NOT " } else { "" },
            table.name()
        ));
        push_key(sql, "x", resource_type, key);
        sql.push(")");
    }
    sql.push(")");
}

/// Where the index keeps the values of a parameter's element, for `:missing`: a token's
/// CodeableConcept may have only a text (kept for `:text`), a Reference only an identifier
/// (kept for `:identifier`), and the element is present all the same.
fn element_keys(table: Table, param: &str) -> Vec<(Table, String)> {
    let mut keys = vec![(table, param.to_owned())];
    match table {
        Table::Token => keys.push((Table::String, text_key(param))),
        Table::Reference => keys.push((Table::Token, identifier_key(param))),
        _ => {}
    }
    keys
}

/// `x.tid = ? AND x.key = ?`: the leading columns of every lookup index.
pub(super) fn push_index_head(sql: &mut Sql, tenant: TenantId, resource_type: &str, param: &str) {
    sql.push("x.tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(" AND ");
    push_key(sql, "x", resource_type, param);
}

/// `{alias}.key = ?` for the rows of a parameter, with `AND {alias}.part = ?` when it is
/// answered from another parameter's rows (`index::slot`).
fn push_key(sql: &mut Sql, alias: &str, resource_type: &str, param: &str) {
    let (key, part) = index::slot(resource_type, param);
    sql.push(&format!("{alias}.key = "));
    sql.bind(Arg::Int(key));
    if let Some(part) = part {
        sql.push(&format!(" AND {alias}.part = "));
        sql.bind(Arg::Int(i64::from(part)));
    }
}

fn push_any(sql: &mut Sql, any: &[Condition], mut each: impl FnMut(&mut Sql, &Condition)) {
    sql.push("(");
    for (i, condition) in any.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        each(sql, condition);
        sql.push(")");
    }
    sql.push(")");
}

/// The first string that sorts after every string starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}{TEXT_MAX}")
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Writes one condition on an index row `x` of the condition's table.
pub(super) fn push_condition(sql: &mut Sql, condition: &Condition) {
    match condition {
        Condition::StringPrefix(prefix) => push_string_prefix(sql, prefix),
        Condition::StringExact(value) => {
            sql.push("x.value_exact = ");
            sql.bind_text(value);
        }
        Condition::StringContains(part) => push_string_contains(sql, part),
        Condition::Token { system, code } => {
            sql.push("1 = 1");
            push_equal_key(sql, "x.code", code.as_deref());
            push_equal_key(sql, "x.system", system.as_deref());
        }
        Condition::Date(bounds) => push_date_rows(sql, bounds),
        Condition::Reference {
            target_type,
            target_id,
            url,
        } => push_reference(
            sql,
            target_type.as_deref(),
            target_id.as_deref(),
            url.as_deref(),
        ),
        Condition::Number {
            prefix,
            value,
            low,
            high,
        } => push_number(sql, *prefix, *value, *low, *high),
        Condition::Quantity {
            prefix,
            value,
            low,
            high,
            system,
            code,
        } => {
            push_number(sql, *prefix, *value, *low, *high);
            push_equal_key(sql, "x.system", system.as_deref());
            push_equal_key(sql, "x.code", code.as_deref());
        }
        Condition::UriEquals(value) => {
            sql.push("x.value = ");
            sql.bind_text(&equality_key(value));
        }
        Condition::UriBelow(prefix) => {
            sql.push("x.value >= ");
            sql.bind_text(prefix);
            sql.push(" AND x.value < ");
            sql.bind_text(&prefix_end(prefix));
        }
        Condition::UriAbove(value) => {
            sql.push("x.value <> '' AND substr(");
            sql.bind_text(value);
            sql.push(", 1, length(x.value)) = x.value");
        }
    }
}

/// ` AND {column} = ?` with the value's equality key, when the condition names a value
/// for that column; nothing when it leaves the column free.
fn push_equal_key(sql: &mut Sql, column: &str, value: Option<&str>) {
    if let Some(value) = value {
        sql.push(&format!(" AND {column} = "));
        sql.bind_text(&equality_key(value));
    }
}

/// A string starting with `prefix` (normalized): a range of `value_norm`, the column its
/// index covers, while the prefix fits in the indexed bytes.
fn push_string_prefix(sql: &mut Sql, prefix: &str) {
    if prefix.len() > MAX_INDEXED_BYTES {
        // Longer than the indexed prefix: that prefix, then the whole value.
        sql.push("x.value_norm = ");
        sql.bind_text(bounded::prefix(prefix, MAX_INDEXED_BYTES));
        sql.push(" AND x.value_long LIKE ");
        sql.bind_text(&format!("{}%", escape_like(prefix)));
        sql.push(" ESCAPE '\\'");
        return;
    }
    sql.push("x.value_norm >= ");
    sql.bind_text(prefix);
    sql.push(" AND x.value_norm < ");
    sql.bind_text(&prefix_end(prefix));
}

/// `:contains`: `part` anywhere in the indexed text or in the long value.
fn push_string_contains(sql: &mut Sql, part: &str) {
    // A long value's text past the indexed prefix is in value_long.
    let pattern = format!("%{}%", escape_like(part));
    sql.push("(x.value_norm LIKE ");
    sql.bind_text(&pattern);
    sql.push(" ESCAPE '\\' OR x.value_long LIKE ");
    sql.bind_text(&pattern);
    sql.push(" ESCAPE '\\')");
}

/// A reference row by its target type and id (either may be free), or by its URL.
fn push_reference(
    sql: &mut Sql,
    target_type: Option<&str>,
    target_id: Option<&str>,
    url: Option<&str>,
) {
    sql.push("1 = 1");
    push_equal_key(sql, "x.target_type", target_type);
    push_equal_key(sql, "x.target_id", target_id);
    if let Some(url) = url {
        // URL rows have no target (see `index::push_reference`): saying so keeps
        // the lookup one range of the index.
        sql.push(" AND x.target_id = '' AND x.target_type = '' AND x.url = ");
        sql.bind_text(&equality_key(url));
    }
}

/// Index rows of a date parameter that meet every bound
/// (https://hl7.org/fhir/R4/search.html#prefix: the row's range against the search range).
///
/// Short rows (see `dates::SHORT_RANGE`) and long rows get separate predicates: for a short
/// row every bound is also written as a bound on `low`, so the window is one range of the
/// `(tenant, type, param, short, low)` index; the few long rows are tested as they are.
fn push_date_rows(sql: &mut Sql, bounds: &[DateBound]) {
    sql.push("((");
    push_date_branch(sql, bounds, true);
    sql.push(") OR (");
    push_date_branch(sql, bounds, false);
    sql.push("))");
}

/// The short (or long) rows that meet every bound.
fn push_date_branch(sql: &mut Sql, bounds: &[DateBound], short: bool) {
    sql.push(if short { "x.short = 1" } else { "x.short = 0" });
    for bound in bounds {
        sql.push(" AND ");
        push_date_bound(sql, *bound, short);
    }
}

fn compare(sql: &mut Sql, column: &str, op: &str, value: i64) {
    sql.push(&format!("{column} {op} "));
    sql.bind(Arg::Int(value.clamp(dates::MIN, dates::MAX)));
}

/// One bound on a row's range [x.low, x.high]; `short` adds the implied bound on `low`.
fn push_date_bound(sql: &mut Sql, bound: DateBound, short: bool) {
    let DateBound { prefix, low, high } = bound;
    let day = dates::SHORT_RANGE;
    match prefix {
        Prefix::Eq => {
            compare(sql, "x.low", ">=", low);
            sql.push(" AND ");
            compare(sql, "x.high", "<=", high);
        }
        Prefix::Ne => {
            sql.push("NOT (");
            compare(sql, "x.low", ">=", low);
            sql.push(" AND ");
            compare(sql, "x.high", "<=", high);
            sql.push(")");
        }
        Prefix::Gt | Prefix::Ge => {
            let (op, value) = if prefix == Prefix::Gt {
                (">", high)
            } else {
                (">=", low)
            };
            if short {
                compare(sql, "x.low", ">", value.saturating_sub(day));
                sql.push(" AND ");
            }
            compare(sql, "x.high", op, value);
        }
        Prefix::Lt => compare(sql, "x.low", "<", low),
        Prefix::Le => compare(sql, "x.low", "<=", high),
        Prefix::Sa => compare(sql, "x.low", ">", high),
        Prefix::Eb => {
            if short {
                compare(sql, "x.low", "<", low);
                sql.push(" AND ");
            }
            compare(sql, "x.high", "<", low);
        }
        Prefix::Ap => {
            let (from, to) = approximately(low, high);
            if short {
                compare(sql, "x.low", ">", from.saturating_sub(day));
                sql.push(" AND ");
            }
            compare(sql, "x.low", "<=", to);
            sql.push(" AND ");
            compare(sql, "x.high", ">=", from);
        }
    }
}

/// The search range widened by 10% of its distance from now (at least a day), for `ap`.
fn approximately(low: i64, high: i64) -> (i64, i64) {
    let now = crate::resource::now_micros();
    let slack = ((now - low).abs() / 10).max(dates::SHORT_RANGE);
    (low.saturating_sub(slack), high.saturating_add(slack))
}

/// A point in time (`_lastUpdated`) against one bound.
fn push_point_date(sql: &mut Sql, column: &str, bound: DateBound) {
    let DateBound { prefix, low, high } = bound;
    match prefix {
        Prefix::Eq => {
            compare(sql, column, ">=", low);
            sql.push(" AND ");
            compare(sql, column, "<=", high);
        }
        Prefix::Ne => {
            sql.push("NOT (");
            compare(sql, column, ">=", low);
            sql.push(" AND ");
            compare(sql, column, "<=", high);
            sql.push(")");
        }
        Prefix::Gt | Prefix::Sa => compare(sql, column, ">", high),
        Prefix::Lt | Prefix::Eb => compare(sql, column, "<", low),
        Prefix::Ge => compare(sql, column, ">=", low),
        Prefix::Le => compare(sql, column, "<=", high),
        Prefix::Ap => {
            let (from, to) = approximately(low, high);
            compare(sql, column, ">=", from);
            sql.push(" AND ");
            compare(sql, column, "<=", to);
        }
    }
}

fn push_number(sql: &mut Sql, prefix: Prefix, value: f64, low: f64, high: f64) {
    let compare = |sql: &mut Sql, op: &str, bound: f64| {
        sql.push(&format!("x.value {op} "));
        sql.bind(Arg::Real(bound));
    };
    match prefix {
        Prefix::Eq => {
            compare(sql, ">=", low);
            sql.push(" AND ");
            compare(sql, "<", high);
        }
        Prefix::Ne => {
            sql.push("NOT (");
            compare(sql, ">=", low);
            sql.push(" AND ");
            compare(sql, "<", high);
            sql.push(")");
        }
        Prefix::Gt | Prefix::Sa => compare(sql, ">", value),
        Prefix::Lt | Prefix::Eb => compare(sql, "<", value),
        Prefix::Ge => compare(sql, ">=", value),
        Prefix::Le => compare(sql, "<=", value),
        Prefix::Ap => {
            let slack = (value * 0.1).abs();
            compare(sql, ">=", value - slack);
            sql.push(" AND ");
            compare(sql, "<=", value + slack);
        }
    }
}

/// `(target_type, target_id)` of what `include` points to from the given resources.
///
/// The res_ids belong to the tenant already, so there is no tenant condition: seeking by
/// (res_id, key) reads only the page's rows, where (tid, key) would make the planner scan
/// every row of the parameter.
pub fn include_targets(include: &Include, res_ids: &[i64]) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT DISTINCT x.target_type, x.target_id FROM idx_reference x WHERE ");
    push_key(&mut sql, "x", &include.source_type, &include.param);
    sql.push(" AND x.target_id <> ''");
    if let Some(target_type) = &include.target_type {
        sql.push(" AND x.target_type = ");
        sql.bind_text(target_type);
    }
    sql.push(" AND x.res_id IN (");
    push_ints(&mut sql, res_ids);
    sql.push(")");
    sql
}

/// Current resources of `resource_type` with these ids, as page rows.
pub fn fetch_by_ids(tenant: TenantId, resource_type: &str, ids: &[String]) -> Sql {
    let mut sql = fetch_head(tenant);
    sql.push(" AND q.type = ");
    sql.bind_text(resource_type);
    sql.push(" AND q.id IN (");
    push_texts(&mut sql, ids);
    sql.push(")");
    sql
}

/// Current `include.source_type` resources whose `include.param` points to one of
/// `targets` (`(type, id)`), as page rows.
pub fn fetch_referencing(
    tenant: TenantId,
    include: &Include,
    target_type: &str,
    ids: &[String],
) -> Sql {
    let mut sql = fetch_head(tenant);
    sql.push(" AND q.res_id IN (SELECT x.res_id FROM idx_reference x WHERE ");
    push_index_head(&mut sql, tenant, &include.source_type, &include.param);
    sql.push(" AND x.target_type = ");
    sql.bind_text(target_type);
    sql.push(" AND x.target_id IN (");
    push_texts(&mut sql, ids);
    sql.push("))");
    sql
}

/// The columns of a page row, from the head table `q`. The body is a correlated lookup per
/// head row rather than a join, so no planner can start from resource_versions.
pub(super) const PAGE_SELECT: &str = "SELECT q.res_id, q.type, q.id, q.version, q.last_updated, \
    (SELECT v.body FROM resource_versions v WHERE v.tid = q.tid AND v.type = q.type \
    AND v.id = q.id AND v.version = q.version) FROM resources q";

/// Page rows of current resources of a tenant (callers add conditions on `q`).
fn fetch_head(tenant: TenantId) -> Sql {
    let mut sql = Sql::default();
    sql.push(PAGE_SELECT);
    sql.push(" WHERE q.deleted = 0 AND q.tid = ");
    sql.bind(Arg::Int(tenant.get()));
    sql
}

fn push_texts(sql: &mut Sql, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind_text(value);
    }
}

fn push_ints(sql: &mut Sql, values: &[i64]) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(Arg::Int(*value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(resource_type: &str, params: &[(&str, &str)]) -> Query {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Query::parse(resource_type, &params, true).expect("parses")
    }

    #[test]
    fn values_are_bound_not_spliced() {
        let query = parse(
            "Patient",
            &[
                ("_id", "x"),
                ("name", "x'; DROP TABLE resources; --"),
                ("identifier", "s|c"),
                ("general-practitioner.name", "o'hara"),
                ("_has:Appointment:patient:status", "booked"),
                ("_sort", "-birthdate,name"),
            ],
        );
        let mut query = query;
        query.cursor = Some(Cursor {
            forward: true,
            keys: vec![KeyValue::Int(1), KeyValue::Text("z".into())],
            res_id: 9,
        });
        for sql in [
            select_page(TenantId::from_stored(1), &query, 10),
            count(TenantId::from_stored(1), &query),
        ] {
            assert!(!sql.text.contains("DROP"));
            assert!(!sql.text.contains("hara"));
            assert_eq!(
                sql.text.matches('?').count(),
                sql.args.len(),
                "{}",
                sql.text
            );
        }
    }
}
