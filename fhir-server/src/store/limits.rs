//! How long the database may work for one request, and what stops it early.
//!
//! A request's statements are bounded by the statement timeout (`--statement-timeout-ms`):
//! PostgreSQL's `statement_timeout` on the server's connections, SQLite's progress handler
//! on a search's read. A statement whose client went away is stopped too: on PostgreSQL
//! its connection is closed, which the backend notices (`client_connection_check_interval`)
//! and cancels the query; on SQLite the progress handler sees the request dropped.
//!
//! Background work (export jobs, the start-up reindex, migrations) runs
//! [`in_background`], without the bound: it reads in pages and must finish however long
//! the whole takes. The command-line tools (import, export, reindex, migrate) open the
//! store without a timeout at all.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

tokio::task_local! {
    static BACKGROUND: ();
}

/// Runs `work` without the statement timeout.
pub async fn in_background<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

/// Whether the current task runs [`in_background`].
pub fn is_background() -> bool {
    BACKGROUND.try_with(|_| ()).is_ok()
}

/// The instant by which a statement started now must end, if it is bounded.
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    match timeout {
        Some(timeout) if !is_background() => Some(Instant::now() + timeout),
        _ => None,
    }
}

/// A flag raised when the request that owns it is dropped before it finished (its client
/// went away), so that the statement it started can stop.
pub struct Abandoned {
    flag: Arc<AtomicBool>,
    finished: bool,
}

impl Default for Abandoned {
    fn default() -> Self {
        Abandoned::new()
    }
}

impl Abandoned {
    pub fn new() -> Abandoned {
        Abandoned {
            flag: Arc::new(AtomicBool::new(false)),
            finished: false,
        }
    }

    /// The flag, for the code that runs the statement.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// The request got its answer: nothing to stop.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_work_has_no_deadline() {
        let timeout = Some(Duration::from_secs(1));
        assert!(deadline(timeout).is_some());
        assert!(in_background(async { deadline(timeout) }).await.is_none());
        assert!(deadline(None).is_none());
    }

    #[test]
    fn a_dropped_request_raises_its_flag() {
        let dropped = Abandoned::new();
        let flag = dropped.flag();
        drop(dropped);
        assert!(flag.load(Ordering::Relaxed));
        let answered = Abandoned::new();
        let flag = answered.flag();
        answered.finish();
        assert!(!flag.load(Ordering::Relaxed));
    }
}
