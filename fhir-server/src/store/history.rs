//! The SQL of the history interaction, shared by both backends.

use super::{HistoryQuery, TenantId};
use crate::search::sql::{Arg, Sql};

/// Versions newest first (`last_updated DESC, seq DESC`): seq, type, id, version,
/// last_updated, method, body.
pub fn select(tenant: TenantId, query: &HistoryQuery) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        "SELECT seq, type, id, version, last_updated, method, body FROM resource_versions \
         WHERE tid = ",
    );
    sql.bind(Arg::Int(tenant.get()));
    filters(&mut sql, query);
    if let Some((last_updated, seq)) = query.before {
        sql.push(" AND (last_updated < ");
        sql.bind(Arg::Int(last_updated));
        sql.push(" OR (last_updated = ");
        sql.bind(Arg::Int(last_updated));
        sql.push(" AND seq < ");
        sql.bind(Arg::Int(seq));
        sql.push("))");
    }
    sql.push(" ORDER BY last_updated DESC, seq DESC LIMIT ");
    sql.bind(Arg::Int(query.count as i64));
    sql
}

/// How many versions the history has in all (ignoring the cursor).
pub fn count(tenant: TenantId, query: &HistoryQuery) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) FROM resource_versions WHERE tid = ");
    sql.bind(Arg::Int(tenant.get()));
    filters(&mut sql, query);
    sql
}

fn filters(sql: &mut Sql, query: &HistoryQuery) {
    if let Some(resource_type) = &query.resource_type {
        sql.push(" AND type = ");
        sql.bind_text(resource_type);
    }
    if let Some(id) = &query.id {
        sql.push(" AND id = ");
        sql.bind_text(id);
    }
    if let Some(since) = query.since {
        sql.push(" AND last_updated >= ");
        sql.bind(Arg::Int(since));
    }
}
