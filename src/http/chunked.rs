//! Incremental decoder of the chunked transfer coding (RFC 9112 section 7.1).
//!
//! A byte-at-a-time state machine, so the input can be split anywhere and nothing is buffered but
//! body bytes. It is strict where leniency would let two parsers disagree on where the message ends:
//! CRLF only (no bare CR or LF), hex digits only, and bounded extension and trailer sizes.

use super::request::HttpError;

/// Longest chunk-size line, extensions and CRLF included. Extensions are ignored, so anything
/// longer only costs CPU.
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
    /// Whitespace after the digits: only allowed before ';'.
    SizeWs,
    /// Chunk extensions, skipped up to CR.
    Ext,
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

/// Bytes allowed in field values and (more loosely than the grammar) in chunk extensions: anything
/// but controls other than HTAB, and DEL.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
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
            State::Size | State::SizeWs | State::Ext | State::SizeLf => {
                self.line_len += 1;
                if self.line_len > MAX_SIZE_LINE {
                    return Err(bad("chunk size line too long"));
                }
            }
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
            _ => {}
        }
        self.state = match (self.state, b) {
            (State::Size, _) if hex_value(b).is_some() => {
                let d = hex_value(b).unwrap_or(0);
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|v| v.checked_add(d))
                    .ok_or(bad("chunk size overflow"))?;
                // The size only grows with more digits, so refuse as soon as it is too big.
                if self
                    .total
                    .checked_add(self.remaining)
                    .is_none_or(|t| t > self.max_body)
                {
                    return Err(HttpError::new(413, "chunked body too large"));
                }
                State::Size
            }
            // A size needs at least one digit.
            (State::Size, _) if self.line_len == 1 => return Err(bad("invalid chunk size")),
            (State::Size | State::SizeWs, b' ' | b'\t') => State::SizeWs,
            (State::Size | State::SizeWs, b';') => State::Ext,
            (State::Size, b'\r') => State::SizeLf,
            (State::Size | State::SizeWs, _) => return Err(bad("invalid chunk size")),
            (State::Ext, b'\r') => State::SizeLf,
            (State::Ext, _) if is_field_byte(b) => State::Ext,
            (State::Ext, _) => return Err(bad("invalid byte in chunk extension")),
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
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
