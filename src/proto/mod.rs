//! Protocol codecs: the only code that knows a protocol's bytes. Each turns the protocol-neutral
//! model of `crate::http` into bytes for a connection's output queue (and, for requests, bytes
//! into the model).

pub mod h1;
