//! The wire protocols: each turns bytes into the protocol-neutral model of `crate::http` and
//! back. Only HTTP/1.1 so far; HTTP/2 is to sit beside it behind the same seam.

pub mod h1;
