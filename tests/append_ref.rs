//! `httpsrv_response_append_ref`: lent bytes go out unchanged, in order with copied ones, and
//! their release runs exactly once, after the library stopped reading them (the test module
//! overwrites released memory, so a late read would show in the body), also for HEAD,
//! compressed responses, pool handlers and a client that leaves; refused appends leave the
//! memory with the module.

mod common;

use common::*;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn expected_body(len: usize) -> Vec<u8> {
    let mut b = b"copy1".to_vec();
    b.extend(pattern(len));
    b.extend_from_slice(b"copy2");
    b.extend(pattern(100));
    b
}

/// Waits for the release lines of both buffers of `tag`, then checks each appears once.
fn assert_released_once(srv: &Server, tag: &str, len: usize) {
    let first = format!("ref-release {tag}-1 {len}");
    let second = format!("ref-release {tag}-2 100");
    srv.must_log(
        &format!("releases of {tag}"),
        |l| l.contains(&first) && l.contains(&second),
        T,
    );
    // A second release would come soon after the first, if at all.
    thread::sleep(Duration::from_millis(100));
    let log = srv.log();
    for line in [&first, &second] {
        let n = log.lines().filter(|l| l.ends_with(line.as_str())).count();
        assert_eq!(n, 1, "{line:?} {n} times:\n{log}");
    }
    assert!(!log.contains("ref-release WRONG"), "{log}");
}

#[test]
fn lent_bytes_go_out_in_order_and_are_released_once() {
    let srv = Server::start();
    for route in ["/t/ref", "/t/pool-ref"] {
        for len in [1usize, 3000, 300_000] {
            for chunk in [false, true] {
                let tag = format!("{}-{len}-{}", &route[3..], u8::from(chunk));
                let r = srv.get(&format!(
                    "{route}?len={len}&chunk={}&tag={tag}",
                    u8::from(chunk)
                ));
                assert_eq!(r.status, 200, "{}", r.head_text());
                assert!(
                    r.body == expected_body(len),
                    "{tag}: body differs ({} bytes, want {})",
                    r.body.len(),
                    expected_body(len).len()
                );
                if chunk {
                    assert!(!r.chunks.is_empty(), "{tag}: {}", r.head_text());
                } else {
                    let want = expected_body(len).len().to_string();
                    assert_eq!(r.header("Content-Length"), Some(want.as_str()), "{tag}");
                }
                assert_released_once(&srv, &tag, len);
            }
        }
    }
}

#[test]
fn lent_bytes_compressed() {
    let srv = Server::start();
    let req = "GET /t/ref?len=20000&type=text/plain&tag=gz HTTP/1.1\r\nHost: test\r\n\
               Accept-Encoding: gzip\r\n\r\n";
    let raw = request(srv.port(), req.as_bytes());
    let r = parse_response(&raw, false, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(
        r.header("Content-Encoding"),
        Some("gzip"),
        "{}",
        r.head_text()
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert!(plain == expected_body(20000), "decoded body differs");
    assert_released_once(&srv, "gz", 20000);
}

#[test]
fn head_releases_lent_bytes() {
    let srv = Server::start();
    let raw = request(
        srv.port(),
        b"HEAD /t/ref?len=5000&tag=head HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    let r = parse_response(&raw, true, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let want = expected_body(5000).len().to_string();
    assert_eq!(r.header("Content-Length"), Some(want.as_str()));
    assert_released_once(&srv, "head", 5000);
}

#[test]
fn refused_appends_leave_the_memory_with_the_module() {
    let srv = Server::start();
    let r = srv.get("/t/ref?mode=errors");
    assert_report("/t/ref?mode=errors", &r.text());
    let log = srv.must_log("ref-errors", |l| l.contains("ref-errors "), T);
    assert!(
        log.contains("ref-errors static=0 final=0 after_final=EALREADY"),
        "{log}"
    );
    thread::sleep(Duration::from_millis(100));
    assert!(!srv.log().contains("ref-release WRONG"), "{}", srv.log());
}

#[test]
fn client_gone_mid_body_still_releases_once() {
    let srv = Server::start();
    let len = 3_000_000;
    let mut s = connect_small_rcvbuf(srv.port(), 4096);
    std::io::Write::write_all(
        &mut s,
        get_req(&format!("/t/ref?len={len}&tag=gone")).as_bytes(),
    )
    .unwrap();
    // Some of the body arrives, then the client resets the connection.
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + T;
    let mut got = 0;
    while got < 8192 && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(got >= 8192, "only {got} bytes arrived");
    reset(s);
    let log = srv.must_log("close of the gone session", |l| l.contains("close ref "), T);
    assert!(
        log.contains("close ref ECONNRESET") || log.contains("close ref EPIPE"),
        "{log}"
    );
    assert_released_once(&srv, "gone", len);
}

/// Lent pieces are the module's memory: they do not count against `max_pending_bytes`, so four
/// unflushed 1 MiB pieces are all taken with the limit at 1 MiB; copied bytes still count.
#[test]
fn lent_pieces_do_not_count_against_max_pending_bytes() {
    let mib = 1 << 20;
    let srv = HostBuilder::new()
        .set("max_pending_bytes", &mib.to_string())
        .start();
    let r = srv.get(&format!("/t/ref?mode=pieces&n=4&len={mib}"));
    let log = srv.must_log("ref-pieces", |l| l.contains("ref-pieces "), T);
    assert!(
        log.contains("ref-pieces lent=0,0,0,0 copy=0 over=ENOBUFS"),
        "{log}"
    );
    assert_eq!(r.status, 200, "{}", r.head_text());
    assert_eq!(r.body.len(), 5 * mib);
    for (i, piece) in r.body.chunks(mib).enumerate() {
        assert_eq!(check_pattern(piece, 0), None, "piece {i} differs");
    }
    for i in 0..4 {
        let line = format!("ref-release pieces-{i} {mib}");
        srv.must_log(&line, |l| l.contains(&line), T);
    }
}
