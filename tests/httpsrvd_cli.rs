//! Drives the `httpsrvd` binary: flags, exit codes, the listening line, one real request and a
//! clean stop on SIGTERM; TLS listeners and SNI certificates with curl and Python's ssl module
//! as clients (certificates made at test time with the openssl command), and SIGHUP (reload
//! the certificates, reopen the access log). Every wait is bounded, and a guard kills the child
//! if a test fails.

mod common;
#[path = "../src/io/testcerts.rs"]
mod testcerts;
#[path = "common/tls_client.rs"]
mod tls_client;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tls_client::{curl_https, fingerprint, Client};

const BIN: &str = env!("CARGO_BIN_EXE_httpsrvd");
const TIMEOUT: Duration = Duration::from_secs(10);

/// Kills and reaps the child when dropped, so a failed assertion never leaves a server running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl ChildGuard {
    fn spawn(args: &[&str]) -> ChildGuard {
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn httpsrvd");
        ChildGuard(child)
    }

    /// Waits up to `limit` for the child to exit; panics (and the guard kills it) otherwise.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "httpsrvd did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the (exited) child wrote to stderr.
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs httpsrvd to completion (bounded) and collects its exit code and output.
fn run(args: &[&str]) -> Outcome {
    let mut child = ChildGuard::spawn(args);
    // Read both pipes on threads so a chatty child can never block on a full pipe.
    let out = child.0.stdout.take().map(read_all_on_thread);
    let err = child.0.stderr.take().map(read_all_on_thread);
    let status = child.wait_exit(TIMEOUT);
    let collect = |rx: Option<mpsc::Receiver<String>>| {
        rx.and_then(|rx| rx.recv_timeout(TIMEOUT).ok())
            .unwrap_or_default()
    };
    Outcome {
        code: status.code(),
        stdout: collect(out),
        stderr: collect(err),
    }
}

fn read_all_on_thread(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

#[test]
fn help_lists_every_flag() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
        for needle in [
            "--listen",
            "--module",
            "--set",
            "--grace-ms",
            "--help",
            "--version",
            "README",
            "--tls ADDR=CERT:KEY",
            "--cert CERT:KEY",
            "SIGHUP",
        ] {
            assert!(
                out.stdout.contains(needle),
                "{needle} missing from help:\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn version_prints_the_version() {
    let out = run(&["--version"]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.starts_with("httpsrvd "), "{}", out.stdout);
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--set", "threads"],
        &["--listen"],
        &["--grace-ms", "soon"],
        &["stray"],
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: stderr: {}", out.stderr);
        assert!(out.stderr.contains("httpsrvd:"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn unknown_option_exits_3_and_names_the_key() {
    let out = run(&["--listen", "127.0.0.1:0", "--set", "nosuchkey=1"]);
    assert_eq!(out.code, Some(3), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("nosuchkey"), "{}", out.stderr);
}

#[test]
fn bad_option_value_exits_3() {
    let out = run(&["--listen", "127.0.0.1:0", "--set", "threads=abc"]);
    assert_eq!(out.code, Some(3), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("threads"), "{}", out.stderr);
    assert!(out.stderr.contains("abc"), "{}", out.stderr);
}

#[test]
fn address_in_use_exits_4() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local_addr").to_string();
    let out = run(&["--listen", &addr]);
    assert_eq!(out.code, Some(4), "stderr: {}", out.stderr);
    assert!(out.stderr.contains(&addr), "{}", out.stderr);
    drop(taken);
}

#[test]
fn missing_module_exits_5() {
    let out = run(&["--listen", "127.0.0.1:0", "--module", "/nonexistent.so"]);
    assert_eq!(out.code, Some(5), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("/nonexistent.so"), "{}", out.stderr);
}

#[test]
fn non_module_file_exits_5() {
    // A bare name is taken relative to the current directory (cargo runs tests in the package
    // root, where Cargo.toml is a file but not a shared object).
    let out = run(&["--listen", "127.0.0.1:0", "--module", "Cargo.toml=x"]);
    assert_eq!(out.code, Some(5), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("./Cargo.toml"), "{}", out.stderr);
}

#[test]
fn serves_and_stops_on_sigterm() {
    let mut child = ChildGuard::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--set",
        "threads=1",
        "--grace-ms",
        "1000",
    ]);

    // The listening line, read on a thread so the wait is bounded.
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(TIMEOUT) {
        Ok(line) => line,
        Err(_) => panic!("no listening line; stderr: {}", child.stderr()),
    };
    let prefix = "httpsrvd listening on http://127.0.0.1:";
    let port: u16 = line
        .trim_end()
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix('/'))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("unexpected listening line {line:?}"));
    assert_ne!(port, 0);

    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    conn.set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    conn.write_all(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = conn.read(&mut buf).expect("read response");
        assert!(n > 0, "connection closed before a status line: {head:?}");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 404"), "status line: {head:?}");
    drop(conn);

    let pid = libc::pid_t::try_from(child.0.id()).expect("pid");
    // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait_exit(Duration::from_secs(5));
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("httpsrvd: stopping"), "stderr: {stderr}");
}

/// Starts httpsrvd on 127.0.0.1:0 with `args` and returns it with the port it printed.
fn start_server(args: &[&str]) -> (ChildGuard, u16) {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (child, ports) = start_listeners(&all, &["http"]);
    (child, ports[0])
}

/// Starts httpsrvd with `args`, which bind listeners on 127.0.0.1 with these schemes in this
/// order; returns it with the ports of its listening lines.
fn start_listeners(args: &[&str], schemes: &[&str]) -> (ChildGuard, Vec<u16>) {
    let mut child = ChildGuard::spawn(args);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let n = schemes.len();
    thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        for _ in 0..n {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut ports = Vec::new();
    for scheme in schemes {
        let line = match rx.recv_timeout(TIMEOUT) {
            Ok(line) if !line.is_empty() => line,
            _ => {
                let _ = child.0.kill();
                let _ = child.0.wait();
                panic!("no listening line; stderr: {}", child.stderr())
            }
        };
        let prefix = format!("httpsrvd listening on {scheme}://127.0.0.1:");
        let port: u16 = line
            .trim_end()
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected listening line {line:?}, wanted {prefix}"));
        ports.push(port);
    }
    (child, ports)
}

/// One response read to the end of the connection (the request says `Connection: close`).
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// Every byte received: status line, fields and body.
    raw_len: usize,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `GET target` with the given extra header lines and reads the whole response (bounded
/// by the socket timeouts). The handlers used here answer with `Content-Length`.
fn get(port: u16, target: &str, extra_headers: &str) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    conn.set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let response = Response {
        status,
        body: raw[split + 4..].to_vec(),
        raw_len: raw.len(),
        head,
    };
    if let Some(length) = response.header("Content-Length") {
        assert_eq!(
            length.parse::<usize>().ok(),
            Some(response.body.len()),
            "Content-Length and body disagree:\n{}",
            response.head
        );
    }
    response
}

/// The counters of a `/stats` body, parsed by hand: `{"k":N,"k":N,...}` with integer values.
fn parse_stats(body: &[u8]) -> Vec<(String, u64)> {
    let text = std::str::from_utf8(body).expect("stats body is UTF-8");
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_else(|| panic!("stats body is not a JSON object: {text:?}"));
    inner
        .split(',')
        .map(|pair| {
            let (key, value) = pair
                .split_once(':')
                .unwrap_or_else(|| panic!("bad member {pair:?} in {text:?}"));
            let key = key
                .trim()
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .unwrap_or_else(|| panic!("bad key {key:?} in {text:?}"));
            let value = value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad value {value:?} in {text:?}"));
            (key.to_string(), value)
        })
        .collect()
}

fn stat(stats: &[(String, u64)], key: &str) -> u64 {
    stats
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{key} missing from {stats:?}"))
}

#[test]
fn help_mentions_stats_and_access_log() {
    let out = run(&["--help"]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    for needle in ["--stats PATH", "--access-log FILE", "access_log"] {
        assert!(
            out.stdout.contains(needle),
            "{needle} missing from help:\n{}",
            out.stdout
        );
    }
}

#[test]
fn stats_path_must_be_absolute_and_unique() {
    for args in [&["--stats", "stats"][..], &["--stats"], &["--access-log="]] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: stderr: {}", out.stderr);
    }
    // The same path twice is a route clash: a rejected option, named in the message.
    let out = run(&["--listen", "127.0.0.1:0", "--stats", "/s", "--stats=/s"]);
    assert_eq!(out.code, Some(3), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("--stats /s"), "{}", out.stderr);
}

#[test]
fn stats_counts_requests() {
    let (_child, port) = start_server(&["--set", "threads=1", "--stats", "/stats"]);

    let first = get(port, "/stats", "");
    assert_eq!(first.status, 200, "{}", first.head);
    assert!(
        first
            .header("Content-Type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{}",
        first.head
    );
    let before = parse_stats(&first.body);
    let keys: Vec<&str> = before.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["requests", "open_connections", "bytes_sent"]);
    assert!(stat(&before, "requests") >= 1, "{before:?}");
    // The connection asking is open while the handler runs.
    assert!(stat(&before, "open_connections") >= 1, "{before:?}");

    assert_eq!(get(port, "/nope", "").status, 404);
    assert_eq!(get(port, "/stats?again", "").status, 200);
    // Another method on the stats path: the route is GET only.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    conn.write_all(
        b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read");
    assert!(
        raw.starts_with(b"HTTP/1.1 405"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );

    let last = get(port, "/stats", "");
    assert_eq!(last.status, 200, "{}", last.head);
    let after = parse_stats(&last.body);
    assert!(
        stat(&after, "requests") >= stat(&before, "requests") + 4,
        "requests did not grow by the 4 requests made in between: {before:?} -> {after:?}"
    );
    assert!(
        stat(&after, "bytes_sent") > stat(&before, "bytes_sent"),
        "bytes_sent did not grow: {before:?} -> {after:?}"
    );
}

#[test]
fn stats_count_every_byte_sent_by_loop_and_pool_threads() {
    let module = common::test_module();
    let module = module.to_str().expect("module path is UTF-8");
    let (_child, port) = start_server(&[
        "--set",
        "threads=1",
        "--module",
        module,
        "--stats",
        "/stats",
    ]);
    let first = get(port, "/stats", "");
    assert_eq!(first.status, 200, "{}", first.head);
    let before = stat(&parse_stats(&first.body), "bytes_sent");
    // Written on the loop thread (the stats answer above, a small and a streamed response)
    // and from a pool thread by blocking flushes.
    let mut expected = first.raw_len as u64;
    for target in [
        "/t/hello",
        "/t/stream",
        "/t/pool/stream?n=5&size=3000",
        "/t/pool/hello",
    ] {
        let r = get(port, target, "");
        assert_eq!(r.status, 200, "{target}: {}", r.head);
        expected += r.raw_len as u64;
    }
    let last = get(port, "/stats", "");
    let after = stat(&parse_stats(&last.body), "bytes_sent");
    assert_eq!(
        after - before,
        expected,
        "bytes_sent grew by other than the bytes the client received"
    );
}

/// A file under the system temp dir, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        TempFile(std::env::temp_dir().join(format!(
            "httpsrvd-cli-{}-{nanos}-{name}",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Checks the shape `dd/Mon/yyyy:hh:mm:ss +0000`.
fn check_log_date(date: &str) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = date.as_bytes();
    let digits = |range: std::ops::Range<usize>, max: u32| {
        let text = date.get(range).unwrap_or("");
        let ok = !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit());
        assert!(
            ok && text.parse::<u32>().is_ok_and(|n| n <= max),
            "bad date {date:?}"
        );
    };
    assert_eq!(b.len(), 26, "bad date {date:?}");
    digits(0..2, 31);
    assert_eq!(b[2], b'/', "bad date {date:?}");
    assert!(MONTHS.contains(&&date[3..6]), "bad month in {date:?}");
    assert_eq!(b[6], b'/', "bad date {date:?}");
    digits(7..11, 9999);
    assert_eq!(b[11], b':', "bad date {date:?}");
    digits(12..14, 23);
    assert_eq!(b[14], b':', "bad date {date:?}");
    digits(15..17, 59);
    assert_eq!(b[17], b':', "bad date {date:?}");
    digits(18..20, 60);
    assert_eq!(&date[20..], " +0000", "bad date {date:?}");
}

/// The fields of one Combined Log Format line.
struct LogLine {
    ip: String,
    date: String,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    agent: String,
}

/// Splits `IP - - [DATE] "REQUEST" STATUS BYTES "REFERER" "AGENT"`, checking the punctuation;
/// `None` when the line has another shape.
fn parse_combined(line: &str) -> Option<LogLine> {
    let (ip, rest) = line.split_once(" - - [")?;
    let (date, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let (status, rest) = rest.split_once(' ')?;
    let (bytes, rest) = rest.split_once(' ')?;
    let (referer, rest) = rest.strip_prefix('"')?.split_once("\" \"")?;
    let agent = rest.strip_suffix('"')?;
    Some(LogLine {
        ip: ip.to_string(),
        date: date.to_string(),
        request: request.to_string(),
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        referer: referer.to_string(),
        agent: agent.to_string(),
    })
}

/// httpsrvd with `--access-log PATH` and `--stats /stats` (a route that answers 200).
fn start_with_access_log(path: &Path) -> (ChildGuard, u16) {
    let path = path.to_str().expect("temp path is UTF-8");
    start_server(&[
        "--set",
        "threads=1",
        "--stats",
        "/stats",
        "--access-log",
        path,
    ])
}

/// The text of the log at `path` once it has `n` lines or more, or as it is after TIMEOUT: a
/// line is written when its response completes, so a test waits (bounded) for it.
fn wait_lines(path: &Path, n: usize) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() >= deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts httpsrvd with `--access-log` (and `--stats /stats`, a route that answers 200), makes
/// each request (target, Referer or none, expected status) on its own connection, then checks
/// that the log has exactly one Combined Log Format line per request, in order.
fn check_access_log(requests: &[(&str, Option<&str>, u16)]) {
    let log = TempFile::new("access.log");
    let (_child, port) = start_with_access_log(&log.0);

    let agent = "httpsrvd-cli-test/1.0 (access log)";
    let mut sizes = Vec::new();
    for &(target, referer, status) in requests {
        let mut headers = format!("User-Agent: {agent}\r\n");
        if let Some(referer) = referer {
            headers.push_str(&format!("Referer: {referer}\r\n"));
        }
        let response = get(port, target, &headers);
        assert_eq!(response.status, status, "{target}: {}", response.head);
        sizes.push((response.body.len() as u64, response.raw_len as u64));
    }

    let text = wait_lines(&log.0, requests.len());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        requests.len(),
        "one line per request expected for {requests:?}; access log:\n{text}"
    );
    assert!(text.ends_with('\n'), "{text:?}");

    for ((line, &(target, referer, status)), (body_len, raw_len)) in
        lines.iter().zip(requests).zip(sizes)
    {
        let entry = parse_combined(line)
            .unwrap_or_else(|| panic!("not a Combined Log Format line: {line:?}"));
        assert_eq!(entry.ip, "127.0.0.1", "{line}");
        check_log_date(&entry.date);
        assert_eq!(entry.request, format!("GET {target} HTTP/1.1"), "{line}");
        assert_eq!(entry.status, status, "{line}");
        // The size is the body's, as Apache's %b (not the whole response).
        assert_eq!(
            entry.bytes, body_len,
            "{line}: size {}, body {body_len}, whole response {raw_len}",
            entry.bytes
        );
        assert_eq!(entry.referer, referer.unwrap_or("-"), "{line}");
        assert_eq!(entry.agent, agent, "{line}");
    }
}

#[test]
fn access_log_gets_a_combined_line_per_routed_request() {
    check_access_log(&[
        ("/stats", None, 200),
        ("/stats?a=b", Some("http://127.0.0.1/from"), 200),
    ]);
}

#[test]
fn access_log_gets_a_line_for_answers_of_the_library() {
    // No route: the library answers 404 itself. That request is logged like any other.
    check_access_log(&[
        ("/x", None, 404),
        ("/stats", None, 200),
        ("/y?a=b", Some("http://127.0.0.1/from"), 404),
    ]);
}

// ---------------------------------------------------------------------------------------------
// TLS and SIGHUP

fn cert_dir(name: &str) -> PathBuf {
    testcerts::dir_in(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        &format!("cli-{name}"),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `ADDR=CERT:KEY` for `--tls`.
fn tls_arg(addr: &str, crt: &Path, key: &Path) -> String {
    format!("{addr}={}:{}", path_str(crt), path_str(key))
}

impl ChildGuard {
    /// Collects stderr on a thread from now on, so it can be read while the child runs.
    fn collect_stderr(&mut self) -> Arc<Mutex<String>> {
        let text = Arc::new(Mutex::new(String::new()));
        if let Some(err) = self.0.stderr.take() {
            let sink = text.clone();
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { return };
                    let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                    t.push_str(&line);
                    t.push('\n');
                }
            });
        }
        text
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid");
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// SIGTERM, then a clean exit within 5 s.
    fn stop(mut self, stderr: &Arc<Mutex<String>>) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "stderr: {}", text_of(stderr));
    }
}

fn text_of(text: &Arc<Mutex<String>>) -> String {
    text.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Waits (bounded) until the collected stderr has `count` lines containing `needle`.
fn wait_stderr(text: &Arc<Mutex<String>>, needle: &str, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let t = text_of(text);
        if t.matches(needle).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} x {needle:?} on stderr:\n{t}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tls_listener_serves_https_and_cert_adds_a_name_for_sni() {
    let d = cert_dir("sni");
    let (site_crt, site_key) = testcerts::make(&d, "site", testcerts::EC_SEC1, &["site.test"]);
    let (other_crt, other_key) =
        testcerts::make(&d, "other", testcerts::RSA_PKCS8, &["other.test"]);
    let tls = tls_arg("127.0.0.1:0", &site_crt, &site_key);
    let cert = format!("{}:{}", path_str(&other_crt), path_str(&other_key));
    let (mut child, ports) = start_listeners(
        &[
            "--tls",
            &tls,
            "--listen",
            "127.0.0.1:0",
            "--cert",
            &cert,
            "--set",
            "threads=1",
            "--stats",
            "/stats",
        ],
        &["https", "http"],
    );
    let stderr = child.collect_stderr();
    let (https, http) = (ports[0], ports[1]);

    // curl trusts only the listener's certificate, and gets it for its name.
    let r = curl_https(https, "site.test", &site_crt, "/stats");
    assert_eq!(r.code, Some(0), "{}{}", r.stderr, text_of(&stderr));
    assert!(r.stdout.starts_with("{\"requests\":"), "{}", r.stdout);
    // The --cert certificate for its own name (SNI), and not the listener's.
    let r = curl_https(https, "other.test", &other_crt, "/stats");
    assert_eq!(r.code, Some(0), "{}{}", r.stderr, text_of(&stderr));
    let r = curl_https(https, "other.test", &site_crt, "/stats");
    assert_ne!(
        r.code,
        Some(0),
        "other.test was served site.test's certificate"
    );
    // An unknown name gets the first listener's certificate.
    let c = Client::connect(https, Some("unknown.test"), None);
    assert_eq!(c.field("cert"), fingerprint(&site_crt));
    drop(c);
    // The cleartext listener beside it.
    assert_eq!(get(http, "/stats", "").status, 200);
    child.stop(&stderr);
}

#[test]
fn sighup_reloads_certificates_and_keeps_established_connections() {
    let d = cert_dir("reload");
    let (crt, key) = testcerts::make(&d, "r", testcerts::EC_SEC1, &["r.test"]);
    let tls = tls_arg("127.0.0.1:0", &crt, &key);
    let (mut child, ports) = start_listeners(
        &["--tls", &tls, "--set", "threads=1", "--stats", "/stats"],
        &["https"],
    );
    let stderr = child.collect_stderr();
    let port = ports[0];
    let old = fingerprint(&crt);
    let mut kept = Client::connect(port, Some("r.test"), None);
    assert_eq!(kept.field("cert"), old);
    assert_eq!(kept.get("/stats").0, 200);

    // New files at the same paths, then SIGHUP.
    testcerts::make(&d, "r", testcerts::EC_SEC1, &["r.test"]);
    let new = fingerprint(&crt);
    assert_ne!(new, old);
    child.signal(libc::SIGHUP);
    wait_stderr(
        &stderr,
        "httpsrvd: SIGHUP: certificates reloaded, logs reopened",
        1,
    );
    let fresh = Client::connect(port, Some("r.test"), None);
    assert_eq!(
        fresh.field("cert"),
        new,
        "a new handshake gets the new certificate"
    );
    drop(fresh);
    let r = curl_https(port, "r.test", &crt, "/stats");
    assert_eq!(r.code, Some(0), "{}{}", r.stderr, text_of(&stderr));
    // The connection made before keeps its session and keeps working.
    assert_eq!(kept.get("/stats").0, 200);

    // A bad key file: the reload fails, is logged with the file's name, and changes nothing.
    std::fs::write(&key, "not a key\n").expect("write the key file");
    child.signal(libc::SIGHUP);
    wait_stderr(
        &stderr,
        "certificates not reloaded, the old ones stay in use",
        1,
    );
    let log = text_of(&stderr);
    assert!(log.contains(path_str(&key)), "{log}");
    assert!(
        matches!(child.0.try_wait(), Ok(None)),
        "httpsrvd exited: {log}"
    );
    let after = Client::connect(port, Some("r.test"), None);
    assert_eq!(after.field("cert"), new, "the reloaded certificate stays");
    drop(after);
    assert_eq!(kept.get("/stats").0, 200);
    drop(kept);
    child.stop(&stderr);
}

#[test]
fn sighup_reopens_the_access_log() {
    let log = TempFile::new("rotate.log");
    let rotated = TempFile::new("rotate.log.1");
    let (mut child, port) = start_with_access_log(&log.0);
    let stderr = child.collect_stderr();
    assert_eq!(get(port, "/stats?before", "").status, 200);
    assert!(wait_lines(&log.0, 1).contains("/stats?before"));

    // A rotator renames the file, then sends SIGHUP.
    std::fs::rename(&log.0, &rotated.0).expect("rename the access log");
    child.signal(libc::SIGHUP);
    wait_stderr(&stderr, "httpsrvd: SIGHUP: logs reopened", 1);
    assert_eq!(get(port, "/stats?after", "").status, 200);
    let new = wait_lines(&log.0, 1);
    assert_eq!(new.lines().count(), 1, "{new}");
    assert!(new.contains("GET /stats?after HTTP/1.1"), "{new}");
    let old = std::fs::read_to_string(&rotated.0).expect("the rotated file");
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("GET /stats?before HTTP/1.1"), "{old}");

    // A second SIGHUP without a rotation: the same file goes on.
    child.signal(libc::SIGHUP);
    wait_stderr(&stderr, "httpsrvd: SIGHUP: logs reopened", 2);
    assert_eq!(get(port, "/stats?again", "").status, 200);
    let new = wait_lines(&log.0, 2);
    assert_eq!(new.lines().count(), 2, "{new}");
    assert!(!text_of(&stderr).contains("not reopened"));
    child.stop(&stderr);
}

#[test]
fn bad_tls_files_exit_4_and_name_the_file() {
    let d = cert_dir("bad");
    let (crt, key) = testcerts::make(&d, "good", testcerts::EC_SEC1, &["good.test"]);
    let (_, other_key) = testcerts::make(&d, "other", testcerts::EC_SEC1, &["other.test"]);
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
    let missing = d.join("missing.crt");
    let cases: [(Vec<String>, &Path, &str); 4] = [
        (
            vec!["--tls".into(), tls_arg("127.0.0.1:0", &missing, &key)],
            &missing,
            "No such file",
        ),
        (
            vec!["--tls".into(), tls_arg("127.0.0.1:0", &garbage, &key)],
            &garbage,
            "unreadable PEM: no '-----END CERTIFICATE-----' line",
        ),
        (
            vec!["--tls".into(), tls_arg("127.0.0.1:0", &crt, &other_key)],
            &other_key,
            "does not match",
        ),
        (
            vec![
                "--tls".into(),
                tls_arg("127.0.0.1:0", &crt, &key),
                "--cert".into(),
                format!("{}:{}", path_str(&crt), path_str(&garbage)),
            ],
            &garbage,
            "cannot add the certificate",
        ),
    ];
    for (args, file, why) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        assert_eq!(out.code, Some(4), "{args:?}: stderr: {}", out.stderr);
        assert!(
            out.stderr.contains(path_str(file)),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(why), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // Malformed flags are usage errors.
    for args in [
        &["--tls", "127.0.0.1:0"][..],
        &["--tls", "127.0.0.1:0=only-a-cert"],
        &["--listen", "127.0.0.1:0", "--cert", "a.crt:a.key"],
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: stderr: {}", out.stderr);
        assert!(out.stderr.contains("--"), "{args:?}: {}", out.stderr);
    }
}
