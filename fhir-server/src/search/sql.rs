//! Turns search clauses into SQL. Values are always bound as parameters, never spliced into
//! the text, so a search value cannot change the SQL that runs.
//!
//! The text uses `?` placeholders; the PostgreSQL store renumbers them to `$1, $2, ...`.

use super::{Clause, Query};

/// A bound SQL argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
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

    pub fn bind_text(&mut self, value: &str) {
        self.bind(Arg::Text(value.to_owned()));
    }
}

/// Selects `(res_id, id, version, last_updated, body)` of current, non-deleted resources
/// matching `query`, in res_id order, after the query's cursor, at most `limit` rows.
pub fn select_matches(tenant: &str, resource_type: &str, query: &Query, limit: usize) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        "SELECT r.res_id, r.id, r.version, r.last_updated, v.body FROM resources r \
         JOIN resource_versions v ON v.tenant = r.tenant AND v.type = r.type \
         AND v.id = r.id AND v.version = r.version WHERE r.tenant = ",
    );
    sql.bind_text(tenant);
    sql.push(" AND r.type = ");
    sql.bind_text(resource_type);
    sql.push(" AND r.deleted = 0");
    for clause in &query.clauses {
        sql.push(" AND ");
        push_clause(&mut sql, tenant, resource_type, clause);
    }
    if let Some(after) = query.after {
        sql.push(" AND r.res_id > ");
        sql.bind(Arg::Int(after));
    }
    sql.push(" ORDER BY r.res_id LIMIT ");
    sql.bind(Arg::Int(limit as i64));
    sql
}

/// Counts current, non-deleted resources matching `query` (ignoring the cursor).
pub fn count_matches(tenant: &str, resource_type: &str, query: &Query) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) FROM resources r WHERE r.tenant = ");
    sql.bind_text(tenant);
    sql.push(" AND r.type = ");
    sql.bind_text(resource_type);
    sql.push(" AND r.deleted = 0");
    for clause in &query.clauses {
        sql.push(" AND ");
        push_clause(&mut sql, tenant, resource_type, clause);
    }
    sql
}

fn push_clause(sql: &mut Sql, tenant: &str, resource_type: &str, clause: &Clause) {
    match clause {
        Clause::Id(ids) => {
            sql.push("r.id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind_text(id);
            }
            sql.push(")");
        }
        Clause::Token { param, values } => {
            sql.push("r.res_id IN (SELECT t.res_id FROM idx_token t WHERE t.tenant = ");
            sql.bind_text(tenant);
            sql.push(" AND t.type = ");
            sql.bind_text(resource_type);
            sql.push(" AND t.param = ");
            sql.bind_text(param);
            sql.push(" AND (");
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(1 = 1");
                if let Some(code) = &value.code {
                    sql.push(" AND t.code = ");
                    sql.bind_text(code);
                }
                if let Some(system) = &value.system {
                    sql.push(" AND t.system = ");
                    sql.bind_text(system);
                }
                sql.push(")");
            }
            sql.push("))");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::TokenValue;

    #[test]
    fn values_are_bound_not_spliced() {
        let query = Query {
            clauses: vec![
                Clause::Id(vec!["x'; DROP TABLE resources; --".into()]),
                Clause::Token {
                    param: "identifier",
                    values: vec![TokenValue {
                        system: Some("s".into()),
                        code: Some("c".into()),
                    }],
                },
            ],
            ..Query::default()
        };
        let sql = select_matches("t", "Patient", &query, 10);
        assert!(!sql.text.contains("DROP"));
        assert_eq!(sql.text.matches('?').count(), sql.args.len());
    }
}
