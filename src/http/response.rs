//! A response being built by a handler, protocol-neutral: status, fields, the body appended
//! since the last flush, and the representation filters (compression, what a HEAD request
//! carries). A flush hands a protocol encoder (`crate::proto`) the head, once, as a structured
//! value, and the body bytes with `last`; the encoder alone knows the wire format.

use std::ffi::c_int;

use super::compress::{self, Coding, Compressor, CompressorPool};
use super::fields::{Fields, Known};
use super::lent::Lent;
use super::pending::Pending;
use super::{has_token, is_token, parse_decimal, push_decimal, status, trim_ows};
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

/// What the body's length is known to be when the head goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// No body bytes are sent: a HEAD request, or a 1xx, 204 or 304 status.
    None,
    /// The handler's `Content-Length` field, which is among the fields.
    Declared(u64),
    /// The whole body is in this flush: the encoder states its length.
    Exactly(u64),
    /// More follows.
    Unknown,
}

/// The status line's content and the fields, as the first flush that sends hands them over.
pub struct Head<'a> {
    pub status: u16,
    pub reason: Option<&'a [u8]>,
    pub fields: &'a Fields,
    pub length: BodyLength,
}

pub struct Response {
    status: u16,
    reason: Option<Vec<u8>>,
    fields: Fields,
    /// Fields sent after the body, where the protocol can carry them.
    trailers: Fields,
    compression_mode: c_int,
    /// Body appended since the last flush.
    pending: Pending,
    /// Body bytes appended over the whole response (for a handler's Content-Length).
    appended: u64,
    declared_length: Option<u64>,
    head_sent: bool,
    finished: bool,
    /// The head went out without a body (`BodyLength::None`): appends are dropped.
    body_dropped: bool,
    /// The encoder frames each flush's bytes where they lie: copies start behind room for a
    /// frame header (see `Pending::copy`).
    frame_room: bool,
    compressor: Option<Box<Compressor>>,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: 200,
            reason: None,
            fields: Fields::default(),
            trailers: Fields::default(),
            compression_mode: HTTPSRV_COMPRESS_AUTO,
            pending: Pending::default(),
            appended: 0,
            declared_length: None,
            head_sent: false,
            finished: false,
            body_dropped: false,
            frame_room: false,
            compressor: None,
        }
    }
}

/// The bytes a field value or a reason phrase may hold (RFC 9110 section 5.5, RFC 9112 section
/// 4): HTAB, SP, VCHAR and obs-text (0x80 and above). Every other control byte (NUL, CR, LF,
/// 0x01-0x08, 0x0a-0x1f) and DEL are refused.
static VALUE_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b == 0x09 || (b >= 0x20 && b != 0x7f);
        b += 1;
    }
    t
};

/// The high bit of each byte of a word that is below 0x20 (HTAB included) or DEL, exactly:
/// sums of the low seven bits, which never carry into the next byte.
macro_rules! suspect_bytes {
    ($ty:ty, $w:expr) => {{
        const ONES: $ty = <$ty>::MAX / 0xff;
        let w: $ty = $w;
        let low = w & (ONES * 0x7f);
        // High bit set: low >= 0x20, and low == 0x7f.
        let (at_least_space, del) = (low + ONES * 0x60, low + ONES);
        (!at_least_space | del) & !w & (ONES * 0x80)
    }};
}

/// Checks `v` against `VALUE_BYTE`. It runs for every field a module sets, so it looks at a
/// word at a time: 8 bytes (the last word overlapping the one before), two overlapping 4-byte
/// words for 4 to 7 bytes; the table only for shorter values and for a value with a suspect
/// byte (a refused one or an HTAB: rare).
#[inline(always)]
pub(crate) fn valid_value(v: &[u8]) -> bool {
    let word = |at: usize| {
        v.get(at..)
            .and_then(|w| w.first_chunk::<8>())
            .map_or(0, |w| u64::from_ne_bytes(*w))
    };
    let n = v.len();
    let suspect = if n >= 8 {
        let mut acc = 0;
        let mut at = 0;
        while at + 8 < n {
            acc |= suspect_bytes!(u64, word(at));
            at += 8;
        }
        acc | suspect_bytes!(u64, word(n - 8))
    } else if let (Some(first), Some(last)) = (v.first_chunk::<4>(), v.last_chunk::<4>()) {
        let first = suspect_bytes!(u32, u32::from_ne_bytes(*first));
        u64::from(first | suspect_bytes!(u32, u32::from_ne_bytes(*last)))
    } else {
        return v.iter().all(|&b| VALUE_BYTE[usize::from(b)]);
    };
    suspect == 0 || valid_bytes(v)
}

/// `valid_value` byte by byte.
#[cold]
#[inline(never)]
fn valid_bytes(v: &[u8]) -> bool {
    v.iter().all(|&b| VALUE_BYTE[usize::from(b)])
}

/// A handler's Content-Length value: one number, whitespace around it allowed.
fn parse_length(v: &[u8]) -> Option<u64> {
    parse_decimal(trim_ows(v))
}

impl Response {
    pub fn head_sent(&self) -> bool {
        self.head_sent
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn status(&self) -> u16 {
        self.status
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
            trailers,
            compression_mode,
            pending,
            appended,
            declared_length,
            head_sent,
            finished,
            body_dropped,
            frame_room,
            compressor,
        } = self;
        *status = 200;
        *reason = None;
        fields.clear();
        trailers.clear();
        *compression_mode = HTTPSRV_COMPRESS_AUTO;
        pending.clear();
        *appended = 0;
        *declared_length = None;
        *head_sent = false;
        *finished = false;
        *body_dropped = false;
        *frame_room = false;
        // A response cut short may still hold one; its stream state is useless now.
        *compressor = None;
    }

    /// Drops buffers larger than `max` bytes, so a response kept for reuse holds little.
    pub fn shrink(&mut self, max: usize) {
        self.pending.shrink(max);
        self.fields.shrink(max);
        self.trailers.shrink(max);
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

    /// A module's field: a token name, a value of `VALUE_BYTE`s, never Transfer-Encoding
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

    /// Adds a trailer field, sent after the body where the framing allows (chunked HTTP/1.1).
    /// A response with trailers is not given a `Content-Length` of its own, so that its
    /// framing can carry them. The trailer rules of `API.md` (fields that must not be trailers,
    /// the `Trailer` announcement) come with its C function.
    pub fn add_trailer(&mut self, name: &[u8], value: &[u8]) -> Result<(), c_int> {
        let known = Self::check_field(name, value)?;
        if self.finished || known.is_some() {
            return Err(if self.finished { EALREADY } else { EINVAL });
        }
        self.trailers.push(name, value);
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
        self.trailers.clear();
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

    /// Copies body bytes into the pending output. `queued` is what the library copied that is
    /// already waiting for the socket: with the copies pending here, it counts against
    /// `max_pending` (lent bytes are the module's memory and do not).
    pub fn append(&mut self, data: &[u8], queued: usize, max_pending: usize) -> Result<(), c_int> {
        if !self.admit(data.len(), data.len(), queued, max_pending)? {
            return Ok(());
        }
        // Streamed chunks get room for their size line, so the flush frames them in place.
        let room = self.frame_room && self.compressor.is_none();
        self.pending.copy(data, room);
        Ok(())
    }

    /// `append` without the copy: the bytes are sent from where they are, and being the
    /// module's memory they do not count against `max_pending_bytes`. Dropping `lent` (sent,
    /// refused or discarded) releases it.
    pub fn append_lent(&mut self, lent: Lent) -> Result<(), c_int> {
        match self.admit(lent.len(), 0, 0, usize::MAX) {
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

    /// The checks and accounting every append shares: `len` bytes, `copied` of them copied
    /// (they count against `max_pending` with the copies pending and the `queued` ones).
    /// Ok(false): accepted, but the bytes are not sent (the response has no body).
    fn admit(
        &mut self,
        len: usize,
        copied: usize,
        queued: usize,
        max_pending: usize,
    ) -> Result<bool, c_int> {
        if self.finished {
            return Err(EALREADY);
        }
        if let Some(limit) = self.declared_length {
            if self.appended + len as u64 > limit {
                return Err(EMSGSIZE);
            }
        }
        if self.pending.copied_len() + queued + copied > max_pending {
            return Err(ENOBUFS);
        }
        self.appended += len as u64;
        Ok(!(self.head_sent && self.body_dropped))
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

    /// Marks the response finished without closing framing (the session then ends with an
    /// error, so the connection closes).
    pub fn truncate(&mut self) {
        self.finished = true;
        self.pending.clear();
    }

    /// The first flush that sends: decides the representation (compression, the fields a HEAD
    /// carries) and the body's length, runs the compression filter over the pending bytes, and
    /// hands over the head. `EALREADY` after the final flush; `EIO` when the deflate engine
    /// failed (the response is then finished without its end).
    pub fn start(&mut self, last: bool, cx: &Context) -> Result<Head<'_>, c_int> {
        if self.finished {
            return Err(EALREADY);
        }
        if cx.is_head {
            // The head filter needs the bytes whole (a HEAD's compressed length).
            self.pending.flatten();
        }
        self.decide(last, cx);
        self.compress(last, cx)?;
        self.head_sent = true;
        let length = if self.body_dropped {
            BodyLength::None
        } else if let Some(n) = self.declared_length {
            BodyLength::Declared(n)
        } else if last && self.trailers.is_empty() {
            BodyLength::Exactly(self.pending.len() as u64)
        } else {
            BodyLength::Unknown
        };
        Ok(Head {
            status: self.status,
            reason: self.reason.as_deref(),
            fields: &self.fields,
            length,
        })
    }

    /// A later flush: runs the compression filter over the pending bytes. Errors as `start`.
    #[inline(always)]
    pub fn go_on(&mut self, last: bool, cx: &Context) -> Result<(), c_int> {
        if self.finished {
            return Err(EALREADY);
        }
        self.compress(last, cx)
    }

    /// The compression filter, when the response is compressed.
    #[inline(always)]
    fn compress(&mut self, last: bool, cx: &Context) -> Result<(), c_int> {
        if self.compressor.is_none() {
            return Ok(());
        }
        self.compress_pending(last, cx)
    }

    #[inline(never)]
    fn compress_pending(&mut self, last: bool, cx: &Context) -> Result<(), c_int> {
        let Some(c) = self.compressor.as_mut() else {
            return Ok(());
        };
        self.pending.flatten();
        let input = self.pending.flat_bytes().unwrap_or_default();
        // `compress` reserves what the input can need, in one allocation.
        let mut z = Vec::new();
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
        Ok(())
    }

    /// The flush's body bytes, for the encoder to take (it leaves them empty, with their
    /// buffers; see `Pending::queue`), and at the final flush the trailer fields, if any.
    #[inline(always)]
    pub fn body(&mut self, last: bool) -> (&mut Pending, Option<&Fields>) {
        let trailers = (last && !self.trailers.is_empty()).then_some(&self.trailers);
        (&mut self.pending, trailers)
    }

    /// Ends a flush the encoder took. `frame_room`: it frames the next flushes' bytes in place.
    pub fn end_flush(&mut self, last: bool, frame_room: bool) {
        self.frame_room = frame_room;
        if last {
            self.finished = true;
        }
    }

    /// The representation, decided once, from the body so far (`pending`, whole for a HEAD
    /// request): compression, `Vary`, the `Content-Length` a HEAD carries, and whether the
    /// response has a body at all.
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
                    let mut z = Vec::new();
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
        self.body_dropped = no_body;
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
}

/// Negotiates the coding for a request's Accept-Encoding, if any.
pub fn accepted_coding(accept_encoding: Option<&[u8]>) -> Option<Coding> {
    accept_encoding.and_then(compress::negotiate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9110 section 5.5: field values (and reason phrases) hold HTAB, SP, VCHAR and obs-text;
    /// every other control byte and DEL is refused.
    fn allowed(b: u8) -> bool {
        b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
    }

    #[test]
    fn a_value_is_refused_for_any_control_byte_but_htab_anywhere_and_nothing_else() {
        // Every byte value at every position of values up to 40 bytes (five words, and every
        // length of a partial word), among allowed fillers at the edges of the refused ranges
        // (0x09 between two, 0x20 and 0x7e next to them, 0x80 and 0xff with the high bit set),
        // where a word-wide test could borrow across bytes.
        for filler in [b'a', b'\t', b' ', b'~', 0x80, 0x9f, 0xff] {
            for len in 1..41 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut v = vec![filler; len];
                        v[at] = b;
                        assert_eq!(
                            valid_value(&v),
                            allowed(b),
                            "{b:#x} at {at} of {len}, {filler:#x}"
                        );
                    }
                }
            }
        }
        assert!(valid_value(b""));
        // Two refused bytes, and a refused byte behind an HTAB in the same word.
        for (a, b) in [
            (0x00, 0x7f),
            (0x1f, 0x01),
            (b'\t', 0x1b),
            (b'\t', b'\r'),
            (0x7f, b'\t'),
        ] {
            for len in 2..20 {
                for i in 0..len {
                    for j in 0..len {
                        if i == j {
                            continue;
                        }
                        let mut v = vec![b'v'; len];
                        v[i] = a;
                        v[j] = b;
                        let want = allowed(a) && allowed(b);
                        assert_eq!(
                            valid_value(&v),
                            want,
                            "{a:#x} at {i}, {b:#x} at {j} of {len}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pending_limit_takes_nothing() {
        let mut r = Response::default();
        r.append(&[0; 60], 0, 100).unwrap();
        assert_eq!(r.append(&[0; 41], 0, 100), Err(ENOBUFS));
        assert_eq!(r.pending_len(), 60);
        assert_eq!(r.append(&[0; 30], 20, 100), Err(ENOBUFS));
    }

    /// Lent pieces are the module's memory: any number of them is taken, and they leave the
    /// room for copies as it was.
    #[test]
    fn lent_bytes_do_not_count_against_the_pending_limit() {
        static PIECE: [u8; 1000] = [b'l'; 1000];
        let mut r = Response::default();
        for _ in 0..3 {
            // SAFETY: static bytes stay readable; no release.
            let lent =
                unsafe { Lent::new(PIECE.as_ptr(), PIECE.len(), None, std::ptr::null_mut()) };
            r.append_lent(lent).unwrap();
        }
        r.append(&[0; 100], 0, 100).unwrap();
        assert_eq!(r.append(&[0; 1], 0, 100), Err(ENOBUFS));
        assert_eq!(r.pending_len(), 3100);
    }
}
