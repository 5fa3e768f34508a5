//! The C API's error contract (API.md "Conventions", "Handles", "Error codes"), checked from
//! inside a module (tests/c/test_module.c) and through the C host.

mod common;

use common::*;
use std::fs;
use std::thread;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[test]
fn errors_route_bad_arguments() {
    let srv = Server::start();
    let r = srv.get("/t/errors");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.header("X-Errors"), Some("phase1"));
    // HTAB and obs-text in a value are accepted and sent as they are.
    let head = &r.raw[..r.head_len];
    for field in [
        &b"\r\nX-Tab: a\tb\tc\r\n"[..],
        b"\r\nX-Obs: caf\xc3\xa9 \xe2\x82\xac\r\n",
    ] {
        assert!(
            head.windows(field.len()).any(|w| w == field),
            "{:?} not in {:?}",
            String::from_utf8_lossy(field),
            String::from_utf8_lossy(head)
        );
    }
    let body = r.text();
    assert_report("/t/errors", &body);
    assert!(body.lines().count() > 100, "too few checks:\n{body}");
    // the checks made after the final flush went to the event log
    let log = srv.must_log("errors-final END", |l| l.contains("errors-final END"), T);
    let fin: Vec<&str> = log_lines(&log, "errors-final ");
    let fin = fin
        .iter()
        .map(|l| &l["errors-final ".len()..])
        .collect::<Vec<_>>()
        .join("\n");
    assert_report("/t/errors after the final flush", &fin);
    assert!(
        !log.contains("FAIL done called"),
        "a done callback ran for a rejected flush_async:\n{log}"
    );
    // the response is complete and its close reason is 0
    let log = srv.must_log("close errors", |l| l.contains("close errors "), T);
    assert!(
        log.lines().any(|l| l.starts_with("close errors 0 ")),
        "{log}"
    );
}

#[test]
fn pool_errors_route() {
    let srv = Server::start();
    let r = srv.get("/t/pool/errors");
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(body.starts_with("pool-errors\n"), "{body}");
    assert_report("/t/pool/errors", &body);
}

#[test]
fn errors_route_over_http10_and_keepalive_connection() {
    // the same checks on the second request of a keep-alive connection
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/hello"));
    c.read_response(false);
    c.send_str(&get_req("/t/errors"));
    let r = c.read_response(false);
    assert_report("/t/errors (2nd request)", &r.text());
}

fn wait_closed(srv: &Server, tag: &str) {
    let pat = format!("close {tag} 0 ");
    srv.must_log(&pat, |l| l.contains(&pat), T);
    // on_close has logged; give it time to return
    thread::sleep(Duration::from_millis(100));
}

#[test]
fn stale_handle_from_other_connection() {
    let srv = Server::start();
    let r = srv.get("/t/stale/keep");
    assert_eq!(r.body, b"kept\n");
    wait_closed(&srv, "stale-keep");
    let r = srv.get("/t/stale/check?thread=1");
    assert_eq!(
        r.status, 200,
        "stale checks crashed the request? {:?}",
        r.raw
    );
    let body = r.text();
    assert_report("/t/stale/check", &body);
    assert!(body.contains("thread_append_again=ESTALE/ESTALE"), "{body}");
    // the host survived and nothing ran for the stale handle
    let log = srv.log();
    assert!(!log.contains("FAIL"), "{log}");
}

#[test]
fn stale_handle_on_same_keepalive_connection() {
    // the new session on the same connection must not be reachable through the old handle
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/stale/keep"));
    assert_eq!(c.read_response(false).body, b"kept\n");
    wait_closed(&srv, "stale-keep");
    c.send_str(&get_req("/t/stale/check"));
    let r = c.read_response(false);
    assert_report("/t/stale/check (same connection)", &r.text());
    // the live session was not affected by the calls on the stale handle
    assert_eq!(r.status, 200);
    assert!(
        !r.has("X-A"),
        "a call on the stale handle changed the live response:\n{}",
        r.head_text()
    );
    c.send_str(&get_req("/t/hello"));
    assert_eq!(c.read_response(false).body, b"Hello, world\n");
}

#[test]
fn stale_handle_after_many_sessions() {
    let srv = Server::start();
    srv.get("/t/stale/keep");
    wait_closed(&srv, "stale-keep");
    // churn through sessions so slots get reused
    let mut c = Conn::open(srv.port());
    for _ in 0..50 {
        c.send_str(&get_req("/t/hello"));
        c.read_response(false);
    }
    let r = srv.get("/t/stale/check");
    assert_report("/t/stale/check after churn", &r.text());
}

#[test]
fn emsgsize_past_handler_content_length() {
    let srv = Server::start();
    let raw = request(srv.port(), get_req("/t/emsgsize").as_bytes());
    let r = parse_response(&raw, false, true)
        .unwrap()
        .expect("complete response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("5"), "{}", r.head_text());
    assert_eq!(r.body, b"12345");
    assert_eq!(
        raw.len(),
        r.raw.len(),
        "bytes past Content-Length: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let log = srv.must_log("emsgsize END", |l| l.contains("emsgsize END"), T);
    let rep: Vec<&str> = log_lines(&log, "emsgsize ");
    let rep = rep
        .iter()
        .map(|l| &l["emsgsize ".len()..])
        .collect::<Vec<_>>()
        .join("\n");
    assert_report("/t/emsgsize", &rep);
}

#[test]
fn enobufs_past_max_pending_bytes() {
    let srv = HostBuilder::new().set("max_pending_bytes", "65536").start();
    let r = srv.get("/t/enobufs?max=65536");
    assert_eq!(r.status, 200);
    assert_report("/t/enobufs", &r.text());
}

#[test]
fn session_data() {
    let srv = Server::start();
    let r = srv.get("/t/data");
    assert_report("/t/data", &r.text());
}

#[test]
fn abort_ends_session_with_ecanceled() {
    let srv = Server::start();
    let mut c = Conn::open(srv.port());
    c.send_str(&get_req("/t/abort"));
    assert!(c.read_to_eof(T), "aborted connection not closed");
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(
        !text.contains("0\r\n\r\n"),
        "an aborted response must not look complete: {text:?}"
    );
    assert!(!text.contains("after"), "{text:?}");
    let log = srv.must_log("close abort", |l| l.contains("close abort "), T);
    assert!(
        log.lines().any(|l| l.starts_with("close abort ECANCELED ")),
        "{log}"
    );
    let line = log_lines(&log, "abort flush=")[0];
    let f = log_fields(line);
    assert_eq!(f["abort"], "0", "{line}");
    assert_eq!(f["append_after"], "ECANCELED", "{line}");
    assert_eq!(f["flush_after"], "ECANCELED", "{line}");
    assert_eq!(f["abort_again"], "ECANCELED", "{line}");
    assert_eq!(
        f["method_after"], "GET",
        "the request stays readable while the handler runs: {line}"
    );
    // the server still serves
    assert_eq!(srv.get("/t/hello").status, 200);
}

#[test]
fn post_runs_task_on_loop_thread() {
    let srv = Server::start();
    let r = srv.get("/t/post");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"posted\n");
    let log = srv.must_log(
        "post-task",
        |l| l.contains("post-task") && l.contains("close post "),
        T,
    );
    let f = log_fields(log_lines(&log, "post-task")[0]);
    assert_eq!(f["same_thread"], "1", "{log}");
    assert_eq!(f["handle_same"], "1", "{log}");
    assert_eq!(f["append"], "0", "{log}");
    assert_eq!(f["flush"], "0", "{log}");
    assert!(log.contains("post rc=0"), "{log}");
    assert!(log.lines().any(|l| l.starts_with("close post 0 ")), "{log}");
}

#[test]
fn close_reason_0_and_bytes_sent_for_complete_response() {
    let srv = Server::start();
    let raw = request(srv.port(), get_req("/t/hello").as_bytes());
    let log = srv.must_log("close hello", |l| l.contains("close hello "), T);
    let line = log_lines(&log, "close hello ")[0];
    assert_eq!(
        line,
        format!("close hello 0 {}", raw.len()),
        "bytes_sent must count head and body"
    );
}

// ---- module loading and server options through the host

fn host_fails(b: HostBuilder) -> Vec<String> {
    let mut s = b.spawn();
    let st = s.wait_exit(T).expect("host did not exit");
    assert!(!st.success(), "host should fail\n{}", s.diagnostics());
    let out = s.output();
    assert_eq!(out.last().map(|s| s.as_str()), Some("FREED"), "{out:?}");
    out
}

fn module_line(out: &[String], path: &str) -> i32 {
    let pre = format!("MODULE {path} ");
    out.iter()
        .find_map(|l| l.strip_prefix(&pre).map(|r| r.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {pre:?} line in {out:?}"))
}

#[test]
fn module_load_enoent() {
    let p = "/nonexistent/dir/no_module.so";
    let out = host_fails(
        HostBuilder::new()
            .no_default_module()
            .module(std::path::Path::new(p), None),
    );
    assert_eq!(module_line(&out, p), libc::ENOENT, "{out:?}");
}

#[test]
fn module_load_without_abi_symbol_enoexec() {
    let m = test_module_no_abi();
    let out = host_fails(HostBuilder::new().no_default_module().module(&m, None));
    assert_eq!(
        module_line(&out, &m.display().to_string()),
        libc::ENOEXEC,
        "{out:?}"
    );
}

#[test]
fn module_load_abi_mismatch_enoexec() {
    let m = test_module_bad_abi();
    let out = host_fails(HostBuilder::new().no_default_module().module(&m, None));
    assert_eq!(
        module_line(&out, &m.display().to_string()),
        libc::ENOEXEC,
        "{out:?}"
    );
}

#[test]
fn module_load_not_a_shared_object_enoexec() {
    let p = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("not_a_module_{}.so", std::process::id()));
    fs::write(&p, b"this is not an ELF file\n").unwrap();
    let out = host_fails(HostBuilder::new().no_default_module().module(&p, None));
    let _ = fs::remove_file(&p);
    assert_eq!(
        module_line(&out, &p.display().to_string()),
        libc::ENOEXEC,
        "{out:?}"
    );
}

#[test]
fn module_init_result_is_returned() {
    let m = test_module();
    let out = host_fails(
        HostBuilder::new()
            .no_default_module()
            .module(&m, Some("fail=42")),
    );
    assert_eq!(module_line(&out, &m.display().to_string()), 42, "{out:?}");
}

#[test]
fn module_loads_and_reports_0() {
    let srv = Server::start();
    let out = srv.output();
    assert_eq!(module_line(&out, &test_module().display().to_string()), 0);
}

#[test]
fn server_set_errors() {
    let srv = HostBuilder::new()
        .try_set("no_such_option", "1")
        .try_set("threads", "abc")
        .try_set("send_timeout_ms", "-5")
        .try_set("http10_buffering", "maybe")
        .try_set("compression_level", "12")
        .try_set("threads", "2")
        .try_set("compression", "off")
        .start();
    let out = srv.output();
    let einval = libc::EINVAL.to_string();
    for (k, v, want) in [
        ("no_such_option", "1", einval.as_str()),
        ("threads", "abc", einval.as_str()),
        ("send_timeout_ms", "-5", einval.as_str()),
        ("http10_buffering", "maybe", einval.as_str()),
        ("compression_level", "12", einval.as_str()),
        ("threads", "2", "0"),
        ("compression", "off", "0"),
    ] {
        let l = format!("SET {k} {v} {want}");
        assert!(out.contains(&l), "expected {l:?} in {out:?}");
    }
}

#[test]
fn listen_errors() {
    // a port in use
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", busy.local_addr().unwrap().port());
    let out = host_fails(HostBuilder::new().listen(&addr));
    assert!(
        out.contains(&format!("LISTEN {addr} {}", libc::EADDRINUSE)),
        "{out:?}"
    );
    // garbage
    let out = host_fails(HostBuilder::new().listen("garbage"));
    assert!(
        out.contains(&format!("LISTEN garbage {}", libc::EINVAL)),
        "{out:?}"
    );
    drop(busy);
}

#[test]
fn host_port_command_bad_index() {
    let mut srv = Server::start();
    srv.send_cmd("port 0");
    let l = srv.expect_line("PORTOF 0 ", T);
    assert_eq!(l, format!("PORTOF 0 {}", srv.port()));
    srv.send_cmd("port 7");
    assert_eq!(srv.expect_line("PORTOF 7 ", T), "PORTOF 7 -1");
}

#[test]
fn logger_receives_library_errors() {
    // test_module's init makes bad server_set / listen calls; their reasons are logged
    let srv = HostBuilder::new().logger().start();
    let out = srv.output();
    assert!(out.contains(&"LOGGER 0".to_string()), "{out:?}");
    let hlog: Vec<&String> = out.iter().filter(|l| l.starts_with("HLOG ")).collect();
    assert!(
        hlog.iter()
            .any(|l| l.starts_with("HLOG 0 ") && l.contains("no_such_option")),
        "the unknown option was not logged at level 0 through the logger: {out:?}"
    );
    let err = srv.stderr();
    assert!(
        !err.contains("no_such_option"),
        "logged to stderr although a logger is set:\n{err}"
    );
    // a failing handler is logged too
    assert_eq!(srv.get("/t/bad-return").status, 500);
    let deadline = std::time::Instant::now() + T;
    while !srv
        .output()
        .iter()
        .any(|l| l.starts_with("HLOG ") && l.contains("bad-return"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "handler failure not logged: {:?}",
            srv.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// `httpsrv_request_host` and the `Host` field (RFC 9112 section 3.2.2): the authority of an
/// absolute-form target replaces Host; `httpsrv_request_path` is the target's path.
#[test]
fn request_host_from_absolute_form_target() {
    let srv = Server::start();
    // (request head, host, Host field, path, query)
    let cases = [
        (
            "GET http://example.test/t/headers HTTP/1.1\r\nHost: other\r\n\r\n",
            "example.test",
            "example.test",
            "/t/headers",
            "",
        ),
        (
            "GET HTTP://example.test:8080/t/headers?a=1 HTTP/1.1\r\nX-A: 1\r\nHost: other\r\n\r\n",
            "example.test:8080",
            "example.test:8080",
            "/t/headers",
            "a=1",
        ),
        (
            "GET http://example.test/t/headers HTTP/1.0\r\n\r\n",
            "example.test",
            "(null)",
            "/t/headers",
            "",
        ),
        (
            "GET /t/headers?b HTTP/1.1\r\nHost: plain.test\r\n\r\n",
            "plain.test",
            "plain.test",
            "/t/headers",
            "b",
        ),
        (
            "GET /t/headers HTTP/1.1\r\nHost:\r\n\r\n",
            "",
            "",
            "/t/headers",
            "",
        ),
        (
            "GET /t/headers HTTP/1.0\r\n\r\n",
            "(null)",
            "(null)",
            "/t/headers",
            "",
        ),
    ];
    for (head, host, field, path, query) in cases {
        let mut c = Conn::open(srv.port());
        c.send_str(head);
        let r = c.read_response(false);
        let t = r.text();
        assert_eq!(r.status, 200, "{head:?}: {t}");
        for want in [
            format!("\nhost {host}\n"),
            format!("\nhost-field {field}\n"),
            format!("\npath {path}\n"),
            format!("\nquery {query}\n"),
        ] {
            assert!(t.contains(&want), "{head:?}: {want:?} not in\n{t}");
        }
        // The field list shows the replaced value too.
        if field != "(null)" {
            assert!(
                t.lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("h host: {field} (0)"))),
                "{head:?}: {t}"
            );
            assert!(!t.contains("other"), "{head:?}: {t}");
        }
    }
}
