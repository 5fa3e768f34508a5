//! The HTTP engine: request parsing, and the response path as a chain of filters
//! (head decision, compression, chunking, writing). Plain Rust, no sockets or threads.

pub mod chunked;
pub mod compress;
pub mod date;
pub mod outqueue;
pub mod request;
pub mod response;
pub mod status;
