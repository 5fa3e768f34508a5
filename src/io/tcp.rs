//! TCP: a non-blocking socket registered with the loop's poller, edge-triggered.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::sys;
use crate::http::outqueue::OutQueue;

/// Most buffers one `sendmsg` takes.
const MAX_IOVECS: usize = 64;

pub struct Tcp {
    stream: TcpStream,
}

impl Tcp {
    pub fn new(stream: TcpStream) -> Tcp {
        Tcp { stream }
    }

    pub(super) fn fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    pub(super) fn read(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe {
            sys::recv(
                self.stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    #[inline]
    pub(super) fn write(&mut self, out: &mut OutQueue) -> io::Result<usize> {
        send_queue(self.stream.as_raw_fd(), out)
    }

    pub(super) fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    pub(super) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(&mut self.stream, token, interest)
    }

    pub(super) fn close(mut self, registry: &Registry, reset: bool) {
        let _ = registry.deregister(&mut self.stream);
        if reset {
            // SO_LINGER 0: close() sends a reset instead of a graceful FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a correctly sized option value.
            unsafe {
                libc::setsockopt(
                    self.stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        // Dropping the stream closes the socket.
    }
}

/// Writes as much of `out` to the socket `fd` as it takes: one plain `send` for one buffer,
/// one `sendmsg` for several. `Ok` with the queue not empty means the socket would block.
#[inline]
pub(crate) fn send_queue(fd: i32, out: &mut OutQueue) -> io::Result<usize> {
    let mut total = 0;
    while !out.is_empty() {
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        let r = if let Some(only) = out.single() {
            // One buffer: plain send skips the kernel's iovec import.
            // SAFETY: the slice is valid for its length while `out` is borrowed.
            unsafe { sys::send(fd, only.as_ptr().cast(), only.len(), flags) }
        } else {
            let mut iov = [io::IoSlice::new(&[]); MAX_IOVECS];
            let n = out.slices(&mut iov);
            // SAFETY: a zeroed msghdr is valid.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            // IoSlice is ABI-compatible with iovec on Unix (std documents it).
            msg.msg_iov = iov.as_mut_ptr().cast();
            msg.msg_iovlen = n as _;
            // SAFETY: msg is initialised and its iovecs point into `out`'s buffers.
            unsafe { sys::sendmsg(fd, &msg, flags) }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(total),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        let written = r as usize;
        total += written;
        out.consume(written);
    }
    Ok(total)
}
