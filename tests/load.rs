//! Load and leaks: many concurrent streaming connections all complete; thousands of connections
//! opened and closed (some reset mid-request or mid-response) leave the server's descriptor count
//! where it started; memory returns to its level after the load.
//!
//! The server is the C host (tests/c/host.c) with the test module; its pid is found from its
//! listening socket (/proc/net/tcp and the /proc/<pid>/fd of this process's children).
//! Bounds are generous and nothing is timed.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// How far the resident set may stay above its level before the load, once the load is over.
const RSS_MARGIN_KIB: u64 = 32 * 1024;

// ---------------------------------------------------------------------------------------------
// /proc helpers

/// The inode of the socket listening on 127.0.0.1:`port`.
fn listen_inode(port: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let Some((_, p)) = f[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                return f[9].parse().ok();
            }
        }
    }
    None
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The pid of the child of this process that holds the listening socket of `port`.
fn host_pid(port: u16) -> u32 {
    let inode = listen_inode(port).expect("listening socket in /proc/net/tcp");
    let me = std::process::id();
    let target = format!("socket:[{inode}]");
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if parent_of(pid) != Some(me) {
            continue;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return pid;
            }
        }
    }
    panic!("no child process holds {target} (port {port})");
}

/// The open descriptors of `pid`, each with what it points to.
fn fds(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .flatten()
        .map(|e| {
            let target = fs::read_link(e.path())
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{} -> {target}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    assert_eq!(rc, 0);
    r.rlim_cur
}

/// Waits (bounded) until `pid` has `want` descriptors; returns the last listing.
fn settle_fds(pid: u32, want: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let now = fds(pid);
        if now.len() == want || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The descriptors once their count has not changed for a second (the server closes the
/// warm-up connections asynchronously); bounded.
fn stable_fds(pid: u32) -> Vec<String> {
    let deadline = Instant::now() + T;
    let mut last = fds(pid);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        let now = fds(pid);
        if now.len() != last.len() {
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(1) {
            return now;
        }
        last = now;
    }
    panic!("the descriptor count of {pid} never settled: {last:?}");
}

/// Samples the resident set for a while after the load and returns the lowest value.
fn settled_rss(pid: u32, baseline: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut low = u64::MAX;
    while Instant::now() < deadline {
        low = low.min(rss_kib(pid));
        if low <= baseline + RSS_MARGIN_KIB / 4 {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    low
}

/// Samples the resident set of `pid` every few milliseconds until stopped; the highest value.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            let mut peak = 0;
            // Bounded: the tests stop it long before.
            for _ in 0..60_000 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                peak = peak.max(rss_kib(pid));
                thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        RssSampler { stop, handle }
    }
    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("sampler")
    }
}

fn diff(before: &[String], after: &[String]) -> String {
    let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    format!("closed since: {gone:?}\nnew since: {new:?}")
}

// ---------------------------------------------------------------------------------------------
// 500 concurrent streaming connections

/// A barrier with a bound: waits until `n` threads arrived, or 30 s (a thread that failed
/// before arriving must not hang the others).
fn rendezvous(arrived: &AtomicUsize, n: usize) {
    arrived.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + T;
    while arrived.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
}

/// The body /t/stream sends: chunk i is `size` times 'a' + i % 26.
fn stream_body(n: usize, size: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| std::iter::repeat_n(b'a' + (i % 26) as u8, size))
        .collect()
}

#[test]
fn five_hundred_concurrent_streams_all_complete() {
    const N: usize = 500;
    let limit = nofile_limit();
    if limit < (N as u64) + 200 {
        eprintln!(
            "NOTICE: skipping five_hundred_concurrent_streams_all_complete: RLIMIT_NOFILE is \
             {limit}, the test needs at least {} (raise it with ulimit -n)",
            N + 200
        );
        return;
    }
    let srv = Server::start();
    let port = srv.port();
    let pid = host_pid(port);
    // Warm up: every loop thread and the pool have served a request.
    for _ in 0..8 {
        assert_eq!(srv.get("/t/stream?n=2&size=10").status, 200);
        assert_eq!(srv.get("/t/pool/stream?n=2&size=10").status, 200);
    }
    let fds_before = stable_fds(pid);
    let rss_before = rss_kib(pid);
    let sampler = RssSampler::start(pid);

    let barrier = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..N {
        let barrier = barrier.clone();
        let sent = sent.clone();
        let done = done.clone();
        let h = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || -> Result<(), String> {
                // Kinds: inline streams larger than the socket buffers (the loop must wait for
                // the client), pool streams that sleep between flushes.
                let (path, n, size) = match i % 4 {
                    0 | 1 => ("/t/stream", 16, 16384),
                    2 => ("/t/pool/stream", 4, 1000),
                    _ => ("/t/stream", 64, 100),
                };
                let extra = if path == "/t/pool/stream" {
                    "&ms=20"
                } else {
                    ""
                };
                let mut c = Conn::open(port);
                rendezvous(&barrier, N);
                c.send_str(&format!(
                    "GET {path}?n={n}&size={size}{extra} HTTP/1.1\r\nHost: x\r\n\r\n"
                ));
                // Every request is in before any client reads: 500 responses in progress at once.
                rendezvous(&sent, N);
                let r = c
                    .try_read_response(false, T)
                    .map_err(|e| format!("connection {i}: {e}"))?;
                if r.status != 200 || r.framing != Framing::Chunked {
                    return Err(format!("connection {i}: {}", r.head_text()));
                }
                if r.body != stream_body(n, size) {
                    return Err(format!(
                        "connection {i}: body of {} bytes differs (chunks {:?})",
                        r.body.len(),
                        r.chunks
                    ));
                }
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .expect("spawn client thread");
        handles.push(h);
    }
    let errors: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().expect("client thread panicked").err())
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {N} streams failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert_eq!(done.load(Ordering::SeqCst), N);
    let rss_peak = sampler.peak().max(rss_kib(pid));

    let fds_after = settle_fds(pid, fds_before.len(), T);
    assert_eq!(
        fds_after.len(),
        fds_before.len(),
        "descriptors did not return to their count\n{}",
        diff(&fds_before, &fds_after)
    );
    let rss_after = settled_rss(pid, rss_before);
    eprintln!(
        "VmRSS before {rss_before} kB, peak during the load {rss_peak} kB, settled {rss_after} kB"
    );
    assert!(
        rss_after <= rss_before + RSS_MARGIN_KIB,
        "memory did not return: {rss_before} kB before, {rss_peak} kB at the peak, \
         {rss_after} kB settled"
    );
    // Still serving.
    assert_eq!(srv.get("/t/hello").status, 200);
}

// ---------------------------------------------------------------------------------------------
// 2,000 connections opened and closed, some reset mid-request

/// One short-lived connection; `kind` picks what the client does before it goes away.
fn churn_one(port: u16, kind: usize) -> Result<(), String> {
    let mut c = Conn::open(port);
    c.stream.set_nodelay(true).unwrap();
    let w = |c: &mut Conn, b: &[u8]| {
        let _ = c.stream.write_all(b);
    };
    match kind {
        // A complete exchange, then a normal close.
        0 => {
            c.send(b"GET /t/hello HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = c.try_read_response(false, T)?;
            if r.status != 200 {
                return Err(r.head_text());
            }
        }
        // Half a head, then close.
        1 => w(&mut c, b"GET /t/hel"),
        // Half a head, then reset.
        2 => {
            w(&mut c, b"GET /t/hello HTTP/1.1\r\nHo");
            reset(c.stream);
        }
        // Part of a body, then reset.
        3 => {
            w(
                &mut c,
                b"POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
            );
            reset(c.stream);
        }
        // Connect and close without a byte.
        4 => {}
        // Reset in the middle of a large inline streamed response.
        5 => {
            w(&mut c, b"GET /t/stream?n=64&size=16384 HTTP/1.1\r\nHost: x\r\n\r\n");
            c.read_until(|b| b.len() > 1000, T);
            reset(c.stream);
        }
        // A refused request, then close without reading (the server is lingering).
        6 => {
            w(
                &mut c,
                b"POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
        }
        // Reset while a pool handler streams with pauses.
        7 => {
            w(&mut c, b"GET /t/pool/lines?n=5&ms=10 HTTP/1.1\r\nHost: x\r\n\r\n");
            c.read_until(|b| b.windows(6).any(|x| x == b"line 0"), T);
            reset(c.stream);
        }
        // Pipelined requests, close without reading the answers.
        8 => w(&mut c, b"GET /t/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /t/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /t/stream?n=8&size=8000 HTTP/1.1\r\nHost: x\r\n\r\n"),
        // Reset right after a complete request, before the answer is read.
        _ => {
            w(&mut c, b"GET /t/stream?n=4&size=100 HTTP/1.1\r\nHost: x\r\n\r\n");
            reset(c.stream);
        }
    }
    Ok(())
}

#[test]
fn two_thousand_connections_leave_no_descriptors_behind() {
    const TOTAL: usize = 2000;
    const THREADS: usize = 8;
    let srv = Server::start();
    let port = srv.port();
    let pid = host_pid(port);
    for _ in 0..8 {
        assert_eq!(srv.get("/t/hello").status, 200);
        assert_eq!(srv.get("/t/pool/hello").status, 200);
    }
    let fds_before = stable_fds(pid);
    let rss_before = rss_kib(pid);
    eprintln!(
        "host pid {pid}: {} descriptors before the load",
        fds_before.len()
    );

    // Two rounds: the second one also shows whether anything grows per connection.
    let mut settled = Vec::new();
    for round in 0..2 {
        let sampler = RssSampler::start(pid);
        let next = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let next = next.clone();
                thread::spawn(move || {
                    let mut errors = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= TOTAL {
                            break;
                        }
                        if let Err(e) = churn_one(port, i % 10) {
                            errors.push(format!("connection {i} (kind {}): {e}", i % 10));
                        }
                    }
                    errors
                })
            })
            .collect();
        let errors: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread panicked"))
            .collect();
        assert!(errors.is_empty(), "round {round}: {}", errors.join("\n"));
        let rss_peak = sampler.peak().max(rss_kib(pid));

        // Lingering closes last up to 2 s; allow much more.
        let fds_after = settle_fds(pid, fds_before.len(), T);
        assert_eq!(
            fds_after.len(),
            fds_before.len(),
            "round {round}: descriptors did not return to their count after {TOTAL} connections\n{}",
            diff(&fds_before, &fds_after)
        );
        let rss_after = settled_rss(pid, rss_before);
        eprintln!(
            "round {round}: {} descriptors; VmRSS before {rss_before} kB, peak during the load \
             {rss_peak} kB, settled {rss_after} kB",
            fds_after.len()
        );
        assert!(
            rss_after <= rss_before + RSS_MARGIN_KIB,
            "round {round}: memory did not return: {rss_before} kB before, {rss_peak} kB at the \
             peak, {rss_after} kB settled"
        );
        settled.push(rss_after);
    }
    assert!(
        settled[1] <= settled[0] + RSS_MARGIN_KIB / 4,
        "memory grows with every {TOTAL} connections: settled at {settled:?} kB"
    );
    // Still serving.
    assert_eq!(srv.get("/t/hello").status, 200);
}
