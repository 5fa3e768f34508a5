//! The HTTP/1.1 response encoder: turns each flush of the response model into bytes. At the
//! first flush that sends, it decides the framing and the connection's persistence once and
//! serialises the head; then it frames each flush's body (chunk size lines, the last chunk).

use std::ffi::c_int;

use crate::http::fields::{Fields, Known};
use crate::http::outqueue::OutQueue;
use crate::http::pending::Pending;
use crate::http::response::{BodyLength, Context, Head, Response};
use crate::http::{date, has_token, push_decimal, status};

/// How this response's body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// HEAD, 1xx, 204, 304: no body bytes.
    NoBody,
    /// Content-Length: bytes of body still owed.
    Length(u64),
    Chunked,
    /// HTTP/1.0 streaming: the connection's close marks the end.
    Close,
}

/// One response's encoding state.
pub struct ResponseEncoder {
    framing: Framing,
    keep_alive: bool,
    /// The connection must close after this response (short body, close-delimited).
    must_close: bool,
    /// Bytes of the serialised head, so the access log can report body bytes.
    head_len: usize,
}

impl Default for ResponseEncoder {
    fn default() -> Self {
        ResponseEncoder {
            framing: Framing::NoBody,
            keep_alive: false,
            must_close: false,
            head_len: 0,
        }
    }
}

/// Runs one flush of `response` through the encoder into `out`: the model's filters, then the
/// head (first time) and the framed body. Returns false when this flush sends nothing by policy
/// (HTTP/1.0 buffering keeps a response whole until its final flush).
pub fn flush(
    response: &mut Response,
    encoder: &mut ResponseEncoder,
    last: bool,
    cx: &Context,
    out: &mut OutQueue,
) -> Result<bool, c_int> {
    if !response.finished()
        && !response.head_sent()
        && !last
        && cx.version == 10
        && cx.http10_buffering
    {
        // Sends nothing before the final flush.
        return Ok(false);
    }
    if response.head_sent() {
        response.go_on(last, cx)?;
    } else {
        let head = response.start(last, cx)?;
        encoder.encode_head(&head, cx, out);
    }
    let (body, trailers) = response.body(last);
    encoder.encode_body(body, last, trailers, out);
    let frame_room = encoder.framing == Framing::Chunked;
    response.end_flush(last, frame_room);
    Ok(true)
}

impl ResponseEncoder {
    /// Back to a fresh encoder for the next response.
    pub fn reset(&mut self) {
        *self = ResponseEncoder::default();
    }

    /// Whether the connection may carry another request after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive && !self.must_close
    }

    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// Decides framing and persistence, once, and queues the status line and fields.
    fn encode_head(&mut self, head: &Head<'_>, cx: &Context, out: &mut OutQueue) {
        self.framing = match head.length {
            BodyLength::None => Framing::NoBody,
            BodyLength::Declared(n) | BodyLength::Exactly(n) => Framing::Length(n),
            BodyLength::Unknown if cx.version >= 11 => Framing::Chunked,
            BodyLength::Unknown => Framing::Close,
        };
        let handler_close = head
            .fields
            .get(Known::Connection)
            .is_some_and(|v| has_token(v, b"close"));
        self.keep_alive = cx.keep_alive && self.framing != Framing::Close && !handler_close;
        if self.framing == Framing::Close {
            self.must_close = true;
        }
        self.head_len = out.push_with(|h| self.write_head(head, cx, h));
    }

    /// Serialises the status line and fields at the end of `h`.
    fn write_head(&self, head: &Head<'_>, cx: &Context, h: &mut Vec<u8>) {
        if head.status == 200 && head.reason.is_none() {
            // Most responses: one copy instead of four pieces.
            h.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            h.extend_from_slice(b"HTTP/1.1 ");
            push_decimal(h, u64::from(head.status));
            h.push(b' ');
            match head.reason {
                Some(r) => h.extend_from_slice(r),
                None => h.extend_from_slice(status::reason_phrase(head.status).as_bytes()),
            }
            h.extend_from_slice(b"\r\n");
        }
        if !cx.server_header.is_empty() && !head.fields.contains(Known::Server) {
            h.extend_from_slice(b"Server: ");
            h.extend_from_slice(cx.server_header.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        if !head.fields.contains(Known::Date) {
            h.extend_from_slice(b"Date: ");
            h.extend_from_slice(&date::http_date());
            h.extend_from_slice(b"\r\n");
        }
        // The library writes Connection itself, from its own decision.
        head.fields.write_lines(h, Known::Connection);
        match (self.framing, head.length) {
            (Framing::Length(n), BodyLength::Exactly(_)) => {
                h.extend_from_slice(b"Content-Length: ");
                push_decimal(h, n);
                h.extend_from_slice(b"\r\n");
            }
            (Framing::Chunked, _) => h.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        if !self.keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if cx.version == 10 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        h.extend_from_slice(b"\r\n");
    }

    /// Queues the flush's body, framed, and leaves `body` empty with its buffers (see
    /// `Pending::queue`). At the last flush of a chunked body, the last chunk carries the
    /// trailer fields; other framings cannot carry them.
    #[inline(always)]
    fn encode_body(
        &mut self,
        body: &mut Pending,
        last: bool,
        trailers: Option<&Fields>,
        out: &mut OutQueue,
    ) {
        let len = body.len();
        match self.framing {
            Framing::NoBody => return body.clear(),
            Framing::Chunked if len == 0 => {
                if last {
                    out.push_with(|b| last_chunk(trailers, b));
                }
                return body.clear();
            }
            Framing::Chunked => {
                let mut line = [0u8; 20];
                let line = chunk_size_line(len, &mut line);
                let mut with_trailers = Vec::new();
                let end: &[u8] = match (last, trailers) {
                    (false, _) => b"\r\n",
                    (true, None) => b"\r\n0\r\n\r\n",
                    (true, Some(_)) => {
                        with_trailers.extend_from_slice(b"\r\n");
                        last_chunk(trailers, &mut with_trailers);
                        &with_trailers
                    }
                };
                body.queue(Some((line, end)), out)
            }
            Framing::Length(_) | Framing::Close => body.queue(None, out),
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

/// The last chunk, with the trailer section (RFC 9112 section 7.1.2).
fn last_chunk(trailers: Option<&Fields>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailers {
        t.write_all_lines(out);
    }
    out.extend_from_slice(b"\r\n");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::HTTPSRV_COMPRESS_ON;
    use crate::errors::{EALREADY, EINVAL, EMSGSIZE, ENOENT};
    use crate::http::compress::{Coding, CompressorPool};

    /// A response with its encoder, flushed as a session flushes it.
    #[derive(Default)]
    struct Resp {
        r: Response,
        e: ResponseEncoder,
    }

    impl std::ops::Deref for Resp {
        type Target = Response;
        fn deref(&self) -> &Response {
            &self.r
        }
    }

    impl std::ops::DerefMut for Resp {
        fn deref_mut(&mut self) -> &mut Response {
            &mut self.r
        }
    }

    impl Resp {
        fn flush(&mut self, last: bool, cx: &Context, out: &mut OutQueue) -> Result<bool, c_int> {
            flush(&mut self.r, &mut self.e, last, cx, out)
        }
        fn keep_alive(&self) -> bool {
            self.e.keep_alive()
        }
        fn reset(&mut self) {
            self.r.reset();
            self.e.reset();
        }
    }

    static POOL: std::sync::LazyLock<CompressorPool> =
        std::sync::LazyLock::new(|| CompressorPool::new(4));

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
        let mut r = Resp::default();
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
        let mut r = Resp::default();
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
        let mut r = Resp::default();
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
                crate::io::send_queue(a.as_raw_fd(), &mut q).unwrap();
                assert!(q.is_empty());
            }
            let piece = char::from(b'a' + i as u8).to_string().repeat(len);
            r.append(piece.as_bytes(), q.len(), 1 << 20).unwrap();
            assert_eq!(r.pending_len(), len);
            r.flush(false, &cx(11), &mut q).unwrap();
            expect += &format!("{len:x}\r\n{piece}\r\n");
        }
        crate::io::send_queue(a.as_raw_fd(), &mut q).unwrap();
        r.append(b"end", 0, 1 << 20).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        crate::io::send_queue(a.as_raw_fd(), &mut q).unwrap();
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
        fn hello(r: &mut Resp) -> String {
            let mut q = OutQueue::default();
            r.set_header(b"Content-Type", b"text/plain").unwrap();
            r.append(b"Hello, world!", 0, 1 << 20).unwrap();
            r.flush(true, &cx(11), &mut q).unwrap();
            without_date(&q)
        }
        let mut used = Resp::default();
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
        assert_eq!(hello(&mut used), hello(&mut Resp::default()));
    }

    #[test]
    fn final_chunk_is_joined_with_data() {
        let mut r = Resp::default();
        let mut q = OutQueue::default();
        r.flush(false, &cx(11), &mut q).unwrap();
        r.append(b"end", 0, 1 << 20).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        assert_eq!(body_of(&text(&q)), "3\r\nend\r\n0\r\n\r\n");
    }

    #[test]
    fn handler_length_is_honoured_and_enforced() {
        let mut r = Resp::default();
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
        let mut r = Resp::default();
        let mut q = OutQueue::default();
        r.append(b"12345", 0, 100).unwrap();
        r.flush(true, &c, &mut q).unwrap();
        let s = text(&q);
        assert!(s.contains("Content-Length: 5\r\n"), "{s}");
        assert_eq!(body_of(&s), "");
        for code in [204, 304] {
            let mut r = Resp::default();
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
        let mut r = Resp::default();
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
        let mut r = Resp::default();
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
        let mut r = Resp::default();
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
    fn the_last_chunk_carries_the_trailers() {
        for streamed in [false, true] {
            let mut r = Resp::default();
            let mut q = OutQueue::default();
            r.add_trailer(b"Server-Timing", b"db;dur=53").unwrap();
            r.add_trailer(b"X-Checksum", b"abc").unwrap();
            assert_eq!(r.add_trailer(b"Content-Length", b"5"), Err(EINVAL));
            r.append(b"body", 0, 100).unwrap();
            if streamed {
                r.flush(false, &cx(11), &mut q).unwrap();
            }
            // A response whole at its first flush is still chunked, to carry its trailers.
            r.flush(true, &cx(11), &mut q).unwrap();
            let s = text(&q);
            assert!(s.contains("Transfer-Encoding: chunked\r\n"), "{s}");
            assert_eq!(
                body_of(&s),
                "4\r\nbody\r\n0\r\nServer-Timing: db;dur=53\r\nX-Checksum: abc\r\n\r\n"
            );
            assert_eq!(r.add_trailer(b"X-Late", b"1"), Err(EALREADY));
        }
        // An empty last flush after streamed chunks: the trailers follow the last chunk alone.
        let mut r = Resp::default();
        let mut q = OutQueue::default();
        r.add_trailer(b"X-T", b"1").unwrap();
        r.append(b"ab", 0, 100).unwrap();
        r.flush(false, &cx(11), &mut q).unwrap();
        r.flush(true, &cx(11), &mut q).unwrap();
        assert_eq!(body_of(&text(&q)), "2\r\nab\r\n0\r\nX-T: 1\r\n\r\n");
    }
}
