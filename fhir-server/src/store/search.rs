//! Runs a search: one page of matches in the query's order (with the cursors of the pages
//! around it), the total when asked for or free, and the resources that `_include` and
//! `_revinclude` add.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Row, Store, TenantId};
use crate::error::FhirError;
use crate::search::cursor::{Cursor, KeyValue};
use crate::search::query::{Include, PageLimits, Query, Summary, Total};
use crate::search::sql;
use crate::search::streamed;

/// How many match ids a first page reads at most to learn the total without a count.
const TOTAL_FROM_IDS: usize = 10_000;

/// Reads the resources of a page of `(res_id, sort keys)`, in that order.
async fn with_bodies(store: &Store, ids: Vec<(i64, Vec<KeyValue>)>) -> Result<Vec<Row>, FhirError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let res_ids: Vec<i64> = ids.iter().map(|(res_id, _)| *res_id).collect();
    let mut rows: HashMap<i64, Row> = store
        .select_rows(sql::fetch_by_res_ids(&res_ids), Vec::new())
        .await?
        .into_iter()
        .map(|row| (row.res_id, row))
        .collect();
    Ok(ids
        .into_iter()
        .filter_map(|(res_id, keys)| rows.remove(&res_id).map(|row| Row { keys, ..row }))
        .collect())
}

/// How many times `:iterate` includes are followed, and how many resources they may add.
const MAX_INCLUDE_ROUNDS: usize = 4;
const MAX_INCLUDED: usize = 1000;

/// A page of results.
#[derive(Debug, Default)]
pub struct SearchResult {
    pub matches: Vec<Row>,
    pub included: Vec<Row>,
    pub total: Option<i64>,
    pub next: Option<Cursor>,
    pub previous: Option<Cursor>,
}

#[tracing::instrument(level = "debug", skip_all, fields(resource_type = %query.resource_type))]
pub async fn execute(
    store: &Store,
    tenant: TenantId,
    query: &Query,
    limits: PageLimits,
) -> Result<SearchResult, FhirError> {
    if let Some(lookup) = streamed::lookup(query) {
        return lookup_page(store, tenant, query, limits, &lookup).await;
    }
    let all_ids = match sql::select_match_ids(tenant, query) {
        Some(ids_sql) => Some(match_ids(store, ids_sql).await?),
        None => None,
    };
    if query.summary == Summary::Count {
        let total = match &all_ids {
            Some(ids) => ids.len() as i64,
            None => store.select_count(sql::count(tenant, query)).await?,
        };
        return Ok(SearchResult {
            total: Some(total),
            ..SearchResult::default()
        });
    }
    let limit = query.page_size(limits);
    let (ids, total) = match all_ids {
        Some(all) => {
            let total = (query.total != Total::None).then_some(all.len() as i64);
            (page_of(&all, query.cursor.as_ref(), limit + 1), total)
        }
        None => ordered_ids(store, tenant, query, limit).await?,
    };
    page(store, tenant, query, limit, ids, total).await
}

/// A page of a search that one ordered index range answers (see `streamed`): it reads
/// the page's entries, and counts only when a total is asked for and the page does not
/// show it already. `_total=estimate` is given only when it is exact for free (every match
/// is on the first page): a count is what an estimate was asked to spare.
async fn lookup_page(
    store: &Store,
    tenant: TenantId,
    query: &Query,
    limits: PageLimits,
    lookup: &streamed::Lookup<'_>,
) -> Result<SearchResult, FhirError> {
    let counted = || store.select_count(streamed::count(tenant, query, lookup));
    if query.summary == Summary::Count {
        return Ok(SearchResult {
            total: Some(counted().await?),
            ..SearchResult::default()
        });
    }
    let limit = query.page_size(limits);
    let mut rows = store
        .select_rows(
            streamed::select_page(tenant, query, lookup, limit + 1),
            Vec::new(),
        )
        .await?;
    let whole = query.cursor.is_none() && rows.len() <= limit;
    let total = match query.total {
        Total::None => None,
        _ if whole => Some(rows.len() as i64),
        Total::Estimate => None,
        Total::Default | Total::Accurate => Some(counted().await?),
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    if query.cursor.as_ref().is_some_and(|c| !c.forward) {
        rows.reverse();
    }
    paged(store, tenant, query, more, rows, total).await
}

/// Every match's res_id (`sql::select_match_ids`), sorted, without repeats.
async fn match_ids(store: &Store, ids_sql: sql::Sql) -> Result<Vec<i64>, FhirError> {
    tracing::debug!(sql = %ids_sql.text, "search");
    let mut ids: Vec<i64> = store
        .select_keys(ids_sql, Vec::new())
        .await?
        .into_iter()
        .map(|(res_id, _)| res_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The page's ids (one more than `wanted`, to tell whether another page follows) from all
/// matches in res_id order, after the cursor; for a backward cursor, the ones before it,
/// nearest first.
fn page_of(all: &[i64], cursor: Option<&Cursor>, wanted: usize) -> Vec<(i64, Vec<KeyValue>)> {
    let key = |res_id: &i64| (*res_id, Vec::new());
    match cursor {
        None => all.iter().take(wanted).map(key).collect(),
        Some(cursor) if cursor.forward => {
            let start = all.partition_point(|&id| id <= cursor.res_id);
            all[start..].iter().take(wanted).map(key).collect()
        }
        Some(cursor) => {
            let end = all.partition_point(|&id| id < cursor.res_id);
            all[..end].iter().rev().take(wanted).map(key).collect()
        }
    }
}

/// The page's ids in the query's order, by SQL (`sql::select_ids`), and the total.
async fn ordered_ids(
    store: &Store,
    tenant: TenantId,
    query: &Query,
    limit: usize,
) -> Result<(Vec<(i64, Vec<KeyValue>)>, Option<i64>), FhirError> {
    let kinds = sql::key_kinds(query);
    // One index-only pass finds the page's ids and, when all matches fit in
    // TOTAL_FROM_IDS, the total too; only larger results pay for a separate count.
    let first_page = query.cursor.is_none();
    let wanted = if first_page && query.total != Total::None {
        (limit + 1).max(TOTAL_FROM_IDS)
    } else {
        limit + 1
    };
    let ids_sql = sql::select_ids(tenant, query, wanted);
    // The SQL text has placeholders only, never the values: it is safe to log.
    tracing::debug!(sql = %ids_sql.text, "search");
    let mut ids = store.select_keys(ids_sql, kinds).await?;
    let total = match query.total {
        Total::None => None,
        _ if first_page && ids.len() < wanted => Some(ids.len() as i64),
        _ => Some(store.select_count(sql::count(tenant, query)).await?),
    };
    ids.truncate(limit + 1);
    Ok((ids, total))
}

/// Reads the page's resources and its includes, and works out its neighbours' cursors.
async fn page(
    store: &Store,
    tenant: TenantId,
    query: &Query,
    limit: usize,
    mut ids: Vec<(i64, Vec<KeyValue>)>,
    total: Option<i64>,
) -> Result<SearchResult, FhirError> {
    let more = ids.len() > limit;
    ids.truncate(limit);
    let backward = query.cursor.as_ref().is_some_and(|c| !c.forward);
    if backward {
        ids.reverse();
    }
    let matches = with_bodies(store, ids).await?;
    paged(store, tenant, query, more, matches, total).await
}

/// The page of `matches` (in page order; `more` when rows past the page exist in the
/// direction read): its neighbours' cursors and its includes.
async fn paged(
    store: &Store,
    tenant: TenantId,
    query: &Query,
    more: bool,
    matches: Vec<Row>,
    total: Option<i64>,
) -> Result<SearchResult, FhirError> {
    let backward = query.cursor.as_ref().is_some_and(|c| !c.forward);
    let at = |row: &Row, forward: bool| Cursor {
        forward,
        keys: row.keys.clone(),
        res_id: row.res_id,
    };
    // Going forward, there is a next page when more rows came back, and a previous one when
    // we came from somewhere; going backward, the other way round.
    let (has_next, has_previous) = match (&query.cursor, backward) {
        (None, _) => (more, false),
        (Some(_), false) => (more, true),
        (Some(_), true) => (true, more),
    };
    let next = matches.last().filter(|_| has_next).map(|row| at(row, true));
    let previous = matches
        .first()
        .filter(|_| has_previous)
        .map(|row| at(row, false));
    let included = includes(store, tenant, query, &matches).await?;
    Ok(SearchResult {
        matches,
        included,
        total,
        next,
        previous,
    })
}

/// Follows `_include` and `_revinclude` from the matches (and, for `:iterate`, from what
/// they added), never adding a resource twice.
async fn includes(
    store: &Store,
    tenant: TenantId,
    query: &Query,
    matches: &[Row],
) -> Result<Vec<Row>, FhirError> {
    if query.includes.is_empty() && query.revincludes.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<(String, String)> = matches
        .iter()
        .map(|r| (r.version.resource_type.clone(), r.version.id.clone()))
        .collect();
    let mut included: Vec<Row> = Vec::new();
    let mut frontier: Vec<Row> = matches.to_vec();
    for round in 0..MAX_INCLUDE_ROUNDS {
        let mut found: Vec<Row> = Vec::new();
        for include in query.includes.iter().filter(|i| round == 0 || i.iterate) {
            let sources: Vec<i64> = frontier
                .iter()
                .filter(|r| r.version.resource_type == include.source_type)
                .map(|r| r.res_id)
                .collect();
            if sources.is_empty() {
                continue;
            }
            let targets = store
                .select_pairs(sql::include_targets(include, &sources))
                .await?;
            let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (target_type, id) in targets {
                if !seen.contains(&(target_type.clone(), id.clone())) {
                    by_type.entry(target_type).or_default().push(id);
                }
            }
            for (target_type, ids) in by_type {
                let rows = store
                    .select_rows(sql::fetch_by_ids(tenant, &target_type, &ids), Vec::new())
                    .await?;
                add_new(&mut seen, &mut found, rows);
            }
        }
        for include in query.revincludes.iter().filter(|i| round == 0 || i.iterate) {
            found.extend(referencing(store, tenant, include, &frontier, &mut seen).await?);
        }
        if found.is_empty() {
            break;
        }
        included.extend(found.iter().cloned());
        if included.len() >= MAX_INCLUDED {
            included.truncate(MAX_INCLUDED);
            break;
        }
        frontier = found;
    }
    Ok(included)
}

async fn referencing(
    store: &Store,
    tenant: TenantId,
    include: &Include,
    targets: &[Row],
    seen: &mut HashSet<(String, String)>,
) -> Result<Vec<Row>, FhirError> {
    let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for row in targets {
        by_type
            .entry(&row.version.resource_type)
            .or_default()
            .push(row.version.id.clone());
    }
    let mut found = Vec::new();
    for (target_type, ids) in by_type {
        let rows = store
            .select_rows(
                sql::fetch_referencing(tenant, include, target_type, &ids),
                Vec::new(),
            )
            .await?;
        add_new(seen, &mut found, rows);
    }
    Ok(found)
}

fn add_new(seen: &mut HashSet<(String, String)>, found: &mut Vec<Row>, rows: Vec<Row>) {
    for row in rows {
        if seen.insert((row.version.resource_type.clone(), row.version.id.clone())) {
            found.push(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::TenantId;
    use crate::search::Query;
    use crate::search::sql::Sql;
    use crate::search::streamed::{count, lookup, select_ids, select_page};

    /// The plan SQLite makes for `sql`, one line per step.
    fn plan(sql: &Sql) -> String {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        super::super::sqlite::migrate(&mut conn).unwrap();
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
            .unwrap();
        let rows = statement
            .query_map(rusqlite::params_from_iter(sql.args.iter()), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// A page reads its entries from the lookup index in order: no sort, no temporary
    /// b-tree, so its cost does not grow with the number of matches.
    #[test]
    fn a_page_is_read_in_index_order() {
        let params = [(
            "identifier".to_owned(),
            "http://example.org/mrn|X1".to_owned(),
        )];
        let query = Query::parse("Patient", &params, true).unwrap();
        let lookup = lookup(&query).expect("a lookup");
        let page = plan(&select_ids(TenantId::from_stored(1), &query, &lookup, 11));
        assert!(page.contains("idx_token_lookup"), "{page}");
        assert!(!page.contains("TEMP B-TREE"), "{page}");
        let rows = plan(&select_page(TenantId::from_stored(1), &query, &lookup, 11));
        assert!(!rows.contains("SCAN"), "{rows}");
        assert!(
            rows.contains("SEARCH q USING INTEGER PRIMARY KEY")
                || rows.contains("SEARCH q USING PRIMARY KEY")
                || rows.contains("(res_id=?)"),
            "{rows}"
        );
        let total = plan(&count(TenantId::from_stored(1), &query, &lookup));
        assert!(total.contains("COVERING INDEX idx_token_lookup"), "{total}");
        assert!(!total.contains("TEMP B-TREE"), "{total}");
    }
}
