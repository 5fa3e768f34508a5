//! `httpsrv_server_*`: create, configure, start, stop and free a server.

use std::ffi::{c_char, c_int, c_uint, c_void};

use super::{
    boundary, boundary_value, c_str, httpsrv_handler_fn, httpsrv_log_fn, httpsrv_server,
    httpsrv_session, server_of, session_of, HTTPSRV_DONE, HTTPSRV_ROUTE_POOL,
};
use crate::errors::EINVAL;
use crate::server::Server;

/// Creates a server with default options. Returns NULL only when out of memory.
/// Freed by `httpsrv_server_free`. Any thread.
#[no_mangle]
pub extern "C" fn httpsrv_server_new() -> *mut httpsrv_server {
    boundary_value("httpsrv_server_new", std::ptr::null_mut(), || {
        Box::into_raw(Box::new(Server::default())) as *mut httpsrv_server
    })
}

/// Sets one option (see the option table in the README); `key` and `value` are strings.
/// Errors: `EINVAL` NULL argument, unknown key or bad value (the reason goes to the error log);
/// `EBUSY` after `httpsrv_server_start`. Any thread.
///
/// # Safety
/// `srv` is NULL or a live server; `key` and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_set(
    srv: *mut httpsrv_server,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    boundary("httpsrv_server_set", || {
        // SAFETY: `srv` is NULL or a live server, `key` and `value` NULL or NUL-terminated
        // strings (this function's contract).
        let (server, key, value) = unsafe { (server_of(srv)?, c_str(key)?, c_str(value)?) };
        server.set(key, value)
    })
}

/// Binds a listener now, e.g. `"127.0.0.1:8080"` or `"[::1]:0"` (port 0: any free port, see
/// `httpsrv_server_port`). May be called several times. Errors: `EINVAL` NULL or malformed
/// address, `EADDRINUSE`, `EACCES` and other bind errors as their errno, `EBUSY` after start.
///
/// # Safety
/// `srv` is NULL or a live server; `addr` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_listen(
    srv: *mut httpsrv_server,
    addr: *const c_char,
) -> c_int {
    boundary("httpsrv_server_listen", || {
        // SAFETY: `srv` is NULL or a live server, `addr` NULL or a NUL-terminated string
        // (this function's contract).
        let (server, addr) = unsafe { (server_of(srv)?, c_str(addr)?) };
        server.listen(addr)
    })
}

/// Like `httpsrv_server_listen`, and every connection on this listener speaks TLS with the PEM
/// certificate chain in `cert_file` (end-entity certificate first) and the private key in
/// `key_file` (RSA, ECDSA or Ed25519; PKCS#8, PKCS#1 or SEC1). The first TLS listener's
/// certificate is the one for clients that send no SNI name or one no certificate covers (see
/// `httpsrv_server_add_certificate`). Loads the files and binds now; before start, any thread.
/// Errors: `ENOENT` a file is missing (other file errors as their errno, e.g. `EACCES`);
/// `EBADMSG` a file holds no usable certificate or key, or the key does not match the
/// certificate; `EINVAL` NULL argument or malformed address; `EADDRINUSE`, `EACCES` and other
/// bind errors as their errno; `EBUSY` after start. Every error is also logged with its reason.
///
/// # Safety
/// `srv` is NULL or a live server; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_listen_tls(
    srv: *mut httpsrv_server,
    addr: *const c_char,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> c_int {
    boundary("httpsrv_server_listen_tls", || {
        // SAFETY: `srv` is NULL or a live server, the others NULL or NUL-terminated strings
        // (this function's contract).
        let (server, addr, cert, key) = unsafe {
            (
                server_of(srv)?,
                c_str(addr)?,
                c_str(cert_file)?,
                c_str(key_file)?,
            )
        };
        server.listen_tls(addr, cert, key)
    })
}

/// Adds one more certificate (PEM chain and key, as for `httpsrv_server_listen_tls`) for every
/// TLS listener. A handshake gets the certificate whose subject alternative names hold the
/// client's SNI name exactly, else one with a `*.` wildcard covering its first label, else the
/// first TLS listener's. Any thread, before or after start; new handshakes see it at once.
/// Errors: `EINVAL` NULL argument; `ENOENT`, `EBADMSG` and file errors as for
/// `httpsrv_server_listen_tls` (logged with the file name).
///
/// # Safety
/// `srv` is NULL or a live server; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_add_certificate(
    srv: *mut httpsrv_server,
    cert_file: *const c_char,
    key_file: *const c_char,
) -> c_int {
    boundary("httpsrv_server_add_certificate", || {
        // SAFETY: `srv` is NULL or a live server, the files NULL or NUL-terminated strings
        // (this function's contract).
        let (server, cert, key) = unsafe { (server_of(srv)?, c_str(cert_file)?, c_str(key_file)?) };
        server.add_certificate(cert, key)
    })
}

/// Reads every certificate and key file of the TLS listeners and of
/// `httpsrv_server_add_certificate` again, now, from any thread, while the server runs (a host
/// calls it on SIGHUP, say). New handshakes use the new certificates; established connections
/// keep theirs. On any error nothing changes: the error is returned and logged with the file
/// name. Errors: `EINVAL` NULL server; `ENOENT`, `EBADMSG` and file errors as for
/// `httpsrv_server_listen_tls`.
///
/// # Safety
/// `srv` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_reload_certificates(srv: *mut httpsrv_server) -> c_int {
    boundary("httpsrv_server_reload_certificates", || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        unsafe { server_of(srv) }?.reload_certificates()
    })
}

/// Opens the server's log files again at their paths, for log rotation: after a rotator
/// renamed the access log (option `access_log`), call this (a host does on SIGHUP) and the
/// lines of responses that finish from then on go to a new file at the configured path; every
/// line is written whole to one file or the other. Any thread, at any time; nothing to do
/// before start (start opens the file), without an access log, or when it is stderr (`-`).
/// Errors: `EINVAL` NULL server; the errno of opening the file (`EACCES`, `ENOENT` when its
/// directory is gone, ...): then the old file stays in use, and the error is also logged with
/// the path.
///
/// # Safety
/// `srv` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_reopen_logs(srv: *mut httpsrv_server) -> c_int {
    boundary("httpsrv_server_reopen_logs", || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        unsafe { server_of(srv) }?.reopen_logs()
    })
}

/// The bound port of listener `index` (in the order of `httpsrv_server_listen` calls), or -1
/// for a NULL server or an index with no listener. Any thread.
///
/// # Safety
/// `srv` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_port(srv: *const httpsrv_server, index: usize) -> c_int {
    boundary_value("httpsrv_server_port", -1, || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        match unsafe { server_of(srv) } {
            Ok(s) => s.port(index).map_or(-1, c_int::from),
            Err(_) => -1,
        }
    })
}

/// Registers a handler. `method` NULL matches any method (a `"GET"` route also answers HEAD);
/// `path` is `"/exact"` or `"/prefix/*"`, and the longest match wins. `flags` may hold
/// `HTTPSRV_ROUTE_POOL` to run the handler on a worker thread, where it may block; otherwise it
/// runs on the connection's loop thread and must not block. `userdata` is passed to `fn`.
/// Errors: `EINVAL` NULL server, path or handler, a malformed method or path, unknown flags;
/// `EEXIST` the same method and path twice; `EBUSY` after start.
///
/// # Safety
/// `srv` is NULL or a live server; strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_route(
    srv: *mut httpsrv_server,
    method: *const c_char,
    path: *const c_char,
    flags: c_uint,
    r#fn: httpsrv_handler_fn,
    userdata: *mut c_void,
) -> c_int {
    boundary("httpsrv_server_route", || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        let server = unsafe { server_of(srv) }?;
        let handler = r#fn.ok_or(EINVAL)?;
        if flags & !HTTPSRV_ROUTE_POOL != 0 {
            return Err(EINVAL);
        }
        let method = if method.is_null() {
            None
        } else {
            // SAFETY: non-NULL, so a NUL-terminated string by this function's contract.
            Some(unsafe { c_str(method) }?)
        };
        // SAFETY: `path` is NULL or a NUL-terminated string (this function's contract).
        let path = unsafe { c_str(path) }?;
        server.route(
            method,
            path,
            flags & HTTPSRV_ROUTE_POOL != 0,
            handler,
            userdata,
        )
    })
}

/// Loads a module with `dlopen`, checks its `httpsrv_module_abi`, and calls its
/// `httpsrv_module_init(srv, args)` (`args` may be NULL). The module stays loaded until
/// `httpsrv_server_free`, which calls its optional `httpsrv_module_fini` and `dlclose`s it.
/// Errors: `EINVAL` NULL server or path; `ENOENT` no such file; `ENOEXEC` not a module or an
/// ABI mismatch (the reason goes to the error log); otherwise the init's own non-zero result.
///
/// # Safety
/// `srv` is NULL or a live server; `path` and `args` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_load_module(
    srv: *mut httpsrv_server,
    path: *const c_char,
    args: *const c_char,
) -> c_int {
    boundary("httpsrv_server_load_module", || {
        // SAFETY: `srv` is NULL or a live server, `path` NULL or a NUL-terminated string
        // (this function's contract); `args` is passed on to the module's init unread.
        let (server, path) = unsafe { (server_of(srv)?, c_str(path)?) };
        server.load_module(srv, path, args)
    })
}

/// Sends the error log to `fn` (levels 0 error, 1 warn, 2 info, 3 debug) instead of stderr;
/// `fn` NULL restores stderr. `fn` may be called from any library thread and must not block.
/// Errors: `EINVAL` NULL server.
///
/// # Safety
/// `srv` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_set_logger(
    srv: *mut httpsrv_server,
    r#fn: httpsrv_log_fn,
    userdata: *mut c_void,
) -> c_int {
    boundary("httpsrv_server_set_logger", || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        unsafe { server_of(srv) }?.set_logger(r#fn, userdata);
        Ok(())
    })
}

/// Starts the event loops and the worker pool and returns once they accept connections.
/// Errors: `EINVAL` NULL server or no listener; `EBUSY` already started; a thread or resource
/// errno if the loops could not start.
///
/// # Safety
/// `srv` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_start(srv: *mut httpsrv_server) -> c_int {
    boundary("httpsrv_server_start", || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        unsafe { server_of(srv) }?.start()
    })
}

/// Stops accepting, closes idle connections, gives in-flight responses up to `grace_ms` to
/// finish, then ends the rest (their close reason is `ECANCELED`). Returns when every library
/// thread has exited. Stopping a server that is not running does nothing.
/// Errors: `EINVAL` NULL server; `EDEADLK` when called from a loop or pool thread.
///
/// # Safety
/// `srv` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_stop(srv: *mut httpsrv_server, grace_ms: c_uint) -> c_int {
    boundary("httpsrv_server_stop", || {
        // SAFETY: `srv` is NULL or a live server (this function's contract).
        unsafe { server_of(srv) }?.stop(grace_ms)
    })
}

/// Stops the server if running, calls each module's `httpsrv_module_fini`, `dlclose`s the
/// modules and frees everything. Afterwards no library thread runs. `NULL` is a no-op.
/// Must not be called from a loop or pool thread (the server is then leaked and an error logged).
///
/// # Safety
/// `srv` is NULL or a live server, which must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_free(srv: *mut httpsrv_server) {
    boundary_value("httpsrv_server_free", (), || {
        if srv.is_null() {
            return;
        }
        // SAFETY: non-NULL, so by this function's contract the `Box<Server>` pointer that
        // `httpsrv_server_new` returned, handed back once and not used afterwards.
        let server = unsafe { Box::from_raw(srv as *mut Server) };
        server.free(srv);
    })
}

/// Counters of a running server, filled by `httpsrv_server_stats`.
#[repr(C)]
pub struct httpsrv_stats {
    /// Requests dispatched since start (routed or answered by the library).
    pub requests: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Bytes handed to the kernel since start (heads and framed bodies).
    pub bytes_sent: u64,
}

/// Fills `out` with the server's counters (all zero before start and after stop).
/// Errors: `EINVAL` NULL argument. Any thread.
///
/// # Safety
/// `srv` is NULL or a live server; `out` is NULL or points to writable `httpsrv_stats`.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_server_stats(
    srv: *const httpsrv_server,
    out: *mut httpsrv_stats,
) -> c_int {
    boundary("httpsrv_server_stats", || {
        // SAFETY: `srv` is NULL or a live server, `out` NULL or writable `httpsrv_stats`
        // storage (this function's contract); `as_mut` gives None for NULL.
        let (server, out) = unsafe { (server_of(srv)?, out.as_mut().ok_or(EINVAL)?) };
        let (requests, open_connections, bytes_sent) = server.stats();
        *out = httpsrv_stats {
            requests,
            open_connections,
            bytes_sent,
        };
        Ok(())
    })
}

/// A ready-made inline handler that answers with the server's counters as JSON, e.g.
/// `{"requests":12,"open_connections":3,"bytes_sent":4567}`. Mount it from a module or host
/// with the server as userdata:
/// `httpsrv_server_route(srv, "GET", "/stats", 0, httpsrv_stats_handler, srv)`.
/// Returns `HTTPSRV_DONE`, or -1 (a 500) when `userdata` is NULL.
///
/// # Safety
/// `userdata` is the live server the route was registered on.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_stats_handler(
    sess: *mut httpsrv_session,
    userdata: *mut c_void,
) -> c_int {
    boundary_value("httpsrv_stats_handler", -1, || {
        // SAFETY: `userdata` is the live server the route was registered on, or NULL
        // (this function's contract).
        let server = unsafe { server_of(userdata as *const httpsrv_server) };
        let Ok(server) = server else {
            return -1;
        };
        let (requests, open, bytes) = server.stats();
        let body = format!(
            "{{\"requests\":{requests},\"open_connections\":{open},\"bytes_sent\":{bytes}}}\n"
        );
        let Ok(s) = session_of(sess) else {
            return -1;
        };
        let fields = s.edit_response(|r| {
            r.set_header(b"Content-Type", b"application/json")?;
            r.set_header(b"Cache-Control", b"no-store")
        });
        if fields.is_err() {
            return -1;
        }
        if s.append(body.as_bytes()).is_err() {
            return -1;
        }
        HTTPSRV_DONE
    })
}
