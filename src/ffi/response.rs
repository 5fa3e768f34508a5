//! `httpsrv_response_*`: building and sending the response. Any thread; calls on one session
//! are serialized. On an ended session every call returns the reason it ended (`EALREADY`
//! once the response is complete, `EPIPE`/`ECONNRESET` client gone, `ETIMEDOUT`, `ECANCELED`);
//! on a stale handle `ESTALE`.

use std::ffi::{c_char, c_int, c_void};

use super::{
    boundary, boundary_value, c_bytes, httpsrv_done_fn, httpsrv_release_fn, httpsrv_session,
    session_of,
};
use crate::errors::EINVAL;
use crate::http::lent::Lent;

/// Sets the status (200 by default) and reason phrase (`reason` NULL: the standard phrase).
/// Errors: `EINVAL` status outside 200..=999, or a reason with a control byte other than HTAB
/// (0x01-0x08, 0x0a-0x1f among them CR, LF and ESC, or DEL 0x7f; RFC 9112 section 4: HTAB, SP,
/// visible ASCII and bytes from 0x80 are allowed); `EALREADY` once headers are sent.
///
/// # Safety
/// `reason` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_response_status_set(
    sess: *mut httpsrv_session,
    status: c_int,
    reason: *const c_char,
) -> c_int {
    boundary("httpsrv_response_status_set", || {
        let s = session_of(sess)?;
        let reason = if reason.is_null() {
            None
        } else {
            // SAFETY: non-NULL, so a NUL-terminated string by this function's contract.
            Some(unsafe { c_bytes(reason) }?)
        };
        s.edit_response(|r| r.set_status(status, reason))
    })
}

/// Replaces every field named `name` with one `name: value`.
/// Errors: `EINVAL` a name that is not an RFC 9110 token, a value with a control byte other
/// than HTAB (0x01-0x08, 0x0a-0x1f among them CR, LF and ESC, or DEL 0x7f; RFC 9110 section
/// 5.5: HTAB, SP, visible ASCII and bytes from 0x80 are allowed and sent unchanged), a
/// malformed `Content-Length`, or `Transfer-Encoding` (the library owns framing); `EALREADY`
/// once headers are sent.
///
/// # Safety
/// `name` and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_response_header_set(
    sess: *mut httpsrv_session,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    boundary("httpsrv_response_header_set", || {
        let s = session_of(sess)?;
        // SAFETY: `name` and `value` are NULL or NUL-terminated strings (this function's
        // contract).
        let (name, value) = unsafe { (c_bytes(name)?, c_bytes(value)?) };
        s.edit_response(|r| r.set_header(name, value))
    })
}

/// Adds one more field named `name` (for `Set-Cookie` and the like). Errors as
/// `httpsrv_response_header_set`.
///
/// # Safety
/// `name` and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_response_header_add(
    sess: *mut httpsrv_session,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    boundary("httpsrv_response_header_add", || {
        let s = session_of(sess)?;
        // SAFETY: `name` and `value` are NULL or NUL-terminated strings (this function's
        // contract).
        let (name, value) = unsafe { (c_bytes(name)?, c_bytes(value)?) };
        s.edit_response(|r| r.add_header(name, value))
    })
}

/// Removes every field named `name`. Errors: `EINVAL` NULL or non-token name; `ENOENT` when
/// absent; `EALREADY` once headers are sent.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_response_header_remove(
    sess: *mut httpsrv_session,
    name: *const c_char,
) -> c_int {
    boundary("httpsrv_response_header_remove", || {
        let s = session_of(sess)?;
        // SAFETY: `name` is NULL or a NUL-terminated string (this function's contract).
        let name = unsafe { c_bytes(name) }?;
        s.edit_response(|r| r.remove_header(name))
    })
}

/// Copies `len` bytes into the pending output; sends nothing. `data` may be NULL when `len` is 0.
/// Errors: `EINVAL` NULL data with a non-zero length; `ENOBUFS` past `max_pending_bytes`, which
/// counts the bytes copied and not yet written (nothing is taken); `EMSGSIZE` past a `Content-Length` the handler set; `EALREADY` after the
/// final flush.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_response_append(
    sess: *mut httpsrv_session,
    data: *const c_void,
    len: usize,
) -> c_int {
    boundary("httpsrv_response_append", || {
        let s = session_of(sess)?;
        if data.is_null() && len > 0 {
            return Err(EINVAL);
        }
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: `data` is non-NULL (checked above), so by this function's contract it
            // points to `len` readable bytes; the slice lives only for this call.
            unsafe { std::slice::from_raw_parts(data as *const u8, len) }
        };
        s.append(bytes)
    })
}

/// Like `httpsrv_response_append`, without the copy: the library sends straight from `data` and
/// calls `release(userdata)` exactly once when it no longer reads it (the bytes reached the
/// kernel, were not needed, or the session ended). Until then the bytes must stay readable and
/// unchanged. `release` runs on a library thread or at the end of an `httpsrv_*` call, never
/// while the library holds a lock, and may run before this call returns; NULL means the memory
/// outlives the session (static data). On an error nothing is taken and `release` is not
/// called. The lent bytes are the module's memory: they do not count against
/// `max_pending_bytes`. Errors as for `httpsrv_response_append` otherwise.
///
/// # Safety
/// `data` is NULL or points to `len` bytes readable as described.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_response_append_ref(
    sess: *mut httpsrv_session,
    data: *const c_void,
    len: usize,
    release: httpsrv_release_fn,
    userdata: *mut c_void,
) -> c_int {
    boundary("httpsrv_response_append_ref", || {
        let s = session_of(sess)?;
        if data.is_null() && len > 0 {
            return Err(EINVAL);
        }
        // SAFETY: `Lent::new`'s contract is this function's: `data` points to `len` bytes that
        // stay readable and unchanged until `release(userdata)` (or outlive the session when
        // `release` is NULL); a NULL `data` comes only with `len` 0 (checked above).
        let lent = unsafe { Lent::new(data.cast(), len, release, userdata) };
        s.append_lent(lent)
    })
}

/// Sends the status line and fields if not yet sent, then everything appended so far.
/// `final` non-zero: no more data follows; the framing is closed (and compression finished),
/// and later appends and flushes return `EALREADY`.
///
/// On the session's loop thread it never blocks: `0` when everything reached the kernel's send
/// buffer, `EAGAIN` when part is still queued (the loop keeps sending it; nothing is lost) —
/// also while earlier pipelined responses on the connection must leave first.
/// On any other thread it blocks until everything reached the kernel (`0`), no progress was
/// made for `send_timeout_ms` (`ETIMEDOUT`; the connection is closed), or the client is gone
/// (`EPIPE`, `ECONNRESET`). For HTTP/1.0 clients with `http10_buffering` on, a non-final flush
/// sends nothing and returns 0.
#[no_mangle]
pub extern "C" fn httpsrv_response_flush(sess: *mut httpsrv_session, r#final: c_int) -> c_int {
    boundary("httpsrv_response_flush", || {
        session_of(sess)?.flush(r#final != 0)
    })
}

/// Like `httpsrv_response_flush` but never blocks, from any thread: returns 0 when accepted,
/// then calls `done(sess, err, bytes_sent, userdata)` once on the session's loop thread (never
/// inside this call) when everything up to this call reached the kernel (`err` 0) or could not
/// (`err` as for a blocking flush, or `ECANCELED`), with `bytes_sent` the bytes this flush
/// wrote. `done` may be NULL. An immediate error is returned and `done` is not called. Inside
/// `done` the handle is valid; after the `done` of a final flush returns, the session ends.
#[no_mangle]
pub extern "C" fn httpsrv_response_flush_async(
    sess: *mut httpsrv_session,
    r#final: c_int,
    done: httpsrv_done_fn,
    userdata: *mut c_void,
) -> c_int {
    boundary("httpsrv_response_flush_async", || {
        session_of(sess)?.flush_async(r#final != 0, done, userdata)
    })
}

/// Drops the status, fields and pending body, back to an empty `200`.
/// Errors: `EALREADY` once headers are sent.
#[no_mangle]
pub extern "C" fn httpsrv_response_clear(sess: *mut httpsrv_session) -> c_int {
    boundary("httpsrv_response_clear", || {
        session_of(sess)?.edit_response(|r| r.clear())
    })
}

/// 1 once the status line and fields were flushed, else 0; -1 for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_response_headers_sent(sess: *mut httpsrv_session) -> c_int {
    boundary_value("httpsrv_response_headers_sent", -1, || {
        match session_of(sess) {
            Ok(s) => c_int::from(s.headers_sent()),
            Err(_) => -1,
        }
    })
}

/// Compression for this response: `HTTPSRV_COMPRESS_AUTO` (the server options decide),
/// `HTTPSRV_COMPRESS_OFF`, or `HTTPSRV_COMPRESS_ON` (whenever the client accepts gzip or
/// deflate, whatever the type or length, unless the server's `compression` option is off).
/// Errors: `EINVAL` unknown mode; `EALREADY` once headers are sent.
#[no_mangle]
pub extern "C" fn httpsrv_response_compression(sess: *mut httpsrv_session, mode: c_int) -> c_int {
    boundary("httpsrv_response_compression", || {
        session_of(sess)?.edit_response(|r| r.set_compression(mode))
    })
}

/// Bytes of this response (head and framed body) handed to the kernel so far;
/// `(uint64_t)-1` for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_response_bytes_sent(sess: *mut httpsrv_session) -> u64 {
    boundary_value(
        "httpsrv_response_bytes_sent",
        u64::MAX,
        || match session_of(sess) {
            Ok(s) => s.bytes_sent(),
            Err(_) => u64::MAX,
        },
    )
}

/// Bytes accepted (appended or flushed) but not yet handed to the kernel;
/// `(size_t)-1` for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_response_pending(sess: *mut httpsrv_session) -> usize {
    boundary_value(
        "httpsrv_response_pending",
        usize::MAX,
        || match session_of(sess) {
            Ok(s) => s.pending(),
            Err(_) => usize::MAX,
        },
    )
}
