//! A connection's transport behind one lock: the only path to its socket.
//!
//! The loop reads and writes through it, and so may a pool thread's blocking flush (see
//! `Session::flush`), which spares the hop to the loop. Whoever holds the lock is the
//! connection's one writer; nobody else sees the socket. Lock order: a session's state first,
//! then the link; the loop never takes a session's lock while it holds the link.

use std::io;

use mio::{Registry, Token};
use parking_lot::{Mutex, MutexGuard};

use crate::http::outqueue::OutQueue;
use crate::io::{InfoCell, TlsInfo, Transport};

pub struct Link {
    transport: Mutex<Transport>,
    /// For a TLS connection, what its handshake agreed on (set once it completes). It lives
    /// here, beside the transport, so the strings stay valid after the transport closed.
    tls: Option<InfoCell>,
}

impl Link {
    pub fn new(transport: Transport) -> Link {
        Link {
            tls: transport.tls_info(),
            transport: Mutex::new(transport),
        }
    }

    /// Holds the transport for several reads in a row.
    pub fn lock(&self) -> MutexGuard<'_, Transport> {
        self.transport.lock()
    }

    /// `Transport::write`.
    #[inline]
    pub fn write(&self, out: &mut OutQueue) -> io::Result<usize> {
        self.transport.lock().write(out)
    }

    /// `Transport::has_pending_output`: written output the transport still holds (TLS records
    /// the socket did not take yet). Cleartext answers without taking the lock.
    #[inline]
    pub fn has_pending_output(&self) -> bool {
        self.tls.is_some() && self.transport.lock().has_pending_output()
    }

    pub fn shutdown_write(&self) {
        self.transport.lock().shutdown_write();
    }

    /// Closes the transport now: later writes from any thread fail with `EPIPE`.
    pub fn close(&self, registry: &Registry, reset: bool) {
        self.transport.lock().close(registry, reset);
    }

    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        self.transport.lock().register(registry, token)
    }

    /// Whether the connection speaks TLS.
    #[inline]
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TLS connection whose handshake has not completed.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|info| info.get().is_none())
    }

    /// The handshake's results; None on cleartext or before the handshake completed.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()?.get()
    }
}
