//! A response being built by a handler, and the filters that turn it into bytes:
//! the head filter decides framing once, then each flush runs compression and chunking
//! and queues the result for the write filter (`OutQueue`).

use std::ffi::c_int;

use super::compress::{self, Coding, Compressor, CompressorPool};
use super::fields::{Fields, Known};
use super::lent::Lent;
use super::outqueue::OutQueue;
use super::pending::Pending;
use super::{date, has_token, is_token, parse_decimal, status, trim_ows};
use crate::abi::{HTTPSRV_COMPRESS_AUTO, HTTPSRV_COMPRESS_OFF, HTTPSRV_COMPRESS_ON};
use crate::errors::{EALREADY, EINVAL, EIO, EMSGSIZE, ENOBUFS, ENOENT};

/// What the head filter needs to know about the request and the server.
pub struct Context<'a> {
    pub version: u8,
    pub is_head: bool,
    /// The client wants a persistent connection and the server allows one more request.
    pub keep_alive: bool,
    /// The coding the client accepts, if any.
    pub accepts: Option<Coding>,
    pub http10_buffering: bool,
    pub compression: bool,
    pub compression_level: u32,
    pub compression_min_length: usize,
    pub compression_types: &'a [String],
    pub server_header: &'a str,
    /// Where compressors come from and go back to.
    pub compressors: &'a CompressorPool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// HEAD, 1xx, 204, 304: appended data is dropped.
    NoBody,
    /// Content-Length: bytes of body still owed.
    Length(u64),
    Chunked,
    /// HTTP/1.0 streaming: the connection's close marks the end.
    Close,
}

pub struct Response {
    status: u16,
    reason: Option<Vec<u8>>,
    fields: Fields,
    compression_mode: c_int,
    /// Body appended since the last flush.
    pending: Pending,
    /// Body bytes appended over the whole response (for a handler's Content-Length).
    appended: u64,
    declared_length: Option<u64>,
    head_sent: bool,
    finished: bool,
    framing: Framing,
    compressor: Option<Box<Compressor>>,
    keep_alive: bool,
    /// The connection must close after this response (short body, close-delimited, refused).
    must_close: bool,
    /// Bytes of the serialised head, so the access log can report body bytes.
    head_len: usize,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: 200,
            reason: None,
            fields: Fields::default(),
            compression_mode: HTTPSRV_COMPRESS_AUTO,
            pending: Pending::default(),
            appended: 0,
            declared_length: None,
            head_sent: false,
            finished: false,
            framing: Framing::NoBody,
            compressor: None,
            keep_alive: false,
            must_close: false,
            head_len: 0,
        }
    }
}

fn valid_value(v: &[u8]) -> bool {
    // Eight bytes at a time: a word holds a refused byte when it, or it XOR CR or LF in every
    // byte, has a zero byte (the exact zero-byte test, so no false alarms).
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let refused = |w: u64| {
        has_zero_byte(w) || has_zero_byte(w ^ (ONES * 0x0d)) || has_zero_byte(w ^ (ONES * 0x0a))
    };
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        if <[u8; 8]>::try_from(w).is_ok_and(|w| refused(u64::from_ne_bytes(w))) {
            return false;
        }
    }
    // One comparison for most bytes: the three refused ones are all below 0x0e.
    !words
        .remainder()
        .iter()
        .any(|&b| b <= b'\r' && (b == b'\r' || b == b'\n' || b == 0))
}

/// A handler's Content-Length value: one number, whitespace around it allowed.
fn parse_length(v: &[u8]) -> Option<u64> {
    parse_decimal(trim_ows(v))
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A chunk-size line ("1a2b\r\n") written into `buf`, without allocating.
fn chunk_size_line(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let end = buf.len() - 2;
    buf[end..].copy_from_slice(b"\r\n");
    let mut i = end;
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

impl Response {
    pub fn head_sent(&self) -> bool {
        self.head_sent
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn keep_alive(&self) -> bool {
        self.keep_alive && !self.must_close
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// Body bytes appended and not yet flushed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Back to a fresh response, keeping the field and body buffers for the next one.
    /// Field by field, like `Response::default`; the pattern names every field, so a new one
    /// cannot be forgotten here.
    pub fn reset(&mut self) {
        let Response {
            status,
            reason,
            fields,
            compression_mode,
            pending,
            appended,
            declared_length,
            head_sent,
            finished,
            framing,
            compressor,
            keep_alive,
            must_close,
            head_len,
        } = self;
        *status = 200;
        *reason = None;
        fields.clear();
        *compression_mode = HTTPSRV_COMPRESS_AUTO;
        pending.clear();
        *appended = 0;
        *declared_length = None;
        *head_sent = false;
        *finished = false;
        *framing = Framing::NoBody;
        // A response cut short may still hold one; its stream state is useless now.
        *compressor = None;
        *keep_alive = false;
        *must_close = false;
        *head_len = 0;
    }

    /// Drops buffers larger than `max` bytes, so a response kept for reuse holds little.
    pub fn shrink(&mut self, max: usize) {
        self.pending.shrink(max);
        self.fields.shrink(max);
    }

    fn check_open(&self) -> Result<(), c_int> {
        if self.head_sent {
            Err(EALREADY)
        } else {
            Ok(())
        }
    }

    pub fn set_status(&mut self, status: i32, reason: Option<&[u8]>) -> Result<(), c_int> {
        if !(200..=999).contains(&status) {
            return Err(EINVAL);
        }
        let reason = match reason {
            Some(r) if !valid_value(r) => return Err(EINVAL),
            Some(r) => Some(r.to_vec()),
            None => None,
        };
        self.check_open()?;
        self.status = status as u16;
        self.reason = reason;
        Ok(())
    }

    /// A module's field: a token name, a value without CR, LF or NUL, never Transfer-Encoding
    /// (the library frames the body), a Content-Length that is a number. Returns which known
    /// name it is.
    fn check_field(name: &[u8], value: &[u8]) -> Result<Option<Known>, c_int> {
        if !is_token(name) || !valid_value(value) {
            return Err(EINVAL);
        }
        let known = Known::of(name);
        match known {
            Some(Known::TransferEncoding) => return Err(EINVAL),
            Some(Known::ContentLength) => {
                parse_length(value).ok_or(EINVAL)?;
            }
            _ => {}
        }
        Ok(known)
    }

    fn note_length(&mut self) {
        self.declared_length = self.fields.get(Known::ContentLength).and_then(parse_length);
    }

    /// Replaces every field of that name.
    pub fn set_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), c_int> {
        let known = Self::check_field(name, value)?;
        self.check_open()?;
        self.fields.set(name, value, known);
        if known == Some(Known::ContentLength) {
            self.note_length();
        }
        Ok(())
    }

    /// Adds one more field of that name.
    pub fn add_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), c_int> {
        let known = Self::check_field(name, value)?;
        self.check_open()?;
        if known == Some(Known::ContentLength) {
            // Two lengths would be ambiguous framing; the last one set wins.
            return self.set_header(name, value);
        }
        self.fields.push(name, value);
        Ok(())
    }

    pub fn remove_header(&mut self, name: &[u8]) -> Result<(), c_int> {
        if !is_token(name) {
            return Err(EINVAL);
        }
        self.check_open()?;
        if self.fields.remove_all(name) == 0 {
            return Err(ENOENT);
        }
        self.note_length();
        Ok(())
    }

    pub fn clear(&mut self) -> Result<(), c_int> {
        self.check_open()?;
        self.status = 200;
        self.reason = None;
        self.fields.clear();
        self.pending.clear();
        self.appended = 0;
        self.declared_length = None;
        Ok(())
    }

    pub fn set_compression(&mut self, mode: c_int) -> Result<(), c_int> {
        if ![
            HTTPSRV_COMPRESS_AUTO,
            HTTPSRV_COMPRESS_OFF,
            HTTPSRV_COMPRESS_ON,
        ]
        .contains(&mode)
        {
            return Err(EINVAL);
        }
        self.check_open()?;
        self.compression_mode = mode;
        Ok(())
    }

    /// Copies body bytes into the pending output. `queued` is what is already waiting for the
    /// socket, counted against `max_pending`.
    pub fn append(&mut self, data: &[u8], queued: usize, max_pending: usize) -> Result<(), c_int> {
        if !self.admit(data.len(), queued, max_pending)? {
            return Ok(());
        }
        // Streamed chunks get room for their size line, so the flush frames them in place.
        let room = self.head_sent && self.framing == Framing::Chunked && self.compressor.is_none();
        self.pending.copy(data, room);
        Ok(())
    }

    /// `append` without the copy: the bytes are sent from where they are. Dropping `lent`
    /// (sent, refused or discarded) releases it.
    pub fn append_lent(
        &mut self,
        lent: Lent,
        queued: usize,
        max_pending: usize,
    ) -> Result<(), c_int> {
        match self.admit(lent.len(), queued, max_pending) {
            Err(e) => {
                lent.refuse();
                return Err(e);
            }
            // Not sent: released right away.
            Ok(false) => return Ok(()),
            Ok(true) if lent.is_empty() => return Ok(()),
            Ok(true) => {}
        }
        self.pending.lend(lent);
        Ok(())
    }

    /// The checks and accounting every append shares. Ok(false): accepted, but the bytes are
    /// not sent (the response has no body).
    fn admit(&mut self, len: usize, queued: usize, max_pending: usize) -> Result<bool, c_int> {
        if self.finished {
            return Err(EALREADY);
        }
        if let Some(limit) = self.declared_length {
            if self.appended + len as u64 > limit {
                return Err(EMSGSIZE);
            }
        }
        if self.pending_len() + queued + len > max_pending {
            return Err(ENOBUFS);
        }
        self.appended += len as u64;
        Ok(!(self.head_sent && self.framing == Framing::NoBody))
    }

    /// Replaces whatever was built with a plain error response (nothing was sent yet).
    pub fn replace_with_error(&mut self, status: u16) {
        let compression_mode = self.compression_mode;
        *self = Response::default();
        self.compression_mode = compression_mode;
        self.status = status;
        self.fields.push(b"Content-Type", b"text/plain");
        let mut text = Vec::new();
        push_decimal(&mut text, u64::from(status));
        text.push(b' ');
        text.extend_from_slice(status::reason_phrase(status).as_bytes());
        text.push(b'\n');
        self.appended = text.len() as u64;
        self.pending = Pending::from_vec(text);
    }

    /// Marks the response finished without closing framing: the connection must close.
    pub fn truncate(&mut self) {
        self.finished = true;
        self.must_close = true;
        self.pending.clear();
    }

    /// Runs the filters for one flush and queues the bytes. Returns false when this flush
    /// sends nothing by policy (HTTP/1.0 buffering).
    pub fn flush(&mut self, last: bool, cx: &Context, out: &mut OutQueue) -> Result<bool, c_int> {
        if self.finished {
            return Err(EALREADY);
        }
        if !self.head_sent && !last && cx.version == 10 && cx.http10_buffering {
            return Ok(false);
        }
        if !self.head_sent {
            if cx.is_head {
                // The head filter needs the bytes whole (a HEAD's compressed length).
                self.pending.flatten();
            }
            self.decide(last, cx);
        }
        if let Some(c) = self.compressor.as_mut() {
            self.pending.flatten();
            let input = self.pending.flat_bytes().unwrap_or_default();
            let mut z = Vec::with_capacity(input.len() / 2 + 64);
            c.compress(input, last, &mut z);
            if c.failed() {
                // The deflate engine gave up (not expected): the stream cannot be finished
                // correctly, so end the response without closing framing.
                self.compressor = None;
                self.truncate();
                return Err(EIO);
            }
            self.pending = Pending::from_vec(z);
            if last {
                if let Some(c) = self.compressor.take() {
                    cx.compressors.give(c);
                }
            }
        }
        if !self.head_sent {
            if self.framing == Framing::Length(u64::MAX) {
                self.framing = Framing::Length(self.pending.len() as u64);
            }
            self.head_len = out.push_with(|h| self.write_head(cx, h));
            self.head_sent = true;
        }
        // The next appends reuse the buffers the queue leaves in `pending`.
        self.frame_body(last, out);
        if last {
            self.finished = true;
        }
        Ok(true)
    }

    /// The head filter: compression, framing and persistence, decided once, from the body so
    /// far (`pending`, whole for a HEAD request).
    fn decide(&mut self, last: bool, cx: &Context) {
        let len = self.pending.len();
        let status = self.status;
        let bodiless_status = status < 200 || status == 204 || status == 304;
        let no_body = cx.is_head || bodiless_status;
        let compressible_status = !(bodiless_status || status == 206);
        let handler_encoded = self.fields.contains(Known::ContentEncoding);
        // Whether the representation depends on Accept-Encoding at all: then caches must be
        // told with Vary, also when this particular client got it plain (RFC 9110 12.5.5).
        let negotiable = cx.compression
            && !handler_encoded
            && match self.compression_mode {
                HTTPSRV_COMPRESS_ON => true,
                HTTPSRV_COMPRESS_AUTO => {
                    let content_type = self.fields.get(Known::ContentType).unwrap_or_default();
                    compress::type_eligible(content_type, cx.compression_types)
                }
                _ => false,
            };
        let too_short = self.compression_mode == HTTPSRV_COMPRESS_AUTO
            && last
            && len < cx.compression_min_length;
        let coding = if negotiable && compressible_status && !too_short {
            cx.accepts
        } else {
            None
        };
        if negotiable && !(status < 200 || status == 204) {
            self.add_vary();
        }
        if let Some(coding) = coding {
            self.fields.remove_known(Known::ContentLength);
            self.declared_length = None;
            self.fields
                .push(b"Content-Encoding", coding.token().as_bytes());
            let mut compressor = cx.compressors.take(coding, cx.compression_level);
            if cx.is_head {
                // HEAD carries the fields GET would: the compressed length, when known.
                if last {
                    let body = self.pending.flat_bytes().unwrap_or_default();
                    let mut z = Vec::with_capacity(body.len() / 2 + 64);
                    compressor.compress(body, true, &mut z);
                    self.fields
                        .push(b"Content-Length", z.len().to_string().as_bytes());
                }
                cx.compressors.give(compressor);
            } else {
                self.compressor = Some(compressor);
            }
        } else if cx.is_head && last && self.declared_length.is_none() && compressible_status {
            self.fields
                .push(b"Content-Length", len.to_string().as_bytes());
        }
        if status < 200 || status == 204 {
            self.fields.remove_known(Known::ContentLength);
            self.declared_length = None;
        }
        self.framing = if no_body {
            Framing::NoBody
        } else if let Some(n) = self.declared_length {
            Framing::Length(n)
        } else if last {
            // Filled in with the real (compressed) size once the body is through the filters.
            Framing::Length(u64::MAX)
        } else if cx.version >= 11 {
            Framing::Chunked
        } else {
            Framing::Close
        };
        let handler_close = self
            .fields
            .get(Known::Connection)
            .is_some_and(|v| has_token(v, b"close"));
        self.keep_alive = cx.keep_alive && self.framing != Framing::Close && !handler_close;
        if self.framing == Framing::Close {
            self.must_close = true;
        }
    }

    fn add_vary(&mut self) {
        match self.fields.get(Known::Vary) {
            Some(v) if has_token(v, b"accept-encoding") || has_token(v, b"*") => {}
            Some(_) => {
                self.fields.extend_value(Known::Vary, b", Accept-Encoding");
            }
            None => self
                .fields
                .push_known(Known::Vary, b"Vary", b"Accept-Encoding"),
        }
    }

    /// Serialises the status line and fields at the end of `h`.
    fn write_head(&self, cx: &Context, h: &mut Vec<u8>) {
        if self.status == 200 && self.reason.is_none() {
            // Most responses: one copy instead of four pieces.
            h.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            h.extend_from_slice(b"HTTP/1.1 ");
            push_decimal(h, u64::from(self.status));
            h.push(b' ');
            match &self.reason {
                Some(r) => h.extend_from_slice(r),
                None => h.extend_from_slice(status::reason_phrase(self.status).as_bytes()),
            }
            h.extend_from_slice(b"\r\n");
        }
        if !cx.server_header.is_empty() && !self.fields.contains(Known::Server) {
            h.extend_from_slice(b"Server: ");
            h.extend_from_slice(cx.server_header.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        if !self.fields.contains(Known::Date) {
            h.extend_from_slice(b"Date: ");
            h.extend_from_slice(&date::http_date());
            h.extend_from_slice(b"\r\n");
        }
        // The library writes Connection itself, from its own decision.
        self.fields.write_lines(h, Known::Connection);
        match self.framing {
            Framing::Length(n) if self.declared_length.is_none() => {
                h.extend_from_slice(b"Content-Length: ");
                push_decimal(h, n);
                h.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => h.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        if !self.keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if cx.version == 10 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        h.extend_from_slice(b"\r\n");
    }

    /// The chunk filter (and its Content-Length and close-delimited siblings): queues the
    /// pending bytes and leaves `pending` empty, with its buffers (see `Pending::queue`).
    fn frame_body(&mut self, last: bool, out: &mut OutQueue) {
        let len = self.pending.len();
        match self.framing {
            Framing::NoBody => return self.pending.clear(),
            Framing::Chunked if len == 0 => {
                if last {
                    out.push_copy(b"0\r\n\r\n");
                }
                return self.pending.clear();
            }
            Framing::Chunked => {
                let mut line = [0u8; 20];
                let line = chunk_size_line(len, &mut line);
                let end: &[u8] = if last { b"\r\n0\r\n\r\n" } else { b"\r\n" };
                self.pending.queue(Some((line, end)), out)
            }
            Framing::Length(_) | Framing::Close => self.pending.queue(None, out),
        }
        if let Framing::Length(owed) = self.framing {
            let n = (len as u64).min(owed);
            self.framing = Framing::Length(owed - n);
            if last && owed - n > 0 {
                // The handler promised more than it sent: only closing can tell the client.
                self.must_close = true;
            }
        }
    }
}

/// Negotiates the coding for a request's Accept-Encoding, if any.
pub fn accepted_coding(accept_encoding: Option<&[u8]>) -> Option<Coding> {
    accept_encoding.and_then(compress::negotiate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_refused_for_nul_cr_or_lf_anywhere_and_nothing_else() {
        // Fillers next to the refused bytes' values and with the high bit set, where a word-wide
        // test could borrow across bytes.
        for filler in [b'a', 0x01, 0x0b, 0x0e, 0x80, 0x8d, 0xff] {
            for len in 1..20 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut v = vec![filler; len];
                        v[at] = b;
                        let expected = !matches!(b, 0 | b'\r' | b'\n');
                        assert_eq!(valid_value(&v), expected, "{b} at {at} of {len}, {filler}");
                    }
                }
            }
        }
        assert!(valid_value(b""));
    }

    static POOL: std::sync::LazyLock<CompressorPool> =
        std::sync::LazyLock::new(CompressorPool::default);

    fn cx(version: u8) -> Context<'static> {
        Context {
            version,
            is_head: false,
            keep_alive: true,
            accepts: None,
            http10_buffering: true,
            compression: true,
            compression_level: 1,
            compression_min_length: 256,
            compression_types: &[],
            server_header: "httpsrv",
            compressors: &POOL,
        }
    }

    fn text(q: &OutQueue) -> String {
        String::from_utf8_lossy(&q.contents()).into_owned()
    }

    fn body_of(s: &str) -> &str {
        &s[s.find("\r\n\r\n").unwrap() + 4..]
    }

    #[test]
    fn one_shot_gets_content_length() {
        let mut r = Response::default();
        let mut q = OutQueue::default();
        r.append(b"Hello, world!", 0, 1 << 20).unwrap();
        assert!(r.flush(true, &cx(11), &mut q).unwrap());
        let s = text(&q);
        assert!(
            s.starts_with("HTTP/1.1 200 OK\r\nServer: httpsrv\r\nDate: "),
            "{s}"
        );
        assert!(s.contains("\r\nContent-Length: 13\r\n"));
        assert!(!s.contains("Connection"));
        assert_eq!(body_of(&s), "Hello, world!");
        assert!(r.keep_alive());
        assert_eq!(r.flush(true, &cx(11), &mut q), Err(EALREADY));
        assert_eq!(r.append(b"x", 0, 100), Err(EALREADY));
    }

    #[test]
    fn streaming_is_chunked_without_premature_last_chunk() {
        let mut r = Response::default();
        let mut q = OutQueue::default();
        r.append(b"abc", 0, 1 << 20).unwrap();
        r.flush(false, &cx(11), &mut q).unwrap();
        r.flush(false, &cx(11), &mut q).unwrap();
        r.append(&[b'z'; 17], 0, 1 << 20).unwrap();
        r.flush(false, &cx(11), &mut q).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        let s = text(&q);
        assert!(s.contains("Transfer-Encoding: chunked\r\n"));
        assert_eq!(
            body_of(&s),
            format!("3\r\nabc\r\n11\r\n{}\r\n0\r\n\r\n", "z".repeat(17))
        );
    }

    #[test]
    fn chunks_framed_in_place_or_copied_give_the_same_bytes() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut r = Response::default();
        let mut q = OutQueue::default();
        r.flush(false, &cx(11), &mut q).unwrap();
        let mut expect = String::new();
        // Drained before each flush (framed in place), then twice without draining (copied
        // behind what waits), then the final chunk.
        for (i, (len, drain)) in [
            (1, true),
            (1000, true),
            (5000, true),
            (7, false),
            (300, false),
        ]
        .into_iter()
        .enumerate()
        {
            if drain {
                q.write_to(a.as_raw_fd()).unwrap();
                assert!(q.is_empty());
            }
            let piece = char::from(b'a' + i as u8).to_string().repeat(len);
            r.append(piece.as_bytes(), q.len(), 1 << 20).unwrap();
            assert_eq!(r.pending_len(), len);
            r.flush(false, &cx(11), &mut q).unwrap();
            expect += &format!("{len:x}\r\n{piece}\r\n");
        }
        q.write_to(a.as_raw_fd()).unwrap();
        r.append(b"end", 0, 1 << 20).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        q.write_to(a.as_raw_fd()).unwrap();
        expect += "3\r\nend\r\n0\r\n\r\n";
        drop(a);
        let mut got = String::new();
        b.read_to_string(&mut got).unwrap();
        assert_eq!(body_of(&got), expect);
    }

    #[test]
    fn a_reset_response_is_a_fresh_one() {
        fn without_date(q: &OutQueue) -> String {
            text(q)
                .split("\r\n")
                .filter(|l| !l.starts_with("Date: "))
                .collect::<Vec<_>>()
                .join("\r\n")
        }
        fn hello(r: &mut Response) -> String {
            let mut q = OutQueue::default();
            r.set_header(b"Content-Type", b"text/plain").unwrap();
            r.append(b"Hello, world!", 0, 1 << 20).unwrap();
            r.flush(true, &cx(11), &mut q).unwrap();
            without_date(&q)
        }
        let mut used = Response::default();
        let mut q = OutQueue::default();
        let mut gzip = cx(11);
        gzip.accepts = Some(Coding::Gzip);
        used.set_status(404, Some(b"Nope")).unwrap();
        used.set_header(b"Content-Length", b"300").unwrap();
        used.add_header(b"Vary", b"Cookie").unwrap();
        used.add_header(b"Connection", b"close").unwrap();
        used.set_compression(HTTPSRV_COMPRESS_ON).unwrap();
        used.append(&[b'a'; 100], 0, 1 << 20).unwrap();
        used.flush(false, &gzip, &mut q).unwrap();
        used.append(&[b'b'; 100], 0, 1 << 20).unwrap();
        // Ends mid-response, with a compressor and pending bytes.
        used.reset();
        assert_eq!(hello(&mut used), hello(&mut Response::default()));
    }

    #[test]
    fn final_chunk_is_joined_with_data() {
        let mut r = Response::default();
        let mut q = OutQueue::default();
        r.flush(false, &cx(11), &mut q).unwrap();
        r.append(b"end", 0, 1 << 20).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        assert_eq!(body_of(&text(&q)), "3\r\nend\r\n0\r\n\r\n");
    }

    #[test]
    fn handler_length_is_honoured_and_enforced() {
        let mut r = Response::default();
        let mut q = OutQueue::default();
        assert_eq!(r.set_header(b"Content-Length", b"x1"), Err(EINVAL));
        r.set_header(b"Content-Length", b"5").unwrap();
        r.append(b"abc", 0, 100).unwrap();
        assert_eq!(r.append(b"def", 0, 100), Err(EMSGSIZE));
        r.flush(false, &cx(11), &mut q).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        let s = text(&q);
        assert!(s.contains("Content-Length: 5\r\n"));
        assert!(!s.contains("chunked"));
        assert_eq!(body_of(&s), "abc");
        assert!(!r.keep_alive(), "a short body must close the connection");
    }

    #[test]
    fn head_204_304_have_no_body() {
        let mut c = cx(11);
        c.is_head = true;
        let mut r = Response::default();
        let mut q = OutQueue::default();
        r.append(b"12345", 0, 100).unwrap();
        r.flush(true, &c, &mut q).unwrap();
        let s = text(&q);
        assert!(s.contains("Content-Length: 5\r\n"), "{s}");
        assert_eq!(body_of(&s), "");
        for code in [204, 304] {
            let mut r = Response::default();
            let mut q = OutQueue::default();
            r.set_status(code, None).unwrap();
            r.append(b"12345", 0, 100).unwrap();
            r.flush(false, &cx(11), &mut q).unwrap();
            r.flush(true, &cx(11), &mut q).unwrap();
            let s = text(&q);
            assert!(
                !s.contains("chunked") && !s.contains("Content-Length"),
                "{s}"
            );
            assert_eq!(body_of(&s), "");
        }
    }

    #[test]
    fn http10_buffers_or_streams_and_closes() {
        let mut r = Response::default();
        let mut q = OutQueue::default();
        let mut c = cx(10);
        c.keep_alive = false;
        r.append(b"ab", 0, 100).unwrap();
        assert!(!r.flush(false, &c, &mut q).unwrap());
        assert!(q.is_empty());
        r.append(b"cd", 0, 100).unwrap();
        r.flush(true, &c, &mut q).unwrap();
        let s = text(&q);
        assert!(
            s.contains("Content-Length: 4\r\nConnection: close\r\n\r\nabcd"),
            "{s}"
        );

        c.http10_buffering = false;
        let mut r = Response::default();
        let mut q = OutQueue::default();
        r.append(b"ab", 0, 100).unwrap();
        r.flush(false, &c, &mut q).unwrap();
        r.append(b"cd", 0, 100).unwrap();
        r.flush(true, &c, &mut q).unwrap();
        let s = text(&q);
        assert!(!s.contains("Content-Length") && !s.contains("chunked"));
        assert_eq!(body_of(&s), "abcd");
        assert!(!r.keep_alive());
    }

    #[test]
    fn fields_are_validated() {
        let mut r = Response::default();
        assert_eq!(r.set_header(b"X-A", b"a\r\nb"), Err(EINVAL));
        assert_eq!(r.set_header(b"X A", b"v"), Err(EINVAL));
        assert_eq!(r.set_header(b"Transfer-Encoding", b"chunked"), Err(EINVAL));
        assert_eq!(r.remove_header(b"X-None"), Err(ENOENT));
        assert_eq!(r.set_status(99, None), Err(EINVAL));
        assert_eq!(r.set_status(1000, None), Err(EINVAL));
        assert_eq!(r.set_status(200, Some(b"O\nK")), Err(EINVAL));
        r.add_header(b"Set-Cookie", b"a=1").unwrap();
        r.add_header(b"Set-Cookie", b"b=2").unwrap();
        r.set_status(599, Some(b"")).unwrap();
        let mut q = OutQueue::default();
        r.flush(true, &cx(11), &mut q).unwrap();
        let s = text(&q);
        assert!(s.starts_with("HTTP/1.1 599 \r\n"));
        assert!(s.contains("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"));
        assert_eq!(r.set_header(b"X-Late", b"v"), Err(EALREADY));
    }

    #[test]
    fn pending_limit_takes_nothing() {
        let mut r = Response::default();
        r.append(&[0; 60], 0, 100).unwrap();
        assert_eq!(r.append(&[0; 41], 0, 100), Err(ENOBUFS));
        assert_eq!(r.pending_len(), 60);
        assert_eq!(r.append(&[0; 30], 20, 100), Err(ENOBUFS));
    }
}
