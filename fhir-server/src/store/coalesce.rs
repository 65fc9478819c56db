//! Coalescing: requests that arrive while the database is busy leave together.
//!
//! A round trip to PostgreSQL costs far more than a small read or insert in it: a send and
//! a receive on each side, a wake-up of the backend, and for a write a statement start and
//! a commit. So at most a few statements (one per CPU core) are in flight. A request that
//! finds a slot free runs at once, alone, on its caller's task; requests that find every
//! slot taken queue, and a task sends them together, as one statement, as soon as a slot
//! frees. An idle server sends each request alone and without delay; a busy one sends
//! fewer, larger statements. This is the SQLite writer's group commit, for PostgreSQL.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Statements in flight: one per core, at least two. Fewer make larger batches.
pub fn in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Hands requests of type `T` to a batch runner.
pub struct Coalescer<T> {
    slots: Arc<Semaphore>,
    queue: mpsc::UnboundedSender<T>,
}

impl<T> Clone for Coalescer<T> {
    fn clone(&self) -> Self {
        Coalescer {
            slots: self.slots.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static> Coalescer<T> {
    /// Starts the task that runs queued requests in batches of at most `max_batch`, each
    /// batch by `run` (which answers every request of it), holding one of [`in_flight`]
    /// slots.
    pub fn start<F, Fut>(max_batch: usize, run: F) -> Coalescer<T>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Coalescer::start_with_slots(in_flight(), max_batch, run)
    }

    /// [`Coalescer::start`] with `slots` statements in flight.
    pub fn start_with_slots<F, Fut>(slots: usize, max_batch: usize, run: F) -> Coalescer<T>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (queue, requests) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(slots));
        tokio::spawn(batch_loop(slots.clone(), requests, max_batch, run));
        Coalescer { slots, queue }
    }

    /// A free slot, for running a request at once. A slot is free only when no batch waits
    /// for one (the semaphore hands released slots to waiters first), so queued requests
    /// are never overtaken.
    pub fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Queues a request for the next batch; `Err` gives it back when the task has stopped.
    pub fn queue(&self, request: T) -> Result<(), T> {
        self.queue.send(request).map_err(|e| e.0)
    }
}

async fn batch_loop<T, F, Fut>(
    slots: Arc<Semaphore>,
    mut requests: mpsc::UnboundedReceiver<T>,
    max_batch: usize,
    run: F,
) where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    while let Some(first) = requests.recv().await {
        // Wait for a free slot first: the requests that arrive meanwhile join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let running = run(batch);
        tokio::spawn(async move {
            running.await;
            drop(slot);
        });
    }
}
