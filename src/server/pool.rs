//! The worker pool that runs `HTTPSRV_ROUTE_POOL` handlers, where they may block.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// Work for the pool: run on a worker thread, or cancelled when the pool shuts down first.
pub trait Job: Send {
    fn run(self: Box<Self>);
    fn cancel(self: Box<Self>);
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Box<dyn Job>>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    pub fn start(&self, threads: usize) -> std::io::Result<()> {
        let mut handles = self.threads.lock();
        for i in 0..threads {
            let shared = self.shared.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("httpsrv-pool-{i}"))
                    .spawn(move || worker(&shared))?,
            );
        }
        Ok(())
    }

    /// Queues a job; false (and the job is dropped) when the pool is shut down.
    pub fn submit(&self, job: Box<dyn Job>) -> bool {
        let mut q = self.shared.queue.lock();
        if q.closed {
            return false;
        }
        q.jobs.push_back(job);
        drop(q);
        self.shared.ready.notify_one();
        true
    }

    /// Lets running handlers finish, drops queued ones, and joins every worker.
    pub fn shutdown(&self) {
        let dropped: Vec<Box<dyn Job>> = {
            let mut q = self.shared.queue.lock();
            q.closed = true;
            q.jobs.drain(..).collect()
        };
        self.shared.ready.notify_all();
        for job in dropped {
            job.cancel();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(shared: &Shared) {
    super::mark_library_thread();
    loop {
        let job = {
            let mut q = shared.queue.lock();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                shared.ready.wait(&mut q);
            }
        };
        // The job drops what it holds when it returns: lent memory may be due for release then.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
        if outcome.is_err() {
            crate::server::log::global_error("panic in a pool job");
        }
        crate::http::lent::run_releases();
    }
}
