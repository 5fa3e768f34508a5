//! HTTP/1.1 behaviour of the core, driven through the C host and tests/c/test_module.c, with
//! exact bytes asserted where the framing matters.

mod common;

use common::*;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn assert_imf_date(d: &str) {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let b = d.as_bytes();
    assert_eq!(b.len(), 29, "Date {d:?} is not an IMF-fixdate");
    assert!(
        d.ends_with(" GMT") && &d[3..5] == ", " && b[19] == b':' && b[22] == b':',
        "Date {d:?}"
    );
}

#[test]
fn hello_exact_head_and_body() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/hello"));
    let r = c.read_response(false);
    assert_eq!(r.status_line, "HTTP/1.1 200 OK", "head:\n{}", r.head_text());
    assert_eq!(
        r.header("Content-Length"),
        Some("13"),
        "head:\n{}",
        r.head_text()
    );
    assert_eq!(r.header_all("Content-Length").len(), 1);
    assert!(!r.has("Transfer-Encoding"), "head:\n{}", r.head_text());
    assert_eq!(r.header("Server"), Some("httpsrv"));
    assert_imf_date(r.header("Date").expect("Date header"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.body, b"Hello, world\n");
    assert_eq!(r.framing, Framing::ContentLength);
    assert!(
        c.buf.is_empty(),
        "extra bytes after the response: {:?}",
        c.buf
    );
    // the connection persists
    c.send_str(&get_req("/t/hello"));
    let r2 = c.read_response(false);
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, b"Hello, world\n");
}

#[test]
fn request_helper_returns_raw_bytes() {
    let srv = Server::start();
    let raw = request(srv.port(), b"GET /t/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    let s = String::from_utf8_lossy(&raw);
    assert!(s.starts_with("HTTP/1.1 200 OK\r\n"), "{s}");
    assert!(s.ends_with("\r\n\r\nHello, world\n"), "{s}");
}

#[test]
fn server_header_can_be_emptied() {
    let srv = HostBuilder::new().set("server_header", "").start();
    let r = srv.get("/t/hello");
    assert_eq!(r.status, 200);
    assert!(!r.has("Server"), "head:\n{}", r.head_text());
}

#[test]
fn stream_is_chunked_one_chunk_per_flush() {
    let srv = Server::start();
    let raw = request(srv.port(), get_req("/t/stream?n=3&size=5").as_bytes());
    let r = parse_response(&raw, false, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Transfer-Encoding"),
        Some("chunked"),
        "head:\n{}",
        r.head_text()
    );
    assert!(!r.has("Content-Length"), "head:\n{}", r.head_text());
    assert_eq!(r.chunks, vec![5, 5, 5, 0]);
    assert_eq!(
        &raw[r.head_len..],
        b"5\r\naaaaa\r\n5\r\nbbbbb\r\n5\r\nccccc\r\n0\r\n\r\n"
    );
}

#[test]
fn stream_empty_flushes_send_no_chunk() {
    let srv = Server::start();
    let raw = request(
        srv.port(),
        get_req("/t/stream?n=3&size=5&empty=1").as_bytes(),
    );
    let r = parse_response(&raw, false, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(
        &raw[r.head_len..],
        b"5\r\naaaaa\r\n5\r\nbbbbb\r\n5\r\nccccc\r\n0\r\n\r\n"
    );
}

#[test]
fn stream_completed_by_done_return() {
    // the handler flushes twice and returns DONE: the library sends the last chunk
    let srv = Server::start();
    let raw = request(
        srv.port(),
        get_req("/t/stream?n=2&size=3&done=1").as_bytes(),
    );
    let r = parse_response(&raw, false, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(&raw[r.head_len..], b"3\r\naaa\r\n3\r\nbbb\r\n0\r\n\r\n");
}

#[test]
fn final_flush_without_body_gives_content_length_0() {
    let srv = Server::start();
    let r = srv.get("/t/stream?n=0");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some("0"),
        "head:\n{}",
        r.head_text()
    );
    assert!(!r.has("Transfer-Encoding"));
    assert!(r.body.is_empty());
}

#[test]
fn pool_stream_is_chunked_too() {
    let srv = Server::start();
    let raw = request(srv.port(), get_req("/t/pool/stream?n=3&size=4").as_bytes());
    let r = parse_response(&raw, false, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(
        &raw[r.head_len..],
        b"4\r\naaaa\r\n4\r\nbbbb\r\n4\r\ncccc\r\n0\r\n\r\n"
    );
}

#[test]
fn handler_content_length_is_honoured() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/length?n=100&flush=1"));
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some("100"),
        "head:\n{}",
        r.head_text()
    );
    assert!(!r.has("Transfer-Encoding"), "head:\n{}", r.head_text());
    assert_eq!(r.body, vec![b'L'; 100]);
    // persists
    c.send_str(&get_req("/t/hello"));
    assert_eq!(c.read_response(false).body, b"Hello, world\n");
}

#[test]
fn handler_content_length_short_body_closes() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/length?n=100&short=1"));
    assert!(
        c.read_until(|b| b.windows(4).any(|w| w == b"\r\n\r\n"), T),
        "no head: {:?}",
        c.buf
    );
    assert!(
        c.read_to_eof(T),
        "connection not closed after a short body; bytes: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    let he = text.find("\r\n\r\n").unwrap() + 4;
    assert!(
        text[..he].contains("Content-Length: 100\r\n")
            || text[..he]
                .to_ascii_lowercase()
                .contains("content-length: 100\r\n"),
        "{text}"
    );
    assert_eq!(&c.buf[he..], vec![b'L'; 50].as_slice(), "body bytes");
}

#[test]
fn keep_alive_several_requests() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    for i in 0..6 {
        let path = if i % 2 == 0 {
            "/t/hello"
        } else {
            "/t/pool/hello"
        };
        c.send_str(&get_req(path));
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.body.len(), 13, "request {i}: {:?}", r.text());
        assert!(!r.conn_close());
    }
}

#[test]
fn pipelined_requests_answered_in_order() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    let mut all = String::new();
    for i in 0..10 {
        // mix inline, pool and streaming routes
        let p = match i % 3 {
            0 => format!("/t/headers?i={i}"),
            1 => format!("/t/pool/echo?i={i}"),
            _ => format!("/t/stream?n=2&size={}", i + 1),
        };
        all.push_str(&get_req(&p));
    }
    c.send_str(&all);
    for i in 0..10 {
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "response {i}");
        match i % 3 {
            0 => assert!(
                r.text().contains(&format!("query i={i}\n")),
                "response {i}: {}",
                r.text()
            ),
            1 => assert_eq!(
                r.header("X-Body-Len"),
                Some("0"),
                "response {i} should be the echo"
            ),
            _ => assert_eq!(r.chunks, vec![i + 1, i + 1, 0], "response {i}"),
        }
    }
    assert!(c.buf.is_empty());
}

#[test]
fn head_has_get_fields_and_no_body() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("HEAD /t/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some("13"),
        "head:\n{}",
        r.head_text()
    );
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert!(r.has("Date"));
    // no body bytes: the next response starts right after the head
    c.send_str(&get_req("/t/status?code=201"));
    let r2 = c.read_response(false);
    assert_eq!(
        r2.status_line, "HTTP/1.1 201 Created",
        "bytes after HEAD: {:?}",
        r2.raw
    );
}

#[test]
fn status_204_and_304_have_no_body() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(
        &(get_req("/t/status?code=204") + &get_req("/t/status?code=304") + &get_req("/t/hello")),
    );
    let r = c.read_response(false);
    assert_eq!(r.status_line, "HTTP/1.1 204 No Content");
    assert!(
        !r.has("Content-Length"),
        "204 with Content-Length:\n{}",
        r.head_text()
    );
    assert!(
        !r.has("Transfer-Encoding"),
        "204 with Transfer-Encoding:\n{}",
        r.head_text()
    );
    let r = c.read_response(false);
    assert_eq!(r.status_line, "HTTP/1.1 304 Not Modified");
    assert!(
        !r.has("Transfer-Encoding"),
        "304 with Transfer-Encoding:\n{}",
        r.head_text()
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "a body was sent after 204/304: {:?}", r.raw);
    assert_eq!(r.body, b"Hello, world\n");
}

#[test]
fn status_lines() {
    let srv = Server::start();
    let r = srv.get("/t/status?code=500");
    assert_eq!(r.status_line, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(r.body, b"status body\n");
    let r = srv.get("/t/status?code=404");
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    let r = srv.get("/t/status?code=599&reason=");
    assert_eq!(
        r.status_line,
        "HTTP/1.1 599 ",
        "raw: {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    assert_eq!(r.body, b"status body\n");
    let r = srv.get("/t/status?code=299&reason=Fine");
    assert_eq!(r.status_line, "HTTP/1.1 299 Fine");
}

#[test]
fn http10_gets_content_length_and_close() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("GET /t/stream?n=3&size=5 HTTP/1.0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some("15"),
        "head:\n{}",
        r.head_text()
    );
    assert!(
        !r.has("Transfer-Encoding"),
        "chunked to an HTTP/1.0 client:\n{}",
        r.head_text()
    );
    assert_eq!(r.body, b"aaaaabbbbbccccc");
    assert!(
        c.read_to_eof(T),
        "HTTP/1.0 connection without keep-alive not closed"
    );
    assert!(c.buf.is_empty(), "bytes after the response: {:?}", c.buf);
}

#[test]
fn http10_keep_alive_when_asked() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    for i in 0..3 {
        c.send_str("GET /t/pool/stream?n=2&size=3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(
            r.header("Content-Length"),
            Some("6"),
            "head:\n{}",
            r.head_text()
        );
        assert_eq!(r.body, b"aaabbb");
        let conn = r.header("Connection").unwrap_or("").to_ascii_lowercase();
        assert!(
            conn.contains("keep-alive"),
            "an HTTP/1.0 keep-alive response needs Connection: keep-alive:\n{}",
            r.head_text()
        );
    }
}

#[test]
fn http10_buffering_off_streams_and_closes() {
    let srv = HostBuilder::new().set("http10_buffering", "off").start();
    let mut c = Conn::open(srv.port());
    let t0 = Instant::now();
    c.send_str("GET /t/pool/stream?n=3&size=5&ms=200 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(
        c.read_until(|b| b.windows(9).any(|w| w == b"\r\n\r\naaaaa"), T),
        "first part: {:?}",
        c.buf
    );
    let first = t0.elapsed();
    assert!(
        c.read_to_eof(T),
        "not closed; bytes: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    let last = t0.elapsed();
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    let he = text.find("\r\n\r\n").unwrap();
    let head = text[..he].to_ascii_lowercase();
    assert!(!head.contains("content-length"), "{text}");
    assert!(!head.contains("transfer-encoding"), "{text}");
    assert_eq!(&text[he + 4..], "aaaaabbbbbccccc");
    assert!(
        last >= first + Duration::from_millis(250),
        "not streamed: first part at {first:?}, end at {last:?}"
    );
}

#[test]
fn request_body_content_length_echo() {
    let srv = Server::start();
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let mut c = Conn::open(srv.port());
    let mut req = format!(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    c.send(&req);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Body-Len"), Some("5000"));
    assert_eq!(r.body, body);
    // and from a pool handler
    let mut req2 = format!(
        "POST /t/pool/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req2.extend_from_slice(&body);
    c.send(&req2);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
}

#[test]
fn request_body_chunked_echo_exact() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n1;ext=1\r\n,\r\na\r\n0123456789\r\n0\r\n\r\n",
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello,0123456789");
    c.send_str(&get_req("/t/hello"));
    assert_eq!(c.read_response(false).body, b"Hello, world\n");
}

#[test]
fn expect_100_continue() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c
        .try_read_response(false, T)
        .unwrap_or_else(|e| panic!("no 100 Continue: {e}"));
    assert_eq!(interim.raw, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send_str("abcde");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abcde");
}

#[test]
fn body_over_max_body_bytes_is_413() {
    let srv = HostBuilder::new().set("max_body_bytes", "1000").start();
    // declared
    let mut c = Conn::open(srv.port());
    c.send_str("POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    c.send(&[b'x'; 2000]);
    let r = c.read_response(false);
    assert_eq!(r.status, 413, "{}", r.head_text());
    // received (chunked)
    let mut c = Conn::open(srv.port());
    let mut req =
        b"POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"1f4\r\n");
        req.extend_from_slice(&[b'y'; 500]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    let r = c.read_response(false);
    assert_eq!(r.status, 413, "{}", r.head_text());
    // at the limit is fine
    let mut c = Conn::open(srv.port());
    c.send_str("POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    c.send(&[b'z'; 1000]);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
}

#[test]
fn unknown_path_is_404() {
    let srv = Server::start();
    assert_eq!(srv.get("/nope").status, 404);
    assert_eq!(
        srv.get("/t/hello/extra").status,
        404,
        "an exact route matched a longer path"
    );
    assert_eq!(srv.get("/t/hellox").status, 404);
}

#[test]
fn wrong_method_is_405_with_allow() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("POST /t/method HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 405, "{}", r.head_text());
    let allow = r.header_all("Allow").join(",");
    assert!(
        allow.contains("GET") && allow.contains("PUT"),
        "Allow: {allow:?}\n{}",
        r.head_text()
    );
    assert_eq!(srv.get("/t/method").text(), "method GET via GET-route\n");
    let mut c = Conn::open(srv.port());
    c.send_str("PUT /t/method HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "method PUT via PUT-route\n");
}

#[test]
fn prefix_routes_longest_match() {
    let srv = Server::start();
    assert_eq!(srv.get("/t/prefix/a").text(), "prefix\n");
    assert_eq!(srv.get("/t/prefix/a/b?q=1").text(), "prefix\n");
    assert_eq!(srv.get("/t/prefix/long/x").text(), "prefix-long\n");
    assert_eq!(srv.get("/t/prefix/longer").text(), "prefix\n");
}

#[test]
fn headers_set_add_remove() {
    let srv = Server::start();
    let r = srv.get("/t/cookies");
    assert_eq!(r.text(), "rc 0 0 0 0 0 0 0 0\n");
    assert_eq!(r.header_all("Set-Cookie"), vec!["a=1", "b=2"]);
    assert_eq!(r.header_all("X-Rep"), vec!["two"]);
    assert_eq!(
        r.header_all("X-Multi"),
        vec!["3"],
        "header_set must replace every field of that name"
    );
    assert!(!r.has("X-Gone"));
}

#[test]
fn request_getters() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    let local = c.stream.local_addr().unwrap();
    c.send_str("GET /t/headers?a=1&b=%20 HTTP/1.1\r\nHost: example\r\nX-Multi: first\r\nx-multi: second\r\nX-Empty:\r\n\r\n");
    let r = c.read_response(false);
    let t = r.text();
    assert!(t.contains("method GET\n"), "{t}");
    assert!(t.contains("target /t/headers?a=1&b=%20\n"), "{t}");
    assert!(t.contains("path /t/headers\n"), "{t}");
    assert!(t.contains("query a=1&b=%20\n"), "{t}");
    assert!(t.contains("version 11\n"), "{t}");
    assert!(t.contains("count 4\n"), "{t}");
    assert!(t.contains("h Host: example (0)\n"), "{t}");
    assert!(t.contains("h X-Multi: first (0)\n"), "{t}");
    assert!(t.contains("h x-multi: second (0)\n"), "{t}");
    assert!(t.contains("h X-Empty:  (0)\n"), "{t}");
    assert!(t.contains("first-x-multi first\n"), "{t}");
    assert!(
        t.contains(&format!("peer 127.0.0.1:{} 0\n", local.port())),
        "{t}"
    );
    // HTTP/1.0
    let mut c = Conn::open(srv.port());
    c.send_str("GET /t/headers HTTP/1.0\r\n\r\n");
    let t = c.read_response(false).text();
    assert!(
        t.contains("version 10\n") && t.contains("query \n") && t.contains("count 0\n"),
        "{t}"
    );
}

#[test]
fn connection_close_request() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("GET /t/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.body, b"Hello, world\n");
    assert!(r.conn_close(), "no Connection: close in\n{}", r.head_text());
    assert!(c.read_to_eof(T), "not closed");
}

#[test]
fn bad_return_is_500() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/bad-return"));
    let r = c.read_response(false);
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.raw));
    assert!(
        !r.text().contains("should not appear"),
        "the failed handler's body was sent: {}",
        r.text()
    );
}

#[test]
fn bad_return_after_flush_truncates() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/bad-return-late"));
    assert!(
        c.read_to_eof(T),
        "connection not closed after a failed handler; bytes: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    let he = text.find("\r\n\r\n").expect("head") + 4;
    assert!(
        text[..he]
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text:?}"
    );
    assert_eq!(
        &text[he..],
        "c\r\npartial-data\r\n",
        "the body must be truncated: no last chunk"
    );
}

#[test]
fn ipv6_listener() {
    if !ipv6_loopback_available() {
        eprintln!("SKIP ipv6_listener: IPv6 loopback unavailable");
        return;
    }
    let srv = HostBuilder::new()
        .listen("127.0.0.1:0")
        .listen("[::1]:0")
        .start();
    assert_eq!(srv.ports().len(), 2);
    let r = get(srv.ports()[0], "/t/hello");
    assert_eq!(r.body, b"Hello, world\n");
    let s6 = connect_opts(format!("[::1]:{}", srv.ports()[1]).parse().unwrap(), None);
    let mut c = Conn::new(s6);
    c.send_str(&get_req("/t/headers"));
    let r = c.read_response(false);
    assert!(r.text().contains("peer [::1]:"), "{}", r.text());
}

#[test]
fn host_stop_free_dlclose_exits_cleanly() {
    let mut srv = Server::start();
    assert_eq!(srv.get("/t/hello").status, 200);
    assert_eq!(srv.get("/t/pool/hello").status, 200);
    let rc = srv.stop(1000, T);
    assert_eq!(rc, 0);
    let st = srv.finish(T).expect("host did not exit after EOF");
    let out = srv.output();
    assert!(st.success(), "host exit {st:?}\n{}", srv.diagnostics());
    let fini = out
        .iter()
        .position(|l| l.starts_with("FINI"))
        .expect("module fini not called");
    let freed = out.iter().position(|l| l == "FREED").expect("no FREED");
    assert!(fini < freed);
    assert_eq!(out[fini], "FINI threads_left=0");
}

#[test]
fn host_eof_without_stop_exits_cleanly() {
    let mut srv = Server::start();
    // an idle keep-alive connection open while the host goes away
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/hello"));
    c.read_response(false);
    let st = srv.finish(T).expect("host did not exit after EOF");
    assert!(st.success(), "host exit {st:?}\n{}", srv.diagnostics());
    let out = srv.output();
    assert!(out.iter().any(|l| l == "STOPPED 0"), "{out:?}");
    assert_eq!(out.last().map(|s| s.as_str()), Some("FREED"));
    assert!(c.read_to_eof(T), "the idle connection was not closed");
}

/// Every function name of API.md.
const API_FUNCTIONS: &[&str] = &[
    "httpsrv_version",
    "httpsrv_strerror",
    "httpsrv_server_new",
    "httpsrv_server_set",
    "httpsrv_server_listen",
    "httpsrv_server_port",
    "httpsrv_server_route",
    "httpsrv_server_load_module",
    "httpsrv_server_set_logger",
    "httpsrv_server_start",
    "httpsrv_server_stop",
    "httpsrv_server_free",
    "httpsrv_request_method",
    "httpsrv_request_target",
    "httpsrv_request_path",
    "httpsrv_request_query",
    "httpsrv_request_version",
    "httpsrv_request_header",
    "httpsrv_request_header_count",
    "httpsrv_request_header_at",
    "httpsrv_request_body",
    "httpsrv_request_peer",
    "httpsrv_response_status_set",
    "httpsrv_response_header_set",
    "httpsrv_response_header_add",
    "httpsrv_response_header_remove",
    "httpsrv_response_append",
    "httpsrv_response_flush",
    "httpsrv_response_flush_async",
    "httpsrv_response_clear",
    "httpsrv_response_headers_sent",
    "httpsrv_response_compression",
    "httpsrv_response_bytes_sent",
    "httpsrv_response_pending",
    "httpsrv_session_on_close",
    "httpsrv_session_set_data",
    "httpsrv_session_data",
    "httpsrv_session_post",
    "httpsrv_session_abort",
];

#[test]
fn every_header_symbol_resolves() {
    let header = header_path();
    let text = std::fs::read_to_string(&header).expect("include/httpsrv.h");
    for f in API_FUNCTIONS {
        assert!(
            text.contains(&format!("{f}(")),
            "include/httpsrv.h does not declare {f}"
        );
    }
    let out = Command::new(host_bin())
        .arg(&paths().lib)
        .arg("--resolve-all")
        .arg(&header)
        .output()
        .expect("run host --resolve-all");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "resolve-all failed:\n{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = so
        .lines()
        .find_map(|l| {
            l.strip_prefix("RESOLVED ")
                .and_then(|r| r.split_whitespace().next())
                .map(|x| x.parse().unwrap())
        })
        .expect("RESOLVED line");
    assert!(
        n >= API_FUNCTIONS.len(),
        "only {n} functions resolved:\n{so}"
    );
    for f in API_FUNCTIONS {
        assert!(
            so.lines().any(|l| l == format!("OK {f}")),
            "{f} not resolved:\n{so}"
        );
    }
}

#[test]
fn header_compiles_without_warnings() {
    // the public header itself must be clean under the flags module authors use
    let h = header_path();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src_c = dir.join(format!("hdr_{}.c", std::process::id()));
    let src_cpp = dir.join(format!("hdr_{}.cpp", std::process::id()));
    let prog = "#include \"httpsrv.h\"\nint main(void) { return HTTPSRV_ABI_VERSION - 1; }\n";
    std::fs::write(&src_c, prog).unwrap();
    std::fs::write(&src_cpp, prog.replace("(void)", "()")).unwrap();
    let mut errors = String::new();
    for (cc, std, src) in [
        ("gcc", "-std=c11", &src_c),
        ("gcc", "-std=c99", &src_c),
        ("g++", "-std=c++17", &src_cpp),
    ] {
        let out = Command::new(cc)
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
            ])
            .arg(format!("-I{}", h.parent().unwrap().display()))
            .arg(src)
            .output()
            .expect("run compiler");
        if !out.status.success() {
            errors.push_str(&format!(
                "{cc} {std}:\n{}\n",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let _ = std::fs::remove_file(&src_c);
    let _ = std::fs::remove_file(&src_cpp);
    assert!(
        errors.is_empty(),
        "include/httpsrv.h does not compile cleanly:\n{errors}"
    );
}

#[test]
fn c_examples_compile_and_load() {
    let built = compile_examples().modules;
    if built.is_empty() {
        eprintln!("SKIP c_examples_compile_and_load: no c_examples/");
    }
    for (src, so) in &built {
        // each example loads on its own, the host starts, stops and unloads it cleanly
        let mut srv = HostBuilder::new()
            .no_default_module()
            .module(so, None)
            .start();
        let out = srv.output();
        assert!(
            out.contains(&format!("MODULE {} 0", so.display())),
            "{}: {out:?}",
            src.display()
        );
        let st = srv
            .finish(T)
            .unwrap_or_else(|| panic!("{}: host did not exit", src.display()));
        assert!(
            st.success(),
            "{}: host exit {st:?}\n{}",
            src.display(),
            srv.diagnostics()
        );
        assert_eq!(srv.output().last().map(|s| s.as_str()), Some("FREED"));
    }
}

#[test]
fn harness_under_valgrind() {
    if Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("SKIP harness_under_valgrind: valgrind is not installed");
        return;
    }
    let mut srv = HostBuilder::new()
        .valgrind()
        .set("threads", "1")
        .set("pool_threads", "2")
        .start();
    let long = Duration::from_secs(60);
    let mut c = Conn::open(srv.port());
    c.stream.set_read_timeout(Some(long)).unwrap();
    let reqs = [
        "/t/hello",
        "/t/stream?n=3&size=100",
        "/t/pool/lines?n=3&ms=10",
        "/t/pool/stream?n=2&size=1000",
        "/t/async-chain?n=3&size=10",
        "/t/post",
        "/t/pending?ms=10",
        "/t/headers?x=1",
        "/t/errors",
        "/t/ref?len=3000&chunk=1",
        "/t/ref?len=100000",
        "/t/pool-ref?len=5000&chunk=1",
        "/t/nope",
    ];
    for p in reqs {
        c.send_str(&get_req(p));
        let r = c
            .try_read_response(false, long)
            .unwrap_or_else(|e| panic!("{p}: {e}\n{}", srv.diagnostics()));
        assert!(
            r.status == 200 || (p == "/t/nope" && r.status == 404),
            "{p}: {}",
            r.status
        );
    }
    let mut c2 = Conn::open(srv.port());
    c2.send_str("POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c2.try_read_response(false, long).unwrap().body, b"abc");
    drop(c);
    drop(c2);
    let rc = srv.stop(2000, Duration::from_secs(120));
    assert_eq!(rc, 0);
    let st = srv
        .finish(Duration::from_secs(120))
        .expect("host under valgrind did not exit");
    assert!(
        st.success(),
        "valgrind/host exit {st:?} (99 = valgrind found errors)\n{}",
        srv.diagnostics()
    );
    assert!(srv.output().iter().any(|l| l == "FREED"));
}

#[test]
fn head_keeps_handler_content_length() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("HEAD /t/length?n=100 HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some("100"),
        "head:\n{}",
        r.head_text()
    );
    c.send_str(&get_req("/t/hello"));
    let r = c.read_response(false);
    assert_eq!(
        r.body,
        b"Hello, world\n",
        "body bytes were sent for HEAD: {:?}",
        String::from_utf8_lossy(&r.raw)
    );
}

#[test]
fn head_of_streamed_response_keeps_connection() {
    // a HEAD to a handler that streams (flush(0) twice): no body, the session completes
    // normally (reason 0) and the connection goes on
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("HEAD /t/stream?n=2&size=5 HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.status, 200);
    c.send_str(&get_req("/t/hello"));
    let r = c.try_read_response(false, T).unwrap_or_else(|e| {
        panic!(
            "no response after a HEAD of a streamed response: {e}; log:\n{}",
            srv.log()
        )
    });
    assert_eq!(
        r.body,
        b"Hello, world\n",
        "body bytes were sent for HEAD: {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    let log = srv.must_log("close stream", |l| l.contains("close stream "), T);
    assert!(
        log.lines().any(|l| l.starts_with("close stream 0 ")),
        "close reason of a HEAD session:\n{log}"
    );
}

#[test]
fn http10_buffering_sends_nothing_before_final_flush() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    let t0 = Instant::now();
    c.send_str("GET /t/pool/lines?n=3&ms=200 HTTP/1.0\r\n\r\n");
    assert!(c.read_until(|b| !b.is_empty(), T), "nothing arrived");
    let first = t0.elapsed();
    assert!(
        first >= Duration::from_millis(300),
        "bytes arrived {first:?} after the request, before the final flush (~400 ms)"
    );
    let r = c.read_response(false);
    assert_eq!(r.header("Content-Length"), Some("21"), "{}", r.head_text());
    assert_eq!(r.text(), "line 0\nline 1\nline 2\n");
}

#[test]
fn expect_100_continue_not_sent_for_rejected_body() {
    let srv = HostBuilder::new().set("max_body_bytes", "1000").start();
    let mut c = Conn::open(srv.port());
    c.send_str(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response(false);
    assert_eq!(
        r.status,
        413,
        "expected 413 without 100 Continue, got\n{}",
        r.head_text()
    );
}

#[test]
fn keepalive_requests_limit() {
    let srv = HostBuilder::new().set("keepalive_requests", "3").start();
    let mut c = Conn::open(srv.port());
    for i in 0..3 {
        c.send_str(&get_req("/t/hello"));
        let r = c.read_response(false);
        assert_eq!(r.status, 200);
        if i == 2 {
            assert!(
                r.conn_close(),
                "the last allowed response should say Connection: close\n{}",
                r.head_text()
            );
        }
    }
    assert!(
        c.read_to_eof(T),
        "connection not closed after keepalive_requests"
    );
}

#[test]
fn keepalive_timeout_closes_idle_connection() {
    let srv = HostBuilder::new()
        .set("keepalive_timeout_ms", "300")
        .start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/hello"));
    c.read_response(false);
    let t0 = Instant::now();
    assert!(c.read_to_eof(T), "idle connection not closed");
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "closed after {:?}",
        t0.elapsed()
    );
    assert!(c.buf.is_empty(), "{:?}", c.buf);
}

#[test]
fn header_timeout_is_408() {
    let srv = HostBuilder::new().set("header_timeout_ms", "300").start();
    let mut c = Conn::open(srv.port());
    c.send_str("GET /t/hello HTTP/1.1\r\nHost: x\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 408, "{}", r.head_text());
    assert!(c.read_to_eof(T), "not closed after 408");
}

#[test]
fn header_limits_431_and_414() {
    let srv = HostBuilder::new()
        .set("max_header_bytes", "1024")
        .set("max_headers", "5")
        .start();
    let mut c = Conn::open(srv.port());
    c.send_str(&format!(
        "GET /t/hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(2000)
    ));
    assert_eq!(c.read_response(false).status, 431);
    let mut c = Conn::open(srv.port());
    c.send_str(&format!(
        "GET /t/hello?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "q".repeat(2000)
    ));
    assert_eq!(c.read_response(false).status, 414);
    let mut c = Conn::open(srv.port());
    let mut req = String::from("GET /t/hello HTTP/1.1\r\nHost: x\r\n");
    for i in 0..6 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    c.send_str(&req);
    assert_eq!(c.read_response(false).status, 431);
    // within the limits
    let mut c = Conn::open(srv.port());
    c.send_str("GET /t/hello HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
}

#[test]
fn max_connections_refuses_new_not_old() {
    let srv = HostBuilder::new().set("max_connections", "2").start();
    let mut a = Conn::open(srv.port());
    let mut b = Conn::open(srv.port());
    a.send_str(&get_req("/t/hello"));
    a.read_response(false);
    b.send_str(&get_req("/t/hello"));
    b.read_response(false);
    // a third connection is refused (closed without a response, or never served)
    if let Ok(s) = std::net::TcpStream::connect_timeout(&srv.addr(), T) {
        let mut c = Conn::new(s);
        let _ = std::io::Write::write_all(&mut c.stream, get_req("/t/hello").as_bytes());
        let served = c
            .try_read_response(false, Duration::from_millis(1500))
            .is_ok();
        assert!(!served, "a connection beyond max_connections was served");
    }
    // the old ones still work
    for c in [&mut a, &mut b] {
        c.send_str(&get_req("/t/hello"));
        assert_eq!(c.read_response(false).status, 200);
    }
}

#[test]
fn access_log_combined_format() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("access_{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let srv = HostBuilder::new()
        .set("access_log", &path.display().to_string())
        .start();
    let mut c = Conn::open(srv.port());
    c.send_str("GET /t/hello?x=1 HTTP/1.1\r\nHost: x\r\nReferer: http://ref/\r\nUser-Agent: test-agent\r\n\r\n");
    c.read_response(false);
    let deadline = Instant::now() + T;
    let text = loop {
        let t = std::fs::read_to_string(&path).unwrap_or_default();
        if t.contains("/t/hello") || Instant::now() >= deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(srv);
    let _ = std::fs::remove_file(&path);
    let line = text
        .lines()
        .find(|l| l.contains("/t/hello"))
        .unwrap_or_else(|| panic!("no access log line: {text:?}"));
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /t/hello?x=1 HTTP/1.1\" 200 13 \"http://ref/\" \"test-agent\""),
        "not Combined Log Format: {line}"
    );
}

#[test]
fn handler_connection_close_closes() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/hello?close=1"));
    let r = c.read_response(false);
    assert_eq!(r.body, b"Hello, world\n");
    assert!(r.conn_close(), "{}", r.head_text());
    assert!(
        c.read_to_eof(T),
        "the handler said Connection: close but the connection stayed open"
    );
}

#[test]
fn request_with_content_length_and_chunked_is_not_smuggled() {
    // RFC 9112 6.3: reject (400), or let chunked win and close the connection after responding
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n0\r\n\r\nGET /t/hello HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let r = c.read_response(false);
    if r.status == 400 {
        return;
    }
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abc", "Content-Length used instead of chunked");
    assert!(
        c.read_to_eof(T) && c.buf.is_empty(),
        "after a request with both Content-Length and Transfer-Encoding the connection must close; got {:?}",
        String::from_utf8_lossy(&c.buf)
    );
}

#[test]
fn conflicting_content_lengths_are_400() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert_eq!(c.read_response(false).status, 400);
}

#[test]
fn malformed_chunked_request_body_is_400() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str("POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).status, 400);
}

#[test]
fn pipelining_order_under_concurrency() {
    // rule 7 under some load: several clients each pipeline a pool streaming response followed
    // by inline, pool and streaming requests; every connection gets its responses in order
    let srv = Server::start();
    let port = srv.port();
    let batch = get_req("/t/pool/lines?n=2&ms=30")
        + &get_req("/t/hello")
        + &get_req("/t/headers?i=0")
        + &get_req("/t/pool/echo?i=1")
        + &get_req("/t/stream?n=2&size=3");
    let mut threads = Vec::new();
    for _ in 0..3 {
        let batch = batch.clone();
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            for it in 0..30 {
                let mut c = Conn::open(port);
                c.send_str(&batch);
                let mut got = Vec::new();
                for _ in 0..5 {
                    let r = c
                        .try_read_response(false, T)
                        .map_err(|e| format!("iteration {it}: {e}"))?;
                    got.push(r);
                }
                let ok = got[0].text() == "line 0\nline 1\n"
                    && got[1].body == b"Hello, world\n"
                    && got[2].text().contains("query i=0\n")
                    && got[3].header("X-Body-Len") == Some("0")
                    && got[4].text() == "aaabbb";
                if !ok {
                    let raw: Vec<u8> = got.iter().flat_map(|r| r.raw.clone()).collect();
                    return Err(format!(
                        "iteration {it}: responses out of order:\n{}",
                        String::from_utf8_lossy(&raw)
                    ));
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn large_bodies_sent_at_once_are_read_whole() {
    // A fast sender fills the read buffer to its limit in one go; with edge-triggered
    // polling no new event comes for the rest, so the loop must keep reading by itself.
    let srv = HostBuilder::new().set("max_body_bytes", "4194304").start();
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = Conn::open(srv.port());
    let mut req = format!(
        "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    c.send(&req);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");

    // The same size chunked, in 64 KiB chunks written back to back.
    let mut req =
        b"POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(65536) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed chunked body differs");
}

/// A burst of keep-alive connections spreads evenly over the loops: every loop is woken for a
/// new connection and the first to accept took the whole queue, so a client opening its pool
/// could find all of it on one loop while the others idled.
#[test]
fn a_burst_of_connections_spreads_over_the_loops() {
    for round in 0..3 {
        // A fresh server each time: closed connections leave its count when it notices them.
        let srv = HostBuilder::new().set("threads", "2").start();
        // All connected before any request, as a client opens its pool.
        let mut conns: Vec<Conn> = (0..8).map(|_| Conn::open(srv.port())).collect();
        let mut per_loop: HashMap<String, usize> = HashMap::new();
        for c in &mut conns {
            c.send_str(&get_req("/t/thread"));
            let r = c.read_response(false);
            assert_eq!(r.status, 200, "{}", r.head_text());
            *per_loop.entry(r.text()).or_default() += 1;
        }
        let mut counts: Vec<usize> = per_loop.values().copied().collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            [4, 4],
            "round {round}: 8 connections over 2 loops: {per_loop:?}"
        );
    }
}
