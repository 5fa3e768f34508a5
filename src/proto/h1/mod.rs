//! HTTP/1.1 (RFC 9112): the head as status line and field lines, the body framed by
//! `Content-Length`, chunks or the connection's close, persistence, and the HTTP/1.0 policy.

pub mod encode;

pub use encode::{flush, ResponseEncoder};
