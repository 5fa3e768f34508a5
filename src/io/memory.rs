//! An in-memory transport: the connection on one side, a test (and later the in-memory test
//! client) on the other, no socket between them. The peer feeds input, reads what the
//! connection wrote, and can limit how much the connection may write, to show backpressure.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::http::outqueue::OutQueue;

#[derive(Default)]
struct Pipe {
    /// Bytes the peer sent that the connection has not read yet.
    input: Vec<u8>,
    /// The peer sent its end of input (`shutdown(SHUT_WR)`).
    input_closed: bool,
    /// Bytes the connection wrote.
    output: Vec<u8>,
    /// How many more bytes the connection may write before it would block; None: no limit.
    window: Option<usize>,
    /// The peer is gone: reads and writes fail with this errno.
    failed: Option<i32>,
    /// The connection sent its end of output.
    output_closed: bool,
    /// The connection closed, and whether with a reset.
    closed: Option<bool>,
}

/// The connection's side.
pub struct Memory {
    pipe: Arc<Mutex<Pipe>>,
}

/// The test's side of a `Memory` transport.
#[derive(Clone)]
pub struct MemoryPeer {
    pipe: Arc<Mutex<Pipe>>,
}

impl Memory {
    /// A transport and the peer that talks to it.
    pub fn pair() -> (Memory, MemoryPeer) {
        let pipe = Arc::new(Mutex::new(Pipe::default()));
        (Memory { pipe: pipe.clone() }, MemoryPeer { pipe })
    }

    pub(super) fn read(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let mut p = self.pipe.lock();
        if let Some(e) = p.failed {
            return Err(io::Error::from_raw_os_error(e));
        }
        if p.input.is_empty() {
            return if p.input_closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = p.input.len().min(buf.len());
        for (dst, &src) in buf.iter_mut().zip(&p.input[..n]) {
            dst.write(src);
        }
        p.input.drain(..n);
        Ok(n)
    }

    pub(super) fn write(&mut self, out: &mut OutQueue) -> io::Result<usize> {
        let mut p = self.pipe.lock();
        if let Some(e) = p.failed {
            return Err(io::Error::from_raw_os_error(e));
        }
        if p.output_closed || p.closed.is_some() {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        let mut total = 0;
        while !out.is_empty() {
            let mut iov = [io::IoSlice::new(&[])];
            out.slices(&mut iov);
            let room = p.window.unwrap_or(usize::MAX);
            let n = iov[0].len().min(room);
            if n == 0 {
                break;
            }
            p.output.extend_from_slice(&iov[0][..n]);
            if let Some(w) = p.window.as_mut() {
                *w -= n;
            }
            out.consume(n);
            total += n;
        }
        Ok(total)
    }

    pub(super) fn shutdown_write(&mut self) {
        self.pipe.lock().output_closed = true;
    }

    pub(super) fn close(self, reset: bool) {
        let mut p = self.pipe.lock();
        p.output_closed = true;
        p.closed = Some(reset);
    }
}

impl MemoryPeer {
    /// Sends bytes to the connection.
    pub fn send(&self, bytes: &[u8]) {
        self.pipe.lock().input.extend_from_slice(bytes);
    }

    /// Ends the peer's input, as `shutdown(SHUT_WR)` would.
    pub fn close_input(&self) {
        self.pipe.lock().input_closed = true;
    }

    /// The peer goes away: every later read or write of the connection fails with `errno`.
    pub fn fail(&self, errno: i32) {
        self.pipe.lock().failed = Some(errno);
    }

    /// Takes what the connection wrote so far.
    pub fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut self.pipe.lock().output)
    }

    /// Lets the connection write `n` more bytes before it would block (None: no limit).
    pub fn set_window(&self, n: Option<usize>) {
        self.pipe.lock().window = n;
    }

    /// Whether the connection ended its output (a FIN or a close).
    pub fn output_closed(&self) -> bool {
        self.pipe.lock().output_closed
    }

    /// None while the connection is open; Some(reset) once it closed.
    pub fn closed(&self) -> Option<bool> {
        self.pipe.lock().closed
    }
}
