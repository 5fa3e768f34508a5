//! Fuzzes `httpsrv::proto::h1::parse::parse_head`.
//!
//! The first input byte picks the limits; the rest is the bytes a client sent. Besides "never
//! panics", every run checks:
//! - an error is one of the statuses the parser may give (400, 414, 431, 501, 505);
//! - a parsed head is self-consistent: `n` is within the input and equals `head_len()`, the
//!   method and field names are tokens, the target is visible ASCII, values hold no CR/LF/NUL,
//!   the C strings are the same bytes NUL-terminated, the framing agrees with the fields, an
//!   HTTP/1.1 request has exactly one Host, every line of the head ends with CRLF (never a bare
//!   LF), and the request's host is the Host field's value when there is one;
//! - parsing is incremental: feeding growing prefixes (as a connection reading one byte at a time
//!   does) gives "incomplete" until the first decisive prefix, and that prefix's verdict equals the
//!   verdict on the whole input; bytes after a complete head never change it;
//! - an error is final: more bytes after a refused input never make it acceptable.
#![no_main]

use std::ffi::CStr;

use httpsrv::http::request::{BodyFraming, HttpError, Request};
use httpsrv::proto::h1::parse::{parse_head, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: [Limits; 6] = [
    Limits {
        max_header_bytes: 16384,
        max_headers: 100,
    },
    Limits {
        max_header_bytes: 256,
        max_headers: 100,
    },
    Limits {
        max_header_bytes: 1024,
        max_headers: 3,
    },
    Limits {
        max_header_bytes: 64,
        max_headers: 32,
    },
    Limits {
        max_header_bytes: 16384,
        max_headers: 33,
    },
    Limits {
        max_header_bytes: 300,
        max_headers: 0,
    },
];

/// Prefixes are all re-parsed for inputs up to this size (quadratic work).
const FULL_PREFIX_SCAN: usize = 1024;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn c_bytes<'a>(p: *const std::ffi::c_char) -> &'a [u8] {
    assert!(!p.is_null());
    // SAFETY: the parser hands out NUL-terminated strings that live as long as the Request.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Incomplete,
    Head(usize),
    Error(u16),
}

fn verdict(r: &Result<Option<(Request, usize)>, HttpError>) -> Verdict {
    match r {
        Ok(None) => Verdict::Incomplete,
        Ok(Some((_, n))) => Verdict::Head(*n),
        Err(e) => Verdict::Error(e.status),
    }
}

fn check_request(req: &Request, n: usize, buf: &[u8]) {
    assert!(n > 0 && n <= buf.len(), "consumed {n} of {}", buf.len());
    assert_eq!(req.head_len(), n);
    assert!(buf[..n].ends_with(b"\r\n"), "a head ends with its empty line");
    assert!(
        buf[..n]
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && buf[i - 1] == b'\r')),
        "a bare LF in the head"
    );
    assert!(
        is_token(req.method().as_bytes()),
        "method {:?}",
        req.method()
    );
    let target = req.target().as_bytes();
    assert!(
        !target.is_empty() && target.iter().all(|b| (0x21..=0x7e).contains(b)),
        "target {target:?}"
    );
    assert!(matches!(req.version(), 10 | 11));
    assert_eq!(c_bytes(req.method_c()), req.method().as_bytes());
    assert_eq!(c_bytes(req.target_c()), target);
    assert_eq!(c_bytes(req.path_c()), req.path().as_bytes());
    assert_eq!(c_bytes(req.query_c()), req.query().as_bytes());
    let (mut hosts, mut cl, mut te) = (0, 0, 0);
    for i in 0..req.header_count() {
        let (name, value) = req.header_at(i).expect("index below header_count");
        assert!(is_token(name), "field name {name:?}");
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "value {value:?}"
        );
        assert!(
            !value.starts_with(b" ") && !value.ends_with(b" "),
            "untrimmed value {value:?}"
        );
        let (cn, cv) = req.header_at_c(i).expect("index below header_count");
        assert_eq!((c_bytes(cn), c_bytes(cv)), (name, value));
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            cl += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te += 1;
        }
    }
    assert!(req.header_at(req.header_count()).is_none());
    assert!(hosts <= 1, "{hosts} Host fields");
    // The authority of an absolute-form target replaces Host's value; either is the host.
    if let Some(field) = req.header(b"host") {
        assert_eq!(req.host(), Some(field), "the Host field is not the host");
    }
    if let Some(host) = req.host() {
        assert_eq!(c_bytes(req.host_c().expect("a host has a C string")), host);
    }
    if req.version() == 11 {
        assert_eq!(hosts, 1, "HTTP/1.1 without exactly one Host");
    }
    match req.body_framing() {
        BodyFraming::None => assert_eq!((cl, te), (0, 0)),
        BodyFraming::Length(_) => assert_eq!((cl > 0, te), (true, 0)),
        BodyFraming::Chunked => {
            assert_eq!((cl, te > 0, req.version()), (0, true, 11));
            let last = req.header(b"transfer-encoding").unwrap_or_default();
            assert!(last.to_ascii_lowercase().ends_with(b"chunked") || te > 1);
        }
    }
    if req.is_head() {
        assert_eq!(req.method(), "HEAD");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    let limits = LIMITS[usize::from(sel) % LIMITS.len()];
    let whole = parse_head(buf, &limits);
    let v = verdict(&whole);
    match &whole {
        Ok(Some((req, n))) => check_request(req, *n, buf),
        Ok(None) => {}
        Err(e) => {
            assert!(
                matches!(e.status, 400 | 414 | 431 | 501 | 505),
                "status {}",
                e.status
            );
            assert!(!e.reason.is_empty());
        }
    }

    // Incremental: the first prefix with a verdict decides, and agrees with the whole input.
    if buf.len() <= FULL_PREFIX_SCAN {
        let mut first = Verdict::Incomplete;
        for end in 0..=buf.len() {
            let r = verdict(&parse_head(&buf[..end], &limits));
            if r != Verdict::Incomplete {
                first = r;
                break;
            }
        }
        assert_eq!(
            first, v,
            "first decisive prefix disagrees with the whole input"
        );
    }

    match v {
        Verdict::Head(n) => {
            // What follows the head (a body, the next request) never changes it.
            let r = parse_head(&buf[..n], &limits);
            assert_eq!(verdict(&r), Verdict::Head(n));
        }
        Verdict::Error(status) => {
            // More bytes never cure a refused input.
            let mut more = buf.to_vec();
            more.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
            match parse_head(&more, &limits) {
                Err(_) => {}
                Ok(r) => panic!(
                    "refused with {status}, accepted with more bytes: {:?}",
                    r.map(|(_, n)| n)
                ),
            }
        }
        Verdict::Incomplete => {}
    }
});
