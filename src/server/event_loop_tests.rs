//! The connection state machine over the in-memory transport: feed bytes, look at what the
//! connection wrote, move a fake clock, as hyper tests its `conn.rs`. No socket, no thread:
//! the test stands in for the loop's poller and calls what a readiness event would.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::abi::{httpsrv_session, HTTPSRV_DONE, HTTPSRV_PENDING};
use crate::errors::{ECONNRESET, ETIMEDOUT};
use crate::ffi::response::{httpsrv_response_append, httpsrv_response_flush};
use crate::ffi::session::httpsrv_session_on_close;
use crate::io::{Memory, MemoryPeer, Transport};
use crate::server::config::Config;
use crate::server::log::Logger;
use crate::server::routes::Routes;

/// Not yet ended: what an `on_close` record holds before its callback ran.
const OPEN: i32 = -1;

/// The close reasons of a route's sessions: the last, and all in the order they came.
struct Record {
    last: AtomicI32,
    all: Mutex<Vec<i32>>,
}

unsafe extern "C" fn record_close(_: *mut httpsrv_session, reason: c_int, ud: *mut c_void) {
    // SAFETY: the routes below register a leaked, never freed Record as userdata.
    let record = unsafe { &*(ud as *const Record) };
    record.last.store(reason, Ordering::SeqCst);
    if let Ok(mut all) = record.all.lock() {
        all.push(reason);
    }
}

/// `GET /hello`: "hello", complete at once.
unsafe extern "C" fn hello(sess: *mut httpsrv_session, ud: *mut c_void) -> c_int {
    // SAFETY: a live session handle, a static body, and the record as userdata.
    unsafe {
        httpsrv_session_on_close(sess, Some(record_close), ud);
        httpsrv_response_append(sess, b"hello".as_ptr().cast(), 5);
    }
    HTTPSRV_DONE
}

/// `GET /big`: 200,000 bytes in one flush, more than a small window takes.
unsafe extern "C" fn big(sess: *mut httpsrv_session, ud: *mut c_void) -> c_int {
    let body = vec![b'b'; 200_000];
    // SAFETY: as for `hello`; `body` outlives the copying append.
    unsafe {
        httpsrv_session_on_close(sess, Some(record_close), ud);
        httpsrv_response_append(sess, body.as_ptr().cast(), body.len());
    }
    HTTPSRV_DONE
}

thread_local! {
    /// The session `GET /pending` left open on this thread (each test runs on its own).
    static PENDING: Cell<*mut httpsrv_session> = const { Cell::new(std::ptr::null_mut()) };
}

/// `GET /pending`: keeps the session open, its head flushed.
unsafe extern "C" fn pending(sess: *mut httpsrv_session, ud: *mut c_void) -> c_int {
    PENDING.with(|p| p.set(sess));
    // SAFETY: as for `hello`.
    unsafe {
        httpsrv_session_on_close(sess, Some(record_close), ud);
        httpsrv_response_append(sess, b"start".as_ptr().cast(), 5);
        httpsrv_response_flush(sess, 0);
    }
    HTTPSRV_PENDING
}

struct Harness {
    lp: EventLoop,
    now: Instant,
    /// The close reasons of each route's sessions.
    closed: Vec<(&'static str, &'static Record)>,
}

fn harness(options: &[(&str, &str)]) -> Harness {
    let mut config = Config {
        threads: 1,
        server_header: "t".into(),
        ..Config::default()
    };
    for (k, v) in options {
        config.set(k, v).expect("a valid option");
    }
    let mut routes = Routes::default();
    let mut closed = Vec::new();
    for (path, handler) in [
        ("/hello", hello as super::super::routes::HandlerFn),
        ("/big", big),
        ("/pending", pending),
    ] {
        let record: &'static Record = Box::leak(Box::new(Record {
            last: AtomicI32::new(OPEN),
            all: Mutex::new(Vec::new()),
        }));
        routes
            .add(
                Some("GET"),
                path,
                false,
                handler,
                record as *const Record as *mut c_void,
            )
            .expect("a new route");
        closed.push((path, record));
    }
    let rt = Arc::new(Runtime::new(config, routes, Logger::default()).expect("a runtime"));
    let id = super::super::NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
    let lp = EventLoop::new(id, rt, Vec::new(), Siblings::default()).expect("a loop");
    // This thread is the loop's: flushes on it never block.
    CURRENT_LOOP.with(|c| c.set(id));
    let now = Instant::now();
    clock::set(now);
    Harness { lp, now, closed }
}

impl Harness {
    /// A new connection over the in-memory transport, as if accepted.
    fn connect(&mut self) -> (usize, MemoryPeer) {
        let (transport, peer) = Memory::pair();
        assert!(self.lp.rt().admit_connection());
        self.lp.shared.connections.fetch_add(1, Ordering::Relaxed);
        let peer_addr: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        self.lp
            .add_transport(Transport::Memory(transport), peer_addr);
        let idx = self
            .lp
            .conns
            .iter()
            .rposition(Option::is_some)
            .expect("the connection");
        (idx, peer)
    }

    /// The client sent `bytes`: a readable event.
    fn send(&mut self, idx: usize, peer: &MemoryPeer, bytes: &[u8]) {
        peer.send(bytes);
        self.event(idx, true, false);
    }

    /// A readiness event, then whatever it queued for the loop (wakes, posts).
    fn event(&mut self, idx: usize, readable: bool, peer_done: bool) {
        self.lp.on_event(idx, readable, peer_done);
        self.settle();
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            if self.lp.shared.inbox.lock().commands.is_empty() {
                break;
            }
            self.lp.run_commands();
        }
        crate::http::lent::run_releases();
    }

    /// Time passes: the loop runs its timeouts.
    fn wait(&mut self, d: Duration) {
        self.now += d;
        clock::set(self.now);
        self.lp.sweep();
        self.settle();
    }

    /// The module finishes the session `GET /pending` left open ("end" and the final flush),
    /// as a task on the loop thread would; the loop then drives the connection.
    fn finish_pending(&mut self, idx: usize) {
        let sess = PENDING.with(Cell::get);
        // SAFETY: a session handle (a stale one only gets ESTALE) and a static body.
        let (appended, flushed) = unsafe {
            (
                httpsrv_response_append(sess, b"end".as_ptr().cast(), 3),
                httpsrv_response_flush(sess, 1),
            )
        };
        assert_eq!((appended, flushed), (0, 0));
        self.lp.advance(idx);
        self.settle();
    }

    fn is_open(&self, idx: usize) -> bool {
        self.lp.conns.get(idx).is_some_and(Option::is_some)
    }

    fn record(&self, path: &str) -> &'static Record {
        let (_, record) = self
            .closed
            .iter()
            .find(|(p, _)| *p == path)
            .expect("a route");
        record
    }

    /// The close reason of the route's last session (OPEN before any ended).
    fn close_reason(&self, path: &str) -> i32 {
        self.record(path).last.load(Ordering::SeqCst)
    }

    /// The close reasons of all the route's sessions, in order.
    fn close_reasons(&self, path: &str) -> Vec<i32> {
        self.record(path)
            .all
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The responses in `out`, each as (head, body) with a Content-Length body.
fn responses(out: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut rest = out;
    let mut all = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        let head = text(&rest[..end]);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.parse().expect("a length"));
        let body = rest[end + 4..end + 4 + len].to_vec();
        rest = &rest[end + 4 + len..];
        all.push((head, body));
    }
    all
}

#[test]
fn keep_alive_carries_one_request_after_another() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    for _ in 0..3 {
        h.send(c, &peer, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = responses(&peer.take_output());
        assert_eq!(out.len(), 1);
        assert!(out[0].0.starts_with("HTTP/1.1 200 OK\r\n"), "{}", out[0].0);
        assert!(!out[0].0.contains("Connection: close"));
        assert_eq!(out[0].1, b"hello");
        assert_eq!(h.close_reason("/hello"), 0);
    }
    assert!(h.is_open(c) && peer.closed().is_none());
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_write() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    let mut batch = Vec::new();
    for path in ["/hello", "/nothing", "/hello"] {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    h.send(c, &peer, &batch);
    let out = responses(&peer.take_output());
    let statuses: Vec<&str> = out.iter().map(|(head, _)| &head[9..12]).collect();
    assert_eq!(statuses, ["200", "404", "200"]);
    assert_eq!(out[2].1, b"hello");
    assert!(h.is_open(c));
}

#[test]
fn http10_gets_a_length_and_the_connection_closes() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    h.send(c, &peer, b"GET /hello HTTP/1.0\r\n\r\n");
    let out = responses(&peer.take_output());
    assert_eq!(out.len(), 1);
    assert!(out[0].0.contains("Content-Length: 5\r\n"), "{}", out[0].0);
    assert!(out[0].0.contains("Connection: close"), "{}", out[0].0);
    assert!(
        peer.output_closed(),
        "the server ends its output after the response"
    );
    // Lingering: the connection closes once the client ends too.
    peer.close_input();
    h.event(c, true, true);
    assert_eq!(peer.closed(), Some(false));
    assert!(!h.is_open(c));
}

#[test]
fn http10_keep_alive_is_kept_when_asked_for() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    h.send(
        c,
        &peer,
        b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let out = responses(&peer.take_output());
    assert!(out[0].0.contains("Connection: keep-alive"), "{}", out[0].0);
    assert!(!peer.output_closed() && h.is_open(c));
}

#[test]
fn a_slow_head_gets_408_and_a_silent_idle_connection_just_closes() {
    let mut h = harness(&[
        ("header_timeout_ms", "1000"),
        ("keepalive_timeout_ms", "5000"),
    ]);
    let (slow, slow_peer) = h.connect();
    h.send(slow, &slow_peer, b"GET /hello HTTP/1.1\r\n");
    let (idle, idle_peer) = h.connect();
    h.send(idle, &idle_peer, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    idle_peer.take_output();
    h.wait(Duration::from_millis(999));
    assert!(slow_peer.take_output().is_empty() && h.is_open(slow));
    h.wait(Duration::from_millis(2));
    let out = text(&slow_peer.take_output());
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(out.contains("Connection: close"));
    assert!(slow_peer.output_closed());
    assert!(h.is_open(idle), "keep-alive has its own, longer timeout");
    h.wait(Duration::from_millis(5000));
    assert!(
        idle_peer.take_output().is_empty(),
        "an idle connection closes without a reply"
    );
    assert_eq!(idle_peer.closed(), Some(false));
    assert!(!h.is_open(idle));
}

#[test]
fn backpressure_keeps_the_rest_queued_until_the_client_reads() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    peer.set_window(Some(1000));
    h.send(c, &peer, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = peer.take_output();
    assert_eq!(got.len(), 1000);
    assert_eq!(
        h.close_reason("/big"),
        OPEN,
        "the session waits for its bytes to leave"
    );
    for _ in 0..10 {
        peer.set_window(Some(50_000));
        h.event(c, false, false);
        got.extend(peer.take_output());
    }
    let out = responses(&got);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.len(), 200_000);
    assert_eq!(h.close_reason("/big"), 0);
    // The connection goes on.
    peer.set_window(None);
    h.send(c, &peer, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(responses(&peer.take_output())[0].1, b"hello");
}

#[test]
fn a_client_that_stops_reading_times_out_the_send() {
    let mut h = harness(&[("send_timeout_ms", "2000")]);
    let (c, peer) = h.connect();
    peer.set_window(Some(1000));
    h.send(c, &peer, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(peer.take_output().len(), 1000);
    peer.set_window(Some(0));
    h.wait(Duration::from_millis(1999));
    assert_eq!(h.close_reason("/big"), OPEN);
    h.wait(Duration::from_millis(2));
    assert_eq!(h.close_reason("/big"), ETIMEDOUT);
    // The rest of the response is dropped and the output ended; the connection lingers for a
    // client that still sends, then closes.
    assert!(peer.output_closed());
    h.wait(LINGER);
    assert!(!h.is_open(c));
    assert!(peer.closed().is_some());
}

#[test]
fn a_client_gone_ends_a_pending_session_with_the_reason() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    h.send(c, &peer, b"GET /pending HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = text(&peer.take_output());
    assert!(out.contains("Transfer-Encoding: chunked"), "{out}");
    assert!(
        out.ends_with("5\r\nstart\r\n"),
        "the flushed piece left: {out}"
    );
    assert_eq!(h.close_reason("/pending"), OPEN);
    // A reset: the client is gone, noticed while the session waits, without a write.
    peer.fail(ECONNRESET);
    h.event(c, true, true);
    assert_eq!(h.close_reason("/pending"), ECONNRESET);
    assert!(!h.is_open(c));
}

/// The end of a client's input (`shutdown(SHUT_WR)` after its request) means no more
/// requests (RFC 9112 section 9.6), not an abort: the response is finished, then the
/// connection closes.
#[test]
fn a_half_closed_client_gets_its_whole_response_then_the_close() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    h.send(c, &peer, b"GET /pending HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(text(&peer.take_output()).ends_with("5\r\nstart\r\n"));
    peer.close_input();
    h.event(c, true, true);
    assert_eq!(h.close_reason("/pending"), OPEN, "the session goes on");
    assert!(h.is_open(c) && !peer.output_closed());
    // Writable events with the end of input still pending change nothing.
    h.event(c, true, true);
    assert_eq!(h.close_reason("/pending"), OPEN);
    h.finish_pending(c);
    let out = text(&peer.take_output());
    assert!(out.ends_with("3\r\nend\r\n0\r\n\r\n"), "{out}");
    assert_eq!(h.close_reason("/pending"), 0);
    assert!(!h.is_open(c), "no more requests: the connection closes");
    assert_eq!(peer.closed(), Some(false), "gracefully");
}

#[test]
fn stop_closes_idle_connections_and_cancels_the_rest_at_the_deadline() {
    let mut h = harness(&[]);
    let (idle, idle_peer) = h.connect();
    let (busy, busy_peer) = h.connect();
    h.send(
        busy,
        &busy_peer,
        b"GET /pending HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    h.lp.begin_stop(Duration::from_millis(500));
    assert_eq!(idle_peer.closed(), Some(false));
    assert!(!h.is_open(idle) && h.is_open(busy));
    h.wait(Duration::from_millis(501));
    assert_eq!(h.close_reason("/pending"), crate::errors::ECANCELED);
    assert!(!h.is_open(busy));
}

/// Pipelined responses wait in the connection's own queue behind each other. A session whose
/// bytes wait there is not complete: it ends with 0 once they reached the kernel, and with
/// ETIMEDOUT when the connection makes no progress for `send_timeout_ms`. A send timeout is no
/// request timeout: no 408 goes out behind the response bytes.
#[test]
fn a_slow_reader_of_pipelined_responses_times_out_every_waiting_session() {
    let mut h = harness(&[("send_timeout_ms", "2000")]);
    let (first, first_peer) = h.connect();
    h.send(
        first,
        &first_peer,
        b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let hello_len = first_peer.take_output().len();
    let (c, peer) = h.connect();
    // Room for the first response and a little of the second.
    peer.set_window(Some(hello_len + 10));
    let mut batch = Vec::new();
    for path in ["/hello", "/hello", "/big", "/hello"] {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    h.send(c, &peer, &batch);
    assert_eq!(peer.take_output().len(), hello_len + 10);
    assert_eq!(
        h.close_reasons("/hello"),
        [0, 0],
        "only the response that left is complete"
    );
    assert_eq!(h.close_reasons("/big"), [], "its bytes wait in the queue");
    h.wait(Duration::from_millis(1999));
    assert_eq!(h.close_reasons("/big"), []);
    h.wait(Duration::from_millis(2));
    assert_eq!(h.close_reasons("/hello"), [0, 0, ETIMEDOUT]);
    assert_eq!(h.close_reasons("/big"), [ETIMEDOUT]);
    peer.set_window(None);
    h.wait(LINGER);
    let out = text(&peer.take_output());
    assert!(
        !out.contains("408"),
        "a status after the response bytes: {out}"
    );
    assert!(!h.is_open(c) && peer.closed().is_some());
}

/// Sessions whose responses wait in the connection's queue are in flight: a stop gives them
/// the grace time to leave, and a client that resets ends them with ECONNRESET.
#[test]
fn waiting_pipelined_sessions_get_the_grace_time_or_the_reset() {
    let mut h = harness(&[]);
    let pipeline = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let (c, peer) = h.connect();
    peer.set_window(Some(0));
    h.send(c, &peer, pipeline);
    let (gone, gone_peer) = h.connect();
    gone_peer.set_window(Some(0));
    h.send(gone, &gone_peer, pipeline);
    assert_eq!(h.close_reasons("/hello"), [], "four responses wait");
    gone_peer.fail(ECONNRESET);
    h.event(gone, true, true);
    assert_eq!(h.close_reasons("/hello"), [ECONNRESET, ECONNRESET]);
    assert!(!h.is_open(gone));
    h.lp.begin_stop(Duration::from_millis(500));
    assert!(h.is_open(c), "not idle: its responses are in flight");
    peer.set_window(None);
    h.event(c, false, false);
    assert_eq!(responses(&peer.take_output()).len(), 2);
    assert_eq!(h.close_reasons("/hello"), [ECONNRESET, ECONNRESET, 0, 0]);
    assert!(peer.output_closed(), "then the connection closes");
    h.wait(Duration::from_millis(501));
    assert!(!h.is_open(c));
}

/// Each session whose response waits in the connection's queue is kept: at most
/// MAX_DELIVERING of them, then the connection reads no further request until the queue
/// drains; all are answered once the client reads.
#[test]
fn a_connection_holds_a_bounded_number_of_waiting_sessions() {
    let mut h = harness(&[]);
    let (c, peer) = h.connect();
    peer.set_window(Some(0));
    let batch = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n".repeat(MAX_DELIVERING + 8);
    h.send(c, &peer, &batch);
    // The turn ended (TURN_REQUESTS) before the limit; the next turns stop at it.
    for _ in 0..3 {
        h.lp.advance(c);
    }
    let waiting = h.lp.conns[c].as_ref().map_or(0, |conn| conn.waiting());
    assert_eq!(waiting, MAX_DELIVERING);
    assert_eq!(h.close_reasons("/hello"), []);
    peer.set_window(None);
    h.event(c, false, false);
    assert_eq!(responses(&peer.take_output()).len(), MAX_DELIVERING + 8);
    assert_eq!(h.close_reasons("/hello"), vec![0; MAX_DELIVERING + 8]);
}
