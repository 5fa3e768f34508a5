//! The HTTP engine: request parsing, and the response path as a chain of filters
//! (head decision, compression, chunking, writing). Plain Rust, no sockets or threads.

pub mod chunked;
pub mod compress;
pub mod date;
pub mod fields;
pub mod lent;
pub mod outqueue;
pub mod request;
pub mod response;
pub mod status;

/// Whether `s` is an RFC 9110 token (a method or a field name).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TCHAR[b as usize])
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
