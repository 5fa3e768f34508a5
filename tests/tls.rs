//! TLS (API.md Part 2, "TLS (rustls)") against the C host and the test module, with real
//! clients that are not rustls: Python's ssl module and curl (both OpenSSL), and raw sockets
//! for the hostile cases. Certificates are made at test time with the openssl command.

mod common;
#[path = "../src/io/testcerts.rs"]
mod testcerts;
#[path = "common/tls_client.rs"]
mod tls_client;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tls_client::{client_script, curl_https, fingerprint, json_field, Client};

const T: Duration = Duration::from_secs(15);
const ENOENT: i32 = 2;
const EBADMSG: i32 = 74;
const EINVAL: i32 = 22;
const EADDRINUSE: i32 = 98;
const EBUSY: i32 = 16;

// ---------------------------------------------------------------------------------------------
// certificates

fn cert_dir(name: &str) -> PathBuf {
    testcerts::dir_in(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
}

fn tls_lines(body: &str) -> std::collections::HashMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The host with a TLS listener on a certificate for `names`: (server, TLS port, cert, key).
fn tls_host(dir: &Path, names: &[&str], b: HostBuilder) -> (Server, u16, PathBuf, PathBuf) {
    let (crt, key) = testcerts::make(dir, "main", testcerts::EC_SEC1, names);
    let srv = b.tls("127.0.0.1:0", &crt, &key).start();
    let port = srv.ports()[1];
    (srv, port, crt, key)
}

fn rc_of(out: &[String], prefix: &str) -> i32 {
    let line = out
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {out:?}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn every_key_type_over_tls12_and_tls13_with_sni_selection() {
    let d = cert_dir("keys");
    let (main_crt, main_key) = testcerts::make(&d, "main", testcerts::RSA_PKCS8, &["rsa.test"]);
    let certs = [
        ("rsa1", testcerts::RSA_PKCS1, vec!["rsa1.test"]),
        ("ec", testcerts::EC_SEC1, vec!["ec.test"]),
        ("ed", testcerts::ED25519, vec!["ed.test"]),
        ("wild", testcerts::EC_PKCS8, vec!["*.wild.test"]),
    ];
    let mut b = HostBuilder::new().tls("127.0.0.1:0", &main_crt, &main_key);
    let mut made = Vec::new();
    for (stem, kind, names) in &certs {
        let (c, k) = testcerts::make(&d, stem, kind, names);
        b = b.try_cert(&c, &k);
        made.push(c);
    }
    let srv = b.start();
    for (i, (stem, _, _)) in certs.iter().enumerate() {
        assert_eq!(
            rc_of(&srv.output(), &format!("CERT {}", made[i].display())),
            0,
            "{stem}"
        );
    }
    let port = srv.ports()[1];
    let fp_main = fingerprint(&main_crt);
    let cases = [
        (Some("rsa.test"), fp_main.clone()),
        (Some("rsa1.test"), fingerprint(&made[0])),
        (Some("ec.test"), fingerprint(&made[1])),
        (Some("ED.test"), fingerprint(&made[2])),
        (Some("a.wild.test"), fingerprint(&made[3])),
        (Some("a.b.wild.test"), fp_main.clone()),
        (Some("unknown.test"), fp_main.clone()),
        (None, fp_main.clone()),
    ];
    for version in ["1.2", "1.3"] {
        for (sni, want) in &cases {
            let mut c = Client::connect(port, *sni, Some(version));
            assert_eq!(
                &c.field("cert"),
                want,
                "certificate for {sni:?} over {version}"
            );
            assert_eq!(c.field("version"), format!("TLSv{version}"));
            assert_eq!(c.field("alpn"), "http/1.1");
            let (status, body, _) = c.get("/t/tls");
            assert_eq!(status, 200);
            let f = tls_lines(&body);
            assert_eq!(f["scheme"], "https", "{body}");
            assert_eq!(f["version"], format!("TLSv{version}"), "{body}");
            assert_eq!(f["alpn"], "http/1.1");
            let sni_seen = sni.map_or("(null)".to_string(), |s| s.to_ascii_lowercase());
            assert_eq!(f["sni"], sni_seen);
            assert_eq!(f["bogus"], "(null)");
            assert_eq!(f[""], "(null)");
            assert_eq!(f["null-what"], "(null)");
            assert_eq!(f["null-session"], "(null)");
            if version == "1.3" {
                // OpenSSL names TLS 1.3 suites by their IANA names.
                assert_eq!(f["cipher"], c.field("cipher"), "{body}");
            } else {
                assert!(f["cipher"].starts_with("TLS_ECDHE_"), "{body}");
            }
            // A second request on the same connection.
            assert_eq!(c.get("/t/hello").0, 200);
        }
    }
    // The cleartext listener of the same server.
    let r = srv.get("/t/tls");
    let f = tls_lines(&r.text());
    assert_eq!(f["scheme"], "http");
    assert_eq!(f["version"], "(null)");
}

#[test]
fn curl_verifies_the_certificate_and_gets_a_response() {
    let d = cert_dir("curl");
    let (srv, port, crt, _) = tls_host(&d, &["curl.test"], HostBuilder::new());
    let out = curl_https(port, "curl.test", &crt, "/t/hello");
    assert_eq!(out.code, Some(0), "{}\n{}", out.stderr, srv.diagnostics());
    assert_eq!(out.stdout, "Hello, world\n");
}

/// Request bodies over TLS, from two clients that are not rustls: pipelined uploads from Python
/// (OpenSSL), sent in pieces that do not line up with records or requests while the echoes
/// are read, with a Content-Length and chunked, from empty to 3 MiB (spooled to a file past
/// body_buffer_bytes); and curl posting a 3 MiB file. Every body must come back exactly.
#[test]
fn uploads_over_tls_arrive_whole_pipelined_chunked_and_large() {
    let d = cert_dir("uploads");
    let b = HostBuilder::new().set("max_body_bytes", "8388608");
    let (srv, port, crt, _) = tls_host(&d, &["up.test"], b);
    let sizes = [
        0,
        1,
        4095,
        16_384,
        16_397,
        65_535,
        65_537,
        300_000,
        3 << 20,
        17,
    ];
    for chunked in [false, true] {
        let mut c = Client::connect(port, Some("up.test"), None);
        let (ok, report) = c.posts(&sizes, chunked);
        assert_eq!(
            ok,
            sizes.len(),
            "chunked {chunked}: {report}\n{}",
            srv.diagnostics()
        );
        let (status, body, _) = c.get("/t/hello");
        assert_eq!((status, body.as_str()), (200, "Hello, world\n"));
    }

    let body: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (upload, echoed) = (d.join("upload.bin"), d.join("echoed.bin"));
    std::fs::write(&upload, &body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&crt)
        .args(["--resolve", &format!("up.test:{port}:127.0.0.1")])
        .arg("--data-binary")
        .arg(format!("@{}", upload.display()))
        .args(["-H", "Content-Type: application/octet-stream", "-o"])
        .arg(&echoed)
        .arg(format!("https://up.test:{port}/t/echo"))
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "curl: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        srv.diagnostics()
    );
    let got = std::fs::read(&echoed).unwrap();
    assert!(
        got == body,
        "curl's 3 MiB upload came back as {} bytes",
        got.len()
    );
}

/// Kills and reaps a child when dropped, so a failed assertion leaves nothing running.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_host_example_serves_https_reloads_on_sighup_and_stops() {
    let built = compile_examples();
    let (_, exe) = built
        .programs
        .iter()
        .find(|(src, _)| src.ends_with("tls_host.c"))
        .expect("c_examples/tls_host.c is built as a program");
    let d = cert_dir("tls_host");
    let (crt, key) = testcerts::make(&d, "site", testcerts::EC_SEC1, &["site.test"]);
    let (crt2, key2) = testcerts::make(&d, "other", testcerts::ED25519, &["other.test"]);
    let mut child = Command::new(exe)
        .arg("127.0.0.1:0")
        .args([&crt, &key, &crt2, &key2])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tls_host");
    let stdout = child.stdout.take().expect("stdout");
    let child = Reap(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || lines.recv_timeout(T).expect("a line from tls_host");
    let line = next();
    let port: u16 = line
        .strip_prefix("tls_host listening on 127.0.0.1:0, port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let r = curl_https(port, "site.test", &crt, "/hello");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with("Hello over TLSv1.3 (TLS_")
            && r.stdout.ends_with(", name site.test\n"),
        "{}",
        r.stdout
    );
    // The second pair, chosen by SNI.
    let r = curl_https(port, "other.test", &crt2, "/hello");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.ends_with(", name other.test\n"), "{}", r.stdout);
    let pid = child.0.id() as libc::pid_t;
    // SAFETY: plain kill(2) on our own child, not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert_eq!(next(), "tls_host: certificates reloaded");
    assert_eq!(curl_https(port, "site.test", &crt, "/hello").code, Some(0));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(next(), "tls_host: stopped");
    let mut child = child;
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "tls_host did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn responses_end_with_close_notify_and_streams_arrive_as_flushed() {
    let d = cert_dir("stream");
    let (srv, port, _, _) = tls_host(&d, &["s.test"], HostBuilder::new().set("pool_threads", "2"));
    let mut c = Client::connect(port, Some("s.test"), None);
    // A pool handler flushes a line, sleeps 300 ms, flushes the next, then the last chunk.
    let (status, body, line) = c.get("/t/pool/lines?n=3&ms=300");
    assert_eq!(status, 200);
    assert_eq!(body, "line 0\nline 1\nline 2\n");
    let arrivals: Vec<f64> = line
        .split("\"arrivals\": [")
        .nth(1)
        .unwrap()
        .split('[')
        .filter_map(|a| a.split(',').next()?.trim().parse().ok())
        .collect();
    let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
    assert!(
        last - first >= 450.0,
        "the first flush arrived {first} ms in, the end {last} ms: {line}"
    );
    // Large responses through every writer: the loop (EAGAIN), flush_async, a pool thread.
    for path in [
        "/t/loop-big?bytes=3000000",
        "/t/async-big?bytes=3000000",
        "/t/pool/big?bytes=3000000&reps=2",
    ] {
        let (status, body, _) = c.get(path);
        assert_eq!(status, 200, "{path}");
        let body = body.as_bytes().to_vec();
        assert!(body.len() >= 3_000_000, "{path}: {} bytes", body.len());
    }
    // Connection: close: the response, then close_notify.
    let (status, _, _) = c.get("/t/hello?close=1");
    assert_eq!(status, 200);
    assert!(c.eof_clean(), "the server ended without close_notify");
    let log = srv.must_log("close loop-big", |l| l.contains("close loop-big 0 "), T);
    assert!(log.contains("close async-big 0 "), "{log}");
}

#[test]
fn reload_reaches_new_handshakes_and_spares_established_ones() {
    let d = cert_dir("reload");
    let (mut srv, port, crt, key) = tls_host(&d, &["r.test"], HostBuilder::new().logger());
    let old = fingerprint(&crt);
    let mut kept = Client::connect(port, Some("r.test"), None);
    assert_eq!(kept.field("cert"), old);
    assert_eq!(kept.get("/t/hello").0, 200);
    // New files in place, then reload while the connection stays up.
    testcerts::make(&d, "main", testcerts::ED25519, &["r.test"]);
    let new = fingerprint(&crt);
    assert_ne!(new, old);
    srv.send_cmd("reload");
    assert_eq!(srv.expect_line("RELOADED ", T), "RELOADED 0");
    assert_eq!(
        kept.get("/t/hello").0,
        200,
        "the old connection still works"
    );
    let fresh = Client::connect(port, Some("r.test"), None);
    assert_eq!(fresh.field("cert"), new);
    // A broken key: the reload fails, is logged with the file name, and changes nothing.
    std::fs::write(
        &key,
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    srv.send_cmd("reload");
    assert_eq!(
        srv.expect_line("RELOADED ", T),
        format!("RELOADED {EBADMSG}")
    );
    let key_name = key.display().to_string();
    assert!(
        srv.output()
            .iter()
            .any(|l| l.starts_with("HLOG 0 reload_certificates") && l.contains(&key_name)),
        "{}",
        srv.diagnostics()
    );
    std::fs::remove_file(&crt).unwrap();
    srv.send_cmd("reload");
    assert_eq!(
        srv.expect_line("RELOADED ", T),
        format!("RELOADED {ENOENT}")
    );
    let after = Client::connect(port, Some("r.test"), None);
    assert_eq!(after.field("cert"), new);
    assert_eq!(kept.get("/t/hello").0, 200);
}

#[test]
fn every_documented_error_of_the_server_functions() {
    let d = cert_dir("errors");
    let (crt, key) = testcerts::make(&d, "good", testcerts::EC_SEC1, &["good.test"]);
    let (_, other_key) = testcerts::make(&d, "other", testcerts::EC_SEC1, &["other.test"]);
    let missing = d.join("missing.pem");
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, b"not a certificate\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let mut srv = HostBuilder::new()
        .try_tls("127.0.0.1:0", &missing, &key)
        .try_tls("127.0.0.2:0", &crt, &missing)
        .try_tls("127.0.0.3:0", &garbage, &key)
        .try_tls("127.0.0.4:0", &crt, &garbage)
        .try_tls("127.0.0.5:0", &crt, &other_key)
        .try_tls("no-address", &crt, &key)
        .try_tls(&taken_addr, &crt, &key)
        .try_tls("127.0.0.1:0", &crt, &key)
        .try_cert(&missing, &key)
        .try_cert(&garbage, &key)
        .try_cert(&crt, &other_key)
        .logger()
        .start();
    let out = srv.output();
    assert_eq!(rc_of(&out, "LISTEN_TLS 127.0.0.1:0 "), ENOENT);
    assert_eq!(rc_of(&out, "LISTEN_TLS 127.0.0.2:0 "), ENOENT);
    assert_eq!(rc_of(&out, "LISTEN_TLS 127.0.0.3:0 "), EBADMSG);
    assert_eq!(rc_of(&out, "LISTEN_TLS 127.0.0.4:0 "), EBADMSG);
    assert_eq!(rc_of(&out, "LISTEN_TLS 127.0.0.5:0 "), EBADMSG);
    assert_eq!(rc_of(&out, "LISTEN_TLS no-address "), EINVAL);
    assert_eq!(
        rc_of(&out, &format!("LISTEN_TLS {taken_addr} ")),
        EADDRINUSE
    );
    let certs: Vec<i32> = out
        .iter()
        .filter(|l| l.starts_with("CERT "))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(certs, vec![ENOENT, EBADMSG, EBADMSG]);
    // Every refusal is logged with the file it was about.
    for f in [&missing, &garbage, &other_key] {
        let name = f.display().to_string();
        assert!(
            out.iter()
                .any(|l| l.starts_with("HLOG 0 ") && l.contains(&name)),
            "nothing logged about {name}:\n{out:?}"
        );
    }
    // Only the last listen_tls bound a listener, after the default cleartext one.
    assert_eq!(srv.ports().len(), 2, "{out:?}");
    // After start: listen_tls is EBUSY; add_certificate still works (and fails as before).
    srv.send_cmd(&format!(
        "tls 127.0.0.1:0,{},{}",
        crt.display(),
        key.display()
    ));
    assert_eq!(
        srv.expect_line("LISTEN_TLS ", T),
        "LISTEN_TLS 127.0.0.1:0 16"
    );
    let _ = EBUSY;
    srv.send_cmd(&format!("cert {},{}", garbage.display(), key.display()));
    assert!(srv
        .expect_line("CERT ", T)
        .ends_with(&format!(" {EBADMSG}")));
    let (c2, k2) = testcerts::make(&d, "late", testcerts::ED25519, &["late.test"]);
    srv.send_cmd(&format!("cert {},{}", c2.display(), k2.display()));
    assert!(srv.expect_line("CERT ", T).ends_with(" 0"));
    let late = Client::connect(srv.ports()[1], Some("late.test"), None);
    assert_eq!(late.field("cert"), fingerprint(&c2));
    // NULL arguments, through the library itself.
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (a, cp, kp) = (
        c("127.0.0.1:0"),
        c(crt.to_str().unwrap()),
        c(key.to_str().unwrap()),
    );
    let null = std::ptr::null();
    // SAFETY: NULL or NUL-terminated strings, and a server from httpsrv_server_new.
    unsafe {
        let s = httpsrv::httpsrv_server_new();
        assert_eq!(
            httpsrv::httpsrv_server_listen_tls(
                std::ptr::null_mut(),
                a.as_ptr(),
                cp.as_ptr(),
                kp.as_ptr()
            ),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_listen_tls(s, null, cp.as_ptr(), kp.as_ptr()),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_listen_tls(s, a.as_ptr(), null, kp.as_ptr()),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_listen_tls(s, a.as_ptr(), cp.as_ptr(), null),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_add_certificate(std::ptr::null_mut(), cp.as_ptr(), kp.as_ptr()),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_add_certificate(s, null, kp.as_ptr()),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_add_certificate(s, cp.as_ptr(), null),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_reload_certificates(std::ptr::null_mut()),
            EINVAL
        );
        assert_eq!(
            httpsrv::httpsrv_server_reload_certificates(s),
            0,
            "nothing to reload"
        );
        assert!(httpsrv::httpsrv_request_scheme(std::ptr::null_mut()).is_null());
        assert!(
            httpsrv::httpsrv_request_tls(std::ptr::null_mut(), c("version").as_ptr()).is_null()
        );
        httpsrv::httpsrv_server_free(s);
    }
    drop(taken);
}

/// Waits for the server to close `s`; returns how long it took and what it sent.
fn closed_after(s: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (Some(start.elapsed()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (Some(start.elapsed()), got),
        }
    }
    (None, got)
}

fn client_hello(name: &str) -> Vec<u8> {
    let out = Command::new("python3")
        .arg(client_script())
        .args(["hello", name])
        .output()
        .expect("python3");
    let hex = json_field(&String::from_utf8_lossy(&out.stdout), "hello").expect("a hello");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn handshake_timeout_closes_but_a_finished_handshake_gets_the_header_timeout() {
    let d = cert_dir("timeout");
    let b = HostBuilder::new()
        .set("tls_handshake_timeout_ms", "600")
        .set("header_timeout_ms", "5000");
    let (srv, port, _, _) = tls_host(&d, &["t.test"], b);
    let hello = client_hello("t.test");
    // Silent, and a ClientHello cut short: both closed at the handshake timeout.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut cut = TcpStream::connect(("127.0.0.1", port)).unwrap();
    cut.write_all(&hello[..hello.len() / 2]).unwrap();
    for (what, s) in [("truncated hello", &mut cut), ("silent", &mut silent)] {
        let (closed, sent) = closed_after(s, Duration::from_secs(5));
        assert!(closed.is_some(), "{what}: not closed");
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(400) && after < Duration::from_secs(3),
            "{what}: closed after {after:?}"
        );
        assert!(!sent.starts_with(b"HTTP/"), "{what}: {sent:?}");
    }
    // A finished handshake waits for its request beyond the handshake timeout.
    let mut c = Client::connect(port, Some("t.test"), None);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(c.get("/t/hello").0, 200, "{}", srv.diagnostics());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn hostile_handshakes_cost_bounded_memory_and_never_another_clients_service() {
    let d = cert_dir("hostile");
    let b = HostBuilder::new().set("tls_handshake_timeout_ms", "20000");
    let (srv, port, _, _) = tls_host(&d, &["h.test"], b);
    // Warm up: one full exchange, so lazily made state is there before measuring.
    assert_eq!(
        Client::connect(port, Some("h.test"), None)
            .get("/t/hello")
            .0,
        200
    );
    // Plain HTTP and garbage: closed, with no HTTP answer.
    for bytes in [
        b"GET /t/hello HTTP/1.1\r\nHost: h.test\r\n\r\n".to_vec(),
        (0..3000u32).map(|i| (i * 7919 % 256) as u8).collect(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&bytes).unwrap();
        let (after, sent) = closed_after(&mut s, Duration::from_secs(5));
        assert!(after.is_some(), "not closed");
        assert!(
            sent.is_empty() || sent[0] == 0x15,
            "an alert at most: {sent:?}"
        );
    }
    // 500 half-open handshakes: a whole ClientHello each, and no reply to the server's flight.
    let hello = client_hello("h.test");
    let before = rss_kib(srv.pid());
    let mut open = Vec::new();
    for _ in 0..500 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&hello).unwrap();
        open.push(s);
    }
    // Meanwhile another client is served.
    let started = Instant::now();
    let mut c = Client::connect(port, Some("h.test"), None);
    assert_eq!(c.get("/t/hello").0, 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Every half-open handshake got the server's flight (so the server did its work).
    for s in open.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        assert_eq!(b[0], 0x16, "a handshake record");
    }
    let after = rss_kib(srv.pid());
    let per_conn = after.saturating_sub(before) as f64 / 500.0;
    eprintln!("500 half-open handshakes: RSS {before} -> {after} KiB, {per_conn:.1} KiB each");
    assert!(per_conn < 40.0, "{per_conn:.1} KiB per half-open handshake");
    drop(open);
    // None of these connections carried a request: no session, no on_close.
    let log = srv.log();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("close ")).count(),
        2,
        "{log}"
    );
}

#[test]
fn renegotiation_is_refused_and_the_server_goes_on() {
    let d = cert_dir("reneg");
    let (srv, port, _, _) = tls_host(&d, &["n.test"], HostBuilder::new());
    // openssl s_client renegotiates a TLS 1.2 connection when a line reads "R".
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-tls1_2", "-servername", "n.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /t/hello HTTP/1.1\r\nHost: n.test\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"R\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let deadline = Instant::now() + T;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "s_client did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Hello, world"), "{text}");
    assert!(text.contains("RENEGOTIATING"), "{text}");
    assert!(
        text.contains("no renegotiation"),
        "the server refuses it: {text}"
    );
    // Other clients are served as before.
    let mut c = Client::connect(port, Some("n.test"), Some("1.2"));
    assert_eq!(c.get("/t/hello").0, 200, "{}", srv.diagnostics());
}
