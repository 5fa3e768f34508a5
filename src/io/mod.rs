//! Transports: the only code that touches a socket. A connection reads its input and writes its
//! output queue through a `Transport`, whatever carries the bytes: TCP today, TLS and the
//! in-memory test client next. Nothing above this module calls `send`, `recv`, `sendmsg`,
//! `shutdown` or `close` on a connection's socket.

pub mod certs;
mod memory;
mod sys;
mod tcp;
pub mod tls;

use std::io;
use std::mem::MaybeUninit;

use mio::{Interest, Registry, Token};

use crate::http::outqueue::OutQueue;
pub use memory::{Memory, MemoryPeer};
#[cfg(test)]
pub(crate) use tcp::send_queue;
pub use tcp::Tcp;
pub use tls::{InfoCell, Tls, TlsAcceptor, TlsInfo, TlsSettings};

/// What a connection's bytes travel over.
pub enum Transport {
    Tcp(Tcp),
    /// TLS over TCP (rustls).
    Tls(Box<Tls>),
    /// Bytes exchanged with a test in the same process (see `MemoryPeer`).
    Memory(Memory),
    /// Closed by the connection: reads see the end, writes fail with `EPIPE`.
    Closed,
}

impl Transport {
    /// Reads into `buf` like `recv(2)`: `Ok(0)` at the end of input, `WouldBlock` when nothing is
    /// there now.
    #[inline]
    pub fn read(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(t) => t.read(buf),
            Transport::Tls(t) => t.read(buf),
            Transport::Memory(m) => m.read(buf),
            Transport::Closed => Ok(0),
        }
    }

    /// Writes as much of `out` as the transport takes now and removes it from the queue.
    /// Returns the bytes written; `Ok` with the queue not empty means it would block. Never
    /// raises SIGPIPE.
    #[inline]
    pub fn write(&mut self, out: &mut OutQueue) -> io::Result<usize> {
        match self {
            Transport::Tcp(t) => t.write(out),
            Transport::Tls(t) => t.write(out),
            Transport::Memory(m) => m.write(out),
            Transport::Closed => Err(io::Error::from_raw_os_error(libc::EPIPE)),
        }
    }

    /// Whether input the transport already took from the socket waits to be read (TLS records
    /// decrypted ahead): a short read then does not mean the socket is empty.
    #[inline]
    pub fn has_buffered_input(&self) -> bool {
        match self {
            Transport::Tls(t) => t.has_buffered_input(),
            _ => false,
        }
    }

    /// Whether output the transport took from the queue still waits for the socket (TLS
    /// records): a flush is complete only once this is false too.
    #[inline]
    pub fn has_pending_output(&self) -> bool {
        match self {
            Transport::Tls(t) => t.has_pending_output(),
            _ => false,
        }
    }

    /// The handshake's results, filled once it completes; None for a cleartext transport.
    pub fn tls_info(&self) -> Option<InfoCell> {
        match self {
            Transport::Tls(t) => Some(t.info()),
            _ => None,
        }
    }

    /// Sends the end of output (a FIN) and keeps reading.
    pub fn shutdown_write(&mut self) {
        match self {
            Transport::Tcp(t) => t.shutdown_write(),
            Transport::Tls(t) => t.shutdown_write(),
            Transport::Memory(m) => m.shutdown_write(),
            Transport::Closed => {}
        }
    }

    /// Closes the connection, with a reset instead of a graceful end when `reset`.
    pub fn close(&mut self, registry: &Registry, reset: bool) {
        match std::mem::replace(self, Transport::Closed) {
            Transport::Tcp(t) => t.close(registry, reset),
            Transport::Tls(t) => t.close(registry, reset),
            Transport::Memory(m) => m.close(reset),
            Transport::Closed => {}
        }
    }

    /// Asks the loop's poller for readiness events of this transport.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Transport::Tcp(t) => {
                t.register(registry, token, Interest::READABLE | Interest::WRITABLE)
            }
            Transport::Tls(t) => t.register(registry, token),
            // The test that owns the peer drives the connection itself.
            Transport::Memory(_) | Transport::Closed => Ok(()),
        }
    }
}
