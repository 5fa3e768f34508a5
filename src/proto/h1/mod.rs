//! HTTP/1.1 (RFC 9112), the only code that knows its bytes: request parsing, the chunked body
//! decoder, and the response encoder (framing, persistence, the HTTP/1.0 policy).

pub mod chunked;
pub mod encode;
pub mod parse;

pub use encode::{flush, ResponseEncoder};
