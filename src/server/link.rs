//! A connection's transport behind one lock: the only path to its socket.
//!
//! The loop reads and writes through it, and so may a pool thread's blocking flush (see
//! `Session::flush`), which spares the hop to the loop. Whoever holds the lock is the
//! connection's one writer; nobody else sees the socket. Lock order: a session's state first,
//! then the link; the loop never takes a session's lock while it holds the link.

use std::io;
use std::mem::MaybeUninit;

use mio::{Registry, Token};
use parking_lot::{Mutex, MutexGuard};

use crate::http::outqueue::OutQueue;
use crate::io::Transport;

pub struct Link {
    transport: Mutex<Transport>,
}

impl Link {
    pub fn new(transport: Transport) -> Link {
        Link {
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

    /// `Transport::read`.
    pub fn read(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        self.transport.lock().read(buf)
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
}
