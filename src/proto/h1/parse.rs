//! HTTP/1.1 request head parsing (RFC 9112 sections 2, 3, 5 and 6), stricter than nginx on
//! purpose: anything ambiguous about where a message ends is refused, because a front proxy that
//! reads it differently would let a client smuggle a second request past it.
//!
//! httparse tokenizes the head (request line, field lines) and checks the byte classes it shares
//! with RFC 9112; `parse_head` adds the rules httparse leaves out (see its documentation) and
//! fills a `crate::http::request::Request` through its `RequestBuilder`.

use std::mem::MaybeUninit;

use crate::http::request::{BodyFraming, HttpError, Meta, Request, RequestBuilder};
use crate::http::{is_token, list_items, parse_decimal, trim_ows};

/// Size limits of a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest head, request line and final empty line included: 414 when the request line does
    /// not fit, else 431.
    pub max_header_bytes: usize,
    /// Most header fields: 431 beyond.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

const fn bad(reason: &'static str) -> HttpError {
    HttpError::new(400, reason)
}

/// Empty lines tolerated before a request line (RFC 9112 section 2.2 allows "at least one"); some
/// clients send a stray CRLF after a body. More than this is not an HTTP client.
const MAX_LEADING_EMPTY_LINES: usize = 8;

/// Byte classes of the checks httparse leaves to us, looked up in one table (tokens use
/// `http::is_token`).
/// VCHAR, the bytes of a request-target.
const VISIBLE: u8 = 2;
/// Bytes of uri-host [":" port]: reg-name, IP literals in brackets, percent-encoding.
const HOST: u8 = 4;

static CLASS: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b >= 0x21 && b <= 0x7e {
            c |= VISIBLE;
        }
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
        {
            c |= HOST;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// Whether every byte of `s` is in `class` (one bit). Without an early exit (a refusal is
/// rare): the branchless loop takes about 40% fewer instructions than `all` for a Host value
/// (callgrind).
fn all_in(s: &[u8], class: u8) -> bool {
    s.iter().fold(class, |acc, &b| acc & CLASS[usize::from(b)]) != 0
}

fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// A line without its LF, and without the CR before it if there is one. Any other CR is left in
/// place for the byte checks to refuse.
fn strip_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

/// Header slots on the stack: a head with more fields than this (rare: browsers send 10 to 20)
/// is tokenized a second time into slots on the heap, up to `Limits::max_headers`.
const STACK_HEADERS: usize = 32;

type Slot<'b> = MaybeUninit<httparse::Header<'b>>;

/// A head as httparse tokenized it: request line split, field lines split at the colon, values
/// trimmed of SP/HTAB, every byte class of RFC 9112 checked except those noted in `parse_head`.
struct Tokens<'b, 'h> {
    method: &'b [u8],
    target: &'b [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor: u8,
    fields: &'h [httparse::Header<'b>],
    /// Bytes through the final empty line.
    len: usize,
}

/// Runs httparse over `input` (which starts at the request line) with the strict default
/// configuration: single SP in the request line, no obs-fold, no whitespace before a colon or
/// before the first field. `Err` carries whether the method was complete, for the log text.
fn tokenize<'b, 'h>(
    input: &'b [u8],
    slots: &'h mut [Slot<'b>],
) -> Result<Option<Tokens<'b, 'h>>, (httparse::Error, bool)> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(input, slots) {
        Ok(httparse::Status::Complete(len)) => match (req.method, req.path, req.version) {
            (Some(method), Some(target), Some(minor)) => Ok(Some(Tokens {
                method: method.as_bytes(),
                target: target.as_bytes(),
                minor,
                fields: req.headers,
                len,
            })),
            // httparse sets all three before it reports a complete head.
            _ => Err((httparse::Error::Token, true)),
        },
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err((e, req.method.is_some())),
    }
}

/// obs-text in the target of a complete request line (it ends at the first LF of `input`), which
/// httparse lets through: checked as soon as the line is complete, like the other request-line
/// rules, rather than when the head is.
fn target_fault(input: &[u8]) -> Option<HttpError> {
    let lf = find_byte(input, b'\n')?;
    // The method and version are ASCII already, so any other byte is in the target.
    (!input[..lf].is_ascii()).then_some(bad("invalid byte in request target"))
}

/// For a head httparse needs more bytes of: Ok(None), or an error that more bytes cannot cure
/// (the limit: 414 while the request line is unfinished, 431 after).
fn incomplete(input: &[u8], buf_len: usize, max: usize) -> Result<Option<usize>, HttpError> {
    if let Some(e) = target_fault(input) {
        Err(e)
    } else if buf_len < max {
        Ok(None)
    } else if find_byte(input, b'\n').is_none() {
        Err(HttpError::new(414, "request line too long"))
    } else {
        Err(HttpError::new(431, "request head too large"))
    }
}

/// Parses one request head from the start of `buf`.
/// Ok(None): incomplete so far and still within limits (caller reads more and calls again with the longer buffer).
/// Ok(Some((req, n))): `n` bytes consumed (the head); the body, if any, follows in buf[n..].
///
/// httparse does the tokenizing and the byte-class checks it shares with RFC 9112 (token method
/// and field names, single SP separators, target bytes, field-value bytes without CTLs or DEL,
/// CRLF or bare LF line ends, no bare CR, no obs-fold, no whitespace before a colon, the field
/// count). On top of it: CRLF line ends only (a bare LF, which httparse takes, is a 400, before
/// the request line too), the size limit on incomplete heads (414/431), at most
/// `MAX_LEADING_EMPTY_LINES` leading empty lines, 505 for a well-formed HTTP version other than
/// 1.0 and 1.1 (httparse only tells "not 1.0 or 1.1"), targets of visible ASCII only (httparse
/// lets through obs-text) in a form that suits the method, exactly one valid Host on HTTP/1.1 and
/// at most one on 1.0, the authority of an absolute-form target in place of Host, and the
/// Content-Length/Transfer-Encoding framing rules.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    let mut req = Request::default();
    Ok(parse_head_into(buf, limits, &mut req)?.map(|n| (req, n)))
}

/// `parse_head`, reusing the buffers of `req` (an earlier request's), which it overwrites when
/// it returns `Ok(Some(n))`; otherwise `req` holds nothing useful.
pub fn parse_head_into(
    buf: &[u8],
    limits: &Limits,
    req: &mut Request,
) -> Result<Option<usize>, HttpError> {
    let max = limits.max_header_bytes;

    // Leading empty lines: httparse skips any number, we allow a few.
    let mut start = 0;
    let mut skipped = 0;
    loop {
        match buf.get(start) {
            None => return Ok(None),
            Some(b'\n') => return Err(bad("bare LF before request line")),
            Some(b'\r') => match buf.get(start + 1) {
                None => return Ok(None),
                Some(b'\n') => start += 2,
                Some(_) => return Err(bad("bare CR before request line")),
            },
            Some(_) => break,
        }
        skipped += 1;
        if skipped > MAX_LEADING_EMPTY_LINES {
            return Err(bad("too many empty lines before request line"));
        }
    }

    // Nothing past `max` can belong to an acceptable head, so never look further: this also keeps
    // the cost of a call bounded when the caller hands a buffer holding a body or later requests.
    let window = &buf[..buf.len().min(max)];
    let input = window.get(start..).unwrap_or_default();

    let mut stack: [Slot<'_>; STACK_HEADERS] = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap: Vec<Slot<'_>> = Vec::new();
    let tokens = match tokenize(input, &mut stack[..limits.max_headers.min(STACK_HEADERS)]) {
        Err((httparse::Error::TooManyHeaders, _)) if limits.max_headers > STACK_HEADERS => {
            // A field line takes at least 3 bytes ("X:\n"), so more slots than this never fill.
            heap.resize_with(
                limits.max_headers.min(input.len() / 3 + 1),
                MaybeUninit::uninit,
            );
            tokenize(input, &mut heap)
        }
        other => other,
    };
    let t = match tokens {
        Ok(Some(t)) => t,
        Ok(None) => return incomplete(input, buf.len(), max),
        Err((e, method_done)) => {
            return Err(match e {
                httparse::Error::TooManyHeaders => {
                    target_fault(input).unwrap_or(HttpError::new(431, "too many header fields"))
                }
                httparse::Error::Version => {
                    // 505 or 400 depends on the whole version, so wait for the end of the line.
                    let Some(lf) = find_byte(input, b'\n') else {
                        return incomplete(input, buf.len(), max);
                    };
                    match parse_request_line(strip_cr(&input[..lf])) {
                        Err(e) => e,
                        Ok(_) => bad("malformed request line"),
                    }
                }
                httparse::Error::Token if method_done => bad("malformed request line"),
                httparse::Error::Token => bad("invalid method"),
                httparse::Error::NewLine => bad("invalid line ending"),
                httparse::Error::HeaderName => bad("invalid header line"),
                httparse::Error::HeaderValue => bad("invalid byte in header value"),
                httparse::Error::Status => bad("malformed request"),
            });
        }
    };
    let head_end = start + t.len;
    let (method, target) = (t.method, t.target);
    let version = match t.minor {
        0 => 10,
        1 => 11,
        _ => return Err(HttpError::new(505, "HTTP version not supported")),
    };
    // httparse takes obs-text (bytes >= 0x80) in a target; RFC 9112 does not.
    if !target.is_ascii() {
        return Err(bad("invalid byte in request target"));
    }

    // The head and a copy of the target, which `RequestBuilder` makes when the path ends at a
    // '?'. A head this large was refused by any sane limit already.
    let capacity = t.len + target.len() + 8;
    if capacity > RequestBuilder::MAX_CAPACITY {
        return Err(HttpError::new(431, "request head too large"));
    }

    let (path, query) = split_target(method, target)?;
    let mut b = RequestBuilder::new(req, &input[..t.len], capacity, t.fields.len());
    b.target(method, target, path, query);
    if target.first() != Some(&b'/') {
        // RFC 9112 section 3.2.2: the authority of an absolute-form target replaces Host
        // (split_target checked it; the other forms have none).
        if let Ok((authority, _)) = absolute_form(target) {
            b.target_authority(authority);
        }
    }
    let mut hosts = 0usize;
    let mut content_length: Option<u64> = None;
    let mut te = TransferEncoding::default();
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;

    // httparse takes a bare LF as a line end; RFC 9112 section 2.2 only allows it, and a field
    // after one is hidden from a reader that ends lines at CRLF alone: every LF of the head must
    // follow a CR. httparse refuses a CR anywhere but before an LF and an LF anywhere but at a
    // line end, and a field line starts right after the previous line's end, so checking the
    // byte two before each field name (the end of the request line or of the field before),
    // two before the end of the last field line, and the final empty line covers every line.
    let line_end_cr = |end: usize| end.checked_sub(2).and_then(|at| input.get(at)) == Some(&b'\r');
    if !(line_end_cr(t.len) && line_end_cr(t.len.saturating_sub(2))) {
        return Err(bad("bare LF as line end"));
    }
    for field in t.fields {
        // Trimmed of SP/HTAB by httparse.
        let (name, value) = (field.name.as_bytes(), field.value);
        let name_at = (name.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
        if !line_end_cr(name_at) {
            return Err(bad("bare LF as line end"));
        }
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                if !all_in(value, HOST) {
                    return Err(bad("invalid Host"));
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect")
                && value.eq_ignore_ascii_case(b"100-continue") =>
            {
                expect_continue = true;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for opt in list_items(value) {
                    if opt.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                content_length = Some(parse_content_length(value, content_length)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => te.add(value)?,
            _ => {}
        }

        b.field(name, value);
    }

    if hosts > 1 {
        return Err(bad("more than one Host"));
    }
    if version == 11 && hosts == 0 {
        return Err(bad("HTTP/1.1 request without Host"));
    }

    let framing = if te.present {
        if content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        if version == 10 {
            return Err(bad("Transfer-Encoding in HTTP/1.0"));
        }
        if te.unsupported {
            return Err(HttpError::new(501, "unsupported transfer coding"));
        }
        if !te.chunked_last {
            return Err(bad("chunked is not the final transfer coding"));
        }
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::None
    };

    let keep_alive = if version == 11 {
        !conn_close
    } else {
        conn_keep_alive && !conn_close
    };

    b.finish(Meta {
        version,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == 11,
        head_len: head_end,
    });
    Ok(Some(head_end))
}

/// Splits `METHOD SP target SP HTTP/x.y` (line ending already removed).
fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], u8), HttpError> {
    let sp1 = find_byte(line, b' ').ok_or(bad("malformed request line"))?;
    let method = &line[..sp1];
    if !is_token(method) {
        return Err(bad("invalid method"));
    }
    let rest = &line[sp1 + 1..];
    let sp2 = find_byte(rest, b' ').ok_or(bad("malformed request line"))?;
    let target = &rest[..sp2];
    if target.is_empty() {
        return Err(bad("malformed request line"));
    }
    if !all_in(target, VISIBLE) {
        return Err(bad("invalid byte in request target"));
    }
    let version = match &rest[sp2 + 1..] {
        b"HTTP/1.1" => 11,
        b"HTTP/1.0" => 10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::new(505, "HTTP version not supported"));
        }
        _ => return Err(bad("malformed HTTP version")),
    };
    Ok((method, target, version))
}

/// Path and query of a request-target (RFC 9112 section 3.2), checking that its form suits the
/// method.
fn split_target<'a>(method: &[u8], target: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), HttpError> {
    fn path_query(s: &[u8]) -> (&[u8], &[u8]) {
        match find_byte(s, b'?') {
            Some(q) => (&s[..q], &s[q + 1..]),
            // The empty query is a slice of the target too, so it ends in place (`RequestBuilder`).
            None => (s, &s[s.len()..]),
        }
    }

    if method == b"CONNECT" {
        // authority-form only: host ":" port.
        let colon = target
            .iter()
            .rposition(|&b| b == b':')
            .ok_or(bad("CONNECT target is not host:port"))?;
        let (host, port) = (&target[..colon], &target[colon + 1..]);
        if host.is_empty()
            || port.is_empty()
            || !port.iter().all(u8::is_ascii_digit)
            || !all_in(host, HOST)
        {
            return Err(bad("CONNECT target is not host:port"));
        }
        return Ok((b"", b""));
    }
    match target {
        [b'/', ..] => Ok(path_query(target)),
        b"*" if method == b"OPTIONS" => Ok((target, b"")),
        b"*" => Err(bad("asterisk-form is only for OPTIONS")),
        _ => {
            let (_, rest) = absolute_form(target)?;
            let (path, query) = path_query(rest);
            Ok((if path.is_empty() { b"/" } else { path }, query))
        }
    }
}

/// The authority of an absolute-form target, `http(s)://authority[/path][?query]`, and what
/// follows it.
fn absolute_form(target: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    let sep = target
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(bad("invalid request target"))?;
    let scheme = &target[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(bad("unsupported URI scheme"));
    }
    let rest = &target[sep + 3..];
    let auth_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    // userinfo ('@') is refused as RFC 9110 section 4.2.4 advises.
    if authority.is_empty() || !all_in(authority, HOST) {
        return Err(bad("invalid authority in request target"));
    }
    Ok((authority, &rest[auth_end..]))
}

/// Content-Length: 1*DIGIT, possibly repeated (in several fields or a comma list) as long as every
/// copy has the same value (RFC 9112 section 6.3, item 5).
fn parse_content_length(value: &[u8], prev: Option<u64>) -> Result<u64, HttpError> {
    let mut current = prev;
    for elem in list_items(value) {
        let n = parse_decimal(elem).ok_or(bad("invalid Content-Length"))?;
        match current {
            Some(p) if p != n => return Err(bad("conflicting Content-Length")),
            _ => current = Some(n),
        }
    }
    current.ok_or(bad("invalid Content-Length"))
}

/// The transfer codings of all Transfer-Encoding fields, in order.
#[derive(Default)]
struct TransferEncoding {
    present: bool,
    /// The last coding seen so far is a bare `chunked`.
    chunked_last: bool,
    /// A coding other than chunked was listed: 501 unless a 400 applies.
    unsupported: bool,
}

impl TransferEncoding {
    fn add(&mut self, value: &[u8]) -> Result<(), HttpError> {
        self.present = true;
        for elem in list_items(value) {
            if elem.is_empty() {
                return Err(bad("empty transfer coding"));
            }
            if self.chunked_last {
                // Anything after chunked, chunked included, leaves the body length undecidable.
                return Err(bad("chunked is not the final transfer coding"));
            }
            let (name, has_params) = match find_byte(elem, b';') {
                Some(i) => (trim_ows(&elem[..i]), true),
                None => (elem, false),
            };
            if !is_token(name) {
                return Err(bad("invalid transfer coding"));
            }
            if name.eq_ignore_ascii_case(b"chunked") {
                if has_params {
                    return Err(bad("chunked takes no parameters"));
                }
                self.chunked_last = true;
            } else {
                self.unsupported = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::c_char;
    use std::ffi::CStr;

    const LIMITS: Limits = Limits {
        max_header_bytes: 16384,
        max_headers: 100,
    };

    fn parse_with(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
        parse_head(buf, limits)
    }

    fn parse_ok(buf: &[u8]) -> Request {
        match parse_head(buf, &LIMITS) {
            Ok(Some((req, n))) => {
                assert_eq!(
                    n,
                    buf.len(),
                    "consumed all of {:?}",
                    String::from_utf8_lossy(buf)
                );
                assert_eq!(req.head_len(), n);
                req
            }
            other => panic!(
                "{:?}: expected a request, got {:?}",
                String::from_utf8_lossy(buf),
                other.map(|o| o.map(|(_, n)| n))
            ),
        }
    }

    /// 0 for a parsed request, else the error status; panics when incomplete.
    fn status_with(buf: &[u8], limits: &Limits) -> u16 {
        match parse_with(buf, limits) {
            Ok(Some(_)) => 0,
            Ok(None) => panic!("{:?}: incomplete", String::from_utf8_lossy(buf)),
            Err(e) => e.status,
        }
    }

    /// Feeds growing prefixes, as a connection reading one byte at a time would, and returns the
    /// first non-incomplete result (status, consumed), checking it agrees with the whole parse.
    fn check_incremental(buf: &[u8], limits: &Limits) {
        let summary = |r: Result<Option<(Request, usize)>, HttpError>| match r {
            Ok(Some((req, n))) => Some((0, n, req.header_count())),
            Ok(None) => None,
            Err(e) => Some((e.status, 0, 0)),
        };
        let whole = summary(parse_with(buf, limits));
        for end in 0..=buf.len() {
            let r = summary(parse_with(&buf[..end], limits));
            if r.is_some() {
                assert_eq!(
                    r,
                    whole,
                    "prefix of {end} bytes of {:?}",
                    String::from_utf8_lossy(buf)
                );
                return;
            }
        }
        assert_eq!(whole, None);
    }

    fn with_fields(version: &str, fields: &str) -> Vec<u8> {
        format!("GET / HTTP/{version}\r\n{fields}\r\n").into_bytes()
    }

    /// Everything a caller can observe of a request, for comparing two parses.
    fn observed(r: &Request) -> String {
        let mut fields = Vec::new();
        for i in 0..r.header_count() {
            let (n, v) = r.header_at(i).unwrap();
            fields.push(format!(
                "{}={}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ));
        }
        format!(
            "{} {} {} {} v{} {:?} ka={} ec={} head={} len={} host={:?} {:?} [{}]",
            r.method(),
            r.target(),
            r.path(),
            r.query(),
            r.version(),
            r.body_framing(),
            r.wants_keep_alive(),
            r.expects_continue(),
            r.is_head(),
            r.head_len(),
            r.header(b"host"),
            r.host(),
            fields.join(" ")
        )
    }

    #[test]
    fn a_reused_request_keeps_nothing_of_the_earlier_ones() {
        let heads: [&[u8]; 7] = [
            b"POST /a/long/path/with/segments?and=a&long=query HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nX-One: 1\r\nX-Two: 2\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://abs.example/p HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"HEAD /h?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /x HTTP/1.1\r\nhost: y\r\n\r\n",
        ];
        let limits = Limits::default();
        let mut reused = Request::default();
        for head in heads {
            let fresh = parse_head(head, &limits);
            let again = parse_head_into(head, &limits, &mut reused);
            match (fresh, again) {
                (Ok(Some((fresh, n))), Ok(Some(m))) => {
                    assert_eq!(n, m);
                    assert_eq!(observed(&fresh), observed(&reused));
                    // The C strings end where the Rust ones do.
                    // SAFETY: `path_c` is a NUL-terminated string owned by `reused`, unchanged
                    // while `path` lives.
                    let path = unsafe { std::ffi::CStr::from_ptr(reused.path_c()) };
                    assert_eq!(path.to_bytes(), reused.path().as_bytes());
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{:?} against {:?}", a.map(|o| o.map(|x| x.1)), b),
            }
        }
    }

    #[test]
    fn simple_get() {
        let req = parse_ok(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/index.html");
        assert_eq!(req.path(), "/index.html");
        assert_eq!(req.query(), "");
        assert_eq!(req.version(), 11);
        assert_eq!(req.header(b"HOST"), Some(&b"example.com"[..]));
        assert_eq!(req.header(b"accept"), Some(&b"*/*"[..]));
        assert_eq!(req.header(b"missing"), None);
        assert_eq!(req.header_count(), 2);
        assert_eq!(req.header_at(0), Some((&b"Host"[..], &b"example.com"[..])));
        assert_eq!(req.header_at(1), Some((&b"Accept"[..], &b"*/*"[..])));
        assert_eq!(req.header_at(2), None);
        assert_eq!(req.body_framing(), BodyFraming::None);
        assert!(req.wants_keep_alive());
        assert!(!req.expects_continue());
        assert!(!req.is_head());
    }

    #[test]
    fn request_table() {
        // (request head, expected status: 0 = parsed)
        let cases: &[(&[u8], u16)] = &[
            // line endings: CRLF only, a bare LF ends no line (a field after one would be
            // hidden from a reader that takes CRLF alone as a line end)
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET / HTTP/1.1\nHost: a\n\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
            (b"GET / HTTP/1.0\n\r\n", 400),
            (b"GET / HTTP/1.0\r\n\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nDummy: x\nContent-Length: 5\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nDummy: x\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX:\nY: 1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b \t\nY: 1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b \t\r\nY:\t\r\n\r\n", 0),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\n c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\n\r\n", 400),
            (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
            // leading empty lines
            (b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (
                b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                400,
            ),
            // method
            (b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b" / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
            // separators
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
            (b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /\r\nHost: a\r\n\r\n", 400),
            (b"GET\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
            // version
            (b"GET / HTTP/1.0\r\n\r\n", 0),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/11\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/2\r\nHost: a\r\n\r\n", 400),
            // target forms
            (b"GET /a/b?c=d&e HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET HTTP://a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET https://a?q HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http:///b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http://u:p@a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 0),
            (b"CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"CONNECT a: HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"CONNECT :443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"CONNECT http://a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            // target bytes
            (b"GET /a\"{}|^` HTTP/1.1\r\nHost: a\r\n\r\n", 0),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            // field syntax
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n  c\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX\x80: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \"q\" caf\xc3\xa9 \xff\r\n\r\n",
                0,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", 0),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b: c\r\n\r\n", 0),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09az: b\r\n\r\n",
                0,
            ),
            // Host
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 0),
            (b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
            (b"GET / HTTP/1.0\r\n\r\n", 0),
            (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", 0),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ];
        for &(buf, want) in cases {
            assert_eq!(
                status_with(buf, &LIMITS),
                want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
            check_incremental(buf, &LIMITS);
        }
    }

    #[test]
    fn framing_table() {
        use BodyFraming::*;
        // (version, fields, expected framing or error status)
        let cases: &[(&str, &str, Result<BodyFraming, u16>)] = &[
            ("1.1", "", Ok(None)),
            ("1.1", "Content-Length: 0\r\n", Ok(Length(0))),
            ("1.1", "Content-Length: 42\r\n", Ok(Length(42))),
            ("1.1", "Content-Length:  42 \t\r\n", Ok(Length(42))),
            ("1.1", "Content-Length: 007\r\n", Ok(Length(7))),
            ("1.0", "Content-Length: 5\r\n", Ok(Length(5))),
            ("1.1", "Content-Length: 5, 5\r\n", Ok(Length(5))),
            ("1.1", "Content-Length: 5,5,5\r\n", Ok(Length(5))),
            (
                "1.1",
                "Content-Length: 5\r\ncontent-length: 5\r\n",
                Ok(Length(5)),
            ),
            (
                "1.1",
                "Content-Length: 5\r\nContent-Length: 05\r\n",
                Ok(Length(5)),
            ),
            ("1.1", "Content-Length: 5, 6\r\n", Err(400)),
            (
                "1.1",
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                Err(400),
            ),
            ("1.1", "Content-Length: +5\r\n", Err(400)),
            ("1.1", "Content-Length: -5\r\n", Err(400)),
            ("1.1", "Content-Length: 0x5\r\n", Err(400)),
            ("1.1", "Content-Length: 5a\r\n", Err(400)),
            ("1.1", "Content-Length: 5 5\r\n", Err(400)),
            ("1.1", "Content-Length: 5_0\r\n", Err(400)),
            ("1.1", "Content-Length: 5.0\r\n", Err(400)),
            ("1.1", "Content-Length:\r\n", Err(400)),
            ("1.1", "Content-Length: ,\r\n", Err(400)),
            ("1.1", "Content-Length: 5,\r\n", Err(400)),
            ("1.1", "Content-Length: 5,,5\r\n", Err(400)),
            (
                "1.1",
                "Content-Length: 9999999999999999999\r\n",
                Ok(Length(9_999_999_999_999_999_999)),
            ),
            ("1.1", "Content-Length: 18446744073709551615\r\n", Err(400)),
            ("1.1", "Content-Length: 18446744073709551616\r\n", Err(400)),
            (
                "1.1",
                "Content-Length: 99999999999999999999999\r\n",
                Err(400),
            ),
            ("1.1", "Transfer-Encoding: chunked\r\n", Ok(Chunked)),
            ("1.1", "Transfer-Encoding: CHUNKED\r\n", Ok(Chunked)),
            ("1.1", "Transfer-Encoding:  chunked \r\n", Ok(Chunked)),
            ("1.1", "Transfer-Encoding: gzip, chunked\r\n", Err(501)),
            (
                "1.1",
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                Err(501),
            ),
            ("1.1", "Transfer-Encoding: chunked, gzip\r\n", Err(400)),
            (
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                Err(400),
            ),
            ("1.1", "Transfer-Encoding: chunked, chunked\r\n", Err(400)),
            (
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
            ("1.1", "Transfer-Encoding: gzip\r\n", Err(501)),
            ("1.1", "Transfer-Encoding: identity\r\n", Err(501)),
            ("1.1", "Transfer-Encoding: x-custom\r\n", Err(501)),
            ("1.1", "Transfer-Encoding:\r\n", Err(400)),
            ("1.1", "Transfer-Encoding: ,chunked\r\n", Err(400)),
            ("1.1", "Transfer-Encoding: chunked,\r\n", Err(400)),
            ("1.1", "Transfer-Encoding: chunked;q=1\r\n", Err(400)),
            ("1.1", "Transfer-Encoding: chun ked\r\n", Err(400)),
            ("1.1", "Transfer-Encoding: \"chunked\"\r\n", Err(400)),
            (
                "1.1",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                Err(400),
            ),
            (
                "1.1",
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
            (
                "1.1",
                "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n",
                Err(400),
            ),
            ("1.0", "Transfer-Encoding: chunked\r\n", Err(400)),
            ("1.0", "Transfer-Encoding: gzip\r\n", Err(400)),
        ];
        for &(version, fields, want) in cases {
            let host = if version == "1.1" { "Host: a\r\n" } else { "" };
            let buf = with_fields(version, &format!("{host}{fields}"));
            let got = match parse_head(&buf, &LIMITS) {
                Ok(Some((req, _))) => Ok(req.body_framing()),
                Ok(Option::None) => panic!("incomplete"),
                Err(e) => Err(e.status),
            };
            assert_eq!(got, want, "{version} {fields:?}");
            check_incremental(&buf, &LIMITS);
        }
    }

    #[test]
    fn connection_and_expect_table() {
        // (version, fields, keep-alive, expects 100-continue)
        let cases: &[(&str, &str, bool, bool)] = &[
            ("1.1", "", true, false),
            ("1.1", "Connection: close\r\n", false, false),
            ("1.1", "Connection: CLOSE\r\n", false, false),
            ("1.1", "Connection: keep-alive, close\r\n", false, false),
            ("1.1", "Connection: Upgrade,Close\r\n", false, false),
            (
                "1.1",
                "Connection: foo\r\nConnection: close\r\n",
                false,
                false,
            ),
            ("1.1", "Connection: closed\r\n", true, false),
            ("1.1", "Connection: keep-alive\r\n", true, false),
            ("1.0", "", false, false),
            ("1.0", "Connection: keep-alive\r\n", true, false),
            ("1.0", "Connection: Keep-Alive\r\n", true, false),
            ("1.0", "Connection: foo , keep-alive\r\n", true, false),
            ("1.0", "Connection: keep-alive, close\r\n", false, false),
            ("1.0", "Connection: keep-alived\r\n", false, false),
            ("1.1", "Expect: 100-continue\r\n", true, true),
            ("1.1", "Expect: 100-Continue\r\n", true, true),
            (
                "1.1",
                "Expect: 100-continue\r\nConnection: close\r\n",
                false,
                true,
            ),
            ("1.1", "Expect: 200-ok\r\n", true, false),
            ("1.0", "Expect: 100-continue\r\n", false, false),
        ];
        for &(version, fields, keep_alive, cont) in cases {
            let host = if version == "1.1" { "Host: a\r\n" } else { "" };
            let req = parse_ok(&with_fields(version, &format!("{host}{fields}")));
            assert_eq!(req.wants_keep_alive(), keep_alive, "{version} {fields:?}");
            assert_eq!(req.expects_continue(), cont, "{version} {fields:?}");
        }
    }

    #[test]
    fn target_split_table() {
        // (method, target, path, query)
        let cases: &[(&str, &str, &str, &str)] = &[
            ("GET", "/", "/", ""),
            ("GET", "/a/b", "/a/b", ""),
            ("GET", "/a?", "/a", ""),
            ("GET", "/a?b=c&d", "/a", "b=c&d"),
            ("GET", "/a?b?c", "/a", "b?c"),
            ("GET", "/%20x?%3F", "/%20x", "%3F"),
            ("GET", "//a", "//a", ""),
            ("GET", "http://h/p?q", "/p", "q"),
            ("GET", "http://h:8080/p/q", "/p/q", ""),
            ("GET", "http://h", "/", ""),
            ("GET", "http://h?x", "/", "x"),
            ("GET", "HtTpS://h/", "/", ""),
            ("OPTIONS", "*", "*", ""),
            ("CONNECT", "h:443", "", ""),
        ];
        for &(method, target, path, query) in cases {
            let req = parse_ok(format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            assert_eq!(req.method(), method);
            assert_eq!(req.target(), target);
            assert_eq!(req.path(), path, "{target}");
            assert_eq!(req.query(), query, "{target}");
        }
    }

    /// RFC 9112 section 3.2.2: the authority of an absolute-form target replaces Host, and is
    /// the request's host; otherwise the host is the Host field, if any.
    #[test]
    fn absolute_form_authority_replaces_host() {
        /// (head, host, the Host field's value, path, query)
        type Case = (
            &'static [u8],
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                b"GET http://example.test/path HTTP/1.1\r\nHost: other\r\n\r\n",
                Some("example.test"),
                Some("example.test"),
                "/path",
                "",
            ),
            (
                b"GET http://a:8080/p/q?x=1 HTTP/1.1\r\nX: 1\r\nhost: b:80\r\nY: 2\r\n\r\n",
                Some("a:8080"),
                Some("a:8080"),
                "/p/q",
                "x=1",
            ),
            // The authority ends at a '?' or at the end of the target, which stay whole.
            (
                b"GET https://h?q HTTP/1.1\r\nHost: other\r\n\r\n",
                Some("h"),
                Some("h"),
                "/",
                "q",
            ),
            (
                b"GET HTTP://[::1]:8 HTTP/1.1\r\nHost:\r\n\r\n",
                Some("[::1]:8"),
                Some("[::1]:8"),
                "/",
                "",
            ),
            // HTTP/1.0 may send no Host: the authority is still the host.
            (
                b"GET http://a/p HTTP/1.0\r\n\r\n",
                Some("a"),
                None,
                "/p",
                "",
            ),
            (
                b"GET http://a/p HTTP/1.0\r\nHost: b\r\n\r\n",
                Some("a"),
                Some("a"),
                "/p",
                "",
            ),
            // Other forms: the Host field.
            (
                b"GET /p?q HTTP/1.1\r\nHost: other\r\n\r\n",
                Some("other"),
                Some("other"),
                "/p",
                "q",
            ),
            (
                b"GET /p HTTP/1.1\r\nHost:\r\n\r\n",
                Some(""),
                Some(""),
                "/p",
                "",
            ),
            (b"GET /p HTTP/1.0\r\n\r\n", None, None, "/p", ""),
            (
                b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
                Some("h"),
                Some("h"),
                "*",
                "",
            ),
            (
                b"CONNECT a:443 HTTP/1.1\r\nHost: b:443\r\n\r\n",
                Some("b:443"),
                Some("b:443"),
                "",
                "",
            ),
        ];
        // SAFETY: only given the `*_c` strings of the live `req`, which are NUL-terminated.
        let c = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
        let mut reused = Request::default();
        for &(head, host, field, path, query) in cases {
            let what = String::from_utf8_lossy(head);
            for req in [parse_ok(head), {
                parse_head_into(head, &LIMITS, &mut reused).unwrap();
                reused.clone()
            }] {
                assert_eq!(req.host(), host.map(str::as_bytes), "{what}");
                assert_eq!(req.header(b"Host"), field.map(str::as_bytes), "{what}");
                assert_eq!((req.path(), req.query()), (path, query), "{what}");
                assert_eq!(req.host_c().map(c), host.map(|h| h.as_bytes().to_vec()));
                assert_eq!(
                    req.header_c(b"host").map(c),
                    field.map(|h| h.as_bytes().to_vec())
                );
                // Every other string is whole.
                assert_eq!(c(req.target_c()), req.target().as_bytes(), "{what}");
                assert_eq!(c(req.path_c()), path.as_bytes(), "{what}");
                assert_eq!(c(req.query_c()), query.as_bytes(), "{what}");
                for i in 0..req.header_count() {
                    let (name, value) = req.header_at(i).unwrap();
                    let (name_c, value_c) = req.header_at_c(i).unwrap();
                    assert_eq!((c(name_c), c(value_c)), (name.to_vec(), value.to_vec()));
                }
            }
        }
    }

    #[test]
    fn value_bytes_at_every_position() {
        // Values are checked eight bytes at a time: put each byte in every lane of a word.
        for pos in 0..24 {
            for bad_byte in [0x00u8, 0x01, 0x08, 0x0b, 0x0d, 0x1f, 0x7f] {
                let mut value = vec![b'v'; 24];
                value[pos] = bad_byte;
                let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
                buf.extend_from_slice(&value);
                buf.extend_from_slice(b"!\r\n\r\n");
                assert_eq!(status_with(&buf, &LIMITS), 400, "{bad_byte:#x} at {pos}");
            }
            for good in [b'\t', b' ', b'~', b'!', 0x80, 0xff] {
                let mut value = vec![b'v'; 24];
                value[pos] = good;
                let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
                buf.extend_from_slice(&value);
                buf.extend_from_slice(b"!\r\n\r\n");
                let req = parse_ok(&buf);
                value.push(b'!');
                // A leading SP/HTAB is trimmed, as it should be.
                let want = value.trim_ascii_start();
                assert_eq!(req.header(b"x"), Some(want), "{good:#x} at {pos}");
            }
        }
    }

    #[test]
    fn values_are_trimmed() {
        let req = parse_ok(b"GET / HTTP/1.1\r\nHost: \t a \t\r\nX:\tb c\t \r\nY:   \r\n\r\n");
        assert_eq!(req.header(b"host"), Some(&b"a"[..]));
        assert_eq!(req.header(b"x"), Some(&b"b c"[..]));
        assert_eq!(req.header(b"y"), Some(&b""[..]));
    }

    #[test]
    fn header_lookup_is_first_and_case_insensitive() {
        let req = parse_ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(req.header(b"x-A"), Some(&b"1"[..]));
        assert_eq!(req.header_at(2), Some((&b"x-a"[..], &b"2"[..])));
        assert_eq!(req.header(b"x-a2"), None);
        assert_eq!(req.header(b""), None);
        let req = parse_ok(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n");
        assert_eq!(req.header(b"X"), Some(&b"caf\xc3\xa9"[..]));
    }

    #[test]
    fn head_method() {
        assert!(parse_ok(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").is_head());
        assert!(!parse_ok(b"head / HTTP/1.1\r\nHost: a\r\n\r\n").is_head());
        assert!(!parse_ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_head());
    }

    #[test]
    fn c_strings() {
        let req = parse_ok(b"POST /p?a=1 HTTP/1.1\r\nHost: h\r\nX-Y: v w\r\nEmpty:\r\n\r\n");
        // SAFETY: only given `*_c` strings of this Request (`req`, then moved as `shared`),
        // which are NUL-terminated and alive meanwhile.
        let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
        let ptrs = (req.method_c(), req.target_c(), req.path_c(), req.query_c());
        assert_eq!(s(ptrs.0), b"POST");
        assert_eq!(s(ptrs.1), b"/p?a=1");
        assert_eq!(s(ptrs.2), b"/p");
        assert_eq!(s(ptrs.3), b"a=1");
        assert_eq!(s(req.header_c(b"x-y").unwrap()), b"v w");
        assert_eq!(s(req.header_c(b"empty").unwrap()), b"");
        assert!(req.header_c(b"nope").is_none());
        let (n, v) = req.header_at_c(1).unwrap();
        assert_eq!((s(n), s(v)), (b"X-Y".to_vec(), b"v w".to_vec()));
        assert!(req.header_at_c(3).is_none());

        // Moving the Request (into an Arc, as the server does) must not move its strings.
        let shared = std::sync::Arc::new(req);
        assert_eq!(shared.method_c(), ptrs.0);
        assert_eq!(shared.query_c(), ptrs.3);
        assert_eq!(s(shared.header_c(b"host").unwrap()), b"h");

        let req = parse_ok(b"GET /p HTTP/1.0\r\n\r\n");
        assert_eq!(s(req.query_c()), b"");
    }

    /// Every C string ends where its Rust string ends, whichever strings end in the head and
    /// which are copied after it, and ending one never cuts another short.
    #[test]
    fn c_strings_match_every_string_of_every_form() {
        let heads: [&[u8]; 13] = [
            b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            b"GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /p?a=1?b=:2 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h:1/p?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nA:\r\nB: x \t\r\nC:\t y:z?w \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nE:\r\nF:   \r\nG: \xe9t\xe9\r\n\r\n",
            b"\r\nGET /a HTTP/1.0\r\nX:1\r\n\r\n",
            b"GET /%3F?%3F HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
        ];
        // SAFETY: only given the `*_c` strings of the live `req`, which are NUL-terminated.
        let c = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec();
        for head in heads {
            let req = parse_ok(head);
            let what = String::from_utf8_lossy(head);
            assert_eq!(c(req.method_c()), req.method().as_bytes(), "{what}");
            assert_eq!(c(req.target_c()), req.target().as_bytes(), "{what}");
            assert_eq!(c(req.path_c()), req.path().as_bytes(), "{what}");
            assert_eq!(c(req.query_c()), req.query().as_bytes(), "{what}");
            assert!(req.header_count() > 0, "{what}");
            for i in 0..req.header_count() {
                let (name, value) = req.header_at(i).unwrap();
                let (name_c, value_c) = req.header_at_c(i).unwrap();
                assert_eq!(
                    (c(name_c), c(value_c)),
                    (name.to_vec(), value.to_vec()),
                    "{what}"
                );
            }
        }
        let req = parse_ok(heads[3]);
        assert_eq!((req.path(), req.query()), ("/p", "a=1?b=:2"));
        let req = parse_ok(heads[6]);
        assert_eq!(
            (req.target(), req.path(), req.query()),
            ("http://h?q", "/", "q")
        );
        let req = parse_ok(heads[9]);
        assert_eq!(req.header(b"b"), Some(&b"x"[..]));
        assert_eq!(req.header(b"c"), Some(&b"y:z?w"[..]));
    }

    /// Every line of a head ends with CRLF: dropping the CR of any one of them, in heads whose
    /// fields fit the slots on the stack and in one that needs the heap, is refused.
    #[test]
    fn a_bare_lf_ends_no_line() {
        let mut many = b"POST /p HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: {}\r\n", "v ".repeat(i % 3)).as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let heads: [&[u8]; 4] = [
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\nGET /a?b HTTP/1.1\r\nHost: h\r\nE:\r\nW: \t\r\nX: y \t\r\n\r\n",
            &many,
        ];
        for head in heads {
            assert_eq!(status_with(head, &LIMITS), 0);
            for (at, _) in head.windows(2).enumerate().filter(|(_, w)| w == b"\r\n") {
                let mut buf = head.to_vec();
                buf.remove(at);
                assert_eq!(
                    status_with(&buf, &LIMITS),
                    400,
                    "CR at {at} dropped: {:?}",
                    String::from_utf8_lossy(&buf)
                );
                check_incremental(&buf, &LIMITS);
            }
        }
    }

    #[test]
    fn incomplete_heads() {
        let full = b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for end in 0..full.len() {
            assert!(
                matches!(parse_head(&full[..end], &LIMITS), Ok(None)),
                "prefix {end}"
            );
        }
        assert!(matches!(parse_head(b"\r\n\r", &LIMITS), Ok(None)));
    }

    #[test]
    fn body_and_pipelining() {
        let first = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        let second = b"GET /b?x HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"hello");
        buf.extend_from_slice(second);
        let (req, n) = parse_head(&buf, &LIMITS).unwrap().unwrap();
        assert_eq!(n, first.len());
        assert_eq!(req.body_framing(), BodyFraming::Length(5));
        assert_eq!(&buf[n..n + 5], b"hello");
        let (req2, n2) = parse_head(&buf[n + 5..], &LIMITS).unwrap().unwrap();
        assert_eq!(n2, second.len());
        assert_eq!(req2.path(), "/b");

        // Back to back with no body.
        let mut buf = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        buf.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
        let (r1, n1) = parse_head(&buf, &LIMITS).unwrap().unwrap();
        assert_eq!((r1.path(), n1), ("/1", 28));
        let (r2, n2) = parse_head(&buf[n1..], &LIMITS).unwrap().unwrap();
        assert_eq!((r2.path(), n1 + n2), ("/2", buf.len()));

        // A later request that is still incomplete does not affect the first.
        let mut buf = second.to_vec();
        buf.extend_from_slice(b"GET /c HTTP/1.1\r\nHo");
        let (_, n) = parse_head(&buf, &LIMITS).unwrap().unwrap();
        assert_eq!(n, second.len());
        assert!(matches!(parse_head(&buf[n..], &LIMITS), Ok(None)));
    }

    #[test]
    fn long_target_within_limit() {
        let target = format!("/{}", "a".repeat(7999));
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let req = parse_ok(buf.as_bytes());
        assert_eq!(req.target().len(), 8000);
        assert_eq!(req.path(), target);
    }

    #[test]
    fn bytes_at_every_position_of_long_lines() {
        // httparse checks targets, names and values 8, 16 or 32 bytes at a time: put each byte in
        // every lane of several blocks, with enough bytes after it for the widest block.
        let line = |pos: usize, byte: u8| {
            let mut s = vec![b'a'; 80];
            s[pos] = byte;
            s
        };
        let head = |parts: &[&[u8]]| parts.concat();
        for pos in 0..80 {
            for byte in [0x00u8, 0x01, b'\t', b' ', 0x7f, 0x80, 0xc3, 0xff] {
                let buf = head(&[b"GET /", &line(pos, byte), b" HTTP/1.1\r\nHost: h\r\n\r\n"]);
                assert_eq!(status_with(&buf, &LIMITS), 400, "target {byte:#x} at {pos}");
            }
            // obs-text that is valid UTF-8 is still not a target byte.
            let mut target = line(pos, 0xc3);
            target.insert(pos + 1, 0xa9);
            let buf = head(&[b"GET /", &target, b" HTTP/1.1\r\nHost: h\r\n\r\n"]);
            assert_eq!(status_with(&buf, &LIMITS), 400, "target U+00E9 at {pos}");
            for byte in [b'!', b'"', b'{', b'~'] {
                let target = line(pos, byte);
                let buf = head(&[b"GET /", &target, b" HTTP/1.1\r\nHost: h\r\n\r\n"]);
                assert_eq!(parse_ok(&buf).target().as_bytes()[1..], target[..]);
            }

            for byte in [
                0x00u8, 0x01, b'\t', b' ', b'"', b'(', b'/', 0x7f, 0x80, 0xff,
            ] {
                let buf = head(&[
                    b"GET / HTTP/1.1\r\nHost: h\r\n",
                    &line(pos, byte),
                    b": v\r\n\r\n",
                ]);
                assert_eq!(status_with(&buf, &LIMITS), 400, "name {byte:#x} at {pos}");
            }
            for byte in [b'!', b'-', b'|', b'~'] {
                let name = line(pos, byte);
                let buf = head(&[b"GET / HTTP/1.1\r\nHost: h\r\n", &name, b": v\r\n\r\n"]);
                assert_eq!(parse_ok(&buf).header_at(1), Some((&name[..], &b"v"[..])));
            }

            for byte in [0x00u8, 0x01, 0x0b, b'\r', 0x1f, 0x7f] {
                let buf = head(&[
                    b"GET / HTTP/1.1\r\nHost: h\r\nX: !",
                    &line(pos, byte),
                    b"!\r\n\r\n",
                ]);
                assert_eq!(status_with(&buf, &LIMITS), 400, "value {byte:#x} at {pos}");
            }
            for byte in [b'\t', b' ', b'~', 0x80, 0xff] {
                let value = head(&[b"!", &line(pos, byte), b"!"]);
                let buf = head(&[b"GET / HTTP/1.1\r\nHost: h\r\nX: ", &value, b"\r\n\r\n"]);
                assert_eq!(parse_ok(&buf).header(b"x"), Some(&value[..]));
            }
        }
    }

    #[test]
    fn many_fields() {
        // Up to 32 fields are tokenized into slots on the stack, more into slots on the heap.
        // (max_headers, fields including Host, expected status)
        let cases: &[(usize, usize, u16)] = &[
            (100, 31, 0),
            (100, 32, 0),
            (100, 33, 0),
            (100, 34, 0),
            (100, 100, 0),
            (100, 101, 431),
            (100, 250, 431),
            (32, 32, 0),
            (32, 33, 431),
            (33, 33, 0),
            (33, 34, 431),
            (3, 3, 0),
            (3, 4, 431),
            (1, 1, 0),
            (1, 2, 431),
            (usize::MAX, 300, 0),
        ];
        for &(max_headers, count, want) in cases {
            let limits = Limits {
                max_header_bytes: 16384,
                max_headers,
            };
            let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            for i in 1..count {
                buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            assert_eq!(status_with(&buf, &limits), want, "{max_headers} {count}");
            check_incremental(&buf, &limits);
            if want == 0 {
                let (req, _) = parse_head(&buf, &limits).unwrap().unwrap();
                assert_eq!(req.header_count(), count);
                let last = format!("{}", count - 1);
                let name = format!("X-{last}");
                let want_last = if count == 1 {
                    (&b"Host"[..], &b"h"[..])
                } else {
                    (name.as_bytes(), last.as_bytes())
                };
                assert_eq!(req.header_at(count - 1), Some(want_last));
            }
        }
        let zero = Limits {
            max_header_bytes: 16384,
            max_headers: 0,
        };
        assert_eq!(status_with(b"GET / HTTP/1.0\r\n\r\n", &zero), 0);
        assert_eq!(status_with(b"GET / HTTP/1.0\r\nX: 1\r\n\r\n", &zero), 431);
    }

    #[test]
    fn limits_table() {
        let small = Limits {
            max_header_bytes: 64,
            max_headers: 3,
        };
        let head = |target_len: usize, fields: &str| {
            format!(
                "GET /{} HTTP/1.1\r\nHost: h\r\n{fields}\r\n",
                "a".repeat(target_len - 1)
            )
            .into_bytes()
        };
        // "GET " + target + " HTTP/1.1\r\n" = target + 15; "Host: h\r\n" = 9; final CRLF = 2.
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (head(38, ""), 0),                          // exactly 64 bytes
            (head(39, ""), 431),                        // 65 bytes, request line fits
            (head(49, ""), 431),                        // request line ends at byte 64
            (head(50, ""), 414),                        // request line ends at byte 65
            (head(70, ""), 414),                        // target alone too long
            (head(5, "A: 1\r\nB: 2\r\n"), 0),           // 3 fields
            (head(5, "A: 1\r\nB: 2\r\nC: 3\r\n"), 431), // 4 fields
            (
                head(5, "X: 0123456789012345678901234567890123456789\r\n"),
                431,
            ),
            // Limits apply to incomplete heads too.
            (format!("GET /{}", "a".repeat(60)).into_bytes(), 414),
            (
                format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(60)).into_bytes(),
                431,
            ),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n".to_vec(),
                431,
            ),
            // Leading empty lines count towards the head.
            (
                format!(
                    "\r\n\r\nGET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
                    "a".repeat(33)
                )
                .into_bytes(),
                0,
            ),
            (
                format!(
                    "\r\n\r\nGET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
                    "a".repeat(34)
                )
                .into_bytes(),
                431,
            ),
        ];
        for (buf, want) in &cases {
            assert_eq!(
                status_with(buf, &small),
                *want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
            check_incremental(buf, &small);
        }
        // An endless head fails as soon as it reaches the limit, not later.
        let endless = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(100)).into_bytes();
        let first_error = (0..=endless.len())
            .find(|&end| parse_head(&endless[..end], &small).is_err())
            .unwrap();
        assert_eq!(first_error, 64);
        let endless = "a".repeat(100).into_bytes();
        assert!(matches!(parse_head(&endless[..63], &small), Ok(None)));
        assert_eq!(
            parse_head(&endless[..64], &small).err().map(|e| e.status),
            Some(414)
        );
        // Bytes after a complete head (body, next request) are not counted.
        let mut buf = head(38, "");
        buf.extend_from_slice(&[b'x'; 100]);
        assert_eq!(parse_head(&buf, &small).unwrap().unwrap().1, 64);
    }

    #[test]
    fn errors_have_reasons() {
        let e = parse_head(b"GET / HTTP/2.0\r\n\r\n", &LIMITS)
            .err()
            .unwrap();
        assert_eq!(e.status, 505);
        assert!(!e.reason.is_empty());
        assert_eq!(e.to_string(), format!("505 {}", e.reason));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn valid_request() -> impl Strategy<Value = Vec<u8>> {
            let name = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
            let value = "[ -~\t]{0,20}";
            (
                prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "X-CUSTOM"]),
                "/[!-~]{0,30}",
                prop::collection::vec((name, value), 0..8),
            )
                .prop_map(|(method, target, fields)| {
                    let eol = "\r\n";
                    let mut s = format!("{method} {target} HTTP/1.1{eol}Host: h{eol}");
                    for (n, v) in fields {
                        // Keep the framing fields out: their values are random.
                        if n.eq_ignore_ascii_case("host")
                            || n.eq_ignore_ascii_case("content-length")
                            || n.eq_ignore_ascii_case("transfer-encoding")
                        {
                            continue;
                        }
                        s.push_str(&format!("{n}: {}{eol}", v.trim_matches([' ', '\t'])));
                    }
                    s.push_str(eol);
                    s.into_bytes()
                })
        }

        proptest! {
            // No failure_persistence: a regression file would land in the main work tree.
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn valid_requests_parse_in_any_prefix(buf in valid_request(), tail in prop::collection::vec(any::<u8>(), 0..20)) {
                for end in 0..buf.len() {
                    prop_assert!(matches!(parse_head(&buf[..end], &LIMITS), Ok(None)));
                }
                let mut full = buf.clone();
                full.extend_from_slice(&tail);
                let (req, n) = parse_head(&full, &LIMITS).unwrap().unwrap();
                prop_assert_eq!(n, buf.len());
                prop_assert_eq!(req.header(b"host"), Some(&b"h"[..]));
            }

            #[test]
            fn mutated_requests_never_panic_and_agree_incrementally(
                buf in valid_request(),
                edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b" \t\r\n:,;\x00\x7f\x80aZ/?*".to_vec())), 1..4),
            ) {
                let mut buf = buf;
                for (at, byte) in edits {
                    let i = at.index(buf.len());
                    buf[i] = byte;
                }
                let small = Limits { max_header_bytes: 96, max_headers: 4 };
                check_incremental(&buf, &LIMITS);
                check_incremental(&buf, &small);
            }

            #[test]
            fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_head(&buf, &LIMITS);
                let _ = parse_head(&buf, &Limits { max_header_bytes: 0, max_headers: 0 });
            }
        }
    }
}
