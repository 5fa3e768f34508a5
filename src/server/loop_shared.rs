//! The part of an event loop other threads may touch: its command inbox, waker and counters.
//! Sessions reach their loop through it.

use std::cell::Cell;
use std::ffi::c_void;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mio::Waker;
use parking_lot::Mutex;

use super::handles::Handle;
use super::runtime::Runtime;
use crate::abi::httpsrv_session;
use crate::io::TlsAcceptor;

thread_local! {
    pub(super) static CURRENT_LOOP: Cell<usize> = const { Cell::new(0) };
}

/// Identifies a connection on its loop; the serial tells a reused slot from the old one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnKey {
    pub(super) index: u32,
    pub(super) serial: u32,
}

pub(super) type TaskFn = unsafe extern "C" fn(*mut httpsrv_session, *mut c_void);

pub enum Command {
    /// Drive this connection's session: output was queued, or it ended.
    Wake(ConnKey),
    /// Run a task posted with `httpsrv_session_post`.
    Post {
        conn: ConnKey,
        handle: Handle,
        task: TaskFn,
        userdata: usize,
    },
    /// Stop accepting, close idle connections, end the rest at the deadline.
    Stop { grace: Duration },
    /// Serve a connection another loop of the server accepted (see `EventLoop::accept`).
    Adopt {
        stream: std::net::TcpStream,
        peer: SocketAddr,
        /// The TLS configuration of the listener it came from.
        tls: Option<TlsAcceptor>,
    },
}

/// The loops of one server, filled once all have started: a loop that accepts a connection
/// hands it to the one that holds the fewest.
pub type Siblings = Arc<OnceLock<Vec<Arc<LoopShared>>>>;

#[derive(Default)]
pub(super) struct Inbox {
    pub(super) commands: Vec<Command>,
    pub(super) closed: bool,
}

/// The part of a loop other threads may touch.
pub struct LoopShared {
    pub id: usize,
    pub rt: Arc<Runtime>,
    /// Counters for `httpsrv_server_stats`. `requests` and `sent_by_loop` have one writer, the
    /// loop thread, so a load and a store count them: no read-modify-write per request or send.
    pub requests: AtomicU64,
    pub(super) sent_by_loop: AtomicU64,
    /// Bytes written by other threads (a blocking flush sends from its own thread).
    pub(super) sent_elsewhere: AtomicU64,
    /// Connections this loop holds, or has been handed and not yet adopted.
    pub(super) connections: AtomicUsize,
    pub(super) inbox: Mutex<Inbox>,
    waker: Waker,
}

impl LoopShared {
    pub(super) fn new(id: usize, rt: Arc<Runtime>, waker: Waker) -> LoopShared {
        LoopShared {
            id,
            rt,
            requests: AtomicU64::new(0),
            sent_by_loop: AtomicU64::new(0),
            sent_elsewhere: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            inbox: Mutex::new(Inbox::default()),
            waker,
        }
    }

    pub fn is_current(&self) -> bool {
        CURRENT_LOOP.with(|c| c.get()) == self.id
    }

    /// Counts bytes handed to the kernel for this loop's connections, from any thread.
    pub fn count_sent(&self, n: usize) {
        if self.is_current() {
            let before = self.sent_by_loop.load(Ordering::Relaxed);
            self.sent_by_loop
                .store(before + n as u64, Ordering::Relaxed);
        } else {
            self.sent_elsewhere.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// A connection this loop held, or was handed, is gone (or was never taken).
    pub(super) fn release_connection(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        self.rt.release_connection();
    }

    /// Bytes handed to the kernel since the loop started.
    pub fn bytes_sent(&self) -> u64 {
        self.sent_by_loop.load(Ordering::Relaxed) + self.sent_elsewhere.load(Ordering::Relaxed)
    }

    /// Queues a command for the loop; false once the loop has exited.
    pub fn send(&self, cmd: Command) -> bool {
        let mut inbox = self.inbox.lock();
        if inbox.closed {
            return false;
        }
        let was_empty = inbox.commands.is_empty();
        inbox.commands.push(cmd);
        drop(inbox);
        if was_empty {
            let _ = self.waker.wake();
        }
        true
    }
}
