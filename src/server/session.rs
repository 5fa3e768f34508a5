//! A session: one request and its response, shared between the loop that owns the connection
//! and whichever thread the handler runs on.
//!
//! A flush runs the response through the encoder into the session's queue and writes it through
//! the connection's `Link`: on the loop thread it never blocks; on another thread it writes from
//! that thread while nothing of the connection's goes first, then wakes the loop and waits on
//! the session's condition variable for the rest. The session never sees a socket.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::clock;
use super::handles::{Handle, Table};
use super::link::Link;
use super::loop_shared::{Command, ConnKey, LoopShared};
use crate::abi::{
    httpsrv_close_fn, httpsrv_done_fn, httpsrv_session, httpsrv_task_fn, HTTPSRV_DONE,
    HTTPSRV_PENDING,
};
use crate::errors::{EAGAIN, EALREADY, ECANCELED, ECONNRESET, EINVAL, EPIPE, ETIMEDOUT};
use crate::http::body::Body;
use crate::http::lent::Lent;
use crate::http::outqueue::OutQueue;
use crate::http::request::Request;
use crate::http::response::{accepted_coding, Context, Response};
use crate::io::TlsInfo;
use crate::proto::h1::{self, ResponseEncoder};

/// Largest request head buffer a retired session keeps for the next parse.
const RETIRED_REQUEST_BYTES: usize = 16 * 1024;
/// Largest response buffers (fields, pending body) a retired session keeps.
const RETIRED_RESPONSE_BYTES: usize = 64 * 1024;

pub struct AsyncFlush {
    start: u64,
    target: u64,
    done: httpsrv_done_fn,
    userdata: *mut c_void,
}

/// Everything about a session that changes; guarded by the session's mutex.
struct State {
    response: Response,
    /// Turns the response's flushes into bytes for `out`.
    encoder: ResponseEncoder,
    out: OutQueue,
    /// Framed bytes ever queued, and of those handed to the kernel.
    queued_total: u64,
    bytes_sent: u64,
    last_progress: Instant,
    /// Why the session ended (0: complete); None while it lives.
    ended: Option<c_int>,
    handler_running: bool,
    /// Tasks posted and not yet run; the handle stays valid for them.
    pending_posts: usize,
    close_fn: httpsrv_close_fn,
    close_userdata: *mut c_void,
    /// The close callback has run (or there was none) and the loop has let go.
    close_done: bool,
    user_data: *mut c_void,
    async_flushes: VecDeque<AsyncFlush>,
    blocking_waiters: usize,
    /// A wake command for this session is already in the loop's inbox.
    wake_queued: bool,
    /// The connection must be reset, not closed gracefully (abort).
    must_reset: bool,
    /// The handler failed after the head went out: drain what was flushed, then close.
    truncated: bool,
    /// The connection has earlier output to send first (pipelining): keep ours queued. A
    /// response finished while held is handed to the connection's queue whole, so a batch of
    /// pipelined responses leaves in one send.
    hold: bool,
    /// The finished response was handed to the connection's queue (see `hold`). The session
    /// is complete once the connection wrote it (`delivered`), not before.
    handed: bool,
}

// SAFETY: the raw pointers are the module's opaque userdata, never dereferenced here and
// handed back to it unchanged.
unsafe impl Send for State {}

pub struct Session {
    pub handle: Handle,
    pub(super) lp: Arc<LoopShared>,
    conn: ConnKey,
    /// The connection's transport: written under the session lock (see `write_now`).
    link: Arc<Link>,
    request: Request,
    body: Body,
    peer: SocketAddr,
    /// The client may keep the connection after this response (decided at dispatch).
    keep_alive: bool,
    state: Mutex<State>,
    cond: Condvar,
}

/// Every live session by handle, process-wide: it outlives every server, so a handle kept by a
/// module after its server is gone still finds nothing (see `handles`).
static SESSIONS: Table<Session> = Table::new();

/// The live session behind a handle; None once it is stale (or for a handle never issued).
pub fn lookup(handle: Handle) -> Option<Arc<Session>> {
    SESSIONS.get(handle)
}

/// What the loop should do with the connection after driving its session.
pub enum Progress {
    /// Still running: waiting for the handler, a flush, or the socket.
    Busy,
    /// Still running and held: the connection should send its earlier output, then `unhold`.
    Held,
    /// The finished response went into the connection's queue (`conn_out`), behind earlier
    /// ones: the connection goes on to the next request, and reports with `delivered` when
    /// those bytes reached the kernel or could not. `keep_alive` as for `Ended`.
    Handed { keep_alive: bool },
    /// Ended and released by the loop: keep the connection for the next request, or close it.
    /// `status` and `body_sent` (bytes after the head) are for the access log.
    Ended {
        keep_alive: bool,
        reset: bool,
        status: u16,
        body_sent: u64,
    },
}

fn reason_code(reason: c_int) -> c_int {
    if reason == 0 {
        EALREADY
    } else {
        reason
    }
}

fn socket_errno(e: &std::io::Error) -> c_int {
    match e.raw_os_error() {
        Some(EPIPE) => EPIPE,
        _ => ECONNRESET,
    }
}

/// What the loop knows about a request when it starts a session for it.
pub struct Start<'a> {
    pub conn: ConnKey,
    pub link: &'a Arc<Link>,
    pub request: Request,
    pub body: Body,
    pub peer: SocketAddr,
    /// The client may keep the connection after this response.
    pub keep_alive: bool,
    /// Earlier output of the connection goes first (see `State::hold`).
    pub hold: bool,
}

impl State {
    /// Whether anything can tell when the session ends: a close callback, a flush waiting
    /// (async or blocking), a handler still running or a posted task holding the handle.
    fn watched(&self) -> bool {
        self.close_fn.is_some()
            || !self.async_flushes.is_empty()
            || self.blocking_waiters > 0
            || self.handler_running
            || self.pending_posts > 0
    }

    fn new(hold: bool) -> State {
        State {
            response: Response::default(),
            encoder: ResponseEncoder::default(),
            out: OutQueue::default(),
            queued_total: 0,
            bytes_sent: 0,
            last_progress: clock::now(),
            ended: None,
            handler_running: true,
            pending_posts: 0,
            close_fn: None,
            close_userdata: std::ptr::null_mut(),
            close_done: false,
            user_data: std::ptr::null_mut(),
            async_flushes: VecDeque::new(),
            blocking_waiters: 0,
            wake_queued: false,
            must_reset: false,
            truncated: false,
            hold,
            handed: false,
        }
    }

    /// `State::new` for a retired session's state (`Session::retire` emptied the response, the
    /// queue and the async flushes, keeping their buffers). Field by field (moving whole states
    /// costs more than the rest of a request's bookkeeping); the pattern names every field, so
    /// a new one cannot be forgotten here.
    fn restart(&mut self, hold: bool) {
        let State {
            response,
            encoder,
            out,
            queued_total,
            bytes_sent,
            last_progress,
            ended,
            handler_running,
            pending_posts,
            close_fn,
            close_userdata,
            close_done,
            user_data,
            async_flushes,
            blocking_waiters,
            wake_queued,
            must_reset,
            truncated,
            hold: held,
            handed,
        } = self;
        debug_assert!(response.pending_len() == 0 && out.is_empty() && async_flushes.is_empty());
        encoder.reset();
        *queued_total = 0;
        *bytes_sent = 0;
        *last_progress = clock::now();
        *ended = None;
        *handler_running = true;
        *pending_posts = 0;
        *close_fn = None;
        *close_userdata = std::ptr::null_mut();
        *close_done = false;
        *user_data = std::ptr::null_mut();
        *blocking_waiters = 0;
        *wake_queued = false;
        *must_reset = false;
        *truncated = false;
        *held = hold;
        *handed = false;
    }
}

/// A finished session that nothing else holds, emptied by `Session::retire`: the only kind
/// `Session::restart` takes.
pub struct Retired(Arc<Session>);

impl Session {
    /// A new session for a request, registered under a fresh handle (None when the handle table
    /// is full).
    pub fn create(lp: &Arc<LoopShared>, start: Start) -> Option<Arc<Session>> {
        Self::register(Arc::new(Session {
            handle: 0,
            lp: lp.clone(),
            conn: start.conn,
            link: start.link.clone(),
            request: start.request,
            body: start.body,
            peer: start.peer,
            keep_alive: start.keep_alive,
            state: Mutex::new(State::new(start.hold)),
            cond: Condvar::new(),
        }))
    }

    /// `create`, reusing a retired session of the same loop (see `Recycler`), with its buffers.
    /// The previous request is handed back through `start.request`, so its buffers serve the
    /// next parse. None when the handle table is full (a retired session is never shared, so
    /// `get_mut` does not fail).
    pub fn restart(spare: Retired, start: &mut Start<'_>) -> Option<Arc<Session>> {
        let mut spare = spare.0;
        let me = Arc::get_mut(&mut spare)?;
        me.conn = start.conn;
        if !Arc::ptr_eq(&me.link, start.link) {
            me.link = start.link.clone();
        }
        std::mem::swap(&mut me.request, &mut start.request);
        me.body = std::mem::take(&mut start.body);
        me.peer = start.peer;
        me.keep_alive = start.keep_alive;
        me.state.get_mut().restart(start.hold);
        Self::register(spare)
    }

    /// Puts a session nothing else holds into the handle table under a fresh handle.
    fn register(mut session: Arc<Session>) -> Option<Arc<Session>> {
        let mut made = None;
        SESSIONS.insert(session.lp.id, |handle| {
            // Still the only reference: nothing can reach it before it is in the table.
            if let Some(me) = Arc::get_mut(&mut session) {
                me.handle = handle;
            }
            made = Some(session.clone());
            session
        })?;
        made
    }

    /// Lets go of what a finished session should not keep while it waits to be reused: the
    /// request body, any unusually large buffer, and its response and queue (lent memory is
    /// released now, not at the next request). None when something else still holds it.
    #[inline]
    pub fn retire(mut this: Arc<Session>) -> Option<Retired> {
        let me = Arc::get_mut(&mut this)?;
        me.body = Body::default();
        me.request.shrink(RETIRED_REQUEST_BYTES);
        let st = me.state.get_mut();
        st.response.reset();
        st.response.shrink(RETIRED_RESPONSE_BYTES);
        st.out.clear();
        st.async_flushes.clear();
        Some(Retired(this))
    }

    pub fn c_handle(&self) -> *mut httpsrv_session {
        self.handle as usize as *mut httpsrv_session
    }

    pub fn on_loop_thread(&self) -> bool {
        self.lp.is_current()
    }

    /// Asks the loop to drive this session (write queued output, run callbacks, notice the end).
    fn wake_loop(&self, st: &mut State) {
        if !st.wake_queued && self.lp.send(Command::Wake(self.conn)) {
            st.wake_queued = true;
        }
    }

    /// Ends the session with `reason`, waking everyone who waits on it.
    fn end(&self, st: &mut State, reason: c_int) {
        if st.ended.is_none() {
            st.ended = Some(reason);
            if reason != 0 {
                st.out.clear();
            }
            if st.blocking_waiters > 0 {
                self.cond.notify_all();
            }
        }
    }

    /// What the response filters need; the coding is negotiated only while the head is unsent.
    fn context(&self, head_sent: bool) -> Context<'_> {
        let cfg = &self.lp.rt.config;
        Context {
            version: self.request.version(),
            is_head: self.request.is_head(),
            keep_alive: self.keep_alive && !self.lp.rt.is_stopping(),
            accepts: if head_sent {
                None
            } else {
                accepted_coding(self.request.header(b"accept-encoding"))
            },
            http10_buffering: cfg.http10_buffering,
            compression: cfg.compression,
            compression_level: cfg.compression_level,
            compression_min_length: cfg.compression_min_length,
            compression_types: &cfg.compression_types,
            server_header: &cfg.server_header,
            compressors: &self.lp.rt.compressors,
        }
    }

    /// Runs the response filters for a flush; returns the queue position this flush must reach.
    fn queue_flush(&self, st: &mut State, last: bool) -> Result<u64, c_int> {
        let before = st.out.len();
        let cx = self.context(st.response.head_sent());
        let State {
            response,
            encoder,
            out,
            ..
        } = st;
        if let Err(e) = h1::flush(response, encoder, last, &cx, out) {
            if st.response.finished() && e != EALREADY {
                // The filters failed mid-response: send what is queued, then close.
                st.truncated = true;
            }
            return Err(e);
        }
        if before == 0 && !st.out.is_empty() {
            // A send timeout counts from when there is something to send.
            st.last_progress = clock::now();
        }
        st.queued_total += (st.out.len() - before) as u64;
        Ok(st.queued_total)
    }

    /// Hands queued bytes to the transport, under the session lock. The loop thread calls it;
    /// so does a blocking flush on another thread when the session is not held. The session
    /// lock keeps them apart; the link's lock keeps them apart from the loop's own reads and
    /// writes, and a link the loop closed fails every write.
    fn write_now(&self, st: &mut State) {
        if st.ended.is_some() || st.hold {
            return;
        }
        match self.link.write(&mut st.out) {
            Ok(0) => {
                // TLS records of earlier writes may have gone out: a blocking flush checks.
                if st.blocking_waiters > 0 && self.link.is_tls() {
                    self.cond.notify_all();
                }
            }
            Ok(n) => {
                st.bytes_sent += n as u64;
                self.lp.count_sent(n);
                st.last_progress = clock::now();
                if st.blocking_waiters > 0 {
                    self.cond.notify_all();
                }
            }
            Err(e) => self.end(st, socket_errno(&e)),
        }
        if st.ended.is_none()
            && st.out.is_empty()
            && st.response.finished()
            && !self.link.has_pending_output()
        {
            let reason = if st.truncated { ECANCELED } else { 0 };
            self.end(st, reason);
        }
    }

    /// Whether everything queued is in the kernel: nothing in the queue, nothing encrypted
    /// and held by a TLS transport.
    fn all_written(&self, st: &State, target: u64) -> bool {
        st.bytes_sent >= target && !self.link.has_pending_output()
    }

    /// The request, as parsed; valid while the session lives.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request body, read whole before the handler ran.
    pub fn body(&self) -> &[u8] {
        self.body.as_slice()
    }

    pub fn peer(&self) -> &SocketAddr {
        &self.peer
    }

    /// Whether the request came over TLS.
    pub fn is_tls(&self) -> bool {
        self.link.is_tls()
    }

    /// What the connection's TLS handshake agreed on; None on cleartext.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.link.tls_info()
    }

    /// Changes the response being built (status, fields, compression), if the session lives.
    pub fn edit_response<T>(
        &self,
        edit: impl FnOnce(&mut Response) -> Result<T, c_int>,
    ) -> Result<T, c_int> {
        edit(&mut self.check_live()?.response)
    }

    pub fn headers_sent(&self) -> bool {
        self.state.lock().response.head_sent()
    }

    /// Bytes of this response (head and framed body) handed to the kernel so far.
    pub fn bytes_sent(&self) -> u64 {
        self.state.lock().bytes_sent
    }

    /// Bytes accepted (appended or flushed) but not yet handed to the kernel.
    pub fn pending(&self) -> usize {
        let st = self.state.lock();
        let queued = if st.handed {
            // In the connection's queue.
            st.queued_total.saturating_sub(st.bytes_sent) as usize
        } else {
            st.out.len()
        };
        st.response.pending_len() + queued
    }

    fn check_live(&self) -> Result<MutexGuard<'_, State>, c_int> {
        let st = self.state.lock();
        match st.ended {
            Some(r) => Err(reason_code(r)),
            None => Ok(st),
        }
    }

    pub fn append(&self, data: &[u8]) -> Result<(), c_int> {
        let mut st = self.check_live()?;
        let queued = st.out.copied_len();
        st.response
            .append(data, queued, self.lp.rt.config.max_pending_bytes)
    }

    /// `httpsrv_response_append_ref`: on an error the module keeps the bytes.
    pub fn append_lent(&self, lent: Lent) -> Result<(), c_int> {
        let mut st = match self.check_live() {
            Ok(st) => st,
            Err(e) => {
                lent.refuse();
                return Err(e);
            }
        };
        st.response.append_lent(lent)
    }

    /// `httpsrv_response_flush`: non-blocking on the loop thread, blocking elsewhere.
    pub fn flush(&self, last: bool) -> Result<(), c_int> {
        let mut st = self.check_live()?;
        let target = self.queue_flush(&mut st, last)?;
        if self.on_loop_thread() {
            self.write_now(&mut st);
            if let Some(r) = st.ended.filter(|&r| r != 0) {
                return Err(r);
            }
            return if st.out.is_empty() && !self.link.has_pending_output() {
                Ok(())
            } else {
                Err(EAGAIN)
            };
        }
        if self.all_written(&st, target) {
            return Ok(());
        }
        if !st.hold {
            // Nothing of the connection's goes before ours: send from this thread under the
            // session lock, sparing the hop to the loop. The loop takes over what is left, and
            // runs the close callback if this write ended the session.
            self.write_now(&mut st);
            if self.all_written(&st, target) && st.ended.is_none() {
                return Ok(());
            }
        }
        self.wake_loop(&mut st);
        let timeout = self.lp.rt.config.send_timeout;
        st.blocking_waiters += 1;
        let result = loop {
            if self.all_written(&st, target) {
                break Ok(());
            }
            if let Some(r) = st.ended {
                break if r == 0 { Ok(()) } else { Err(r) };
            }
            if st.hold {
                // Behind the connection's earlier output: the loop times out the connection
                // when that makes no progress, and wakes us when it ends the session.
                self.cond.wait_for(&mut st, timeout);
                continue;
            }
            let deadline = st.last_progress + timeout;
            if Instant::now() >= deadline {
                self.end(&mut st, ETIMEDOUT);
                self.wake_loop(&mut st);
                break Err(ETIMEDOUT);
            }
            self.cond.wait_until(&mut st, deadline);
        };
        st.blocking_waiters -= 1;
        result
    }

    /// `httpsrv_response_flush_async`: queues, and `done` runs on the loop when written.
    pub fn flush_async(
        &self,
        last: bool,
        done: httpsrv_done_fn,
        userdata: *mut c_void,
    ) -> Result<(), c_int> {
        let mut st = self.check_live()?;
        let start = st.queued_total;
        let target = self.queue_flush(&mut st, last)?;
        st.async_flushes.push_back(AsyncFlush {
            start,
            target,
            done,
            userdata,
        });
        // Even on the loop thread `done` never runs inside this call: the loop runs it next.
        self.wake_loop(&mut st);
        Ok(())
    }

    pub fn abort(&self) -> Result<(), c_int> {
        let mut st = self.check_live()?;
        if st.handed {
            // Finished, and in the connection's queue: only the connection's fate is left.
            return Err(EALREADY);
        }
        st.must_reset = true;
        self.end(&mut st, ECANCELED);
        self.wake_loop(&mut st);
        Ok(())
    }

    pub fn post(&self, task: httpsrv_task_fn, userdata: *mut c_void) -> Result<(), c_int> {
        let Some(task) = task else {
            return Err(EINVAL);
        };
        let mut st = self.check_live()?;
        if !self.lp.send(Command::Post {
            conn: self.conn,
            handle: self.handle,
            task,
            userdata: userdata as usize,
        }) {
            return Err(ECANCELED);
        }
        st.pending_posts += 1;
        Ok(())
    }

    pub fn set_on_close(&self, f: httpsrv_close_fn, userdata: *mut c_void) -> Result<(), c_int> {
        let mut st = self.check_live()?;
        st.close_fn = f;
        st.close_userdata = userdata;
        Ok(())
    }

    pub fn set_data(&self, data: *mut c_void) -> Result<(), c_int> {
        self.check_live()?.user_data = data;
        Ok(())
    }

    pub fn data(&self) -> *mut c_void {
        self.state.lock().user_data
    }

    /// After the handler returned `rc`: complete, fail or keep the session as the contract says.
    pub fn handler_returned(&self, rc: c_int) {
        let mut st = self.state.lock();
        if st.ended.is_none() && !st.response.finished() {
            match rc {
                HTTPSRV_DONE => {
                    let _ = self.queue_flush(&mut st, true);
                }
                HTTPSRV_PENDING => {}
                _ => {
                    self.lp.rt.logger.log(
                        crate::server::log::ERROR,
                        &format!(
                            "handler for {} {} returned {rc}",
                            self.request.method(),
                            self.request.target()
                        ),
                    );
                    if st.response.head_sent() {
                        st.response.truncate();
                        st.truncated = true;
                    } else {
                        st.response.replace_with_error(500);
                        let _ = self.queue_flush(&mut st, true);
                    }
                }
            }
        }
        st.handler_running = false;
        if self.on_loop_thread() {
            // The loop drives the session as soon as the handler returns.
            self.release_if_done(st);
        } else {
            self.wake_loop(&mut st);
            self.release_if_done(st);
        }
    }

    /// A posted task has run.
    pub fn post_done(&self) {
        let mut st = self.state.lock();
        st.pending_posts -= 1;
        self.release_if_done(st);
    }

    /// Makes the handle stale once nothing holds the session any more.
    fn release_if_done(&self, st: MutexGuard<'_, State>) {
        let done = st.close_done && !st.handler_running && st.pending_posts == 0;
        drop(st);
        if done {
            SESSIONS.remove(self.handle);
        }
    }

    /// Loop thread: the connection's earlier output is out; write our own from now on. The
    /// send timeout counts from now, when the session can send.
    pub fn unhold(&self) {
        let mut st = self.state.lock();
        st.hold = false;
        st.last_progress = clock::now();
    }

    /// Loop thread: the connection is done with the response it was handed (`Progress::Handed`):
    /// `sent` of its bytes reached the kernel, and `failure` is why the rest could not (None:
    /// all of them did). Ends the session; `drive` then completes it.
    pub fn delivered(&self, sent: u64, failure: Option<c_int>) {
        let mut st = self.state.lock();
        st.bytes_sent = st.bytes_sent.max(sent.min(st.queued_total));
        let reason = failure.unwrap_or(if st.truncated { ECANCELED } else { 0 });
        self.end(&mut st, reason);
    }

    /// Loop thread: ends the session from the connection side (client gone, timeout, stop).
    pub fn fail(&self, reason: c_int) {
        let mut st = self.state.lock();
        self.end(&mut st, reason);
    }

    /// Loop thread: whether the send timeout passed with output still queued.
    pub fn send_stalled(&self, now: Instant) -> bool {
        let st = self.state.lock();
        st.ended.is_none()
            && (!st.out.is_empty() || self.link.has_pending_output())
            && now >= st.last_progress + self.lp.rt.config.send_timeout
    }

    /// When the send timeout would pass, if output is waiting.
    pub fn send_deadline(&self) -> Option<Instant> {
        let st = self.state.lock();
        (st.ended.is_none() && (!st.out.is_empty() || self.link.has_pending_output()))
            .then(|| st.last_progress + self.lp.rt.config.send_timeout)
    }

    /// Loop thread: writes what is queued, runs finished async flushes' callbacks, and once the
    /// session has ended runs its close callback and lets go of it.
    pub fn drive(&self, conn_out: &mut OutQueue) -> Progress {
        let handle = self.c_handle();
        loop {
            let mut st = self.state.lock();
            st.wake_queued = false;
            if st.hold && st.ended.is_none() && st.response.finished() && !st.handed {
                // Hand the whole response to the connection, behind the earlier ones; it is
                // complete once the connection wrote it.
                conn_out.append(&mut st.out);
                if st.watched() || self.lp.rt.logs_access() {
                    st.handed = true;
                    return Progress::Handed {
                        keep_alive: !st.truncated && st.encoder.keep_alive(),
                    };
                }
                // Nothing can tell when a session nobody watches ends: it ends now, as if
                // written, and the connection alone minds the bytes (a batch of pipelined
                // responses to a module without close callbacks costs no more than that).
                st.bytes_sent = st.queued_total;
                let reason = if st.truncated { ECANCELED } else { 0 };
                self.end(&mut st, reason);
            }
            self.write_now(&mut st);
            let mut ready = Vec::new();
            // While a TLS transport holds records, which flush they belong to is unknown: every
            // flush waits until they are in the kernel.
            let held = !st.async_flushes.is_empty() && self.link.has_pending_output();
            while let Some(f) = st.async_flushes.front() {
                if (f.target > st.bytes_sent || held) && st.ended.is_none() {
                    break;
                }
                if let Some(f) = st.async_flushes.pop_front() {
                    let reached = st.bytes_sent >= f.target;
                    let err = match st.ended {
                        _ if reached => 0,
                        Some(r) if r != 0 => r,
                        _ => ECANCELED,
                    };
                    let written = st.bytes_sent.min(f.target).saturating_sub(f.start);
                    ready.push((f.done, err, written, f.userdata));
                }
            }
            if !ready.is_empty() {
                drop(st);
                for (done, err, written, ud) in ready {
                    if let Some(done) = done {
                        // SAFETY: the module registered this callback with this userdata.
                        unsafe { done(handle, err, written, ud) };
                    }
                }
                // The callbacks may have appended and flushed again.
                continue;
            }
            let Some(reason) = st.ended else {
                return if st.handed {
                    Progress::Handed {
                        keep_alive: !st.truncated && st.encoder.keep_alive(),
                    }
                } else if st.hold {
                    Progress::Held
                } else {
                    Progress::Busy
                };
            };
            if !st.close_done {
                if let Some(f) = st.close_fn.take() {
                    let ud = st.close_userdata;
                    drop(st);
                    // SAFETY: as above; the handle stays valid during the call.
                    unsafe { f(handle, reason, ud) };
                    st = self.state.lock();
                }
                st.close_done = true;
            }
            let ended = Progress::Ended {
                keep_alive: reason == 0 && st.encoder.keep_alive(),
                reset: st.must_reset,
                status: st.response.status(),
                body_sent: st.bytes_sent.saturating_sub(st.encoder.head_len() as u64),
            };
            self.release_if_done(st);
            return ended;
        }
    }
}

/// A pool route's handler, queued for a worker thread.
pub struct PoolHandler {
    pub session: Arc<Session>,
    pub handler: super::routes::HandlerFn,
    pub userdata: *mut c_void,
}

// SAFETY: the session is shared between threads anyway; `userdata` is the module's opaque
// pointer, which a pool route's contract lets its handler use on a worker thread.
unsafe impl Send for PoolHandler {}

impl super::pool::Job for PoolHandler {
    fn run(self: Box<Self>) {
        run_handler(&self.session, self.handler, self.userdata);
    }

    fn cancel(self: Box<Self>) {
        // Never ran: its session already ended with the server's stop.
        self.session.handler_returned(HTTPSRV_PENDING);
    }
}

thread_local! {
    /// The session whose handler runs on this thread, and its handle.
    static RUNNING: Cell<(Handle, *const Session)> = const { Cell::new((0, std::ptr::null())) };
}

/// The session of the handler running on this thread, if `handle` is its handle: the C calls a
/// handler makes on its own session skip the handle table.
///
/// The pointer is valid until the handler returns: `run_handler`'s caller holds a reference
/// for that long, and the handle cannot go stale while the handler runs (`handler_running`).
/// Callers use it only within the C call they serve, which the handler made.
pub fn running(handle: Handle) -> Option<*const Session> {
    let (h, p) = RUNNING.with(Cell::get);
    (h == handle && !p.is_null()).then_some(p)
}

/// Runs a handler on the current thread with no lock held, then applies its result.
// `ud` is the module's opaque pointer, passed back to it and never dereferenced here.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn run_handler(session: &Arc<Session>, handler: super::routes::HandlerFn, ud: *mut c_void) {
    let outer = RUNNING.with(|r| r.replace((session.handle, Arc::as_ptr(session))));
    // SAFETY: the module registered this handler with this userdata.
    let rc = unsafe { handler(session.c_handle(), ud) };
    RUNNING.with(|r| r.set(outer));
    session.handler_returned(rc);
}
