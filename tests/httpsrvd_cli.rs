//! Drives the `httpsrvd` binary: flags, exit codes, the listening line, one real request and a
//! clean stop on SIGTERM. Every wait is bounded, and a guard kills the child if a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

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
