//! The errno values this library returns, and their texts.

use std::ffi::CStr;

pub use libc::{
    EAGAIN, EALREADY, EBADMSG, EBUSY, ECANCELED, ECONNRESET, EDEADLK, EEXIST, EINVAL, EIO,
    EMSGSIZE, ENOBUFS, ENOENT, ENOEXEC, ENOMEM, ENOSYS, EPIPE, EPROTO, ESTALE, ETIMEDOUT,
};

/// The text for a code, as a static C string.
pub fn strerror(err: i32) -> &'static CStr {
    match err {
        0 => c"success",
        EINVAL => c"invalid argument",
        ESTALE => c"stale session handle: the session ended and was released",
        ECANCELED => c"canceled: the session was aborted or the server is stopping",
        EALREADY => c"too late: headers already sent or response already finished",
        EAGAIN => c"output queued: not yet all handed to the kernel",
        ETIMEDOUT => c"send timed out: no progress for send_timeout_ms",
        EPIPE => c"client gone: connection closed",
        ECONNRESET => c"client gone: connection reset",
        ENOBUFS => c"buffer limit reached (max_pending_bytes) or output buffer too small",
        EMSGSIZE => c"more body than the Content-Length set by the handler",
        EBUSY => c"not allowed in the server's current state",
        EDEADLK => c"would deadlock: called from a library thread",
        EEXIST => c"already exists",
        ENOENT => c"not found",
        ENOEXEC => c"not a httpsrv module, or ABI version mismatch",
        ENOMEM => c"out of memory",
        EIO => c"internal error",
        ENOSYS => c"not implemented",
        EBADMSG => c"no usable certificate or private key, or a key that does not match",
        EPROTO => c"TLS protocol error",
        EADDRINUSE => c"address already in use",
        EACCES => c"permission denied",
        EADDRNOTAVAIL => c"address not available",
        _ => c"unknown error",
    }
}

use libc::{EACCES, EADDRINUSE, EADDRNOTAVAIL};

/// An errno from an I/O error, `EIO` when it has none.
pub fn from_io(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(EIO)
}
