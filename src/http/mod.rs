//! The protocol-neutral HTTP model: requests, responses being built, fields, the body pieces a
//! handler appends, and the representation filters (compression). Plain Rust: no sockets, no
//! threads, no protocol's wire format (that is `crate::proto`).

pub mod body;
pub mod compress;
pub mod date;
pub mod fields;
pub mod lent;
pub mod outqueue;
pub mod pending;
pub mod request;
pub mod response;
pub mod status;

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated field value (RFC 9110 5.6.1), trimmed; empty ones included.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Whether a comma-separated field value lists `token` (ASCII case-insensitive).
pub(crate) fn has_token(list: &[u8], token: &[u8]) -> bool {
    list_items(list).any(|t| t.eq_ignore_ascii_case(token))
}

/// 1*DIGIT as a u64; None for anything else, or more than 19 digits (more is either an
/// overflow or padding nobody needs).
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Appends `n` in decimal, without allocating.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
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

/// Whether `s` is an RFC 9110 token (a method or a field name).
pub fn is_token(s: &[u8]) -> bool {
    // Without an early exit per byte: names are short and almost always tokens.
    !s.is_empty() && s.iter().fold(true, |ok, &b| ok & TCHAR[b as usize])
}

/// tchar of RFC 9110 section 5.6.2, by byte value.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};
