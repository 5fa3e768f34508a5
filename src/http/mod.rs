//! The HTTP engine: request parsing, and the response path as a chain of filters
//! (head decision, compression, chunking, writing). Plain Rust, no sockets or threads.

pub mod chunked;
pub mod compress;
pub mod date;
pub mod outqueue;
pub mod request;
pub mod response;
pub mod status;

/// Whether `s` is an RFC 9110 token (a method or a field name).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}
