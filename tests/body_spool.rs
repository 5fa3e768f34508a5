//! Buffered request bodies larger than `body_buffer_bytes` are spooled to an unlinked file in
//! `body_temp_dir` and mapped for `httpsrv_request_body` (issue 25, item 1): the bodies arrive
//! byte-exact, the spool files never have a name, and nothing of them is left once the
//! session ends. The memory this saves is measured by `bench/hostile.sh`, not here.

mod common;
#[path = "common/tempdir.rs"]
mod tempdir;

use common::*;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};
use tempdir::TempDir;

const T: Duration = Duration::from_secs(15);

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The host's open descriptors and mappings of files in `dir` (an unlinked file shows as
/// "DIR/#123 (deleted)" or "DIR/name (deleted)").
fn held_in(pid: u32, dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut held = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.filter_map(|e| e.ok()) {
            if let Ok(target) = std::fs::read_link(e.path()) {
                let t = target.display().to_string();
                if t.starts_with(&prefix) {
                    held.push(format!("fd {t}"));
                }
            }
        }
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    for line in maps.lines().filter(|l| l.contains(&prefix)) {
        held.push(format!("map {line}"));
    }
    held
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn length_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A chunked request whose chunks have the sizes in `sizes`, the last size repeated.
fn chunked_request(path: &str, body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    let mut pos = 0;
    let mut k = 0;
    while pos < body.len() {
        let size = sizes[k.min(sizes.len() - 1)].min(body.len() - pos);
        k += 1;
        req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        req.extend_from_slice(&body[pos..pos + size]);
        req.extend_from_slice(b"\r\n");
        pos += size;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

fn spool_server(dir: &Path) -> Server {
    HostBuilder::new()
        .set("body_temp_dir", &dir.display().to_string())
        .set("max_body_bytes", "4194304")
        .logger()
        .start()
}

#[test]
fn large_bodies_echo_byte_exact_and_leave_no_file() {
    let dir = TempDir::new("spool-echo");
    let srv = spool_server(&dir.0);
    let mut c = Conn::open(srv.port());
    // Around the threshold (65536), a megabyte, and more than max_body_bytes' default, on the
    // loop thread and on a pool thread, with Content-Length and chunked.
    let mut bytewise = vec![1; 100];
    bytewise.push(1 << 20);
    let cases: &[(&str, usize, &[usize])] = &[
        ("/t/echo", 65_536, &[]),
        ("/t/echo", 65_537, &[]),
        ("/t/echo", 1 << 20, &[]),
        ("/t/pool/echo", 3_000_000, &[]),
        ("/t/echo", 300_001, &[7_000]),
        ("/t/pool/echo", 200_000, &[65_536]),
        ("/t/echo", 70_000, &bytewise),
    ];
    for (i, &(path, len, chunks)) in cases.iter().enumerate() {
        let body = pattern(len, i as u32);
        let req = if chunks.is_empty() {
            length_request(path, &body)
        } else {
            chunked_request(path, &body, chunks)
        };
        c.send(&req);
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "{path} {len}: {}", r.head_text());
        assert_eq!(r.header("X-Body-Len"), Some(len.to_string().as_str()));
        assert!(
            r.body == body,
            "{path} {len} chunked {}: the echo differs",
            !chunks.is_empty()
        );
        assert_eq!(entries(&dir.0), Vec::<String>::new(), "{path} {len}");
    }
    // Everything let go once the sessions ended.
    wait_until("spool files released", T, || {
        held_in(srv.pid(), &dir.0).is_empty()
    });
}

#[test]
fn an_upload_in_progress_is_an_unlinked_file() {
    let dir = TempDir::new("spool-while");
    let srv = spool_server(&dir.0);
    let body = pattern(900_000, 9);
    let req = length_request("/t/echo", &body);
    let mut c = Conn::open(srv.port());
    let split = req.len() - 500_000;
    c.send(&req[..split]);
    // The part received so far is in a file of the directory that has no name there.
    wait_until("a spool file open in body_temp_dir", T, || {
        held_in(srv.pid(), &dir.0)
            .iter()
            .any(|h| h.starts_with("fd ") && h.ends_with("(deleted)"))
    });
    assert_eq!(entries(&dir.0), Vec::<String>::new());
    c.send(&req[split..]);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the echo differs");
    assert_eq!(entries(&dir.0), Vec::<String>::new());
    wait_until("spool file released", T, || {
        held_in(srv.pid(), &dir.0).is_empty()
    });
    // A body at the threshold stays in memory: no file at all.
    let small = pattern(65_536, 3);
    let mut c = Conn::open(srv.port());
    let req = length_request("/t/echo", &small);
    c.send(&req[..req.len() - 1]);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(held_in(srv.pid(), &dir.0), Vec::<String>::new());
    c.send(&req[req.len() - 1..]);
    assert!(c.read_response(false).body == small);
}

#[test]
fn a_spool_failure_is_a_500_for_that_request_only() {
    let dir = TempDir::new("spool-fail");
    let spool = dir.0.join("spool");
    std::fs::create_dir(&spool).unwrap();
    let srv = spool_server(&spool);
    // A client halfway through a small upload before the failure finishes it afterwards.
    let mut small = Conn::open(srv.port());
    small.send(b"POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
    std::fs::remove_dir(&spool).unwrap();
    let mut c = Conn::open(srv.port());
    c.send(&length_request("/t/echo", &pattern(100_000, 1)));
    let r = c.read_response(false);
    assert_eq!(r.status, 500, "{}", r.head_text());
    assert!(r.conn_close(), "{}", r.head_text());
    assert!(c.closed_within(T), "the connection closes after the 500");
    // The host relays the log from its own thread: the line may follow the response.
    wait_until("the reason logged", T, || {
        srv.output()
            .iter()
            .any(|l| l.starts_with("HLOG 0") && l.contains("cannot spool"))
    });
    small.send(b"56789");
    let r = small.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0123456789");
    // Chunked too, and the server goes on.
    let mut c = Conn::open(srv.port());
    c.send(&chunked_request("/t/echo", &pattern(100_000, 2), &[30_000]));
    assert_eq!(c.read_response(false).status, 500);
    assert_eq!(get(srv.port(), "/t/hello").status, 200);
}

#[test]
fn a_bad_body_temp_dir_is_refused_at_set() {
    let dir = TempDir::new("spool-bad");
    let file = dir.0.join("file");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.0.join("missing");
    let mut srv = HostBuilder::new()
        .try_set("body_temp_dir", &missing.display().to_string())
        .try_set("body_temp_dir", &file.display().to_string())
        .try_set("body_temp_dir", "")
        .try_set("body_buffer_bytes", "100")
        .try_set("body_buffer_bytes", "1048576")
        .try_set("body_temp_dir", &dir.0.display().to_string())
        .logger()
        .start();
    let sets: Vec<String> = srv
        .output()
        .into_iter()
        .filter(|l| l.starts_with("SET "))
        .collect();
    let rc: Vec<&str> = sets.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(rc, ["22", "22", "22", "22", "0", "0"], "{sets:?}");
    let logged = srv.output().join("\n");
    assert!(logged.contains("is not a directory"), "{logged}");
    assert_eq!(srv.stop(1000, T), 0);
}
