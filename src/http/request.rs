//! The request model, protocol-neutral: one request head (method, target, version, fields, and
//! what the codec decided about its body and connection), owning its bytes. Codecs fill it
//! through `RequestBuilder` (HTTP/1.1: `crate::proto::h1::parse`), so none of them knows how it
//! stores its strings. `HttpError` is here too: every codec and the server refuse a request the
//! same way, with a status.
//!
//! The strings are kept in one owned buffer in which every string is NUL-terminated, so the
//! same bytes serve the Rust accessors (slices) and the C accessors (pointers that stay put while
//! the `Request` lives, because the heap block of a `Vec` never moves when its owner does).

use libc::c_char;

/// A request the server must refuse: `status` is the 4xx/5xx to send (always with Connection: close),
/// `reason` a short text for the error log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// 400, 413, 414, 431, 501 or 505.
    pub status: u16,
    /// What was wrong, for the error log (never sent to the client as is).
    pub reason: &'static str,
}

impl HttpError {
    /// An error with this status and log text.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

/// How the body that follows the head is delimited. The cases are those of HTTP/1.1 (RFC 9112
/// section 6.3); they live in the model because the server picks how to read the body from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFraming {
    /// No Content-Length and no Transfer-Encoding: the request has no body.
    #[default]
    None,
    /// Content-Length (possibly 0).
    Length(u64),
    /// Transfer-Encoding: chunked, decoded with `proto::h1::chunked::ChunkedDecoder`.
    Chunked,
}

/// A string inside `Request::data`: `len` bytes at `off`, followed by a NUL.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    off: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: Span,
    value: Span,
}

/// One request head, owning its bytes. The default is an empty placeholder whose buffers
/// a `RequestBuilder` fills.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The builder's source (HTTP/1.1: the head as received), then any copied strings; every
    /// string ends with a NUL (see `RequestBuilder`).
    data: Vec<u8>,
    fields: Vec<Field>,
    method: Span,
    target: Span,
    path: Span,
    query: Span,
    /// The authority of an absolute-form target, which is the host (see `Request::host`);
    /// empty when there is none (an empty one is refused).
    authority: Span,
    version: u8,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    is_head: bool,
    head_len: usize,
}

/// Pointed to when a span is somehow out of range, so C never receives NULL for a string that
/// must exist.
static EMPTY_C: [u8; 1] = [0];

impl Request {
    fn bytes(&self, s: Span) -> &[u8] {
        self.data
            .get(s.off as usize..)
            .and_then(|t| t.get(..s.len as usize))
            .unwrap_or(&[])
    }

    fn text(&self, s: Span) -> &str {
        // Only visible ASCII is ever stored in these spans, so this never falls back; checking
        // for ASCII is cheaper than full UTF-8 validation, and this runs several times a request.
        let b = self.bytes(s);
        if b.is_ascii() {
            // SAFETY: ASCII is valid UTF-8.
            unsafe { std::str::from_utf8_unchecked(b) }
        } else {
            ""
        }
    }

    fn c_ptr(&self, s: Span) -> *const c_char {
        self.data
            .get(s.off as usize..)
            .map_or(EMPTY_C.as_ptr(), |t| t.as_ptr())
            .cast()
    }

    /// Drops buffers larger than `max` bytes, so a request kept for reuse holds little.
    pub fn shrink(&mut self, max: usize) {
        if self.data.capacity() > max {
            self.data = Vec::new();
        }
        if self.fields.capacity() * std::mem::size_of::<Field>() > max {
            self.fields = Vec::new();
        }
    }

    /// The method, a token (case-sensitive: `get` is not `GET`).
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request-target as received.
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The target's path without the query, not percent-decoded. Absolute-form
    /// `http://h/p?q` gives `/p` (`/` when the URI has no path), `*` gives `*`, and the
    /// authority-form of CONNECT gives "".
    pub fn path(&self) -> &str {
        self.text(self.path)
    }

    /// The part after the first `?`, "" when there is none.
    pub fn query(&self) -> &str {
        self.text(self.query)
    }

    /// 10 or 11.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The request's host: the authority of an absolute-form target (RFC 9112 section 3.2.2),
    /// which is also the value of the Host field in place of the one received, else the Host
    /// field's value; None when there is neither (HTTP/1.0).
    pub fn host(&self) -> Option<&[u8]> {
        self.host_span().map(|h| self.bytes(h))
    }

    // Looked up when asked for rather than kept: asked for rarely, but the parser would pay
    // for keeping it on every request.
    fn host_span(&self) -> Option<Span> {
        if self.authority.len > 0 {
            Some(self.authority)
        } else {
            self.find(b"host").map(|f| f.value)
        }
    }

    /// The value of the first field named `name` (ASCII case-insensitive), trimmed.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.find(name).map(|f| self.bytes(f.value))
    }

    /// Number of header fields, repeated names counted each time.
    pub fn header_count(&self) -> usize {
        self.fields.len()
    }

    /// Field `index` in the order received, name as sent.
    pub fn header_at(&self, index: usize) -> Option<(&[u8], &[u8])> {
        self.fields
            .get(index)
            .map(|f| (self.bytes(f.name), self.bytes(f.value)))
    }

    fn find(&self, name: &[u8]) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| self.bytes(f.name).eq_ignore_ascii_case(name))
    }

    /// `method()` NUL-terminated; valid, and never moving, as long as the `Request` lives.
    pub fn method_c(&self) -> *const c_char {
        self.c_ptr(self.method)
    }

    /// `target()` NUL-terminated, like `method_c`.
    pub fn target_c(&self) -> *const c_char {
        self.c_ptr(self.target)
    }

    /// `path()` NUL-terminated, like `method_c`.
    pub fn path_c(&self) -> *const c_char {
        self.c_ptr(self.path)
    }

    /// `query()` NUL-terminated (an empty string, not NULL, when there is none).
    pub fn query_c(&self) -> *const c_char {
        self.c_ptr(self.query)
    }

    /// `host()` NUL-terminated, like `method_c`.
    pub fn host_c(&self) -> Option<*const c_char> {
        self.host_span().map(|h| self.c_ptr(h))
    }

    /// NUL-terminated value of the first field named `name`. A value cannot contain NUL (refused
    /// at parse time), so C sees all of it.
    pub fn header_c(&self, name: &[u8]) -> Option<*const c_char> {
        self.find(name).map(|f| self.c_ptr(f.value))
    }

    /// `header_at()` as NUL-terminated name and value, like `method_c`.
    pub fn header_at_c(&self, index: usize) -> Option<(*const c_char, *const c_char)> {
        self.fields
            .get(index)
            .map(|f| (self.c_ptr(f.name), self.c_ptr(f.value)))
    }

    /// How the body that follows the head is delimited.
    pub fn body_framing(&self) -> BodyFraming {
        self.framing
    }

    /// HTTP/1.1: true unless a Connection field lists `close`. HTTP/1.0: true only when one lists
    /// `keep-alive` (and none lists `close`).
    pub fn wants_keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// HTTP/1.1 with `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// The method is exactly `HEAD`: the response carries no body.
    pub fn is_head(&self) -> bool {
        self.is_head
    }

    /// Bytes of the head from the start of the parsed buffer (skipped leading empty lines
    /// included) through the final empty line; equal to the `n` returned by
    /// `proto::h1::parse::parse_head`.
    pub fn head_len(&self) -> usize {
        self.head_len
    }
}

/// What a codec decided about a request besides its strings, handed to `RequestBuilder::finish`.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// 10 or 11.
    pub version: u8,
    /// See `Request::body_framing`.
    pub framing: BodyFraming,
    /// See `Request::wants_keep_alive`.
    pub keep_alive: bool,
    /// See `Request::expects_continue`.
    pub expect_continue: bool,
    /// See `Request::head_len`.
    pub head_len: usize,
}

/// Fills a `Request`, reusing its buffers, so that a codec never sees the span layout.
///
/// It builds `Request::data` as nginx keeps a request: the `source` (for HTTP/1.1 the head as
/// received) copied whole, and each string that is a slice of it ended with a NUL written over
/// the delimiter that follows it there (SP, HTAB, CR, LF, ':' or '?', which belong to no string).
/// A string that does not sit in the source that way (a made-up one, one whose end another string
/// needs, or any string of a codec that passes an empty source) is copied after the source.
/// Until `finish`, the request holds nothing useful.
pub struct RequestBuilder<'r, 's> {
    req: &'r mut Request,
    data: Vec<u8>,
    fields: Vec<Field>,
    source: &'s [u8],
    method: Span,
    target: Span,
    path: Span,
    query: Span,
    authority: Span,
    is_head: bool,
}

impl<'r, 's> RequestBuilder<'r, 's> {
    /// Most bytes `capacity` may ask for: strings are found by u32 offsets.
    // Not `pub`: cbindgen would put a public constant in the C header.
    pub(crate) const MAX_CAPACITY: usize = u32::MAX as usize;

    /// Starts refilling `req`. `capacity` covers the source and the strings that will be copied
    /// (with their NULs), and is at most `MAX_CAPACITY` (checked by the caller); a copy beyond it
    /// (not expected) only costs a reallocation. `fields` is how many `field` calls will follow.
    // `new`, `target` and `finish` run once per request on the parser's hot path. With a plain
    // `#[inline]` LLVM kept them out of line, which cost about 40 instructions a request more
    // than the parser spent when this code was its own (measured with callgrind).
    #[inline(always)]
    pub fn new(
        req: &'r mut Request,
        source: &'s [u8],
        capacity: usize,
        fields: usize,
    ) -> RequestBuilder<'r, 's> {
        let mut data = std::mem::take(&mut req.data);
        data.clear();
        data.reserve(capacity);
        data.extend_from_slice(source);
        let mut f = std::mem::take(&mut req.fields);
        f.clear();
        f.reserve(fields);
        RequestBuilder {
            req,
            data,
            fields: f,
            source,
            method: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: Span::default(),
            authority: Span::default(),
            is_head: false,
        }
    }

    /// The method and the request-target, and the target's path and query (slices of the target
    /// or made up, as `Request::path` describes). Called once, before the fields.
    #[inline(always)]
    pub fn target(&mut self, method: &[u8], target: &[u8], path: &[u8], query: &[u8]) {
        self.method = self.span(method);
        // A path that ends at a '?' would end inside the target: then the target gets a copy.
        self.target = if target.as_ptr_range().contains(&path.as_ptr_range().end) {
            self.copy(target)
        } else {
            self.span(target)
        };
        self.path = self.span(path);
        self.query = self.span(query);
        self.is_head = method == b"HEAD";
    }

    /// The authority of an absolute-form target (RFC 9112 section 3.2.2): the request's host,
    /// and, at `finish`, the value of the Host field in place of the one received. Rare, so
    /// always copied (in place it could end at a '?' that the target needs).
    #[cold]
    pub fn target_authority(&mut self, authority: &[u8]) {
        self.authority = self.copy(authority);
    }

    /// The Host field takes the value of the target's authority.
    #[cold]
    #[inline(never)]
    fn authority_replaces_host(&mut self, authority: Span) {
        let source = &self.data;
        let name = |f: &Field| {
            source
                .get(f.name.off as usize..)
                .and_then(|n| n.get(..f.name.len as usize))
        };
        for field in &mut self.fields {
            if name(field).is_some_and(|n| n.eq_ignore_ascii_case(b"host")) {
                field.value = authority;
            }
        }
    }

    /// Appends a header field, name as sent and value trimmed.
    #[inline(always)]
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        let field = Field {
            name: self.span_inline(name),
            value: self.span_inline(value),
        };
        self.fields.push(field);
    }

    /// Completes the request.
    #[inline(always)]
    pub fn finish(mut self, meta: Meta) {
        if self.authority.len > 0 {
            self.authority_replaces_host(self.authority);
        }
        *self.req = Request {
            data: self.data,
            fields: self.fields,
            method: self.method,
            target: self.target,
            path: self.path,
            query: self.query,
            authority: self.authority,
            version: meta.version,
            framing: meta.framing,
            keep_alive: meta.keep_alive,
            expect_continue: meta.expect_continue,
            is_head: self.is_head,
            head_len: meta.head_len,
        };
    }

    /// `span_inline` as a call, for the strings of the request line.
    #[inline(never)]
    fn span(&mut self, s: &[u8]) -> Span {
        self.span_inline(s)
    }

    /// The span of `s`, a slice of the source if it is one that can end in place.
    // Fixed inlining: inlined into the per-field loop (two per field), called for the four
    // strings of the request line. LLVM's own choice went either way as the parser around
    // it changed, by 20 to 40 instructions a request (callgrind, bench/profile.sh hello).
    #[inline(always)]
    fn span_inline(&mut self, s: &[u8]) -> Span {
        let off = (s.as_ptr() as usize).wrapping_sub(self.source.as_ptr() as usize);
        let end = off.wrapping_add(s.len());
        // Inside the source (a slice from elsewhere wraps around or ends past it)...
        if off <= end && end < self.source.len() {
            // ...and followed by a delimiter, or by the NUL of a string it ends with (a path
            // that is the whole target). An empty string ends in place as well as any.
            if let Some(b @ (0 | b' ' | b'\t' | b'\r' | b'\n' | b':' | b'?')) =
                self.data.get_mut(end)
            {
                *b = 0;
                return Span {
                    off: off as u32,
                    len: s.len() as u32,
                };
            }
        }
        self.copy(s)
    }

    /// Appends `s` and a NUL after the source.
    #[cold]
    fn copy(&mut self, s: &[u8]) -> Span {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(s);
        self.data.push(0);
        Span {
            off,
            len: s.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn c<'a>(p: *const c_char) -> &'a [u8] {
        // SAFETY: the accessors hand out NUL-terminated strings that live as long as the Request.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }

    const META: Meta = Meta {
        version: 11,
        framing: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        head_len: 0,
    };

    #[test]
    fn request_is_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Request>();
        check::<HttpError>();
    }

    #[test]
    fn builder_without_a_source_copies_every_string() {
        // As an HTTP/2 codec would fill it: no head, strings from anywhere.
        let mut req = Request::default();
        let target = b"/p?q=1".to_vec();
        let mut b = RequestBuilder::new(&mut req, b"", 0, 2);
        b.target(b"HEAD", &target, &target[..2], &target[3..]);
        b.field(b"host", b"h");
        b.field(b"X-Empty", b"");
        b.finish(Meta {
            framing: BodyFraming::Length(3),
            head_len: 7,
            ..META
        });
        let parts = (req.method(), req.target(), req.path(), req.query());
        assert_eq!(parts, ("HEAD", "/p?q=1", "/p", "q=1"));
        assert!(req.is_head());
        assert_eq!((req.version(), req.head_len()), (11, 7));
        assert_eq!(req.body_framing(), BodyFraming::Length(3));
        assert_eq!(req.header(b"HOST"), Some(&b"h"[..]));
        assert_eq!(req.header_at(1), Some((&b"X-Empty"[..], &b""[..])));
        assert_eq!(c(req.method_c()), b"HEAD");
        assert_eq!(c(req.target_c()), b"/p?q=1");
        assert_eq!(c(req.path_c()), b"/p");
        assert_eq!(c(req.query_c()), b"q=1");
        assert_eq!(c(req.header_c(b"x-empty").unwrap()), b"");
        let (n, v) = req.header_at_c(0).unwrap();
        assert_eq!((c(n), c(v)), (&b"host"[..], &b"h"[..]));
        // Every string copied, each with its NUL.
        assert_eq!(req.data.len(), 5 + 7 + 3 + 4 + 5 + 2 + 8 + 1);
    }

    #[test]
    fn builder_ends_strings_in_place_only_before_a_delimiter() {
        let source = b"GET /a?b HTTP/1.1\r\nX: yz\r\n\r\n";
        let mut req = Request::default();
        let mut b = RequestBuilder::new(&mut req, source, source.len() + 16, 2);
        let s = |from: usize, to: usize| &source[from..to];
        // The path ends at the '?' inside the target, so the target is copied.
        b.target(s(0, 3), s(4, 8), s(4, 6), s(7, 8));
        b.field(s(19, 20), s(22, 24));
        // "y" is followed by 'z', not a delimiter: copied, and "yz" stays whole.
        b.field(s(22, 23), s(23, 24));
        b.finish(META);
        assert!(!req.is_head());
        let parts = (req.method(), req.target(), req.path(), req.query());
        assert_eq!(parts, ("GET", "/a?b", "/a", "b"));
        assert_eq!(c(req.target_c()), b"/a?b");
        assert_eq!(c(req.path_c()), b"/a");
        assert_eq!(c(req.query_c()), b"b");
        assert_eq!(req.header_at(0), Some((&b"X"[..], &b"yz"[..])));
        assert_eq!(req.header_at(1), Some((&b"y"[..], &b"z"[..])));
        for i in 0..2 {
            let (n, v) = req.header_at_c(i).unwrap();
            let (name, value) = req.header_at(i).unwrap();
            assert_eq!((c(n), c(v)), (name, value));
        }
        // Only the target and "y" were copied.
        assert_eq!(req.data.len(), source.len() + 5 + 2);
        assert_eq!(req.path_c(), req.method_c().wrapping_add(4));
    }
}
