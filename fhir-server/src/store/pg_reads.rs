//! Reads by id on PostgreSQL, coalesced: reads that arrive while others are in flight go
//! to the database together, as one statement.
//!
//! A read by id is one index lookup in PostgreSQL, but a round trip costs far more than
//! the lookup: a send and a receive on each side, and a wake-up of the backend process.
//! In a profile of 64 clients reading, the send to PostgreSQL alone was a fifth of the
//! server's time and PostgreSQL spent most of its own in the network stack. So a single
//! task hands reads to the database in batches: at most `IN_FLIGHT` statements run at
//! once, and the reads that queue behind them leave together in the next one. An idle
//! server sends each read alone, at once; a busy one sends fewer, larger statements. This
//! is the SQLite writer's group commit, for reads.
//!
//! Only queued reads wait for the task: a read that finds a slot free runs at once,
//! alone, on the caller's task.

use std::sync::Arc;

use sqlx::{PgPool, Row as _};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Method, StoreError, TenantId, Version};

/// Read statements running at once (each holds a pooled connection): one per core, at
/// least two. Fewer statements in flight make larger batches.
fn in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// The most reads in one statement.
const MAX_BATCH: usize = 128;

type Answer = Result<Option<Version>, StoreError>;

struct Request {
    tenant: TenantId,
    resource_type: String,
    id: String,
    answer: oneshot::Sender<Answer>,
}

/// Reads by id: at once when a slot is free, else queued for the batching task.
#[derive(Clone)]
pub struct Reads {
    pool: PgPool,
    slots: Arc<Semaphore>,
    queue: mpsc::UnboundedSender<Request>,
}

impl Reads {
    /// Starts the batching task on `pool`.
    pub fn start(pool: PgPool) -> Reads {
        let (queue, requests) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(in_flight()));
        tokio::spawn(batch_loop(pool.clone(), slots.clone(), requests));
        Reads { pool, slots, queue }
    }

    /// The current version of a resource (a delete version if it was deleted).
    pub async fn current(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        // A free slot is taken only when no batch waits for it (the semaphore hands
        // released slots to waiters first), so queued reads are not overtaken.
        if let Ok(_slot) = self.slots.clone().try_acquire_owned() {
            let mut conn = self.pool.acquire().await?;
            return super::postgres::read_version(&mut conn, tenant, resource_type, id, None).await;
        }
        let (answer, answered) = oneshot::channel();
        let request = Request {
            tenant,
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            answer,
        };
        self.queue
            .send(request)
            .map_err(|_| StoreError::Database("the read task has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Database("the read task dropped a read".into()))?
    }
}

async fn batch_loop(
    pool: PgPool,
    slots: Arc<Semaphore>,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = requests.recv().await {
        // Wait for a free slot first: the reads that arrive meanwhile join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            answer(&pool, batch).await;
            drop(slot);
        });
    }
}

/// The newest version of each requested resource, by the request's position: one index
/// lookup per key (a LATERAL subquery, so no plan can turn it into a scan).
const CURRENT_VERSIONS: &str = "SELECT k.n, v.version, v.last_updated, v.method, v.body \
    FROM UNNEST($1::int4[], $2::text[], $3::text[]) WITH ORDINALITY AS k(tid, type, id, n), \
    LATERAL (SELECT version, last_updated, method, body FROM resource_versions \
             WHERE tid = k.tid AND type = k.type AND id = k.id \
             ORDER BY version DESC LIMIT 1) v";

async fn answer(pool: &PgPool, batch: Vec<Request>) {
    let tenants: Vec<i32> = batch.iter().map(|r| r.tenant as i32).collect();
    let types: Vec<&str> = batch.iter().map(|r| r.resource_type.as_str()).collect();
    let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
    let rows = sqlx::query(CURRENT_VERSIONS)
        .bind(&tenants)
        .bind(&types)
        .bind(&ids)
        .fetch_all(pool)
        .await;
    let mut found: Vec<Option<Version>> = vec![None; batch.len()];
    let decoded: Result<(), StoreError> = match rows {
        Ok(rows) => rows.iter().try_for_each(|row| {
            // ORDINALITY counts from 1.
            let n: i64 = row.try_get(0)?;
            let Some(i) = usize::try_from(n - 1).ok().filter(|&i| i < batch.len()) else {
                return Ok(());
            };
            let request = &batch[i];
            let method: String = row.try_get(3)?;
            let body: Option<Vec<u8>> = row.try_get(4)?;
            found[i] = Some(Version {
                resource_type: request.resource_type.clone(),
                id: request.id.clone(),
                version: row.try_get(1)?,
                last_updated: row.try_get(2)?,
                method: Method::parse(&method),
                body: body.map(Into::into),
            });
            Ok(())
        }),
        Err(error) => Err(error.into()),
    };
    match decoded {
        Ok(()) => {
            for (request, version) in batch.into_iter().zip(found) {
                let _ = request.answer.send(Ok(version));
            }
        }
        Err(error) => {
            let message = format!("{error:?}");
            for request in batch {
                let _ = request
                    .answer
                    .send(Err(StoreError::Database(message.clone())));
            }
        }
    }
}
