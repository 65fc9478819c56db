//! A worker for one kind of job on the database's queue (`store::jobs`): it claims a due
//! job, runs it, and records what the job asks: done, again at a later time (a reminder
//! waiting for quiet hours to end, a retry after a channel failed), or failed. Several
//! server processes run the same workers: the claim gives each job to one of them (on
//! PostgreSQL `FOR UPDATE SKIP LOCKED`), and a job whose process died is claimed again
//! when its lease lapses.

use std::future::Future;
use std::time::Duration;

use crate::app::SharedApp;
use crate::clock::now_micros;
use crate::store::jobs::ClaimedJob;

/// How often an idle worker looks for due work.
const POLL: Duration = Duration::from_secs(1);
/// How long a finished job is kept (for an admin to look at) before it is removed.
const KEPT: i64 = 7 * 24 * 3600 * 1_000_000;
/// The first wait before a retry; it doubles with each attempt, up to [`LONGEST_WAIT`].
const FIRST_WAIT: i64 = 30 * 1_000_000;
const LONGEST_WAIT: i64 = 3600 * 1_000_000;

/// What a job asks for after a run.
#[derive(Debug)]
pub enum Step {
    /// Finished; its final state.
    Done(String),
    /// Run it again at (or after) `at`, with `state`.
    Later { state: String, at: i64 },
    /// Given up; its final state.
    Failed(String),
}

/// When the retry after `attempt` failed attempts (1 for the first) is due, from `now`.
pub fn retry_at(attempt: u32, now: i64) -> i64 {
    let wait = FIRST_WAIT.saturating_mul(1 << attempt.saturating_sub(1).min(20));
    now + wait.min(LONGEST_WAIT)
}

/// The step after failed attempt `attempt` (counted from 1) of a job now in `state`: again
/// after [`retry_at`]'s wait, or given up once it reaches `most` attempts.
pub fn again_or_give_up(state: String, attempt: u32, most: u32) -> Step {
    if attempt >= most {
        Step::Failed(state)
    } else {
        Step::Later {
            state,
            at: retry_at(attempt, now_micros()),
        }
    }
}

/// Starts `workers` workers for jobs of `kind`, each running `run` on the jobs it claims.
/// A job must end (or be given up) within `lease`, or another worker takes it over.
pub fn start<F, Fut>(
    app: SharedApp,
    kind: &'static str,
    (workers, lease): (usize, Duration),
    run: F,
) where
    F: Fn(SharedApp, ClaimedJob) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Step> + Send,
{
    for _ in 0..workers {
        let (app, run) = (app.clone(), run.clone());
        tokio::spawn(crate::store::limits::in_background(async move {
            loop {
                match app.store.claim_job(kind, lease).await {
                    Ok(Some(claimed)) => {
                        let (id, owner) = (claimed.id.clone(), claimed.owner.clone());
                        let step = run(app.clone(), claimed).await;
                        if let Err(error) = record(&app, (&id, &owner), step).await {
                            tracing::warn!(?error, job = %id, kind, "cannot record a job's step");
                        }
                    }
                    Ok(None) => tokio::time::sleep(POLL).await,
                    Err(error) => {
                        tracing::warn!(?error, kind, "cannot look for jobs");
                        tokio::time::sleep(POLL * 5).await;
                    }
                }
            }
        }));
    }
}

async fn record(
    app: &SharedApp,
    claim: (&str, &str),
    step: Step,
) -> Result<bool, crate::store::StoreError> {
    let (id, owner) = claim;
    let kept = now_micros() + KEPT;
    match step {
        Step::Done(state) => {
            app.store
                .finish_job(id, owner, "done", Some((&state, kept)))
                .await
        }
        Step::Later { state, at } => app.store.requeue_job(claim, &state, Some(at)).await,
        Step::Failed(state) => {
            app.store
                .finish_job(id, owner, "failed", Some((&state, kept)))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_at(1, 0), 30_000_000);
        assert_eq!(retry_at(2, 0), 60_000_000);
        assert_eq!(retry_at(5, 0), 480_000_000);
        assert_eq!(retry_at(30, 0), 3_600_000_000);
    }
}
