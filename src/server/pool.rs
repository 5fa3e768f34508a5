//! The worker pool that runs `HTTPSRV_ROUTE_POOL` handlers, where they may block.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::routes::HandlerFn;
use super::session::{run_handler, Session};
use crate::abi::HTTPSRV_PENDING;

struct Job {
    session: Arc<Session>,
    handler: HandlerFn,
    userdata: usize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
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

    /// Queues a handler; false when the pool is shut down.
    pub fn submit(&self, session: Arc<Session>, handler: HandlerFn, userdata: *mut c_void) -> bool {
        let mut q = self.shared.queue.lock();
        if q.closed {
            return false;
        }
        q.jobs.push_back(Job {
            session,
            handler,
            userdata: userdata as usize,
        });
        drop(q);
        self.shared.ready.notify_one();
        true
    }

    /// Lets running handlers finish, drops queued ones, and joins every worker.
    pub fn shutdown(&self) {
        let dropped: Vec<Job> = {
            let mut q = self.shared.queue.lock();
            q.closed = true;
            q.jobs.drain(..).collect()
        };
        self.shared.ready.notify_all();
        for job in dropped {
            // Never ran: its session already ended with the server's stop.
            job.session.handler_returned(HTTPSRV_PENDING);
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
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_handler(&job.session, job.handler, job.userdata as *mut c_void)
        }));
        if outcome.is_err() {
            crate::server::log::global_error("panic in a pool handler's session");
        }
        // The job may hold the last reference to the session and, through it, lent memory.
        drop(job);
        crate::http::lent::run_releases();
    }
}
