//! Response compression: Accept-Encoding negotiation, eligible content types, and a streaming
//! gzip/deflate compressor whose every flush is decodable by the client.
//!
//! The compressor drives a raw deflate stream and writes the gzip (RFC 1952) or zlib (RFC 1950)
//! wrapper itself, so one deflate state (a few hundred KB) can be reset and reused for either
//! coding without reallocating.

use super::{is_token, trim_ows};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// A content coding the server can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    /// The token for `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// Weight in thousandths: q=1 is 1000, q=0.5 is 500, q=0 refuses.
type Weight = u16;

const Q_MAX: Weight = 1000;

/// Chooses a coding from an Accept-Encoding value (RFC 9110 12.5.3).
///
/// Tokens are case-insensitive and optional whitespace is tolerated around members, `;` and
/// `=`. A member whose q-value is malformed (`q=1.001`, `q=0.0001`, `q=`, `q=abc`, two `q`
/// parameters) is treated as refused; other parameters are ignored; members whose coding is
/// not a token are skipped. `x-gzip` counts as `gzip` (RFC 9110 8.4.1.3) unless `gzip` itself
/// is listed. `*` gives its weight to gzip and deflate when they are not listed. A coding
/// listed twice gets its lowest weight, so a refusal anywhere wins. Gzip is chosen when its
/// weight is at least deflate's and above zero, else deflate when above zero, else None.
///
/// The caller handles an absent header (RFC 9110 says any coding is then acceptable; servers,
/// this one included, send identity) and HTTP/1.0 peers; an empty value means identity only.
pub fn negotiate(accept_encoding: &[u8]) -> Option<Coding> {
    let mut gzip: Option<Weight> = None;
    let mut x_gzip: Option<Weight> = None;
    let mut deflate: Option<Weight> = None;
    let mut star: Option<Weight> = None;

    for member in accept_encoding.split(|&b| b == b',') {
        let mut parts = member.split(|&b| b == b';');
        let coding = trim_ows(parts.next().unwrap_or_default());
        if coding.is_empty() || !is_token(coding) {
            // Empty list elements are legal (RFC 9110 5.6.1); junk is skipped rather than
            // failing the whole header.
            continue;
        }
        let slot = if coding.eq_ignore_ascii_case(b"gzip") {
            &mut gzip
        } else if coding.eq_ignore_ascii_case(b"x-gzip") {
            &mut x_gzip
        } else if coding.eq_ignore_ascii_case(b"deflate") {
            &mut deflate
        } else if coding == b"*" {
            &mut star
        } else {
            continue; // identity, br, zstd, unknown: nothing we produce
        };
        let q = member_weight(parts).unwrap_or(0);
        *slot = Some(slot.map_or(q, |old| old.min(q)));
    }

    let gzip = gzip.or(x_gzip).or(star).unwrap_or(0);
    let deflate = deflate.or(star).unwrap_or(0);
    if gzip > 0 && gzip >= deflate {
        Some(Coding::Gzip)
    } else if deflate > 0 {
        Some(Coding::Deflate)
    } else {
        None
    }
}

/// The weight given by a member's parameters: 1000 without `q`, None when `q` is malformed
/// or repeated.
fn member_weight<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<Weight> {
    let mut q = None;
    for param in params {
        let param = trim_ows(param);
        if param.is_empty() {
            continue; // "gzip;" or "gzip;;q=1": tolerated
        }
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (trim_ows(&param[..i]), trim_ows(&param[i + 1..])),
            None => (param, &b""[..]),
        };
        if !name.eq_ignore_ascii_case(b"q") {
            continue; // not in the grammar, but harmless to ignore
        }
        if q.is_some() {
            return None;
        }
        q = Some(parse_qvalue(value)?);
    }
    Some(q.unwrap_or(Q_MAX))
}

/// Parses a qvalue: `( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 12.4.2).
fn parse_qvalue(v: &[u8]) -> Option<Weight> {
    let (&int, rest) = v.split_first()?;
    let frac = match rest {
        [] => &b""[..],
        [b'.', frac @ ..] if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => frac,
        _ => return None,
    };
    let mut thousandths: Weight = 0;
    for i in 0..3 {
        let d = frac.get(i).map_or(0, |&c| Weight::from(c - b'0'));
        thousandths = thousandths * 10 + d;
    }
    match int {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(Q_MAX),
        _ => None,
    }
}

/// Parses the `compression_types` option ("text/html,text/plain,...") into lower-case media
/// types, duplicates removed. Members are `type/subtype` tokens; `type/*` and `*/*` are
/// wildcards. An empty (or all-blank) list is valid and makes no type eligible, leaving only
/// responses that ask for compression explicitly. Err with a reason on an empty member
/// ("a,,b", "a,"), a member that is not `type/subtype`, or one with parameters.
pub fn parse_types(list: &str) -> Result<Vec<String>, String> {
    let mut types: Vec<String> = Vec::new();
    if list.trim_matches([' ', '\t']).is_empty() {
        return Ok(types);
    }
    for member in list.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            return Err(format!("compression_types {list:?}: empty member"));
        }
        if member.contains(';') {
            return Err(format!(
                "compression_types: {member:?}: parameters are not allowed (they are ignored when matching)"
            ));
        }
        let Some((ty, sub)) = member.split_once('/') else {
            return Err(format!(
                "compression_types: {member:?} is not a type/subtype media type"
            ));
        };
        if !is_token(ty.as_bytes()) || !is_token(sub.as_bytes()) || (ty == "*" && sub != "*") {
            return Err(format!(
                "compression_types: {member:?} is not a type/subtype media type"
            ));
        }
        let lower = member.to_ascii_lowercase();
        if !types.contains(&lower) {
            types.push(lower);
        }
    }
    Ok(types)
}

/// Whether a Content-Type value is in `types` (as returned by [`parse_types`]: lower-case).
/// Parameters ("; charset=utf-8") and surrounding whitespace are ignored, case is not
/// significant; a value that is not `type/subtype` is never eligible.
pub fn type_eligible(content_type: &[u8], types: &[String]) -> bool {
    let end = content_type
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(content_type.len());
    let media = trim_ows(&content_type[..end]);
    // Exact entries first, compared only when the lengths agree: most responses are decided
    // here. An entry is well-formed, so a value equal to one is too.
    if types.iter().any(|t| {
        let t = t.as_bytes();
        // Types are nearly always written in lower case: one memcmp then.
        t.len() == media.len() && (media == t || media.eq_ignore_ascii_case(t))
    }) {
        return true;
    }
    let Some(slash) = media.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (ty, sub) = (&media[..slash], &media[slash + 1..]);
    // A wildcard takes any well-formed type (of its type, for `type/*`).
    types
        .iter()
        .any(|t| match t.as_bytes().strip_suffix(b"/*") {
            Some(b"*") => is_token(ty) && is_token(sub),
            Some(prefix) => ty.eq_ignore_ascii_case(prefix) && is_token(sub),
            None => false,
        })
}

/// Where a [`Compressor`] is in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing emitted yet, not even the header.
    Fresh,
    /// Header emitted; every call so far ended with a sync flush.
    Open,
    /// Trailer emitted (or the stream failed): further calls append nothing.
    Done,
}

/// Gzip header (RFC 1952): magic, CM=8 (deflate), no flags, MTIME 0 (none, as nginx does).
/// Byte 8 (XFL) is set per level, byte 9 is OS 3 (Unix) like zlib.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// Room left at the end of the output before each deflate call: zlib asks for more than six
/// bytes when flushing so a full buffer does not make it repeat the flush marker.
const MIN_SPARE: usize = 64;

/// Compressors kept for reuse, so a compressed response neither allocates nor sets up a
/// deflate state (about 370 KiB): responses take one at their first flush and give it back at
/// their last.
///
/// A server has one, shared by its loops and pool threads, keeping as many as can compress at
/// once (`threads + pool_threads`: a pool thread's flush blocks, so each compresses one response
/// at a time). With fewer kept, every response beyond them allocates a state and frees it
/// again, and freeing states that big on many threads makes malloc keep tens of MiB it never
/// hands back (glibc raises its mmap threshold past them, then their arenas fragment): issue 25
/// measured 56 to 75 MiB over a few thousand gzip responses from pool threads.
pub struct CompressorPool {
    // Boxed because responses hold them boxed: handing one over moves a pointer.
    #[allow(clippy::vec_box)]
    free: parking_lot::Mutex<Vec<Box<Compressor>>>,
    keep: usize,
}

impl CompressorPool {
    /// A pool that keeps up to `keep` idle compressors.
    pub fn new(keep: usize) -> Self {
        CompressorPool {
            free: parking_lot::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A compressor ready for a new stream of `coding` at `level`.
    pub fn take(&self, coding: Coding, level: u32) -> Box<Compressor> {
        let reused = self.free.lock().pop();
        match reused {
            Some(mut c) => {
                c.reset(coding, level);
                c
            }
            None => Box::new(Compressor::new(coding, level)),
        }
    }

    /// Returns a compressor for reuse (or drops it when the pool is full).
    pub fn give(&self, c: Box<Compressor>) {
        let mut free = self.free.lock();
        if free.len() < self.keep {
            free.push(c);
        }
    }
}

/// A streaming gzip or deflate (zlib-wrapped) compressor for one response body at a time.
pub struct Compressor {
    /// Raw deflate: the wrapper is ours, so one state serves both codings.
    deflate: Compress,
    coding: Coding,
    level: u32,
    phase: Phase,
    failed: bool,
    /// CRC-32 of the input, for the gzip trailer.
    crc: Crc,
    /// Adler-32 of the input, for the zlib trailer.
    adler: Adler32,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("coding", &self.coding)
            .field("level", &self.level)
            .field("phase", &self.phase)
            .field("failed", &self.failed)
            .field("total_in", &self.deflate.total_in())
            .finish()
    }
}

impl Compressor {
    /// A compressor for `coding` at `level` 1..=9 (values outside are clamped).
    pub fn new(coding: Coding, level: u32) -> Self {
        let level = level.clamp(1, 9);
        Compressor {
            deflate: Compress::new(Compression::new(level), false),
            coding,
            level,
            phase: Phase::Fresh,
            failed: false,
            crc: Crc::new(),
            adler: Adler32::new(),
        }
    }

    /// Makes it ready for a new response with `coding` at `level` (clamped to 1..=9), reusing
    /// the deflate state's allocations.
    pub fn reset(&mut self, coding: Coding, level: u32) {
        let level = level.clamp(1, 9);
        self.deflate.reset();
        // Right after a reset the stream holds no data, so changing the level cannot need
        // output space; should it fail anyway, a fresh state is correct, just slower.
        if level != self.level && self.deflate.set_level(Compression::new(level)).is_err() {
            self.deflate = Compress::new(Compression::new(level), false);
        }
        self.coding = coding;
        self.level = level;
        self.phase = Phase::Fresh;
        self.failed = false;
        self.crc.reset();
        self.adler = Adler32::new();
    }

    /// The coding of the current stream.
    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// Whether the stream has ended (finished, or failed).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the deflate engine reported an error: the output of the failing call is
    /// incomplete and the stream must be abandoned (close the connection). Not expected to
    /// happen; cleared by [`Compressor::reset`].
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Compresses `input` and appends the output to `out`.
    ///
    /// Without `finish` the output ends with a sync flush, so the client can decode every byte
    /// given so far; with `finish` it ends the stream (gzip: CRC-32 and ISIZE trailer; deflate:
    /// zlib format per RFC 9110 8.4.1.2 with an Adler-32 trailer). Empty input without
    /// `finish` appends nothing (the previous call already flushed). After `finish`, further
    /// calls append nothing.
    pub fn compress(&mut self, input: &[u8], finish: bool, out: &mut Vec<u8>) {
        if self.phase == Phase::Done || (input.is_empty() && !finish) {
            return;
        }
        // Worst case of raw deflate (static-Huffman literals reach 9 bits, stored blocks cost
        // 5 bytes per 64 KB) plus block ends, the flush marker, header and trailer; reserving
        // it up front normally makes one deflate call enough.
        out.reserve(input.len() + input.len() / 8 + input.len() / 64 + MIN_SPARE + 32);
        if self.phase == Phase::Fresh {
            self.write_header(out);
            self.phase = Phase::Open;
        }
        match self.coding {
            Coding::Gzip => self.crc.update(input),
            Coding::Deflate => self.adler.update(input),
        }

        let flush = if finish {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < MIN_SPARE {
                // Vec::reserve at least doubles, so this loop runs a logarithmic number of
                // times even when deflate releases more buffered output than estimated.
                out.reserve(MIN_SPARE + (input.len() - pos) / 2);
            }
            let (in_before, out_before) = (self.deflate.total_in(), self.deflate.total_out());
            let status = self.deflate.compress_vec(&input[pos..], out, flush);
            let consumed = (self.deflate.total_in() - in_before) as usize;
            let produced = self.deflate.total_out() - out_before;
            pos += consumed;
            match status {
                Ok(Status::StreamEnd) => break,
                // A sync flush is complete once all input is in and deflate stopped with output
                // space to spare (a full buffer may hide more pending output).
                Ok(Status::Ok | Status::BufError)
                    if !finish && pos == input.len() && out.len() < out.capacity() =>
                {
                    break
                }
                // No progress despite free space: deflate is stuck, so give up on this stream
                // rather than spin.
                Ok(_) if consumed == 0 && produced == 0 && out.len() < out.capacity() => {
                    self.fail();
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    self.fail();
                    return;
                }
            }
        }

        if finish {
            match self.coding {
                Coding::Gzip => {
                    out.extend_from_slice(&self.crc.sum().to_le_bytes());
                    // ISIZE is the input length modulo 2^32 (RFC 1952 2.3.1).
                    out.extend_from_slice(&(self.deflate.total_in() as u32).to_le_bytes());
                }
                Coding::Deflate => out.extend_from_slice(&self.adler.sum().to_be_bytes()),
            }
            self.phase = Phase::Done;
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.phase = Phase::Done;
    }

    fn write_header(&self, out: &mut Vec<u8>) {
        match self.coding {
            Coding::Gzip => {
                let mut header = GZIP_HEADER;
                // XFL (RFC 1952 2.3.1): 2 = maximum compression, 4 = fastest algorithm.
                header[8] = match self.level {
                    9 => 2,
                    1 => 4,
                    _ => 0,
                };
                out.extend_from_slice(&header);
            }
            Coding::Deflate => {
                // CMF 0x78: deflate with a 32 KB window (the raw stream's default 15 bits).
                // FLG: FLEVEL as zlib sets it, then FCHECK so CMF*256+FLG is a multiple of 31.
                let flevel: u16 = match self.level {
                    1 => 0,
                    2..=5 => 1,
                    6 => 2,
                    _ => 3,
                };
                let mut header: u16 = 0x7800 | (flevel << 6);
                header += 31 - header % 31;
                out.extend_from_slice(&header.to_be_bytes());
            }
        }
    }
}

/// Adler-32 (RFC 1950 8.2); flate2 does not expose one.
#[derive(Clone, Copy, Debug)]
struct Adler32 {
    a: u32,
    b: u32,
}

impl Adler32 {
    const MOD: u32 = 65_521;
    /// Most bytes that can be summed before `b` could overflow u32 (the zlib bound); a
    /// multiple of 16 so blocks below stay whole.
    const NMAX: usize = 5552;

    fn new() -> Self {
        Adler32 { a: 1, b: 0 }
    }

    fn update(&mut self, data: &[u8]) {
        let (mut a, mut b) = (self.a, self.b);
        for chunk in data.chunks(Self::NMAX) {
            let mut blocks = chunk.chunks_exact(16);
            // Per 16-byte block: b gains 16 copies of the old a plus each byte weighted by how
            // many sums it enters (16 for the first, 1 for the last). This breaks the serial
            // a -> b dependency so the block sums vectorize.
            for block in &mut blocks {
                let mut sum = 0u32;
                let mut weighted = 0u32;
                for (i, &x) in block.iter().enumerate() {
                    sum += u32::from(x);
                    weighted += (16 - i as u32) * u32::from(x);
                }
                b += 16 * a + weighted;
                a += sum;
            }
            for &x in blocks.remainder() {
                a += u32::from(x);
                b += a;
            }
            a %= Self::MOD;
            b %= Self::MOD;
        }
        self.a = a;
        self.b = b;
    }

    fn sum(&self) -> u32 {
        (self.b << 16) | self.a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::{GzDecoder, ZlibDecoder};
    use flate2::{Decompress, FlushDecompress};
    use std::io::Read;

    #[test]
    fn negotiate_table() {
        use Coding::{Deflate as D, Gzip as G};
        let cases: &[(&str, Option<Coding>)] = &[
            ("gzip", Some(G)),
            ("GZIP", Some(G)),
            ("GZip", Some(G)),
            ("deflate", Some(D)),
            ("DEFLATE", Some(D)),
            ("gzip, deflate", Some(G)),
            ("deflate, gzip", Some(G)),
            ("gzip, deflate, br, zstd", Some(G)),
            ("br", None),
            ("identity", None),
            ("identity, br;q=1", None),
            ("", None),
            ("   ", None),
            (",,, ,", None),
            ("gzip;q=0", None),
            ("gzip; q=0", None),
            ("gzip;Q=0", None),
            ("gzip;q=0.000", None),
            ("gzip;q=0.", None),
            ("gzip;q=0.001", Some(G)),
            ("gzip;q=1.000", Some(G)),
            ("gzip;q=1.", Some(G)),
            ("gzip;q=1.001", None),
            ("gzip;q=2", None),
            ("gzip;q=0.0001", None),
            ("gzip;q=.5", None),
            ("gzip;q=", None),
            ("gzip;q", None),
            ("gzip;q=abc", None),
            ("gzip;q=\"1\"", None),
            ("gzip;q=-1", None),
            ("gzip;q=0.5;q=1", None),
            ("gzip;q=1.001, deflate", Some(D)),
            ("deflate, gzip;q=0.5", Some(D)),
            ("deflate;q=0.5, gzip;q=0.5", Some(G)),
            ("deflate;q=0.4, gzip;q=0.5", Some(G)),
            ("gzip;q=0, deflate", Some(D)),
            ("gzip;q=0, deflate;q=0", None),
            ("*", Some(G)),
            ("*;q=0", None),
            ("*;q=0.1", Some(G)),
            ("gzip;q=0, *", Some(D)),
            ("deflate;q=0.5, *", Some(G)),
            ("deflate, *;q=0.5", Some(D)),
            ("*, gzip;q=0, deflate;q=0", None),
            ("br, *;q=0", None),
            ("  gzip  ;  q = 0.8  ,  deflate ; q=0.9 ", Some(D)),
            ("\tgzip\t", Some(G)),
            ("gzip;level=9", Some(G)),
            ("gzip;", Some(G)),
            ("x-gzip", Some(G)),
            ("x-gzip, gzip;q=0", None),
            ("gzip, gzip;q=0", None),
            ("gz ip", None),
            ("gzip deflate", None),
            ("g\u{e9}zip, deflate", Some(D)),
            ("@@@, ;;;, ==, gzip", Some(G)),
            ("gzipx, xgzip, gzip2", None),
            (";q=1", None),
        ];
        assert!(cases.len() >= 25);
        for &(header, want) in cases {
            assert_eq!(
                negotiate(header.as_bytes()),
                want,
                "Accept-Encoding: {header:?}"
            );
        }
        // Non-UTF-8 bytes are junk, not a panic.
        assert_eq!(negotiate(b"\xff\xfe, gzip;q=\xff"), None);
        assert_eq!(negotiate(b"\xff\xfe, deflate"), Some(D));
    }

    #[test]
    fn qvalue_grammar() {
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.05"), Some(50));
        assert_eq!(parse_qvalue(b"0.123"), Some(123));
        assert_eq!(parse_qvalue(b"0.999"), Some(999));
        assert_eq!(parse_qvalue(b"1.0"), Some(1000));
        assert_eq!(parse_qvalue(b"1.00"), Some(1000));
        for bad in [
            &b""[..],
            b".",
            b"00",
            b"01",
            b"1.01",
            b"0.1234",
            b"0,5",
            b"0.5 ",
            b"9",
        ] {
            assert_eq!(parse_qvalue(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn coding_tokens() {
        assert_eq!(Coding::Gzip.token(), "gzip");
        assert_eq!(Coding::Deflate.token(), "deflate");
    }

    #[test]
    fn parse_types_cases() {
        let default = "text/html,text/plain,text/css,text/xml,application/json,\
                       application/javascript,application/xml,image/svg+xml";
        let t = parse_types(default).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(t[7], "image/svg+xml");
        assert_eq!(
            parse_types(" Text/HTML ,\tapplication/JSON, text/html").unwrap(),
            vec!["text/html".to_string(), "application/json".to_string()]
        );
        assert_eq!(
            parse_types("text/*, */*").unwrap(),
            vec!["text/*".to_string(), "*/*".to_string()]
        );
        assert_eq!(parse_types("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_types("  ").unwrap(), Vec::<String>::new());
        for bad in [
            "text/html,",
            ",text/html",
            "text/html,,text/plain",
            "text/html, ,text/plain",
            "text",
            "text/",
            "/html",
            "text/html/x",
            "text /html",
            "text/html; charset=utf-8",
            "*",
            "*/html",
            "te\"xt/html",
            "text/ht ml",
            "tëxt/html",
        ] {
            let err = parse_types(bad).unwrap_err();
            assert!(err.contains("compression_types"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn type_eligible_cases() {
        let types = parse_types("text/html,application/json,image/svg+xml").unwrap();
        let yes = [
            &b"text/html"[..],
            b"TEXT/HTML",
            b"Text/Html; charset=utf-8",
            b"text/html;charset=UTF-8",
            b"  text/html  ",
            b"\ttext/html ; charset=utf-8",
            b"application/json",
            b"image/SVG+XML",
        ];
        for ct in yes {
            assert!(
                type_eligible(ct, &types),
                "{:?}",
                String::from_utf8_lossy(ct)
            );
        }
        let no = [
            &b""[..],
            b" ",
            b";charset=utf-8",
            b"text/plain",
            b"text/htmlx",
            b"text/htm",
            b"xtext/html",
            b"text",
            b"text/",
            b"text / html",
            b"application/json-seq",
            b"image/png",
            b"\xff/\xfe",
        ];
        for ct in no {
            assert!(
                !type_eligible(ct, &types),
                "{:?}",
                String::from_utf8_lossy(ct)
            );
        }
        assert!(!type_eligible(b"text/html", &[]));

        let wild = parse_types("text/*").unwrap();
        assert!(type_eligible(b"text/csv; header=present", &wild));
        assert!(type_eligible(b"TEXT/whatever", &wild));
        assert!(!type_eligible(b"textual/html", &wild));
        assert!(!type_eligible(b"application/text", &wild));
        let any = parse_types("*/*").unwrap();
        assert!(type_eligible(b"application/octet-stream", &any));
        assert!(!type_eligible(b"garbage", &any));
    }

    /// Deterministic text-like data: words from a small vocabulary, so it compresses well but
    /// not trivially.
    fn text(len: usize) -> Vec<u8> {
        let words = [
            "lorem ",
            "ipsum ",
            "dolor ",
            "sit ",
            "amet, ",
            "consectetur ",
            "adipiscing ",
            "elit. ",
            "<p>",
            "</p>\n",
            "{\"id\": ",
            "42, ",
            "\"name\": ",
            "\"httpsrv\"} ",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(words[(state % words.len() as u64) as usize].as_bytes());
        }
        out.truncate(len);
        out
    }

    /// Incompressible bytes (xorshift).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    /// An independent streaming decoder fed the compressed bytes as they are flushed.
    struct Stream {
        inflate: Decompress,
        fed: usize,
        decoded: Vec<u8>,
        ended: bool,
    }

    impl Stream {
        fn new(coding: Coding) -> Self {
            let inflate = match coding {
                Coding::Gzip => Decompress::new_gzip(15),
                Coding::Deflate => Decompress::new(true),
            };
            Stream {
                inflate,
                fed: 0,
                decoded: Vec::new(),
                ended: false,
            }
        }

        /// Feeds compressed[fed..] and decodes everything available.
        fn feed(&mut self, compressed: &[u8]) {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let in_before = self.inflate.total_in();
                let out_before = self.inflate.total_out();
                let status = self
                    .inflate
                    .decompress(&compressed[self.fed..], &mut buf, FlushDecompress::Sync)
                    .unwrap();
                self.fed += (self.inflate.total_in() - in_before) as usize;
                let n = (self.inflate.total_out() - out_before) as usize;
                self.decoded.extend_from_slice(&buf[..n]);
                if status == Status::StreamEnd {
                    self.ended = true;
                    return;
                }
                if n < buf.len() && self.fed == compressed.len() {
                    return;
                }
            }
        }
    }

    fn decode_all(coding: Coding, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => GzDecoder::new(data).read_to_end(&mut out)?,
            Coding::Deflate => ZlibDecoder::new(data).read_to_end(&mut out)?,
        };
        Ok(out)
    }

    /// Compresses `input` in `chunk`-byte flushes, checking after every flush that an
    /// independent decoder yields exactly the input so far, then finishes and checks the whole
    /// stream (including trailer verification) with the read-mode decoders.
    fn roundtrip(c: &mut Compressor, input: &[u8], chunk: usize) -> Vec<u8> {
        let coding = c.coding();
        let mut out = Vec::new();
        let mut stream = Stream::new(coding);
        for (i, piece) in input.chunks(chunk).enumerate() {
            c.compress(piece, false, &mut out);
            assert!(!c.failed());
            stream.feed(&out);
            let sent = (i * chunk + piece.len()).min(input.len());
            assert_eq!(stream.decoded.len(), sent, "flush {i}");
            assert!(
                stream.decoded[..] == input[..sent],
                "flush {i} decodes wrongly"
            );
            assert!(!stream.ended);
            // A sync flush ends byte-aligned with the empty stored block 00 00 ff ff.
            assert_eq!(&out[out.len() - 4..], &[0, 0, 0xff, 0xff]);
        }
        c.compress(&[], true, &mut out);
        assert!(c.is_finished() && !c.failed());
        stream.feed(&out);
        assert!(stream.ended);
        assert_eq!(stream.fed, out.len(), "no bytes after the trailer");
        assert!(stream.decoded == input);
        assert!(decode_all(coding, &out).unwrap() == input);
        out
    }

    #[test]
    fn streaming_gzip_1k_flushes() {
        let input = text(20 * 1024);
        let mut c = Compressor::new(Coding::Gzip, 1);
        let out = roundtrip(&mut c, &input, 1024);
        assert_eq!(&out[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(out[8], 4, "XFL fastest at level 1");
        let n = out.len();
        assert_eq!(out[n - 8..n - 4], flate2_crc(&input).to_le_bytes());
        assert_eq!(out[n - 4..], (input.len() as u32).to_le_bytes());
        assert!(
            out.len() < input.len() / 2,
            "text should compress: {}",
            out.len()
        );
    }

    #[test]
    fn streaming_deflate_1k_flushes_is_zlib_wrapped() {
        let input = text(20 * 1024);
        let mut c = Compressor::new(Coding::Deflate, 1);
        let out = roundtrip(&mut c, &input, 1024);
        assert_eq!(out[0], 0x78);
        assert_eq!(u16::from_be_bytes([out[0], out[1]]) % 31, 0);
        assert_eq!((out[1] >> 5) & 1, 0, "no preset dictionary");
        assert_eq!(out[out.len() - 4..], adler_reference(&input).to_be_bytes());
    }

    #[test]
    fn all_levels_and_codings() {
        let input = text(50_000);
        for coding in [Coding::Gzip, Coding::Deflate] {
            for level in 1..=9 {
                let mut c = Compressor::new(coding, level);
                let out = roundtrip(&mut c, &input, 7_000);
                match coding {
                    Coding::Gzip => {
                        assert_eq!(out[8], [4, 0, 0, 0, 0, 0, 0, 0, 2][level as usize - 1])
                    }
                    Coding::Deflate => {
                        let flevel = [0, 1, 1, 1, 1, 2, 3, 3, 3][level as usize - 1];
                        assert_eq!(out[1] >> 6, flevel, "level {level}");
                    }
                }
            }
        }
        // Out-of-range levels are clamped, not a panic.
        for level in [0, 10, u32::MAX] {
            let mut c = Compressor::new(Coding::Gzip, level);
            roundtrip(&mut c, &input, 10_000);
            c.reset(Coding::Deflate, level);
            roundtrip(&mut c, &input, 10_000);
        }
    }

    #[test]
    fn incompressible_and_tiny_flushes() {
        for coding in [Coding::Gzip, Coding::Deflate] {
            let mut c = Compressor::new(coding, 1);
            let input = noise(300_000, 7);
            let out = roundtrip(&mut c, &input, 65_536);
            // Level 1 (zlib-rs "quick") codes everything with the static Huffman table, whose
            // literals 144..=255 take 9 bits: at most 1/8 bigger, plus block overhead.
            assert!(
                out.len() < input.len() + input.len() / 8 + 64,
                "{}",
                out.len()
            );

            c.reset(coding, 1);
            roundtrip(&mut c, &noise(3_000, 9), 1);
            c.reset(coding, 6);
            roundtrip(&mut c, &text(5_000), 3);
            c.reset(coding, 9);
            roundtrip(&mut c, &noise(10_000, 11), 13);
        }
    }

    #[test]
    fn one_big_call_and_finish_in_the_same_call() {
        for coding in [Coding::Gzip, Coding::Deflate] {
            for input in [text(3 << 20), noise(1 << 20, 3)] {
                let mut c = Compressor::new(coding, 1);
                let mut out = Vec::new();
                c.compress(&input, true, &mut out);
                assert!(c.is_finished() && !c.failed());
                assert!(decode_all(coding, &out).unwrap() == input);
                // Data, then flush, then finish with data in the final call.
                c.reset(coding, 1);
                let mut out = b"prefix already in the buffer".to_vec();
                let keep = out.len();
                c.compress(&input[..1000], false, &mut out);
                c.compress(&input[1000..], true, &mut out);
                assert_eq!(&out[..keep], b"prefix already in the buffer");
                assert!(decode_all(coding, &out[keep..]).unwrap() == input);
            }
        }
    }

    #[test]
    fn empty_input_emits_nothing_until_finish() {
        for coding in [Coding::Gzip, Coding::Deflate] {
            let mut c = Compressor::new(coding, 1);
            let mut out = Vec::new();
            c.compress(&[], false, &mut out);
            assert!(out.is_empty(), "not even a header");
            c.compress(b"hello", false, &mut out);
            let after_data = out.len();
            c.compress(&[], false, &mut out);
            assert_eq!(out.len(), after_data, "nothing pending after a sync flush");
            c.compress(&[], true, &mut out);
            assert_eq!(decode_all(coding, &out).unwrap(), b"hello");
            let done = out.len();
            c.compress(b"more", false, &mut out);
            c.compress(b"more", true, &mut out);
            c.compress(&[], true, &mut out);
            assert_eq!(out.len(), done, "nothing after finish");

            // A body that is empty from start to finish is still a valid stream.
            c.reset(coding, 1);
            let mut out = Vec::new();
            c.compress(&[], false, &mut out);
            c.compress(&[], true, &mut out);
            assert!(!out.is_empty());
            assert_eq!(decode_all(coding, &out).unwrap(), b"");
        }
        let mut c = Compressor::new(Coding::Gzip, 1);
        let mut out = Vec::new();
        c.compress(&[], true, &mut out);
        assert_eq!(
            out.len(),
            20,
            "gzip of nothing: header, empty block, trailer"
        );
    }

    #[test]
    fn pool_keeps_up_to_its_bound_and_hands_them_out_again() {
        let pool = CompressorPool::new(3);
        let taken: Vec<_> = (0..5).map(|_| pool.take(Coding::Gzip, 1)).collect();
        let kept: Vec<*const Compressor> = taken.iter().map(|c| &**c as *const _).collect();
        for c in taken {
            pool.give(c);
        }
        assert_eq!(
            pool.free.lock().len(),
            3,
            "two beyond the bound are dropped"
        );
        // The kept ones come back, reset for the new coding and level.
        for _ in 0..3 {
            let mut c = pool.take(Coding::Deflate, 6);
            assert!(kept[..3].contains(&(&*c as *const _)));
            assert_eq!(
                (c.coding(), c.level, c.phase),
                (Coding::Deflate, 6, Phase::Fresh)
            );
            roundtrip(&mut c, &text(5_000), 700);
        }
        assert_eq!(pool.free.lock().len(), 0);
    }

    #[test]
    fn reset_gives_independent_streams() {
        let mut c = Compressor::new(Coding::Gzip, 1);
        let a = text(10_000);
        let b = noise(10_000, 5);
        let first = roundtrip(&mut c, &a, 1024);
        // Abandon a stream halfway, then reuse: nothing of it may leak into the next one.
        c.reset(Coding::Gzip, 1);
        let mut junk = Vec::new();
        c.compress(&b[..5000], false, &mut junk);
        for (coding, level) in [
            (Coding::Deflate, 1),
            (Coding::Gzip, 9),
            (Coding::Deflate, 6),
            (Coding::Gzip, 1),
        ] {
            c.reset(coding, level);
            assert_eq!(c.coding(), coding);
            assert!(!c.is_finished());
            roundtrip(&mut c, &b, 999);
        }
        // Same coding, level and input after reset: byte-identical to a fresh compressor.
        c.reset(Coding::Gzip, 1);
        let again = roundtrip(&mut c, &a, 1024);
        assert_eq!(first, again);
        let mut fresh = Compressor::new(Coding::Gzip, 1);
        assert_eq!(roundtrip(&mut fresh, &a, 1024), first);
    }

    #[test]
    fn corrupted_trailer_is_detected() {
        // Proves the decoders used above really check CRC-32/ISIZE and Adler-32.
        let input = text(4096);
        for coding in [Coding::Gzip, Coding::Deflate] {
            let mut c = Compressor::new(coding, 1);
            let mut out = Vec::new();
            c.compress(&input, true, &mut out);
            let n = out.len();
            for at in [n - 1, n - 5] {
                let mut bad = out.clone();
                bad[at] ^= 1;
                assert!(decode_all(coding, &bad).is_err(), "{coding:?} byte {at}");
            }
        }
    }

    #[test]
    fn adler32_matches_reference() {
        for len in [0, 1, 15, 16, 17, 5551, 5552, 5553, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| 0xff - (i % 7) as u8).collect();
            let mut a = Adler32::new();
            a.update(&data);
            assert_eq!(a.sum(), adler_reference(&data), "len {len}");
            // Split updates give the same result.
            let mut split = Adler32::new();
            let (x, y) = data.split_at(len / 3);
            split.update(x);
            split.update(y);
            assert_eq!(split.sum(), a.sum());
        }
        assert_eq!(adler_reference(b"Wikipedia"), 0x11E6_0398);
    }

    fn adler_reference(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        (b << 16) | a
    }

    fn flate2_crc(data: &[u8]) -> u32 {
        let mut crc = Crc::new();
        crc.update(data);
        crc.sum()
    }

    #[test]
    fn python_zlib_decodes_streams() {
        // A third, unrelated implementation (CPython's zlib). Skipped without python3.
        use std::io::Write;
        use std::process::{Command, Stdio};
        let input = text(20 * 1024);
        for (coding, wbits) in [(Coding::Gzip, 31), (Coding::Deflate, 15)] {
            let mut c = Compressor::new(coding, 1);
            let mut out = Vec::new();
            let mut prefix_ends = Vec::new();
            for piece in input.chunks(1024) {
                c.compress(piece, false, &mut out);
                prefix_ends.push(out.len());
            }
            c.compress(&[], true, &mut out);
            // Python decodes the stream incrementally at each flush boundary and prints how
            // many bytes it had after each, then checks the end of stream and the trailer.
            let script = format!(
                "import sys, zlib\n\
                 data = sys.stdin.buffer.read()\n\
                 ends = [{}]\n\
                 d = zlib.decompressobj({wbits})\n\
                 got = b''\n\
                 prev = 0\n\
                 for e in ends:\n\
                 \x20   got += d.decompress(data[prev:e]); prev = e\n\
                 \x20   print(len(got))\n\
                 got += d.decompress(data[prev:]) + d.flush()\n\
                 assert d.eof and not d.unused_data\n\
                 print(len(got), zlib.crc32(got))\n",
                prefix_ends
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let child = Command::new("python3")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let Ok(mut child) = child else {
                eprintln!("python3 not available; skipping");
                return;
            };
            child.stdin.take().unwrap().write_all(&out).unwrap();
            let result = child.wait_with_output().unwrap();
            assert!(
                result.status.success(),
                "{}",
                String::from_utf8_lossy(&result.stderr)
            );
            let stdout = String::from_utf8(result.stdout).unwrap();
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), prefix_ends.len() + 1);
            for (i, line) in lines[..prefix_ends.len()].iter().enumerate() {
                let want = ((i + 1) * 1024).min(input.len());
                assert_eq!(line.parse::<usize>().unwrap(), want, "after flush {i}");
            }
            assert_eq!(
                lines[prefix_ends.len()],
                format!("{} {}", input.len(), flate2_crc(&input))
            );
        }
    }
}
