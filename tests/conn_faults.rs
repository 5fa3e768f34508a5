//! Connection faults over real sockets (issue 25): a client that half-closes after its
//! request, a slow reader of pipelined responses, and connections queued while the process is
//! out of file descriptors. (A client that resets: flush_threads::reset_while_pending_is_noticed.)

mod common;
#[path = "common/tempdir.rs"]
mod tempdir;

use common::*;
use std::thread;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

/// `shutdown(SHUT_WR)` after the request ends the client's input, not the exchange (RFC 9112
/// section 9.6): every route kind answers in full, then closes. Twenty connections per kind at
/// once; the input ends a moment after the requests, while pool and pending handlers (which
/// take 100 ms) still run.
#[test]
fn half_closed_clients_get_full_responses_on_every_route_kind() {
    let srv = Server::start();
    let kinds = [
        ("inline", "/t/hello", &b"Hello, world\n"[..]),
        ("pool", "/t/pool/lines?n=2&ms=100", b"line 0\nline 1\n"),
        ("pending", "/t/pending?ms=100", b"pending-done\n"),
        ("async", "/t/async-chain?n=3&size=4", b"AAAABBBBCCCC"),
    ];
    let mut failures = Vec::new();
    for (kind, path, body) in kinds {
        let mut conns: Vec<Conn> = (0..20).map(|_| Conn::open(srv.port())).collect();
        for c in &mut conns {
            c.send_str(&get_req(path));
        }
        thread::sleep(Duration::from_millis(20));
        for c in &conns {
            c.shutdown_write();
        }
        let mut complete = 0;
        for c in &mut conns {
            match c.try_read_response(false, T) {
                Ok(r) if r.status == 200 && r.body == body => {
                    if c.read_to_eof(T) && c.buf.is_empty() {
                        complete += 1;
                    } else {
                        failures.push(format!("{kind}: no clean close after the response"));
                    }
                }
                Ok(r) => failures.push(format!("{kind}: {} {:?}", r.status, r.text())),
                Err(e) => failures.push(format!("{kind}: {e}")),
            }
        }
        failures.truncate(3);
        assert_eq!(
            complete, 20,
            "{kind}: {complete} of 20 complete: {failures:?}"
        );
    }
    let log = srv.log();
    assert!(
        !log.contains(" EPIPE ") && !log.contains(" ECONNRESET "),
        "a half-close is no disconnect:\n{log}"
    );
}

/// Pipelined responses to a client that stops reading: a session whose bytes wait in the
/// connection's queue is not complete, and the send timeout ends each with ETIMEDOUT, in the
/// error log as such; never a 408 (in the log, the access log or on the wire after the
/// response bytes).
#[test]
fn a_stalled_pipelined_reader_times_out_each_waiting_session() {
    let dir = tempdir::TempDir::new("conn-faults");
    let access = dir.0.join("access.log");
    let srv = HostBuilder::new()
        .set("send_timeout_ms", "1000")
        .set("access_log", &access.display().to_string())
        .logger()
        .start();
    let mut c = Conn::new(connect_small_rcvbuf(srv.port(), 4096));
    let mut batch = String::new();
    for path in [
        "/t/hello",
        "/t/hello",
        "/t/loop-big?bytes=4000000",
        "/t/hello",
    ] {
        batch.push_str(&get_req(path));
    }
    c.send_str(&batch);
    // Not before the send timeout: the big response's bytes wait (this cannot flake: at worst
    // a slow run sees nothing yet either way).
    thread::sleep(Duration::from_millis(300));
    let early = srv.log();
    assert!(
        !early.contains("close loop-big"),
        "complete while its bytes wait:\n{early}"
    );
    let log = srv.must_log("close loop-big", |l| l.contains("close loop-big "), T);
    assert_eq!(
        close_reason(&log, "loop-big").as_deref(),
        Some("ETIMEDOUT"),
        "{log}"
    );
    let hellos: Vec<&str> = log_lines(&log, "close hello ");
    assert!(
        hellos.iter().all(|l| l.starts_with("close hello 0 ")),
        "the responses that left are complete:\n{log}"
    );
    // What reached the client: whole responses, then part of the big one; never a 408.
    c.read_to_eof(T);
    let got = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(
        !got.contains("HTTP/1.1 408"),
        "a 408 after the response bytes"
    );
    // The error log's lines (not the host's own, whose temp paths may hold any digits).
    let lines = srv.output();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("HLOG") && l.contains(" 408")),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("HLOG") && l.contains("send timed out")),
        "the error log says what happened:\n{}",
        lines.join("\n")
    );
    let access_log = std::fs::read_to_string(&access).unwrap_or_default();
    assert!(!access_log.contains("\" 408 "), "access log:\n{access_log}");
}

/// User and system CPU time of a process so far (Linux, from /proc).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| -> u64 {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis((field(11) + field(12)) * 1000 / hz)
}

/// Connections that queue while `accept` fails with EMFILE are each served once descriptors
/// free up, and the loop does not spin while they are exhausted.
#[test]
fn connections_queued_while_out_of_descriptors_are_all_served() {
    const ROOM: usize = 8;
    const QUEUED: usize = 40;
    let mut srv = HostBuilder::new().set("threads", "2").logger().start();
    // Keep-alive connections, each answered once, then at most ROOM descriptors more.
    let mut first: Vec<Conn> = Vec::new();
    srv.send_cmd(&format!("nofile {ROOM}"));
    let line = srv.expect_line("NOFILE ", T);
    assert!(line.ends_with(" 0"), "{line}");
    for _ in 0..ROOM {
        let mut c = Conn::open(srv.port());
        c.send_str(&get_req("/t/hello"));
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        first.push(c);
    }
    // These wait in the kernel's accept queue: the process has no descriptor for them.
    let mut queued: Vec<Conn> = (0..QUEUED).map(|_| Conn::open(srv.port())).collect();
    for c in &mut queued {
        c.send_str(&get_req("/t/hello"));
    }
    let exhausted_from = cpu_time(srv.pid());
    thread::sleep(Duration::from_millis(1000));
    let spent = cpu_time(srv.pid()) - exhausted_from;
    assert!(
        spent < Duration::from_millis(300),
        "{spent:?} of CPU in one second out of descriptors: a busy loop"
    );
    assert!(
        srv.output().iter().any(|l| l.contains("accept failed")),
        "{}",
        srv.output().join("\n")
    );
    drop(first);
    // Each answered client leaves, which frees a descriptor for the next in the queue.
    let mut served = 0;
    for (i, mut c) in queued.into_iter().enumerate() {
        match c.try_read_response(false, T) {
            Ok(r) if r.status == 200 => served += 1,
            Ok(r) => panic!("queued connection {i}: {}", r.status_line),
            Err(e) => panic!("queued connection {i} of {QUEUED} ({served} served): {e}"),
        }
    }
    assert_eq!(served, QUEUED);
}
