//! The C types and constants of the contract: the handle types, the callback typedefs and the
//! `HTTPSRV_*` values. It imports nothing of the crate, so the engine (`http`, `server`) and the
//! exported functions (`ffi`) can all use it without the engine depending on the C boundary.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// The ABI version a module must export as `httpsrv_module_abi`.
pub const HTTPSRV_ABI_VERSION: u32 = 1;
/// Handler result: the response is complete (or the library completes it with a final flush).
pub const HTTPSRV_DONE: c_int = 0;
/// Handler result: the handler keeps the session and completes it later, from any thread.
pub const HTTPSRV_PENDING: c_int = 1;
/// Route flag: run the handler on a worker thread of the pool, where it may block.
pub const HTTPSRV_ROUTE_POOL: u32 = 1;
/// Compression mode: follow the server options (type, length, client's Accept-Encoding).
pub const HTTPSRV_COMPRESS_AUTO: c_int = 0;
/// Compression mode: never compress this response.
pub const HTTPSRV_COMPRESS_OFF: c_int = 1;
/// Compression mode: compress whenever the client accepts it, whatever the type or length.
pub const HTTPSRV_COMPRESS_ON: c_int = 2;

/// One server: listeners, routes, event-loop threads, worker pool and modules.
/// Created by `httpsrv_server_new`, freed by `httpsrv_server_free`.
pub struct httpsrv_server {
    _private: [u8; 0],
}

/// One request/response exchange. A handle is a token, not a pointer: once the session is
/// released every call with it returns `ESTALE` (NULL / -1 for getters), at any later time.
pub struct httpsrv_session {
    _private: [u8; 0],
}

/// A request handler. Returns `HTTPSRV_DONE`, `HTTPSRV_PENDING`, or anything else for a failure
/// (a `500` if nothing was sent yet, otherwise the connection is closed without closing framing).
pub type httpsrv_handler_fn =
    Option<unsafe extern "C" fn(sess: *mut httpsrv_session, userdata: *mut c_void) -> c_int>;
/// Completion of `httpsrv_response_flush_async`; runs on the session's loop thread.
pub type httpsrv_done_fn = Option<
    unsafe extern "C" fn(
        sess: *mut httpsrv_session,
        err: c_int,
        bytes_sent: u64,
        userdata: *mut c_void,
    ),
>;
/// Runs once when the session ends, on its loop thread, with the reason (0 when complete).
pub type httpsrv_close_fn =
    Option<unsafe extern "C" fn(sess: *mut httpsrv_session, reason: c_int, userdata: *mut c_void)>;
/// Releases memory lent with `httpsrv_response_append_ref` once the library no longer reads it.
pub type httpsrv_release_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;
/// A task posted with `httpsrv_session_post`; runs on the session's loop thread.
pub type httpsrv_task_fn =
    Option<unsafe extern "C" fn(sess: *mut httpsrv_session, userdata: *mut c_void)>;
/// An error-log sink: level 0 error, 1 warn, 2 info, 3 debug.
pub type httpsrv_log_fn =
    Option<unsafe extern "C" fn(level: c_int, message: *const c_char, userdata: *mut c_void)>;
