//! Unconditional creates on PostgreSQL, coalesced (see `coalesce`): creates that queue
//! while the database is busy are written together, by one statement (`pg_put::creates`),
//! in one transaction and one commit.
//!
//! A create is the most common write, and on PostgreSQL its cost was mostly per statement
//! (planning and opening a CTE of inserts, the round trip, the commit) rather than per row.
//! Nothing about one create depends on another, so a batch needs no locks; if its
//! statement fails, each create of it is tried again alone, so one bad write cannot fail
//! the others.

use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::oneshot;

use super::audit::{Entry, GENESIS};
use super::coalesce::Coalescer;
use super::pg_put::{self, NewResource};
use super::{StoreError, TenantId, Version};
use crate::index::IndexRows;

/// The most creates in one statement.
const MAX_BATCH: usize = 64;

type Answer = Result<Version, StoreError>;

struct Request {
    tenant: TenantId,
    version: Version,
    index: IndexRows,
    /// The create's audit record, appended in its transaction (`store::audit`).
    audit: Option<Entry>,
    answer: oneshot::Sender<Answer>,
}

/// Creates: at once when a slot is free, else in the next batch.
///
/// Audited creates have a coalescer of their own, with one statement in flight: their
/// statements lock the tenant's audit sequence row before writing anything
/// (`pg_sealed`), so a second one in flight would only wait for the first, and split
/// what could have been one batch. Measured on 2 cores (README, "What auditing costs"):
/// audited creates ran 25–35% slower than unaudited ones with two in flight, and now run
/// as fast or faster. The price: audited creates of several tenants are written one
/// statement at a time by one process.
#[derive(Clone)]
pub struct Creates {
    pool: PgPool,
    coalescer: Coalescer<Request>,
    audited: Coalescer<Request>,
}

impl Creates {
    pub fn start(pool: PgPool) -> Creates {
        let batches = pool.clone();
        let coalescer = Coalescer::start(MAX_BATCH, move |batch| answer(batches.clone(), batch));
        let batches = pool.clone();
        let audited =
            Coalescer::start_with_slots(1, MAX_BATCH, move |batch| answer(batches.clone(), batch));
        Creates {
            pool,
            coalescer,
            audited,
        }
    }

    /// Stores `version` (a first version, see `write::first_version`) with its index rows;
    /// answers once it is committed.
    pub async fn create(
        &self,
        tenant: TenantId,
        version: Version,
        index: IndexRows,
        audit: Option<Entry>,
    ) -> Answer {
        let coalescer = if audit.is_some() {
            &self.audited
        } else {
            &self.coalescer
        };
        if let Some(_slot) = coalescer.free_slot() {
            let audit: Vec<Entry> = audit.into_iter().collect();
            write(&self.pool, tenant, &[(&version, &index)], &audit).await?;
            return Ok(version);
        }
        let (answer, answered) = oneshot::channel();
        let request = Request {
            tenant,
            version,
            index,
            audit,
            answer,
        };
        if coalescer.queue(request).is_err() {
            return Err(StoreError::Database("the create task has stopped".into()));
        }
        answered
            .await
            .map_err(|_| StoreError::Database("the create task dropped a create".into()))?
    }
}

/// Writes a batch (one statement per tenant in it), then answers each create.
async fn answer(pool: PgPool, batch: Vec<Request>) {
    let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
    results.resize_with(batch.len(), || Ok(()));
    let mut tenants: Vec<TenantId> = batch.iter().map(|r| r.tenant).collect();
    tenants.sort_unstable();
    tenants.dedup();
    for tenant in tenants {
        let positions: Vec<usize> = (0..batch.len())
            .filter(|&i| batch[i].tenant == tenant)
            .collect();
        let items: Vec<(&Version, &IndexRows)> = positions
            .iter()
            .map(|&i| (&batch[i].version, &batch[i].index))
            .collect();
        let audit: Vec<Entry> = positions
            .iter()
            .filter_map(|&i| batch[i].audit.clone())
            .collect();
        if let Err(error) = write(&pool, tenant, &items, &audit).await {
            if items.len() == 1 {
                results[positions[0]] = Err(error);
                continue;
            }
            // Find the bad one: each create alone.
            for (&i, item) in positions.iter().zip(&items) {
                let audit: Vec<Entry> = batch[i].audit.iter().cloned().collect();
                results[i] = write(&pool, tenant, std::slice::from_ref(item), &audit).await;
            }
        }
    }
    for (request, result) in batch.into_iter().zip(results) {
        let _ = request.answer.send(result.map(|()| request.version));
    }
}

/// Writes first versions of one tenant in one statement, with their audit records (in
/// one transaction) when they have any.
async fn write(
    pool: &PgPool,
    tenant: TenantId,
    items: &[(&Version, &IndexRows)],
    audit: &[Entry],
) -> Result<(), StoreError> {
    let mut resources = Vec::with_capacity(items.len());
    for (version, index) in items {
        let Some(body) = &version.body else {
            return Err(StoreError::Database("a create without a body".into()));
        };
        resources.push(NewResource {
            resource_type: &version.resource_type,
            id: &version.id,
            last_updated: version.last_updated,
            method: version.method.as_str(),
            body,
            index,
        });
    }
    if audit.is_empty() {
        let (text, args) = pg_put::creates(tenant, &resources, audit)?;
        sqlx::query_with(AssertSqlSafe(text), args)
            .execute(pool)
            .await?;
        return Ok(());
    }
    // The statement also seals and stores the records (`pg_sealed`), or writes nothing
    // when the tenant has no audit sequence row yet: then the row is made and the
    // statement run again. It cannot deadlock with a transaction that takes the
    // numbers last, as every other write does (`audit::flush`): its only lock wait is
    // the sequence row, its keys being new (ids the server made).
    for attempt in 0..2 {
        let (text, args) = pg_put::creates(tenant, &resources, audit)?;
        let stored = sqlx::query_with(AssertSqlSafe(text), args)
            .fetch_optional(pool)
            .await?
            .is_some();
        if stored {
            return Ok(());
        }
        if attempt == 0 {
            sqlx::query(
                "INSERT INTO audit_sequence (tid, last, hash) VALUES ($1, 0, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.get())
            .bind(GENESIS)
            .execute(pool)
            .await?;
        }
    }
    Err(StoreError::Database(
        "the tenant's audit sequence row is missing".into(),
    ))
}
