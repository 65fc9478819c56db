//! The job queue (migration 0004): background work held in the database, so it survives a
//! restart and several servers on one database share it. A job has a kind, a status
//! (queued, running, done, failed, cancelled), its state as text (the kind's own, e.g. an
//! export's JSON), a lease (`updated_at`, renewed by its worker) and an owner token (the
//! claim's): a worker whose lease lapsed finds, on its next renewal, that the job is no
//! longer its own.

use std::time::Duration;

use super::{Store, StoreError, TenantId};
use crate::resource::now_micros;
use crate::search::sql::{Arg, Sql};

/// A job a worker claimed: its id, this claim's owner token, and its state.
pub struct ClaimedJob {
    pub id: String,
    pub owner: String,
    pub state: String,
}

/// A new job's id.
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The statement that queues job `id` of `kind` with `state`, to run at `run_at` at the
/// earliest: also what a write's own transaction runs to queue the work it causes (an
/// outbox, see `store::claims::queue_freed`).
pub(super) fn insert_job(
    id: &str,
    tenant: TenantId,
    (kind, state): (&str, &str),
    run_at: Option<i64>,
) -> Sql {
    let now = now_micros();
    let mut sql = Sql::default();
    sql.push(
        "INSERT INTO jobs (id, tid, kind, status, created_at, updated_at, state, run_at) VALUES (",
    );
    sql.bind_text(id);
    sql.push(", ");
    sql.bind(Arg::Int(tenant.get()));
    sql.push(", ");
    sql.bind_text(kind);
    sql.push(", 'queued', ");
    sql.bind(Arg::Int(now));
    sql.push(", ");
    sql.bind(Arg::Int(now));
    sql.push(", ");
    sql.bind_text(state);
    sql.push(", ");
    sql.bind(Arg::Int(run_at.unwrap_or(now)));
    sql.push(")");
    sql
}

impl Store {
    /// Queues a job of `kind` with `state`; its id.
    pub async fn queue_job(
        &self,
        tenant: TenantId,
        kind: &str,
        state: &str,
    ) -> Result<String, StoreError> {
        self.queue_job_at(tenant, kind, state, None).await
    }

    /// Queues a job of `kind` with `state`, to run at `run_at` at the earliest; its id.
    pub async fn queue_job_at(
        &self,
        tenant: TenantId,
        kind: &str,
        state: &str,
        run_at: Option<i64>,
    ) -> Result<String, StoreError> {
        let id = new_job_id();
        self.execute(insert_job(&id, tenant, (kind, state), run_at))
            .await?;
        Ok(id)
    }

    /// A job of a tenant: its status and state.
    pub async fn job(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let mut sql = Sql::default();
        sql.push("SELECT status, state FROM jobs WHERE id = ");
        sql.bind_text(id);
        sql.push(" AND tid = ");
        sql.bind(Arg::Int(tenant.get()));
        Ok(self.select_pairs(sql).await?.into_iter().next())
    }

    /// Cancels a job of a tenant; `false` when there is no such job (or it was cancelled).
    pub async fn cancel_job(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("UPDATE jobs SET status = 'cancelled', updated_at = ");
        sql.bind(Arg::Int(now_micros()));
        sql.push(" WHERE id = ");
        sql.bind_text(id);
        sql.push(" AND tid = ");
        sql.bind(Arg::Int(tenant.get()));
        sql.push(" AND status <> 'cancelled'");
        Ok(self.execute(sql).await? > 0)
    }

    /// Claims a queued job of `kind` that is due (its `run_at` reached; the earliest due
    /// first, found through the index `jobs_due`), else an abandoned running one (its
    /// lease older than `lease`). On PostgreSQL, other servers' workers skip the row being
    /// claimed.
    pub async fn claim_job(
        &self,
        kind: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let now = now_micros();
        let owner = uuid::Uuid::new_v4().simple().to_string();
        for (status, time, before, order) in [
            ("queued", "run_at", now + 1, "run_at"),
            (
                "running",
                "updated_at",
                now - lease.as_micros() as i64,
                "updated_at",
            ),
        ] {
            let mut sql = Sql::default();
            sql.push("UPDATE jobs SET status = 'running', owner = ");
            sql.bind_text(&owner);
            sql.push(", updated_at = ");
            sql.bind(Arg::Int(now));
            sql.push(" WHERE id = (SELECT id FROM jobs WHERE kind = ");
            sql.bind_text(kind);
            sql.push(&format!(" AND status = '{status}' AND {time} < "));
            sql.bind(Arg::Int(before));
            sql.push(&format!(" ORDER BY {order} LIMIT 1"));
            if self.backend_name() == "postgres" {
                sql.push(" FOR UPDATE SKIP LOCKED");
            }
            sql.push(") RETURNING id, state");
            if let Some((id, state)) = self.write_pairs(sql).await?.into_iter().next() {
                return Ok(Some(ClaimedJob { id, owner, state }));
            }
        }
        Ok(None)
    }

    /// Renews the lease of a running job and records its state; `false` when the job is no
    /// longer running under `owner` (cancelled, or claimed by another worker).
    pub async fn renew_job(&self, id: &str, owner: &str, state: &str) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("UPDATE jobs SET updated_at = ");
        sql.bind(Arg::Int(now_micros()));
        sql.push(", state = ");
        sql.bind_text(state);
        sql.push(" WHERE id = ");
        sql.bind_text(id);
        sql.push(" AND status = 'running' AND owner = ");
        sql.bind_text(owner);
        Ok(self.execute(sql).await? > 0)
    }

    /// Puts a running job back in the queue with `state`, to be claimed again at `run_at`
    /// or later (at the next poll when `None`): a job that waits for its time, or a retry;
    /// `false` when it was no longer running under `owner`.
    pub async fn requeue_job(
        &self,
        (id, owner): (&str, &str),
        state: &str,
        run_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("UPDATE jobs SET status = 'queued', owner = NULL, updated_at = ");
        sql.bind(Arg::Int(now_micros()));
        sql.push(", state = ");
        sql.bind_text(state);
        sql.push(", run_at = ");
        sql.bind(Arg::Int(run_at.unwrap_or_else(now_micros)));
        sql.push(" WHERE id = ");
        sql.bind_text(id);
        sql.push(" AND status = 'running' AND owner = ");
        sql.bind_text(owner);
        Ok(self.execute(sql).await? > 0)
    }

    /// Ends a running job with `status`, and its final state and expiry when given;
    /// `false` when it was no longer running under `owner`.
    pub async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        end: Option<(&str, i64)>,
    ) -> Result<bool, StoreError> {
        let mut sql = Sql::default();
        sql.push("UPDATE jobs SET status = ");
        sql.bind_text(status);
        sql.push(", updated_at = ");
        sql.bind(Arg::Int(now_micros()));
        if let Some((state, expires)) = end {
            sql.push(", state = ");
            sql.bind_text(state);
            sql.push(", expires_at = ");
            sql.bind(Arg::Int(expires));
        }
        sql.push(" WHERE id = ");
        sql.bind_text(id);
        sql.push(" AND status = 'running' AND owner = ");
        sql.bind_text(owner);
        Ok(self.execute(sql).await? > 0)
    }

    /// The ids of jobs to remove: finished ones past their expiry, and cancelled ones
    /// whose worker had `lease` to notice.
    pub async fn expired_jobs(&self, lease: Duration) -> Result<Vec<String>, StoreError> {
        let now = now_micros();
        let mut sql = Sql::default();
        sql.push(
            "SELECT id, status FROM jobs WHERE (status IN ('done', 'failed') AND expires_at < ",
        );
        sql.bind(Arg::Int(now));
        sql.push(") OR (status = 'cancelled' AND updated_at < ");
        sql.bind(Arg::Int(now - lease.as_micros() as i64));
        sql.push(")");
        Ok(self
            .select_pairs(sql)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Removes a job.
    pub async fn delete_job(&self, id: &str) -> Result<(), StoreError> {
        let mut sql = Sql::default();
        sql.push("DELETE FROM jobs WHERE id = ");
        sql.bind_text(id);
        self.execute(sql).await?;
        Ok(())
    }
}
