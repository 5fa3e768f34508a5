//! `httpsrv_session_*`: the session's life: close callback, module data, tasks, abort.

use std::ffi::{c_int, c_void};

use super::{
    boundary, boundary_value, httpsrv_close_fn, httpsrv_session, httpsrv_task_fn, session_of,
};

/// Registers `fn`, which runs exactly once when the session ends, on its loop thread, with the
/// reason: 0 response complete, `EPIPE`/`ECONNRESET` client gone (a reset is noticed also
/// while the session waits; the end of the client's input is no disconnect, as a half-closed
/// client still reads the response, so a client that closed entirely is noticed when a write
/// fails), `ETIMEDOUT` send timeout, `ECANCELED` abort or server stop. The handle is
/// valid inside `fn`; it goes stale right after, unless a handler is still running on it.
/// A second call replaces the first. Errors: `ESTALE`, or the reason if it already ended.
#[no_mangle]
pub extern "C" fn httpsrv_session_on_close(
    sess: *mut httpsrv_session,
    r#fn: httpsrv_close_fn,
    userdata: *mut c_void,
) -> c_int {
    boundary("httpsrv_session_on_close", || {
        session_of(sess)?.set_on_close(r#fn, userdata)
    })
}

/// Stores one pointer of the module's own for this session (the library never touches it).
/// Errors: `ESTALE`, or the reason if the session already ended.
#[no_mangle]
pub extern "C" fn httpsrv_session_set_data(sess: *mut httpsrv_session, data: *mut c_void) -> c_int {
    boundary("httpsrv_session_set_data", || {
        session_of(sess)?.set_data(data)
    })
}

/// The pointer stored with `httpsrv_session_set_data`; NULL when unset, NULL or stale.
#[no_mangle]
pub extern "C" fn httpsrv_session_data(sess: *mut httpsrv_session) -> *mut c_void {
    boundary_value(
        "httpsrv_session_data",
        std::ptr::null_mut(),
        || match session_of(sess) {
            Ok(s) => s.data(),
            Err(_) => std::ptr::null_mut(),
        },
    )
}

/// Runs `fn(sess, userdata)` soon on the session's loop thread (never inside this call), where
/// the session's non-blocking calls may be used. Thread-safe. The handle stays valid until the
/// task has run. Errors: `EINVAL` NULL `fn`; `ESTALE`; the reason if the session ended;
/// `ECANCELED` when the loop has stopped.
#[no_mangle]
pub extern "C" fn httpsrv_session_post(
    sess: *mut httpsrv_session,
    r#fn: httpsrv_task_fn,
    userdata: *mut c_void,
) -> c_int {
    boundary("httpsrv_session_post", || {
        session_of(sess)?.post(r#fn, userdata)
    })
}

/// Ends the session now with reason `ECANCELED` and resets the connection (the client sees a
/// reset, not a complete response). Errors: `ESTALE`; the reason if it already ended.
#[no_mangle]
pub extern "C" fn httpsrv_session_abort(sess: *mut httpsrv_session) -> c_int {
    boundary("httpsrv_session_abort", || session_of(sess)?.abort())
}
