//! A simple, non-incremental reference decoder for chunked bodies, written from RFC 9112
//! section 7.1 plus the decoder's documented limits. Shared by the property tests and the
//! fuzz target, which compare `ChunkedDecoder` with it.

/// The decoder's documented limits: size line (extensions and CRLF included), trailer section.
pub const MAX_SIZE_LINE: usize = 4096;
pub const MAX_TRAILER: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(usize, Vec<u8>),
    Incomplete,
    Error(u16),
}

pub fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

/// The grammar read front to back over the whole input; the first violation in stream order
/// decides the status:
///   chunked-body = *chunk last-chunk trailer-section CRLF
///   chunk        = 1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
///                  CRLF data CRLF                                    (size line <= 4096 bytes)
///   trailer      = *( tchar+ ":" field-bytes* CRLF )                 (section <= 16384 bytes)
/// A size that overflows 64 bits is 400, a body past `max` 413 (at the end of its size line),
/// a trailer section past its bound 431.
pub fn reference(input: &[u8], max: u64) -> Outcome {
    use Outcome::*;
    let mut p = 0usize;
    let mut body = Vec::new();
    let mut total = 0u64;
    loop {
        let start = p;
        macro_rules! line_byte {
            () => {{
                if p >= input.len() {
                    return Incomplete;
                }
                if p - start + 1 > MAX_SIZE_LINE {
                    return Error(400);
                }
                input[p]
            }};
        }
        let mut size = 0u64;
        let mut digits = 0;
        loop {
            let b = line_byte!();
            let Some(d) = hex(b) else { break };
            size = match size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                Some(s) => s,
                None => return Error(400),
            };
            digits += 1;
            p += 1;
        }
        if digits == 0 {
            return Error(400);
        }
        // The extensions: whitespace (BWS) only before ';' and around '='.
        macro_rules! skip_ws {
            () => {{
                let mut ws = false;
                while matches!(line_byte!(), b' ' | b'\t') {
                    ws = true;
                    p += 1;
                }
                ws
            }};
        }
        macro_rules! token {
            () => {{
                let from = p;
                while is_tchar(line_byte!()) {
                    p += 1;
                }
                if p == from {
                    return Error(400);
                }
            }};
        }
        let mut ws = skip_ws!();
        loop {
            match line_byte!() {
                b'\r' if !ws => break,
                b';' => p += 1,
                _ => return Error(400),
            }
            skip_ws!();
            token!();
            ws = skip_ws!();
            if line_byte!() != b'=' {
                continue;
            }
            p += 1;
            skip_ws!();
            if line_byte!() == b'"' {
                p += 1;
                loop {
                    match line_byte!() {
                        b'"' => break,
                        // quoted-pair: a backslash and any field byte.
                        b'\\' => {
                            p += 1;
                            if !is_field_byte(line_byte!()) {
                                return Error(400);
                            }
                        }
                        b if is_field_byte(b) => {}
                        _ => return Error(400),
                    }
                    p += 1;
                }
                p += 1;
            } else {
                token!();
            }
            ws = skip_ws!();
        }
        if line_byte!() != b'\r' {
            return Error(400);
        }
        p += 1;
        if line_byte!() != b'\n' {
            return Error(400);
        }
        p += 1;
        // The limit is checked once the size line is complete: a size too long for any
        // number is malformed (400) whatever the limit.
        if total.checked_add(size).is_none_or(|t| t > max) {
            return Error(413);
        }
        if size == 0 {
            break;
        }
        total += size;
        if ((input.len() - p) as u64) < size {
            return Incomplete;
        }
        body.extend_from_slice(&input[p..p + size as usize]);
        p += size as usize;
        for want in [b'\r', b'\n'] {
            match input.get(p) {
                None => return Incomplete,
                Some(&b) if b == want => p += 1,
                Some(_) => return Error(400),
            }
        }
    }
    let start = p;
    macro_rules! trailer_byte {
        () => {{
            if p >= input.len() {
                return Incomplete;
            }
            if p - start + 1 > MAX_TRAILER {
                return Error(431);
            }
            input[p]
        }};
    }
    loop {
        if trailer_byte!() == b'\r' {
            p += 1;
            return if trailer_byte!() == b'\n' {
                Done(p + 1, body)
            } else {
                Error(400)
            };
        }
        let mut name = 0;
        loop {
            let b = trailer_byte!();
            if is_tchar(b) {
                name += 1;
                p += 1;
            } else if b == b':' && name > 0 {
                p += 1;
                break;
            } else {
                return Error(400);
            }
        }
        loop {
            let b = trailer_byte!();
            if b == b'\r' {
                p += 1;
                break;
            }
            if !is_field_byte(b) {
                return Error(400);
            }
            p += 1;
        }
        if trailer_byte!() != b'\n' {
            return Error(400);
        }
        p += 1;
    }
}
