//! Background work: bulk export jobs, kept in the database (`jobs` table) so that they
//! survive a restart and so that several server processes on one database share them.
//!
//! A job is queued by `$export`; a worker claims it (moving it to `running`), writes its
//! files (see `export`), keeps its lease fresh while it works, and marks it `done` (or
//! `failed`). A running job whose lease went stale (its process died) is claimed again and
//! started over. Finished jobs and their files are removed when they expire; a cancelled
//! job's files at once.

pub mod export;
pub mod runner;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::SharedApp;
use crate::store::{Store, StoreError, TenantId};
use export::{OutputFile, Scope};

/// How often an idle worker looks for work.
const POLL: Duration = Duration::from_secs(1);

/// An export job's parameters, progress and output (the `state` column).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportJob {
    pub tenant: TenantId,
    pub scope: Scope,
    pub types: Vec<String>,
    pub since: Option<i64>,
    /// The kick-off URL, as the manifest's `request`.
    pub request: String,
    /// The base URL the files are served under.
    pub base: String,
    /// When the export started: resources are as of this instant or later.
    pub transaction_time: i64,
    #[serde(default)]
    pub progress: String,
    #[serde(default)]
    pub output: Vec<OutputFile>,
    #[serde(default)]
    pub error: Option<String>,
    /// The claim (owner token) whose files the finished job serves: each attempt writes
    /// its own folder, so a worker that lost its job never touches the next one's files.
    #[serde(default)]
    pub attempt: Option<String>,
    /// Who asked for it (`auth::Principal::holder`): only they may poll it and fetch its
    /// files. `None` under `--auth none`.
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// A job's status, as `$export-status` reports it.
pub enum Status {
    Running(ExportJob),
    Done(ExportJob),
    Failed(ExportJob),
}

/// The folder of all of a job's attempts (removed with the job).
pub fn job_dir(root: &std::path::Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Where the files of a finished job are.
pub fn files_dir(root: &std::path::Path, id: &str, job: &ExportJob) -> PathBuf {
    job_dir(root, id).join(job.attempt.as_deref().unwrap_or("files"))
}

/// Queues an export; its id.
pub async fn queue(store: &Store, job: &ExportJob) -> Result<String, StoreError> {
    store.queue_job(job.tenant, "export", &state(job)).await
}

fn state(job: &ExportJob) -> String {
    serde_json::to_string(job).unwrap_or_default()
}

/// A job of a tenant, if there is one (and it is not cancelled).
pub async fn status(
    store: &Store,
    tenant: TenantId,
    id: &str,
) -> Result<Option<Status>, StoreError> {
    let Some((status, state)) = store.job(tenant, id).await? else {
        return Ok(None);
    };
    let Ok(job) = serde_json::from_str::<ExportJob>(&state) else {
        return Ok(None);
    };
    Ok(match status.as_str() {
        "queued" | "running" => Some(Status::Running(job)),
        "done" => Some(Status::Done(job)),
        "failed" => Some(Status::Failed(job)),
        _ => None,
    })
}

/// Cancels a job (or forgets a finished one): its files are removed by the worker or the
/// cleanup. `false` when there is no such job.
pub async fn cancel(store: &Store, tenant: TenantId, id: &str) -> Result<bool, StoreError> {
    store.cancel_job(tenant, id).await
}

/// Starts the worker of this process.
pub fn start(app: SharedApp) {
    // Expired files go within a minute, or sooner when they live shorter than that.
    let cleanup_every = Duration::from_secs(app.config.export_ttl_seconds.clamp(1, 60));
    // Jobs read in pages and must finish however long the whole takes: no statement
    // timeout (see `store::limits`).
    tokio::spawn(crate::store::limits::in_background(async move {
        let mut last_cleanup = std::time::Instant::now() - cleanup_every;
        loop {
            if last_cleanup.elapsed() >= cleanup_every {
                if let Err(error) = cleanup(&app).await {
                    tracing::warn!(?error, "export cleanup failed");
                }
                last_cleanup = std::time::Instant::now();
            }
            match claim(&app.store, lease(&app)).await {
                Ok(Some((id, owner, job))) => run(&app, &id, &owner, job).await,
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(error) => {
                    tracing::warn!(?error, "cannot look for export jobs");
                    tokio::time::sleep(POLL * 5).await;
                }
            }
        }
    }));
}

/// A running job whose lease is older than this is taken to be abandoned.
fn lease(app: &SharedApp) -> Duration {
    Duration::from_secs(app.config.job_lease_seconds.max(1))
}

/// Claims the oldest queued export, or an abandoned running one (lease older than
/// `lease`): its id, this claim's owner token, and its state.
async fn claim(
    store: &Store,
    lease: Duration,
) -> Result<Option<(String, String, ExportJob)>, StoreError> {
    let Some(claimed) = store.claim_job("export", lease).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&claimed.state) {
        Ok(job) => Ok(Some((claimed.id, claimed.owner, job))),
        Err(error) => {
            finish(store, &claimed.id, &claimed.owner, "failed", None).await?;
            tracing::error!(id = %claimed.id, %error, "an export job's state does not parse; failed it");
            Ok(None)
        }
    }
}

/// Runs a claimed job to its end, in a folder of this attempt's own.
async fn run(app: &SharedApp, id: &str, owner: &str, mut job: ExportJob) {
    job.attempt = Some(owner.to_owned());
    let dir = files_dir(&app.config.export_dir, id, &job);
    tracing::info!(%id, "export started");
    let store = &app.store;
    let types = if job.types.is_empty() {
        match export::default_types(store, job.tenant, &job.scope).await {
            Ok(types) => types,
            Err(error) => {
                fail(app, id, owner, job, format!("{error:?}")).await;
                return;
            }
        }
    } else {
        job.types.clone()
    };
    // A task beside the writing keeps the lease and records the progress; it tells the
    // writing to stop when the job was cancelled or another worker owns it now.
    let progress = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Three beats per lease: one late beat does not lose the job.
    let beat_every = lease(app) / 3;
    let beat = {
        let (store, id, owner, job) = (store.clone(), id.to_owned(), owner.to_owned(), job.clone());
        let (progress, cancelled) = (progress.clone(), cancelled.clone());
        tokio::spawn(crate::store::limits::in_background(async move {
            let mut job = job;
            loop {
                tokio::time::sleep(beat_every).await;
                job.progress = progress.lock().map(|p| p.clone()).unwrap_or_default();
                if let Ok(false) = heartbeat(&store, &id, &owner, &job).await {
                    cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }))
    };
    let result = export::write_files(
        store,
        job.tenant,
        &job.scope,
        &types,
        job.since,
        &dir,
        |resource_type: &str, count: usize| {
            if let Ok(mut text) = progress.lock() {
                *text = format!("{resource_type}: {count} resources written");
            }
            !cancelled.load(std::sync::atomic::Ordering::Relaxed)
        },
    )
    .await;
    beat.abort();
    if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(%id, "export stopped: cancelled, or taken over by another worker");
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return;
    }
    match result {
        Ok(output) => {
            let total: usize = output.iter().map(|o| o.count).sum();
            job.output = output;
            job.progress = format!("done: {total} resources");
            let expires =
                crate::resource::now_micros() + app.config.export_ttl_seconds as i64 * 1_000_000;
            match finish(store, id, owner, "done", Some((&job, expires))).await {
                Ok(true) => tracing::info!(%id, resources = total, "export done"),
                // Cancelled or taken over meanwhile: these files are nobody's.
                _ => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                }
            }
        }
        Err(error) => fail(app, id, owner, job, error).await,
    }
}

async fn fail(app: &SharedApp, id: &str, owner: &str, mut job: ExportJob, error: String) {
    tracing::error!(%id, %error, "export failed");
    job.error = Some(error);
    let expires = crate::resource::now_micros() + app.config.export_ttl_seconds as i64 * 1_000_000;
    let _ = finish(&app.store, id, owner, "failed", Some((&job, expires))).await;
}

/// Keeps the lease of a running job and records its progress; `false` when the job is no
/// longer running here (cancelled, or claimed by another worker after a lapsed lease).
async fn heartbeat(
    store: &Store,
    id: &str,
    owner: &str,
    job: &ExportJob,
) -> Result<bool, StoreError> {
    store.renew_job(id, owner, &state(job)).await
}

/// Ends a running job with `status` (and its final state and expiry); `false` when it was
/// no longer running here (cancelled, or claimed by another worker).
async fn finish(
    store: &Store,
    id: &str,
    owner: &str,
    status: &str,
    end: Option<(&ExportJob, i64)>,
) -> Result<bool, StoreError> {
    let end = end.map(|(job, expires)| (state(job), expires));
    let end = end
        .as_ref()
        .map(|(state, expires)| (state.as_str(), *expires));
    store.finish_job(id, owner, status, end).await
}

/// Removes expired jobs and cancelled ones (after their worker had time to notice), with
/// their files.
async fn cleanup(app: &SharedApp) -> Result<(), StoreError> {
    for id in app.store.expired_jobs(lease(app)).await? {
        let _ = tokio::fs::remove_dir_all(job_dir(&app.config.export_dir, &id)).await;
        app.store.delete_job(&id).await?;
        tracing::info!(%id, "export removed");
    }
    Ok(())
}
