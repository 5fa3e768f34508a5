//! One event loop per thread (mio): accepts, reads and parses requests, dispatches them, and
//! drives sessions' output. Each connection belongs to exactly one loop.

use std::ffi::c_void;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::clock;
use super::connection::{BodyState, Conn, Phase, Read, Receiving};
use super::handles::Handle;
use super::link::Link;
use super::loop_shared::{Command, ConnKey, LoopShared, Siblings, TaskFn, CURRENT_LOOP};
use super::recycle::Recycler;
use super::routes::Match;
use super::runtime::Runtime;
use super::session::{run_handler, PoolHandler, Progress, Session, Start};
use crate::abi::httpsrv_session;
use crate::errors::{ECANCELED, ECONNRESET, EPIPE, ETIMEDOUT};
use crate::http::body::{Body, BodyWriter};
use crate::http::outqueue::OutQueue;
use crate::http::request::{BodyFraming, HttpError, Request};
use crate::http::response::{Context, Response};
use crate::io::{Tcp, TlsAcceptor, Transport};
use crate::proto::h1::chunked::ChunkedDecoder;
use crate::proto::h1::parse::{parse_head_into, Limits};
use crate::proto::h1::{self, ResponseEncoder};

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 4096;
/// Longest a rejected client may keep sending before we close (lingering close).
const LINGER: Duration = Duration::from_secs(2);
/// Requests one connection may start before other connections get their turn.
const TURN_REQUESTS: usize = 32;
/// Batched responses are sent early once this many bytes wait.
const DIRECT_HIGH_WATER: usize = 64 * 1024;
/// Most a rejected client may still send while lingering.
const LINGER_BYTES: usize = 1 << 20;
/// While `accept` fails for want of descriptors or memory, it is retried after this long,
/// doubling up to `ACCEPT_RETRY_MAX`, and whenever a connection of the loop closes.
const ACCEPT_RETRY_MIN: Duration = Duration::from_millis(10);
const ACCEPT_RETRY_MAX: Duration = Duration::from_millis(500);
/// Most pipelined responses of one connection waiting in its queue (each holds its session):
/// beyond it the connection parses no more requests until the queue drains.
const MAX_DELIVERING: usize = TURN_REQUESTS;

pub struct EventLoop {
    poll: Poll,
    shared: Arc<LoopShared>,
    /// Each listening socket, with the TLS configuration of its connections if it has one.
    listeners: Vec<(TcpListener, Option<TlsAcceptor>)>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    serial: u32,
    next_sweep: Option<Instant>,
    /// Accepting failed for want of descriptors (EMFILE): when to try again. Until then
    /// listener events are ignored; the connections wait in the kernel's queue.
    accept_retry: Option<Instant>,
    /// The wait before the next retry while accepting keeps failing; zero once it works.
    accept_backoff: Duration,
    stop_deadline: Option<Instant>,
    buffers: Vec<Vec<u8>>,
    /// Connections that used up their turn with work left; served after the next poll.
    deferred: Vec<ConnKey>,
    /// Finished sessions and head buffers for the next requests.
    recycler: Recycler,
    siblings: Siblings,
}

impl EventLoop {
    pub fn new(
        id: usize,
        rt: Arc<Runtime>,
        listeners: Vec<(std::net::TcpListener, Option<TlsAcceptor>)>,
        siblings: Siblings,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let mut mio_listeners = Vec::new();
        for (i, (l, tls)) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            mio_listeners.push((l, tls));
        }
        Ok(EventLoop {
            poll,
            shared: Arc::new(LoopShared::new(id, rt, waker)),
            listeners: mio_listeners,
            conns: Vec::new(),
            free: Vec::new(),
            serial: 0,
            next_sweep: None,
            accept_retry: None,
            accept_backoff: Duration::ZERO,
            stop_deadline: None,
            buffers: Vec::new(),
            deferred: Vec::new(),
            recycler: Recycler::default(),
            siblings,
        })
    }

    pub fn shared(&self) -> Arc<LoopShared> {
        self.shared.clone()
    }

    fn rt(&self) -> &Runtime {
        &self.shared.rt
    }

    pub fn run(mut self) {
        CURRENT_LOOP.with(|c| c.set(self.shared.id));
        super::mark_library_thread();
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.deferred.is_empty() {
                let wake = match (self.next_sweep, self.accept_retry) {
                    (Some(sweep), Some(retry)) => Some(sweep.min(retry)),
                    (sweep, retry) => sweep.or(retry),
                };
                wake.map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            let polled = self.poll.poll(&mut events, timeout);
            clock::tick();
            if let Err(e) = polled {
                if e.kind() != ErrorKind::Interrupted {
                    self.rt().log_error(&format!("event loop poll failed: {e}"));
                    break;
                }
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    self.run_commands();
                } else if token.0 >= LISTENER_BASE {
                    self.accept(token.0 - LISTENER_BASE);
                } else {
                    let idx = token.0;
                    let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    let peer_done = ev.is_read_closed() || ev.is_error();
                    self.guarded(idx, |lp| lp.on_event(idx, readable, peer_done));
                }
            }
            for key in std::mem::take(&mut self.deferred) {
                if let Some(idx) = self.find(key) {
                    self.guarded(idx, |lp| lp.advance(idx));
                }
            }
            if self.next_sweep.is_some_and(|t| clock::now() >= t) {
                self.sweep();
            }
            if self.accept_retry.is_some_and(|t| clock::now() >= t) {
                self.accept_retry = None;
                for li in 0..self.listeners.len() {
                    self.accept(li);
                }
            }
            // Lent memory the iteration finished with goes back to the module, outside any lock.
            crate::http::lent::run_releases();
            if self.stop_deadline.is_some() && self.conns.iter().all(Option::is_none) {
                break;
            }
        }
        self.exit();
        crate::http::lent::run_releases();
    }

    /// Runs connection work, closing the connection if our own code panicked.
    fn guarded(&mut self, idx: usize, f: impl FnOnce(&mut Self)) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if r.is_err() {
            self.rt()
                .log_error("panic while serving a connection; closing it");
            if let Some(Some(conn)) = self.conns.get(idx) {
                if let Phase::Active(s) = &conn.phase {
                    s.fail(ECONNRESET);
                    let s = s.clone();
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        s.drive(&mut OutQueue::default())
                    }));
                }
            }
            self.close(idx, true);
        }
    }

    fn accept(&mut self, li: usize) {
        if self.stop_deadline.is_some() || self.accept_retry.is_some() {
            return;
        }
        loop {
            let (accepted, tls) = match self.listeners.get(li) {
                Some((l, tls)) => (l.accept(), tls),
                None => return,
            };
            let tls = tls.clone();
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // That connection is gone (or refused by a firewall rule); the next one waits.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM)
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connections stay in the kernel's
                    // queue, and no new event will tell of them (edge-triggered).
                    self.pause_accepting(&e);
                    return;
                }
            };
            if !self.accept_backoff.is_zero() {
                self.accept_backoff = Duration::ZERO;
                self.rt().log_info("accepting connections again");
            }
            if !self.rt().admit_connection() {
                // Over max_connections: refuse the new one, never an old one.
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            // Every loop is woken for a new connection and the first to accept takes the whole
            // queue, so a burst (a client opening its pool) could land on one loop. The loop
            // holding the fewest gets it; it counts from now, so a burst spreads evenly.
            let target = self.fewest_connections();
            target.connections.fetch_add(1, Ordering::Relaxed);
            if target.id == self.shared.id {
                self.add_conn(stream, peer, tls);
            } else if !target.send(Command::Adopt {
                stream: stream.into(),
                peer,
                tls,
            }) {
                // That loop has exited (the server stops): the connection is closed.
                target.release_connection();
            }
        }
    }

    /// Accepting failed for want of a resource: try again on a timer, backing off while the
    /// shortage lasts (no busy loop), and as soon as a connection of this loop closes.
    fn pause_accepting(&mut self, e: &io::Error) {
        if self.accept_backoff.is_zero() {
            self.rt().log_error(&format!(
                "accept failed: {e}; the waiting connections are accepted when it works again"
            ));
            self.accept_backoff = ACCEPT_RETRY_MIN;
        } else {
            self.accept_backoff = (self.accept_backoff * 2).min(ACCEPT_RETRY_MAX);
        }
        self.accept_retry = Some(clock::now() + self.accept_backoff);
    }

    /// The loop of this server that holds the fewest connections; this one on a tie.
    fn fewest_connections(&self) -> Arc<LoopShared> {
        let count = |lp: &LoopShared| lp.connections.load(Ordering::Relaxed);
        let mut best = &self.shared;
        for lp in self.siblings.get().into_iter().flatten() {
            if count(lp) < count(best) {
                best = lp;
            }
        }
        best.clone()
    }

    fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let transport = match tls {
            None => Transport::Tcp(Tcp::new(stream)),
            Some(acceptor) => match acceptor.accept(stream) {
                Ok(t) => Transport::Tls(Box::new(t)),
                Err(_) => return self.shared.release_connection(),
            },
        };
        self.add_transport(transport, peer);
    }

    fn add_transport(&mut self, transport: Transport, peer: SocketAddr) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let link = Arc::new(Link::new(transport));
        if idx >= LISTENER_BASE || link.register(self.poll.registry(), Token(idx)).is_err() {
            self.free.push(idx);
            self.shared.release_connection();
            return;
        }
        self.serial = self.serial.wrapping_add(1);
        let now = clock::now();
        let cfg = &self.rt().config;
        let deadline = now
            + if link.handshaking() {
                cfg.tls_handshake_timeout
            } else {
                cfg.header_timeout
            };
        self.conns[idx] = Some(Conn {
            key: ConnKey {
                index: idx as u32,
                serial: self.serial,
            },
            link,
            peer,
            rbuf: Vec::new(),
            rpos: 0,
            phase: Phase::Head {
                since: now,
                receiving: true,
            },
            requests: 0,
            read_closed: false,
            readable: true,
            peer_done: false,
            direct: OutQueue::default(),
            direct_progress: now,
            delivering: None,
            deadline: Some(deadline),
        });
        self.schedule(deadline);
    }

    fn schedule(&mut self, at: Instant) {
        if self.next_sweep.is_none_or(|t| at < t) {
            self.next_sweep = Some(at);
        }
    }

    fn conn(&mut self, idx: usize) -> Option<&mut Conn> {
        self.conns.get_mut(idx).and_then(Option::as_mut)
    }

    /// A connection together with the loop's buffer pool.
    fn conn_pool(&mut self, idx: usize) -> Option<(&mut Conn, &mut Vec<Vec<u8>>)> {
        let conn = self.conns.get_mut(idx).and_then(Option::as_mut)?;
        Some((conn, &mut self.buffers))
    }

    fn close(&mut self, idx: usize, reset: bool) {
        self.close_ending(idx, reset, ECONNRESET);
    }

    /// Closes a connection. A session still running on it ends first with `reason` (its close
    /// callback runs), so no thread can write to the socket once it is closed and reused.
    fn close_ending(&mut self, idx: usize, reset: bool, reason: i32) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        if let Phase::Active(s) = &conn.phase {
            s.fail(reason);
            s.drive(&mut OutQueue::default());
        }
        // The responses still in the connection's queue do not reach the client.
        while let Some((s, sent)) = conn.next_delivered(true) {
            self.delivered(&conn.peer, s, sent, Some(reason));
        }
        conn.rpos = conn.rbuf.len();
        conn.release_idle_buffer(&mut self.buffers);
        conn.link.close(self.poll.registry(), reset);
        drop(conn);
        self.free.push(idx);
        self.shared.release_connection();
        if self.accept_retry.is_some() {
            // A descriptor came free: accept the waiting connections now.
            self.accept_retry = Some(clock::now());
        }
    }

    /// `peer_done`: the client closed or reset (the end may sit behind data already there).
    fn on_event(&mut self, idx: usize, readable: bool, peer_done: bool) {
        let limit = self.read_limit();
        let Some((conn, pool)) = self.conn_pool(idx) else {
            return;
        };
        if readable {
            conn.readable = true;
            conn.peer_done |= peer_done;
            match conn.phase {
                Phase::Active(_) => {
                    // Read ahead (pipelining) and notice a client that reset while we work.
                    // The end of input is no abort: it means no more requests (RFC 9112
                    // section 9.6), so the response is finished and then the connection
                    // closes. A client that closed entirely is noticed when a write fails.
                    if let Read::Failed(e) = conn.read(limit, pool) {
                        if let Phase::Active(s) = &conn.phase {
                            s.fail(if e == EPIPE { EPIPE } else { ECONNRESET });
                        }
                    }
                }
                Phase::Closing {
                    linger_until: Some(_),
                } => {
                    // Lingering: discard what the client still sends (a bounded amount), and
                    // close at its end.
                    let mut discarded = 0;
                    loop {
                        conn.rpos = conn.rbuf.len();
                        match conn.read(64 * 1024, pool) {
                            Read::Full if discarded < LINGER_BYTES => discarded += 64 * 1024,
                            Read::Ok(_) => break,
                            _ => return self.close(idx, false),
                        }
                    }
                    conn.release_idle_buffer(pool);
                    return;
                }
                _ => {}
            }
        }
        self.advance(idx);
    }

    fn read_limit(&self) -> usize {
        self.rt().config.max_header_bytes + 64 * 1024
    }

    fn limits(&self) -> Limits {
        Limits {
            max_header_bytes: self.rt().config.max_header_bytes,
            max_headers: self.rt().config.max_headers,
        }
    }

    /// Sends the connection's own queue (library responses and batched pipelined responses),
    /// completing the sessions whose responses left. True when it is empty afterwards; on
    /// failure the connection is closed.
    fn write_direct(&mut self, idx: usize) -> Option<bool> {
        let send_timeout = self.shared.rt.config.send_timeout;
        let conn = self.conns.get_mut(idx).and_then(Option::as_mut)?;
        // A TLS transport may hold records of earlier writes: a writable event sends them.
        if conn.direct.is_empty() && !conn.link.has_pending_output() {
            return Some(true);
        }
        match conn.link.write(&mut conn.direct) {
            Ok(n) => {
                if n > 0 {
                    conn.direct_progress = clock::now();
                    conn.direct_wrote(n);
                    self.shared.count_sent(n);
                }
                let drained = conn.direct.is_empty() && !conn.link.has_pending_output();
                if !drained {
                    let d = conn.direct_progress + send_timeout;
                    conn.deadline = Some(d);
                    self.schedule(d);
                }
                self.deliver(idx);
                Some(drained)
            }
            Err(e) => {
                let reason = if e.raw_os_error() == Some(EPIPE) {
                    EPIPE
                } else {
                    ECONNRESET
                };
                self.close_ending(idx, false, reason);
                None
            }
        }
    }

    /// Completes the sessions whose handed responses the connection has written.
    fn deliver(&mut self, idx: usize) {
        while let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) {
            if conn.link.has_pending_output() {
                // TLS: what was written is encrypted but not all in the kernel yet.
                return;
            }
            let peer = conn.peer;
            let Some((s, sent)) = conn.next_delivered(false) else {
                return;
            };
            self.delivered(&peer, s, sent, None);
        }
    }

    /// Ends the session of a handed response: `sent` of its bytes reached the kernel, and
    /// `failure` is why the rest did not (None: all did). Runs its callbacks, logs it and keeps
    /// the session for reuse.
    fn delivered(&mut self, peer: &SocketAddr, s: Arc<Session>, sent: u64, failure: Option<i32>) {
        s.delivered(sent, failure);
        if let Progress::Ended {
            status, body_sent, ..
        } = s.drive(&mut OutQueue::default())
        {
            self.rt()
                .access_log(peer, Some(s.request()), status, body_sent);
        }
        self.recycler.recycle(s);
    }

    /// The connection's state machine: drive the session, parse, dispatch, write, repeat.
    fn advance(&mut self, idx: usize) {
        let limit = self.read_limit();
        let limits = self.limits();
        let mut served = 0;
        loop {
            let stopping = self.stop_deadline.is_some();
            let Some(conn) = self.conn(idx) else {
                return;
            };
            // Batched output goes out when the batch ends (below), when it grows large, or
            // before closing; a client that does not read stops us parsing more requests.
            let closing = matches!(conn.phase, Phase::Closing { .. });
            if (closing || conn.direct.len() >= DIRECT_HIGH_WATER)
                && self.write_direct(idx) != Some(true)
            {
                return;
            }
            let Some((conn, pool)) = self.conn_pool(idx) else {
                return;
            };
            match &mut conn.phase {
                Phase::Closing { linger_until } => {
                    if linger_until.is_some() {
                        return;
                    }
                    // Half-close and keep reading for a while, so a client still sending
                    // its request reads our response instead of a reset.
                    conn.link.shutdown_write();
                    let until = clock::now() + LINGER;
                    *linger_until = Some(until);
                    conn.deadline = Some(until);
                    conn.rpos = conn.rbuf.len();
                    self.schedule(until);
                    return self.on_event(idx, true, false);
                }
                Phase::Active(s) => {
                    let before = conn.direct.len();
                    match s.drive(&mut conn.direct) {
                        Progress::Held => {
                            let s = s.clone();
                            match self.write_direct(idx) {
                                Some(true) => s.unhold(),
                                _ => return,
                            }
                        }
                        Progress::Busy => {
                            conn.deadline = s.send_deadline();
                            if let Some(d) = conn.deadline {
                                self.schedule(d);
                            }
                            return;
                        }
                        Progress::Handed { keep_alive } => {
                            // The session completes when its bytes leave (`deliver`); the
                            // connection goes on with the next request meanwhile.
                            if before == 0 {
                                // The send timeout counts from when there is something to send.
                                conn.direct_progress = clock::now();
                            }
                            let next = after_response(keep_alive && !stopping);
                            let ended = std::mem::replace(&mut conn.phase, next);
                            if matches!(conn.phase, Phase::Head { .. }) {
                                conn.release_idle_buffer(pool);
                            }
                            if let Phase::Active(s) = ended {
                                conn.hand_over(before, s);
                            }
                            if conn.direct.is_empty() {
                                // Nothing to send (and nothing before it): complete now.
                                self.deliver(idx);
                            }
                        }
                        Progress::Ended {
                            keep_alive,
                            reset,
                            status,
                            body_sent,
                        } => {
                            s.lp.rt
                                .access_log(&conn.peer, Some(s.request()), status, body_sent);
                            let close_now = reset || (stopping && conn.direct.is_empty());
                            let next = after_response(keep_alive && !stopping);
                            let ended = std::mem::replace(&mut conn.phase, next);
                            if matches!(conn.phase, Phase::Head { .. }) {
                                conn.release_idle_buffer(pool);
                            }
                            // The connection let go of the session: the next request reuses it.
                            if let Phase::Active(s) = ended {
                                self.recycler.recycle(s);
                            }
                            if close_now {
                                return self.close(idx, reset);
                            }
                        }
                    }
                }
                Phase::Head { .. } | Phase::Body(_) => {
                    if served >= TURN_REQUESTS {
                        // Fairness: a client that keeps requests coming waits for its next turn.
                        let key = conn.key;
                        self.deferred.push(key);
                        self.write_direct(idx);
                        return;
                    }
                    if !conn.direct.is_empty() && conn.waiting() >= MAX_DELIVERING {
                        // Enough sessions wait for the queue: no more requests until it drains.
                        if self.write_direct(idx) != Some(true) {
                            return;
                        }
                        continue;
                    }
                    served += 1;
                    if self.parse(idx, &limits) {
                        continue;
                    }
                    let Some((conn, pool)) = self.conn_pool(idx) else {
                        return;
                    };
                    match conn.read(limit, pool) {
                        Read::Ok(0) => {
                            // The batch is over: send what it produced in one go.
                            if self.write_direct(idx) == Some(true) {
                                self.set_wait_deadline(idx);
                            }
                            return;
                        }
                        // Full: the socket may hold more, and no new event will say so
                        // (edge-triggered); parse what we have and read again.
                        Read::Ok(_) | Read::Full => {}
                        Read::Eof | Read::Failed(_) => {
                            // Whatever arrived before the end may still be a whole request.
                            if !self.parse(idx, &limits) {
                                if let Some(c) = self.conn(idx) {
                                    c.phase = Phase::Closing { linger_until: None };
                                }
                                if self.write_direct(idx) == Some(true) {
                                    self.close(idx, false);
                                }
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn set_wait_deadline(&mut self, idx: usize) {
        let cfg = &self.shared.rt.config;
        let (header, handshake, body, keepalive) = (
            cfg.header_timeout,
            cfg.tls_handshake_timeout,
            cfg.body_timeout,
            cfg.keepalive_timeout,
        );
        let Some((conn, pool)) = self.conn_pool(idx) else {
            return;
        };
        let d = match conn.phase {
            Phase::Head {
                since,
                receiving: false,
            } => {
                conn.release_idle_buffer(pool);
                if conn.direct.is_empty() {
                    conn.direct.release_spare();
                    conn.release_deliveries();
                }
                since + keepalive
            }
            // Before a TLS handshake completes, its own timeout applies.
            Phase::Head { since, .. } if conn.link.handshaking() => since + handshake,
            Phase::Head { since, .. } => since + header,
            Phase::Body(ref receiving) => receiving.last_read + body,
            _ => return,
        };
        conn.deadline = Some(d);
        self.schedule(d);
    }

    /// Parses what is buffered. True when it made progress (dispatched, failed, or the phase
    /// changed); false when more input is needed.
    fn parse(&mut self, idx: usize, limits: &Limits) -> bool {
        let max_body = self.rt().config.max_body_bytes;
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        match &mut conn.phase {
            Phase::Head { since, receiving } => {
                if conn.rpos == conn.rbuf.len() {
                    return false;
                }
                if !*receiving {
                    // First bytes of a new request on a kept-alive connection.
                    *receiving = true;
                    *since = clock::now();
                }
                match parse_head_into(conn.unread(), limits, self.recycler.request()) {
                    Ok(None) => false,
                    Err(e) => {
                        self.refuse(idx, e);
                        true
                    }
                    Ok(Some(n)) => {
                        conn.rpos += n;
                        let request = self.recycler.take_request();
                        let state = match request.body_framing() {
                            BodyFraming::None => {
                                self.dispatch(idx, request, Body::default());
                                return true;
                            }
                            BodyFraming::Length(len) if len > max_body => {
                                self.refuse(
                                    idx,
                                    HttpError {
                                        status: 413,
                                        reason: "declared body larger than max_body_bytes",
                                    },
                                );
                                return true;
                            }
                            BodyFraming::Length(len) => BodyState::Length(len),
                            BodyFraming::Chunked => {
                                BodyState::Chunked(ChunkedDecoder::new(max_body))
                            }
                        };
                        if request.expects_continue() && conn.rpos == conn.rbuf.len() {
                            conn.direct.push_copy(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        conn.phase = Phase::Body(Box::new(Receiving {
                            request,
                            body: BodyWriter::default(),
                            state,
                            last_read: clock::now(),
                        }));
                        true
                    }
                }
            }
            // Out of line: most requests have no body, and the head path stays small.
            Phase::Body(_) => self.read_body(idx),
            _ => false,
        }
    }

    /// Takes the body bytes that are buffered (`Phase::Body`); dispatches once the body is
    /// complete. True when it made progress, as `parse`.
    #[inline(never)]
    fn read_body(&mut self, idx: usize) -> bool {
        let spill = self.shared.rt.config.spill();
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        let Phase::Body(receiving) = &mut conn.phase else {
            return false;
        };
        let Receiving {
            body,
            state,
            last_read,
            ..
        } = &mut **receiving;
        let input = &conn.rbuf[conn.rpos..];
        if input.is_empty() && !matches!(state, BodyState::Length(0)) {
            return false;
        }
        *last_read = clock::now();
        let complete = match state {
            BodyState::Length(left) => {
                let take = (*left).min(input.len() as u64) as usize;
                if let Err(e) = body.append(&input[..take], &spill) {
                    self.body_not_stored(idx, &e);
                    return true;
                }
                *left -= take as u64;
                conn.rpos += take;
                *left == 0
            }
            BodyState::Chunked(dec) => {
                match body.append_from(&spill, |out| dec.decode(input, out)) {
                    (_, Err(e)) => {
                        self.body_not_stored(idx, &e);
                        return true;
                    }
                    (Ok((used, done)), Ok(())) => {
                        conn.rpos += used;
                        if used == 0 && !done {
                            return false;
                        }
                        done
                    }
                    (Err(e), Ok(())) => {
                        self.refuse(idx, e);
                        return true;
                    }
                }
            }
        };
        if !complete {
            return conn.rpos < conn.rbuf.len();
        }
        let phase = std::mem::replace(
            &mut conn.phase,
            Phase::Head {
                since: clock::now(),
                receiving: false,
            },
        );
        if let Phase::Body(receiving) = phase {
            let Receiving { request, body, .. } = *receiving;
            match body.finish() {
                Ok(body) => self.dispatch(idx, request, body),
                Err(e) => self.body_not_stored(idx, &e),
            }
        }
        true
    }

    /// A request body too large for memory could not be spooled (`body_temp_dir` gone or
    /// full): the client gets a 500 and the connection closes; other requests go on.
    #[cold]
    #[inline(never)]
    fn body_not_stored(&mut self, idx: usize, e: &io::Error) {
        let dir = self.rt().config.body_temp_dir.display().to_string();
        self.rt()
            .log_error(&format!("request body: cannot spool it to {dir}: {e}"));
        self.refuse(
            idx,
            HttpError {
                status: 500,
                reason: "request body could not be stored",
            },
        );
    }

    /// Answers a request the library refuses: the status, `Connection: close`, then close.
    fn refuse(&mut self, idx: usize, e: HttpError) {
        self.rt()
            .log_info(&format!("refused request: {} {}", e.status, e.reason));
        self.write_simple(idx, None, e.status, None, false);
        if let Some(conn) = self.conn(idx) {
            conn.phase = Phase::Closing { linger_until: None };
        }
    }

    /// A response the library writes itself (errors, 404, 405) into the direct queue.
    fn write_simple(
        &mut self,
        idx: usize,
        request: Option<&Request>,
        status: u16,
        allow: Option<String>,
        keep_alive: bool,
    ) {
        let rt = &self.shared.rt;
        let cfg = &rt.config;
        let cx = Context {
            version: 11,
            is_head: request.is_some_and(Request::is_head),
            keep_alive,
            accepts: None,
            http10_buffering: false,
            compression: false,
            compression_level: 1,
            compression_min_length: 0,
            compression_types: &[],
            server_header: &cfg.server_header,
            compressors: &self.shared.rt.compressors,
        };
        let mut r = Response::default();
        r.replace_with_error(status);
        if let Some(allow) = allow {
            let _ = r.set_header(b"Allow", allow.as_bytes());
        }
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let before = conn.direct.len();
        let mut encoder = ResponseEncoder::default();
        let _ = h1::flush(&mut r, &mut encoder, true, &cx, &mut conn.direct);
        if before == 0 {
            // The send timeout counts from when there is something to send.
            conn.direct_progress = clock::now();
        }
        let body = conn.direct.len() - before - encoder.head_len();
        rt.access_log(&conn.peer, request, status, body as u64);
    }

    fn dispatch(&mut self, idx: usize, request: Request, body: Body) {
        let lp = &self.shared;
        let keepalive_requests = lp.rt.config.keepalive_requests;
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        conn.requests += 1;
        conn.deadline = None;
        // Only this thread writes the count: no atomic read-modify-write needed.
        let served = lp.requests.load(Ordering::Relaxed);
        lp.requests.store(served + 1, Ordering::Relaxed);
        let keep_alive = request.wants_keep_alive()
            && conn.requests < keepalive_requests
            && !(conn.read_closed && conn.rpos == conn.rbuf.len());
        // The route's handler, or the refusal: the Allow value when the path has routes.
        let routed = match lp.rt.routes.find(request.method(), request.path()) {
            Match::Found(route) => Ok((route.pool, route.handler, route.userdata)),
            Match::WrongMethod(allow) => Err(Some(allow)),
            Match::NotFound => Err(None),
        };
        let (pool, handler, userdata) = match routed {
            Ok(route) => route,
            Err(allow) => {
                let status = if allow.is_some() { 405 } else { 404 };
                self.write_simple(idx, Some(&request), status, allow, keep_alive);
                if !keep_alive {
                    if let Some(c) = self.conn(idx) {
                        c.phase = Phase::Closing { linger_until: None };
                    }
                }
                return;
            }
        };
        // More pipelined requests wait, or earlier responses are still batched: hold this
        // response so the batch leaves in one send, in order.
        let hold = conn.rpos < conn.rbuf.len() || !conn.direct.is_empty();
        let start = Start {
            conn: conn.key,
            link: &conn.link,
            request,
            body,
            peer: conn.peer,
            keep_alive,
            hold,
        };
        let Some(session) = self.recycler.start(lp, start) else {
            // The handle table is full (2^28 live sessions per shard).
            self.write_simple(idx, None, 503, None, false);
            if let Some(c) = self.conn(idx) {
                c.phase = Phase::Closing { linger_until: None };
            }
            return;
        };
        conn.phase = Phase::Active(session);
        let Phase::Active(session) = &conn.phase else {
            return;
        };
        if pool {
            let job = Box::new(PoolHandler {
                session: session.clone(),
                handler,
                userdata,
            });
            if !lp.rt.pool.submit(job) {
                session.fail(ECANCELED);
                session.handler_returned(crate::abi::HTTPSRV_PENDING);
            }
        } else {
            // The connection's phase holds the session while the handler runs.
            run_handler(session, handler, userdata);
        }
    }

    fn run_commands(&mut self) {
        let commands = std::mem::take(&mut self.shared.inbox.lock().commands);
        for cmd in commands {
            match cmd {
                Command::Wake(key) => {
                    if let Some(idx) = self.find(key) {
                        self.guarded(idx, |lp| lp.advance(idx));
                    }
                }
                Command::Post {
                    conn,
                    handle,
                    task,
                    userdata,
                } => {
                    run_task(handle, task, userdata);
                    if let Some(idx) = self.find(conn) {
                        self.guarded(idx, |lp| lp.advance(idx));
                    }
                }
                Command::Stop { grace } => self.begin_stop(grace),
                Command::Adopt { stream, peer, tls } => {
                    if self.stop_deadline.is_some() {
                        // Stopping: no new connections (this one closes as it drops).
                        self.shared.release_connection();
                    } else {
                        self.add_conn(TcpStream::from_std(stream), peer, tls);
                    }
                }
            }
        }
    }

    fn find(&self, key: ConnKey) -> Option<usize> {
        let idx = key.index as usize;
        match self.conns.get(idx) {
            Some(Some(c)) if c.key == key => Some(idx),
            _ => None,
        }
    }

    fn begin_stop(&mut self, grace: Duration) {
        let deadline = clock::now() + grace;
        self.stop_deadline = Some(deadline);
        for (mut l, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for idx in 0..self.conns.len() {
            let Some(conn) = self.conns[idx].as_mut() else {
                continue;
            };
            let idle = matches!(
                conn.phase,
                Phase::Head { .. } | Phase::Body(_) | Phase::Closing { .. }
            );
            if idle && conn.waiting() > 0 {
                // Responses in flight in the connection's queue: they get the grace time,
                // then the connection closes.
                conn.phase = Phase::Closing { linger_until: None };
            } else if idle {
                self.close(idx, false);
            }
        }
        self.schedule(deadline);
    }

    /// Runs timeouts: header, body, keep-alive, send, lingering, and the stop deadline.
    fn sweep(&mut self) {
        let now = clock::now();
        let send_timeout = self.rt().config.send_timeout;
        self.next_sweep = None;
        let stop_due = self.stop_deadline.is_some_and(|d| now >= d);
        for idx in 0..self.conns.len() {
            let Some(conn) = self.conns[idx].as_mut() else {
                continue;
            };
            if stop_due {
                self.close_ending(idx, false, ECANCELED);
                continue;
            }
            if conn.deadline.is_none_or(|d| now < d) {
                if let Some(d) = conn.deadline {
                    self.schedule(d);
                }
                continue;
            }
            conn.deadline = None;
            if !conn.direct.is_empty() && now >= conn.direct_progress + send_timeout {
                // The connection's own queue made no progress: a send timeout, whatever the
                // phase. Every session with bytes in the queue, or still running, ends with
                // ETIMEDOUT; a waiting request is not answered (no status after a response).
                log_send_timeout(&self.shared.rt, &conn.peer);
                self.close_ending(idx, false, ETIMEDOUT);
                continue;
            }
            match &conn.phase {
                Phase::Head { .. } => {
                    // A head that started arriving gets a 408; a silent connection just closes.
                    if conn.rpos < conn.rbuf.len() {
                        self.refuse(
                            idx,
                            HttpError {
                                status: 408,
                                reason: "request head timed out",
                            },
                        );
                        self.guarded(idx, |lp| lp.advance(idx));
                    } else {
                        self.close(idx, false);
                    }
                }
                Phase::Body(_) => {
                    self.refuse(
                        idx,
                        HttpError {
                            status: 408,
                            reason: "request body timed out",
                        },
                    );
                    self.guarded(idx, |lp| lp.advance(idx));
                }
                Phase::Active(s) => {
                    let s = s.clone();
                    if s.send_stalled(now) {
                        log_send_timeout(&self.shared.rt, &conn.peer);
                        s.fail(ETIMEDOUT);
                    }
                    self.guarded(idx, |lp| lp.advance(idx));
                }
                Phase::Closing { .. } => self.close(idx, false),
            }
        }
        if let Some(d) = self.stop_deadline {
            self.schedule(d);
        }
    }

    /// Leaves the loop: no command is accepted any more, and every session has ended.
    fn exit(&mut self) {
        let leftover = {
            let mut inbox = self.shared.inbox.lock();
            inbox.closed = true;
            std::mem::take(&mut inbox.commands)
        };
        for idx in 0..self.conns.len() {
            self.close_ending(idx, false, ECANCELED);
        }
        for cmd in leftover {
            match cmd {
                Command::Post {
                    handle,
                    task,
                    userdata,
                    ..
                } => {
                    // The session has ended; its handle is held until the task ran.
                    run_task(handle, task, userdata);
                }
                // Handed over too late: closed.
                Command::Adopt { .. } => self.shared.release_connection(),
                Command::Wake(_) | Command::Stop { .. } => {}
            }
        }
    }
}

/// The phase after a response: the next request, or close. Closing lingers: closing at once
/// would answer the client's next bytes with a reset, which can destroy the end of the
/// response still in flight (RFC 9112 section 9.6).
fn after_response(keep_alive: bool) -> Phase {
    if keep_alive {
        Phase::Head {
            since: clock::now(),
            receiving: false,
        }
    } else {
        Phase::Closing { linger_until: None }
    }
}

/// A send timeout, in the error log as such.
fn log_send_timeout(rt: &Runtime, peer: &SocketAddr) {
    rt.log_info(&format!(
        "send timed out (ETIMEDOUT): no progress for send_timeout_ms; closing the connection \
         of {peer}"
    ));
}

/// Runs a task posted with `httpsrv_session_post`; the handle stays valid until it returns.
fn run_task(handle: Handle, task: TaskFn, userdata: usize) {
    // SAFETY: the module posted this task with this userdata.
    unsafe {
        task(
            handle as usize as *mut httpsrv_session,
            userdata as *mut c_void,
        )
    };
    if let Some(s) = super::session::lookup(handle) {
        s.post_done();
    }
}

#[cfg(test)]
#[path = "event_loop_tests.rs"]
mod tests;
