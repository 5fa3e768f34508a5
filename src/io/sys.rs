//! The socket system calls of the hot path, made directly. libc's `send`/`recv`/`sendmsg` are
//! thread-cancellation points: each call switches asynchronous cancellation on and off around
//! the system call, two atomic operations per call that showed in the profile. The library
//! never cancels threads, so it does without them.

use std::ffi::c_void;

/// `send(2)`; -1 and `errno` on failure, like libc's.
///
/// # Safety
/// `buf` points to `len` readable bytes.
pub unsafe fn send(fd: i32, buf: *const c_void, len: usize, flags: i32) -> isize {
    // SAFETY: the kernel reads at most `len` bytes from `buf`, which this function's contract
    // makes readable; no destination address (NULL, length 0), as send(2) itself passes.
    unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf,
            len,
            flags,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        ) as isize
    }
}

/// `sendmsg(2)`; -1 and `errno` on failure.
///
/// # Safety
/// `msg` is a valid message header whose iovecs point to readable memory.
pub unsafe fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32) -> isize {
    // SAFETY: the kernel only reads `msg` and the memory its iovecs name, which this
    // function's contract makes valid and readable.
    unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, flags) as isize }
}

/// `recv(2)`; -1 and `errno` on failure.
///
/// # Safety
/// `buf` points to `len` writable bytes.
pub unsafe fn recv(fd: i32, buf: *mut c_void, len: usize, flags: i32) -> isize {
    // SAFETY: the kernel writes at most `len` bytes to `buf`, which this function's contract
    // makes writable; NULL source address and length, as recv(2) itself passes.
    unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        ) as isize
    }
}
