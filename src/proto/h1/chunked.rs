//! Incremental decoder of the chunked transfer coding (RFC 9112 section 7.1).
//!
//! A byte-at-a-time state machine, so the input can be split anywhere and nothing is buffered but
//! body bytes. It is strict where leniency would let two parsers disagree on where the message ends:
//! CRLF only (no bare CR or LF), hex digits only, chunk extensions exactly as the grammar has them
//! (a quoted string that does not close on its line would hide the line end from a reader that
//! honours it), and bounded extension and trailer sizes.

use crate::http::request::HttpError;

/// Longest chunk-size line, extensions and CRLF included. Extensions are checked and ignored, so
/// anything longer only costs CPU.
const MAX_SIZE_LINE: usize = 4096;

/// Largest trailer section, final CRLF included.
const MAX_TRAILER: usize = 16 * 1024;

const fn bad(reason: &'static str) -> HttpError {
    HttpError::new(400, reason)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    // The chunk extensions (RFC 9112 section 7.1.1), checked and ignored:
    //   *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) CRLF
    //   ext-name = token, ext-val = token / quoted-string
    /// Whitespace after the digits or after an extension's value: only allowed before ';'.
    BeforeSemi,
    /// After ';': whitespace, then the name.
    ExtStart,
    ExtName,
    /// Whitespace after a name: only allowed before '=' or ';'.
    ExtNameWs,
    /// After '=': whitespace, then the value.
    ExtValueStart,
    ExtToken,
    /// Inside a quoted value.
    ExtQuoted,
    /// After a backslash inside a quoted value.
    ExtQuotedPair,
    /// After the closing quote.
    ExtQuotedEnd,
    /// CR of the size line seen, LF expected.
    SizeLf,
    /// `remaining` bytes of chunk data still to come (never 0 in this state).
    Data,
    /// CRLF after chunk data.
    DataCr,
    DataLf,
    /// Start of a trailer line: CR ends the message, else a field name starts.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen, LF expected.
    EndLf,
    Done,
    Failed(HttpError),
}

/// Decodes a chunked body as it arrives.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Size being parsed in `Size`, data left in `Data`.
    remaining: u64,
    /// Bytes of the current size line.
    line_len: usize,
    trailer_len: usize,
    /// Body bytes announced so far (complete chunk sizes).
    total: u64,
    max_body: u64,
}

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in field values, and after a backslash in a quoted string: anything but controls
/// other than HTAB, and DEL.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

/// qdtext: the field bytes but '"' and '\\'.
fn is_qdtext(b: u8) -> bool {
    is_field_byte(b) && b != b'"' && b != b'\\'
}

impl ChunkedDecoder {
    /// A decoder refusing with 413 a body longer than `max_body_bytes`.
    pub fn new(max_body_bytes: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
            total: 0,
            max_body: max_body_bytes,
        }
    }

    /// True once the last chunk and the trailer section are complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes announced by the chunk sizes read so far.
    pub fn body_len(&self) -> u64 {
        self.total
    }

    /// Decodes as much of `input` as it can, appending body bytes to `body`.
    /// Returns (bytes of input consumed, true when the last chunk and trailer section are complete).
    /// Works for any split of the stream, down to one byte per call; never consumes past the end of the message.
    /// After an error, every later call returns the same error.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        loop {
            match self.state {
                State::Done => return Ok((i, true)),
                State::Failed(e) => return Err(e),
                State::Data => {
                    let rest = input.get(i..).unwrap_or(&[]);
                    if rest.is_empty() {
                        return Ok((i, false));
                    }
                    // Bulk copy: the data is the bulk of the stream.
                    let take = rest
                        .len()
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    body.extend_from_slice(&rest[..take]);
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let Some(&b) = input.get(i) else {
                        return Ok((i, false));
                    };
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
    }

    /// One byte of framing (everything but chunk data).
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        match self.state {
            State::DataCr | State::DataLf => {}
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER {
                    return Err(HttpError::new(431, "trailer section too large"));
                }
            }
            // The size line: its digits, extensions and CR (decode() handles the rest).
            _ => {
                self.line_len += 1;
                if self.line_len > MAX_SIZE_LINE {
                    return Err(bad("chunk size line too long"));
                }
            }
        }
        self.state = match (self.state, b) {
            (State::Size, _) if hex_value(b).is_some() => {
                let d = hex_value(b).unwrap_or(0);
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|v| v.checked_add(d))
                    .ok_or(bad("chunk size overflow"))?;
                State::Size
            }
            // A size needs at least one digit.
            (State::Size, _) if self.line_len == 1 => return Err(bad("invalid chunk size")),
            (State::Size, b'\r') => State::SizeLf,
            (State::Size | State::BeforeSemi, b' ' | b'\t') => State::BeforeSemi,
            (State::Size | State::BeforeSemi, b';') => State::ExtStart,
            (State::Size | State::BeforeSemi, _) => return Err(bad("invalid chunk size")),
            (State::ExtStart, b' ' | b'\t') => State::ExtStart,
            (State::ExtStart | State::ExtName, _) if is_tchar(b) => State::ExtName,
            (State::ExtName | State::ExtNameWs, b' ' | b'\t') => State::ExtNameWs,
            (State::ExtName | State::ExtNameWs, b'=') => State::ExtValueStart,
            (State::ExtValueStart, b' ' | b'\t') => State::ExtValueStart,
            (State::ExtValueStart, b'"') => State::ExtQuoted,
            (State::ExtValueStart | State::ExtToken, _) if is_tchar(b) => State::ExtToken,
            (State::ExtQuoted, b'"') => State::ExtQuotedEnd,
            (State::ExtQuoted, b'\\') => State::ExtQuotedPair,
            (State::ExtQuoted, _) if is_qdtext(b) => State::ExtQuoted,
            (State::ExtQuotedPair, _) if is_field_byte(b) => State::ExtQuoted,
            // The end of a name or a value: whitespace before ';', ';', or the end of the line.
            (State::ExtToken | State::ExtQuotedEnd, b' ' | b'\t') => State::BeforeSemi,
            (State::ExtName | State::ExtNameWs | State::ExtToken | State::ExtQuotedEnd, b';') => {
                State::ExtStart
            }
            (State::ExtName | State::ExtToken | State::ExtQuotedEnd, b'\r') => State::SizeLf,
            (
                State::ExtStart
                | State::ExtName
                | State::ExtNameWs
                | State::ExtValueStart
                | State::ExtToken
                | State::ExtQuoted
                | State::ExtQuotedPair
                | State::ExtQuotedEnd,
                _,
            ) => return Err(bad("invalid chunk extension")),
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
                // Checked once the size line is complete, so a size too long for any number
                // is a 400 (malformed) rather than a 413.
                if self
                    .total
                    .checked_add(self.remaining)
                    .is_none_or(|t| t > self.max_body)
                {
                    return Err(HttpError::new(413, "chunked body too large"));
                }
                if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    self.total += self.remaining;
                    State::Data
                }
            }
            (State::SizeLf, _) => return Err(bad("bare CR in chunk size line")),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataCr, _) => return Err(bad("missing CRLF after chunk data")),
            (State::DataLf, b'\n') => State::Size,
            (State::DataLf, _) => return Err(bad("missing CRLF after chunk data")),
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => State::TrailerName,
            (State::TrailerStart, _) => return Err(bad("invalid trailer field")),
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerName, _) => return Err(bad("invalid trailer field name")),
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, _) if is_field_byte(b) => State::TrailerValue,
            (State::TrailerValue, _) => return Err(bad("invalid byte in trailer field")),
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::TrailerLf, _) => return Err(bad("bare CR in trailer section")),
            (State::EndLf, b'\n') => State::Done,
            (State::EndLf, _) => return Err(bad("bare CR in trailer section")),
            // decode() handles these without calling step().
            (State::Data | State::Done | State::Failed(_), _) => self.state,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What feeding a whole stream gives: complete (consumed, body), incomplete, or an error status.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Outcome {
        Done(usize, Vec<u8>),
        Incomplete,
        Error(u16),
    }

    /// Feeds `input` to a fresh decoder in pieces of the given sizes (cycled, the rest in one
    /// piece), checking the per-call contract along the way.
    fn feed(input: &[u8], max: u64, splits: &[usize]) -> Outcome {
        let mut dec = ChunkedDecoder::new(max);
        let mut body = Vec::new();
        let mut pos = 0;
        let mut sizes = splits.iter().copied().filter(|&s| s > 0).cycle();
        loop {
            let n = sizes.next().unwrap_or(input.len()).min(input.len() - pos);
            let piece = &input[pos..pos + n];
            match dec.decode(piece, &mut body) {
                Err(e) => {
                    // The error sticks.
                    assert_eq!(dec.decode(b"0\r\n\r\n", &mut body), Err(e));
                    return Outcome::Error(e.status);
                }
                Ok((used, true)) => {
                    assert!(used <= n);
                    assert!(dec.is_done());
                    // Done means done: nothing more is taken.
                    assert_eq!(dec.decode(b"5\r\nhello\r\n", &mut body), Ok((0, true)));
                    assert_eq!(dec.body_len(), body.len() as u64);
                    return Outcome::Done(pos + used, body);
                }
                Ok((used, false)) => {
                    // Not finished, so all of the piece was used.
                    assert_eq!(used, n);
                    pos += n;
                    if pos == input.len() {
                        return Outcome::Incomplete;
                    }
                }
            }
        }
    }

    fn decode_all(input: &[u8], max: u64) -> Outcome {
        let whole = feed(input, max, &[]);
        assert_eq!(feed(input, max, &[1]), whole, "byte at a time");
        assert_eq!(feed(input, max, &[3, 1, 7]), whole, "uneven splits");
        assert_eq!(reference(input, max), whole, "reference decoder");
        whole
    }

    // ---- A non-incremental reference: whole input at once, line by line. ----

    #[derive(Debug)]
    enum TrailerScan {
        Done(usize),
        Bad(usize),
        Partial(usize),
    }

    fn first_invalid_field_byte(line: &[u8]) -> Option<usize> {
        let n = line.iter().take_while(|&&b| is_tchar(b)).count();
        if n == 0 {
            return Some(0);
        }
        match line.get(n) {
            None => return None,
            Some(b':') => {}
            Some(_) => return Some(n),
        }
        let v = n
            + 1
            + line[n + 1..]
                .iter()
                .take_while(|&&b| is_field_byte(b))
                .count();
        match line.get(v) {
            None => return None,
            Some(b'\r') => {}
            Some(_) => return Some(v),
        }
        match line.get(v + 1) {
            None | Some(b'\n') => None,
            Some(_) => Some(v + 1),
        }
    }

    fn trailer_scan(t: &[u8]) -> TrailerScan {
        let mut pos = 0;
        loop {
            let rest = &t[pos..];
            match rest {
                [] => return TrailerScan::Partial(pos),
                [b'\r'] => return TrailerScan::Partial(pos + 1),
                [b'\r', b'\n', ..] => return TrailerScan::Done(pos + 2),
                [b'\r', ..] => return TrailerScan::Bad(pos + 2),
                _ => {}
            }
            let end = rest.iter().position(|&b| b == b'\n');
            let line = end.map_or(rest, |i| &rest[..=i]);
            if let Some(i) = first_invalid_field_byte(line) {
                return TrailerScan::Bad(pos + i + 1);
            }
            match end {
                Some(i) => pos += i + 1,
                None => return TrailerScan::Partial(pos + line.len()),
            }
        }
    }

    /// What a run of chunk extensions without the CRLF is, read by recursive descent.
    #[derive(Debug, PartialEq, Eq)]
    enum Scan {
        /// Valid as it is.
        Whole,
        /// Not valid yet, but more bytes can make it so.
        Prefix,
        Bad,
    }

    fn ext_list(s: &[u8]) -> Scan {
        let skip_ws = |mut p: usize| {
            while matches!(s.get(p), Some(b' ' | b'\t')) {
                p += 1;
            }
            p
        };
        let token_end = |p: usize| p + s[p..].iter().take_while(|&&b| is_tchar(b)).count();
        let mut p = 0;
        loop {
            // At the start, or after a whole extension.
            if p == s.len() {
                return Scan::Whole;
            }
            p = skip_ws(p);
            match s.get(p) {
                None => return Scan::Prefix,
                Some(b';') => p += 1,
                Some(_) => return Scan::Bad,
            }
            p = skip_ws(p);
            let name_end = token_end(p);
            if name_end == p {
                return if p == s.len() {
                    Scan::Prefix
                } else {
                    Scan::Bad
                };
            }
            p = name_end;
            let eq = skip_ws(p);
            match s.get(eq) {
                None if eq == p => return Scan::Whole,
                None => return Scan::Prefix,
                Some(b'=') => {}
                // Whitespace and ';', or a fault, for the top of the loop to tell.
                Some(_) => continue,
            }
            p = skip_ws(eq + 1);
            match s.get(p) {
                None => return Scan::Prefix,
                Some(b'"') => {
                    p += 1;
                    loop {
                        match s.get(p) {
                            None => return Scan::Prefix,
                            Some(b'"') => break,
                            Some(b'\\') => match s.get(p + 1) {
                                None => return Scan::Prefix,
                                Some(&b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => p += 2,
                                Some(_) => return Scan::Bad,
                            },
                            Some(&b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => p += 1,
                            Some(_) => return Scan::Bad,
                        }
                    }
                    p += 1;
                }
                Some(_) => {
                    let value_end = token_end(p);
                    if value_end == p {
                        return Scan::Bad;
                    }
                    p = value_end;
                }
            }
        }
    }

    /// Whether what follows the size digits is (complete: with the CRLF) or can still become
    /// (incomplete) a run of chunk extensions and CRLF.
    fn size_tail_ok(tail: &[u8], complete: bool) -> bool {
        match (tail.strip_suffix(b"\r\n"), tail.strip_suffix(b"\r")) {
            (Some(exts), _) if complete => ext_list(exts) == Scan::Whole,
            _ if complete => false,
            // The line's CR: everything before it must be whole.
            (_, Some(exts)) => ext_list(exts) == Scan::Whole,
            (_, None) => ext_list(tail) != Scan::Bad,
        }
    }

    fn reference(input: &[u8], max: u64) -> Outcome {
        let mut p = 0;
        let mut body = Vec::new();
        let mut total = 0u64;
        loop {
            let rest = &input[p..];
            let line = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => &rest[..=i],
                None => rest,
            };
            let complete = line.last() == Some(&b'\n');
            let nd = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let mut size = 0u64;
            for (k, &d) in line[..nd].iter().enumerate() {
                if k + 1 > MAX_SIZE_LINE {
                    return Outcome::Error(400);
                }
                let digit = u64::from(char::from(d).to_digit(16).unwrap());
                size = match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                    Some(s) => s,
                    None => return Outcome::Error(400),
                };
            }
            if nd == 0 {
                return if line.is_empty() {
                    Outcome::Incomplete
                } else {
                    Outcome::Error(400)
                };
            }
            if line.len() > MAX_SIZE_LINE || !size_tail_ok(&line[nd..], complete) {
                return Outcome::Error(400);
            }
            if !complete {
                return Outcome::Incomplete;
            }
            if total.checked_add(size).is_none_or(|t| t > max) {
                return Outcome::Error(413);
            }
            p += line.len();
            if size == 0 {
                break;
            }
            total += size;
            let size = usize::try_from(size).unwrap();
            if input.len() - p < size {
                return Outcome::Incomplete;
            }
            body.extend_from_slice(&input[p..p + size]);
            p += size;
            for want in [b'\r', b'\n'] {
                match input.get(p) {
                    None => return Outcome::Incomplete,
                    Some(&b) if b == want => p += 1,
                    Some(_) => return Outcome::Error(400),
                }
            }
        }
        match trailer_scan(&input[p..]) {
            TrailerScan::Done(n) if n <= MAX_TRAILER => Outcome::Done(p + n, body),
            TrailerScan::Done(_) => Outcome::Error(431),
            TrailerScan::Bad(q) | TrailerScan::Partial(q) if q > MAX_TRAILER => Outcome::Error(431),
            TrailerScan::Bad(_) => Outcome::Error(400),
            TrailerScan::Partial(_) => Outcome::Incomplete,
        }
    }

    // ---- Table tests ----

    const MAX: u64 = 1 << 20;

    fn done(n: usize, body: &[u8]) -> Outcome {
        Outcome::Done(n, body.to_vec())
    }

    #[test]
    fn chunked_table() {
        use Outcome::{Error, Incomplete};
        let cases: &[(&[u8], Outcome)] = &[
            (b"0\r\n\r\n", done(5, b"")),
            (b"5\r\nhello\r\n0\r\n\r\n", done(15, b"hello")),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                done(26, b"hello world"),
            ),
            (b"a\r\n0123456789\r\n0\r\n\r\n", done(20, b"0123456789")),
            (b"A\r\n0123456789\r\n0\r\n\r\n", done(20, b"0123456789")),
            (b"000005\r\nhello\r\n000\r\n\r\n", done(22, b"hello")),
            // the message ends where it ends
            (b"0\r\n\r\nGET / HTTP/1.1\r\n", done(5, b"")),
            (b"1\r\nx\r\n0\r\n\r\n\r\n", done(11, b"x")),
            // incomplete
            (b"", Incomplete),
            (b"5", Incomplete),
            (b"5\r", Incomplete),
            (b"5\r\nhel", Incomplete),
            (b"5\r\nhello", Incomplete),
            (b"5\r\nhello\r", Incomplete),
            (b"5\r\nhello\r\n0\r\n", Incomplete),
            (b"5\r\nhello\r\n0\r\n\r", Incomplete),
            (b"0\r\nX: y\r\n", Incomplete),
            (b"5 ", Incomplete),
            (b"5;a=b", Incomplete),
            (b"5 ; a = ", Incomplete),
            (b"5;a=\"x\\", Incomplete),
            (b"5;a=\"x\\\"", Incomplete),
            (b"5;a=\"x\"", Incomplete),
            (b"5;a\r", Incomplete),
            // size syntax
            (b"\r\n", Error(400)),
            (b";a\r\n", Error(400)),
            (b"x\r\n", Error(400)),
            (b"0x5\r\nhello\r\n0\r\n\r\n", Error(400)),
            (b"+5\r\nhello\r\n0\r\n\r\n", Error(400)),
            (b"-5\r\n", Error(400)),
            (b"5_0\r\n", Error(400)),
            (b" 5\r\nhello\r\n0\r\n\r\n", Error(400)),
            (b"5 \r\nhello\r\n0\r\n\r\n", Error(400)),
            (b"5\t\r\nhello\r\n0\r\n\r\n", Error(400)),
            (b"5 5\r\n", Error(400)),
            (b"5g\r\n", Error(400)),
            (b"ffffffffffffffff0\r\n", Error(400)),
            // bare CR / LF in size lines
            (b"5\nhello\r\n0\r\n\r\n", Error(400)),
            (b"5\rhello\r\n0\r\n\r\n", Error(400)),
            (b"5;a\nhello\r\n0\r\n\r\n", Error(400)),
            (b"5;a\rb\r\nhello\r\n0\r\n\r\n", Error(400)),
            (b"0\n\r\n", Error(400)),
            // extensions (RFC 9112 section 7.1.1): *( BWS ";" BWS token [ BWS "=" BWS
            // ( token / quoted-string ) ] ), checked and ignored
            (b"5;name=value\r\nhello\r\n0\r\n\r\n", done(26, b"hello")),
            (b"5 ;a\r\nhello\r\n0;b=\"c d\"\r\n\r\n", done(26, b"hello")),
            (b"5\t; a = b ;c\r\nhello\r\n0\r\n\r\n", done(26, b"hello")),
            (
                b"2;n=\"quoted \\\" value\"\r\nhi\r\n0\r\n\r\n",
                done(32, b"hi"),
            ),
            (
                b"2;a=\"\";b=\"x;y=z\\\\ \t\xc3\xa9\\\xff\\\t\"\r\nhi\r\n0\r\n\r\n",
                done(37, b"hi"),
            ),
            (
                b"2;!#$%&'*+-.^_`|~09azAZ=!#$%&'*+-.^_`|~\r\nhi\r\n0\r\n\r\n",
                done(50, b"hi"),
            ),
            (b"0;a=b;c\r\n\r\n", done(11, b"")),
            (b"0;\r\n\r\n", Error(400)),
            // CRLF after data
            (b"5\r\nhelloX\r\n0\r\n\r\n", Error(400)),
            (b"5\r\nhello\n0\r\n\r\n", Error(400)),
            (b"5\r\nhello\rX0\r\n\r\n", Error(400)),
            (b"5\r\nhello\r\r\n0\r\n\r\n", Error(400)),
            (b"5\r\nhello world\r\n0\r\n\r\n", Error(400)),
            // trailers: validated, discarded
            (b"0\r\nX-Sum: abc\r\n\r\n", done(17, b"")),
            (
                b"0\r\nA: 1\r\nB:\r\nC: caf\xc3\xa9\t\r\n\r\n",
                done(26, b""),
            ),
            (b"3\r\nabc\r\n0\r\nA: 1\r\n\r\nrest", done(19, b"abc")),
            (b"0\r\nA 1\r\n\r\n", Error(400)),
            (b"0\r\nA : 1\r\n\r\n", Error(400)),
            (b"0\r\n: 1\r\n\r\n", Error(400)),
            (b"0\r\n A: 1\r\n\r\n", Error(400)),
            (b"0\r\nA: 1\r\n b\r\n\r\n", Error(400)),
            (b"0\r\nA: 1\x00\r\n\r\n", Error(400)),
            (b"0\r\nA: 1\rB: 2\r\n\r\n", Error(400)),
            (b"0\r\nA: 1\n\r\n", Error(400)),
            (b"0\r\n\n", Error(400)),
            (b"0\r\n\rX", Error(400)),
        ];
        for (input, want) in cases {
            assert_eq!(
                &decode_all(input, MAX),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Extensions outside `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`:
    /// empty ones, whitespace not before ';' or around '=', bytes outside a token, quoted
    /// strings not closed on their line, controls in them or in a quoted-pair.
    #[test]
    fn extensions_outside_the_grammar_are_refused() {
        let exts: [&[u8]; 34] = [
            b";",
            b"; ",
            b";=",
            b";=v",
            b";a;",
            b";;a",
            b";a ",
            b";a=b ",
            b";a=",
            b";a= ",
            b";a==b",
            b";a=b=c",
            b";a=b c",
            b";a b",
            b";a@b",
            b";a=b/c",
            b";caf\xc3\xa9",
            b";a=\xc3\xa9",
            b";a\x00",
            b";a\x7f",
            b";a=\"",
            b";a=\"x",
            b";a=\"x\\\"",
            b";a=\"x\"y",
            b";a=\"x\"\"y\"",
            b";a=x\"y\"",
            b";\"a\"=b",
            b";a=\"x\x01y\"",
            b";a=\"x\x7fy\"",
            b";a=\"x\\\x01\"",
            b";a=\"x\ny\"",
            b";a=\"x\ry\"",
            b";a=\"x\\\r\n\"",
            b";a=\"x\r\n\"",
        ];
        for ext in exts {
            let mut input = b"5".to_vec();
            input.extend_from_slice(ext);
            input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            assert_eq!(
                decode_all(&input, MAX),
                Outcome::Error(400),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn body_limit() {
        use Outcome::Error;
        assert_eq!(
            decode_all(b"5\r\nhello\r\n0\r\n\r\n", 5),
            done(15, b"hello")
        );
        assert_eq!(decode_all(b"5\r\nhello\r\n0\r\n\r\n", 4), Error(413));
        assert_eq!(
            decode_all(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 6),
            done(21, b"abcdef")
        );
        assert_eq!(decode_all(b"3\r\nabc\r\n4\r\n", 6), Error(413));
        assert_eq!(decode_all(b"0\r\n\r\n", 0), done(5, b""));
        assert_eq!(decode_all(b"1\r\n", 0), Error(413));
        // Refused at the size line, before any of the data arrives.
        assert_eq!(decode_all(b"100000\r\n", 1000), Error(413));
        assert_eq!(decode_all(b"fff;ext\r\n", 1000), Error(413));
        // Too long for any number: malformed (400) whatever the limit.
        assert_eq!(decode_all(b"10000000000000000\r\n", 1000), Error(400));
        // Overflow is a 400 when the limit itself cannot be passed.
        assert_eq!(
            decode_all(b"ffffffffffffffff\r\n", u64::MAX),
            Outcome::Incomplete
        );
        assert_eq!(decode_all(b"10000000000000000\r\n", u64::MAX), Error(400));
        let mut dec = ChunkedDecoder::new(u64::MAX);
        let mut body = Vec::new();
        assert_eq!(
            dec.decode(b"1\r\na\r\nffffffffffffffff\r\n", &mut body),
            Err(HttpError::new(413, "chunked body too large"))
        );
    }

    #[test]
    fn line_limits() {
        let ext = |n: usize| {
            let mut v = b"5;".to_vec();
            v.extend(std::iter::repeat_n(b'x', n));
            v.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            v
        };
        // "5;" + n + CRLF = n + 4 bytes of size line.
        assert_eq!(
            decode_all(&ext(MAX_SIZE_LINE - 4), MAX),
            done(MAX_SIZE_LINE + 12, b"hello")
        );
        assert_eq!(
            decode_all(&ext(MAX_SIZE_LINE - 3), MAX),
            Outcome::Error(400)
        );
        let mut zeros = vec![b'0'; MAX_SIZE_LINE];
        zeros.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode_all(&zeros, MAX), Outcome::Error(400));

        let trailer = |n: usize| {
            // "0\r\n" + "X: " + n + CRLF + CRLF: the trailer section is n + 7 bytes.
            let mut v = b"0\r\nX: ".to_vec();
            v.extend(std::iter::repeat_n(b'v', n));
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        assert_eq!(
            decode_all(&trailer(MAX_TRAILER - 7), MAX),
            done(MAX_TRAILER + 3, b"")
        );
        assert_eq!(
            decode_all(&trailer(MAX_TRAILER - 6), MAX),
            Outcome::Error(431)
        );
        let mut many = b"0\r\n".to_vec();
        while many.len() < MAX_TRAILER + 100 {
            many.extend_from_slice(b"A: b\r\n");
        }
        assert_eq!(decode_all(&many, MAX), Outcome::Error(431));
    }

    #[test]
    fn large_body_in_one_call() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = format!("{:x}\r\n", data.len()).into_bytes();
        enc.extend_from_slice(&data);
        enc.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(feed(&enc, MAX, &[]), Outcome::Done(enc.len(), data.clone()));
        assert_eq!(feed(&enc, MAX, &[4096]), Outcome::Done(enc.len(), data));
    }

    // ---- Properties ----

    mod props {
        use super::*;
        use proptest::prelude::*;

        const EXTS: &[&str] = &[
            "",
            "",
            ";a=b",
            " ;x",
            "\t;k=\"v v\"",
            ";q=\"\\\";\\\\\t\"",
            "; a = 1 ; b",
        ];
        /// Fragments that make near-miss chunked streams when strung together at random.
        const NOISE: &[&[u8]] = &[
            b"0", b"3", b"5", b"a", b"F", b"g", b"\r\n", b"\r\n", b"\r\n", b"\r", b"\n", b" ",
            b"\t", b";", b";x=y", b"abc", b"hello", b"X: y", b":", b"\x00", b"\x7f", b"\x80",
        ];
        const TRAILERS: &[&str] = &["X-Sum: 1\r\n", "A:\r\n", "B: c d\t\r\n", "Etag: \"x\"\r\n"];

        /// A chunked encoding of `body` cut at `cuts`, with extensions, zero padding, mixed-case
        /// hex and trailers chosen by `style`.
        fn encode(body: &[u8], cuts: &[usize], style: &[u8], trailers: &[usize]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut pos = 0;
            let mut k = 0;
            let mut next_style = || {
                k += 1;
                style.get(k % style.len().max(1)).copied().unwrap_or(0) as usize
            };
            let size_line = |out: &mut Vec<u8>, n: usize, s: usize| {
                let hex = if s & 1 == 0 {
                    format!("{n:x}")
                } else {
                    format!("{n:X}")
                };
                out.extend(std::iter::repeat_n(b'0', s / 2 % 3));
                out.extend_from_slice(hex.as_bytes());
                out.extend_from_slice(EXTS[s % EXTS.len()].as_bytes());
                out.extend_from_slice(b"\r\n");
            };
            for &c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let n = c.min(body.len() - pos);
                if n == 0 {
                    if pos == body.len() {
                        break;
                    }
                    continue;
                }
                size_line(&mut out, n, next_style());
                out.extend_from_slice(&body[pos..pos + n]);
                out.extend_from_slice(b"\r\n");
                pos += n;
            }
            size_line(&mut out, 0, next_style());
            for &t in trailers {
                out.extend_from_slice(TRAILERS[t % TRAILERS.len()].as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out
        }

        fn valid_stream() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
            (
                prop::collection::vec(any::<u8>(), 0..600),
                prop::collection::vec(1usize..200, 0..8),
                prop::collection::vec(any::<u8>(), 1..8),
                prop::collection::vec(any::<usize>(), 0..3),
            )
                .prop_map(|(body, cuts, style, trailers)| {
                    let enc = encode(&body, &cuts, &style, &trailers);
                    (body, enc)
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
            fn decodes_any_split(
                (body, enc) in valid_stream(),
                splits in prop::collection::vec(0usize..40, 0..12),
                tail in prop::collection::vec(any::<u8>(), 0..30),
            ) {
                let mut input = enc.clone();
                input.extend_from_slice(&tail);
                let got = feed(&input, MAX, &splits);
                prop_assert_eq!(got, Outcome::Done(enc.len(), body.clone()));
                prop_assert_eq!(feed(&input, MAX, &[1]), Outcome::Done(enc.len(), body));
                // Every proper prefix is just incomplete.
                let cut = splits.iter().sum::<usize>() % enc.len();
                prop_assert_eq!(feed(&enc[..cut], MAX, &splits), Outcome::Incomplete);
            }

            #[test]
            fn agrees_with_reference_on_mutations(
                (_, enc) in valid_stream(),
                edits in prop::collection::vec(
                    (any::<prop::sample::Index>(), 0u8..3, prop::sample::select(b"0159aAfFgx \t;=:\r\n\x00\x80-".to_vec())),
                    0..4,
                ),
                splits in prop::collection::vec(0usize..20, 0..6),
                max in prop::sample::select(vec![3u64, 300, MAX, MAX, MAX, MAX]),
            ) {
                let mut input = enc;
                for (at, op, byte) in edits {
                    let i = at.index(input.len() + 1);
                    match op {
                        0 if i < input.len() => input[i] = byte,
                        1 => input.insert(i, byte),
                        _ if i < input.len() => { input.remove(i); }
                        _ => {}
                    }
                }
                let want = reference(&input, max);
                prop_assert_eq!(feed(&input, max, &splits), want.clone());
                prop_assert_eq!(feed(&input, max, &[1]), want);
            }

            #[test]
            fn agrees_with_reference_on_noise(
                pieces in prop::collection::vec(prop::sample::select(NOISE.to_vec()), 0..14),
                splits in prop::collection::vec(0usize..10, 0..6),
                max in prop::sample::select(vec![0u64, 16, MAX, u64::MAX]),
            ) {
                let input = pieces.concat();
                let want = reference(&input, max);
                prop_assert_eq!(feed(&input, max, &splits), want);
            }
        }
    }
}
