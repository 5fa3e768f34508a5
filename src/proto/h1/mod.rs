//! HTTP/1.1 (RFC 9112): the only code that knows its bytes.

pub mod chunked;
pub mod parse;
