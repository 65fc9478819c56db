//! Searches that one equality lookup answers (`identifier=system|value`, `code=system|code`,
//! `url=...`, with no `_sort`): their index range is already in res_id order, the order of
//! pages without `_sort`, so a page is the next few entries of that range.
//!
//! The general path reads every match's id and sorts them in memory, which is cheaper than
//! the database's sort for ranges in another order (a name prefix), but makes each page of
//! a lookup with thousands of matches cost as much as all of them. Here a page reads
//! `_count + 1` index entries, and the total, when asked for, is an index-only count.

use super::query::{Clause, Condition, Query, Table};
use super::sql::{Arg, PAGE_SELECT, Sql, push_condition, push_index_head};
use crate::ids::TenantId;

/// The one lookup a query is, when it is one whose range is in res_id order.
pub struct Lookup<'q> {
    table: Table,
    param: &'q str,
    condition: &'q Condition,
}

/// The lookup `query` is, if it is answered by one res_id-ordered index range.
pub fn lookup(query: &Query) -> Option<Lookup<'_>> {
    if !query.sort.is_empty() {
        return None;
    }
    let [
        Clause::Index {
            table,
            param,
            any,
            negate: false,
        },
    ] = query.clauses.as_slice()
    else {
        return None;
    };
    let [condition] = any.as_slice() else {
        return None;
    };
    // The index is (tenant, key, code, system, res_id) for tokens and (tenant, key, value,
    // res_id) for URIs: with every column before res_id fixed, the range is in res_id order.
    let ordered = matches!(
        (table, condition),
        (
            Table::Token,
            Condition::Token {
                system: Some(_),
                code: Some(_),
            },
        ) | (Table::Uri, Condition::UriEquals(_))
    );
    ordered.then_some(Lookup {
        table: *table,
        param,
        condition,
    })
}

/// `FROM <table> x WHERE <tenant, key> AND <condition>`.
fn push_range(sql: &mut Sql, tenant: TenantId, query: &Query, lookup: &Lookup<'_>) {
    sql.push(&format!(" FROM {} x WHERE ", lookup.table.name()));
    push_index_head(sql, tenant, &query.resource_type, lookup.param);
    sql.push(" AND ");
    push_condition(sql, lookup.condition);
}

/// The res_ids of a page (at most `limit`), after (or, going backward, before) the cursor.
/// A resource with the value twice has two rows: DISTINCT, which the range's order makes
/// free.
pub fn select_ids(tenant: TenantId, query: &Query, lookup: &Lookup<'_>, limit: usize) -> Sql {
    let backward = query.cursor.as_ref().is_some_and(|c| !c.forward);
    let mut sql = Sql::default();
    sql.push("SELECT DISTINCT x.res_id");
    push_range(&mut sql, tenant, query, lookup);
    if let Some(cursor) = &query.cursor {
        sql.push(if backward {
            " AND x.res_id < "
        } else {
            " AND x.res_id > "
        });
        sql.bind(Arg::Int(cursor.res_id));
    }
    sql.push(if backward {
        " ORDER BY x.res_id DESC LIMIT "
    } else {
        " ORDER BY x.res_id LIMIT "
    });
    sql.bind(Arg::Int(limit as i64));
    sql
}

/// The page rows themselves (at most `limit`, in the page's direction), in one statement:
/// the ids of [`select_ids`] and their current versions.
pub fn select_page(tenant: TenantId, query: &Query, lookup: &Lookup<'_>, limit: usize) -> Sql {
    let backward = query.cursor.as_ref().is_some_and(|c| !c.forward);
    // The ids come from the tenant's own index rows: the head rows are found by res_id
    // alone (a condition on the tenant here made SQLite scan the tenant's resources).
    let mut sql = Sql::default();
    sql.push(PAGE_SELECT);
    sql.push(" WHERE q.deleted = 0 AND q.res_id IN (");
    sql.append(select_ids(tenant, query, lookup, limit));
    sql.push(if backward {
        ") ORDER BY q.res_id DESC"
    } else {
        ") ORDER BY q.res_id"
    });
    sql
}

/// How many resources match: an index-only count of the range.
pub fn count(tenant: TenantId, query: &Query, lookup: &Lookup<'_>) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) FROM (SELECT DISTINCT x.res_id");
    push_range(&mut sql, tenant, query, lookup);
    sql.push(") matches");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(params: &[(&str, &str)]) -> Query {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        Query::parse("Patient", &params, true).unwrap()
    }

    #[test]
    fn only_ordered_lookups_are_streamed() {
        assert!(lookup(&query(&[("identifier", "X1")])).is_none());
        assert!(lookup(&query(&[("name", "smi")])).is_none());
        assert!(lookup(&query(&[("identifier", "s|1"), ("_sort", "family")])).is_none());
        assert!(lookup(&query(&[("identifier", "s|1"), ("gender", "male")])).is_none());
        assert!(lookup(&query(&[("identifier", "s|1,s|2")])).is_none());
    }
}
