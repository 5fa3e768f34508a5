//! `httpsrv_request_*`: reading the request. Valid from any thread while the handle is not
//! stale; returned strings stay valid until the handle goes stale.

use std::ffi::{c_char, c_int, c_void};
use std::io::Write;

use super::{boundary, boundary_value, c_bytes, httpsrv_session, session_of};
use crate::errors::{EINVAL, ENOBUFS, ENOENT};

fn string_getter(
    name: &str,
    sess: *mut httpsrv_session,
    get: impl FnOnce(&crate::http::request::Request) -> *const c_char,
) -> *const c_char {
    boundary_value(name, std::ptr::null(), || match session_of(sess) {
        Ok(s) => get(s.request()),
        Err(_) => std::ptr::null(),
    })
}

/// The request method, e.g. `"GET"`. NULL for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_method(sess: *mut httpsrv_session) -> *const c_char {
    string_getter("httpsrv_request_method", sess, |r| r.method_c())
}

/// The request-target as received, e.g. `"/a/b?x=1"`. NULL for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_target(sess: *mut httpsrv_session) -> *const c_char {
    string_getter("httpsrv_request_target", sess, |r| r.target_c())
}

/// The target's path without the query, not percent-decoded. NULL for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_path(sess: *mut httpsrv_session) -> *const c_char {
    string_getter("httpsrv_request_path", sess, |r| r.path_c())
}

/// The query after `?`, `""` when none. NULL for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_query(sess: *mut httpsrv_session) -> *const c_char {
    string_getter("httpsrv_request_query", sess, |r| r.query_c())
}

/// The request's host: the authority of an absolute-form target (`GET http://host:port/path`,
/// which also replaces the value of the `Host` field, RFC 9112 section 3.2.2), else the `Host`
/// field's value (`""` for an empty one). NULL when there is neither (an HTTP/1.0 request
/// without `Host`), or for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_host(sess: *mut httpsrv_session) -> *const c_char {
    string_getter("httpsrv_request_host", sess, |r| {
        r.host_c().unwrap_or(std::ptr::null())
    })
}

/// The HTTP version: `10` or `11`; -1 for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_version(sess: *mut httpsrv_session) -> c_int {
    boundary_value("httpsrv_request_version", -1, || match session_of(sess) {
        Ok(s) => c_int::from(s.request().version()),
        Err(_) => -1,
    })
}

/// The first field named `name` (case-insensitive), or NULL when absent, for a NULL `name`,
/// or for a NULL or stale handle.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_request_header(
    sess: *mut httpsrv_session,
    name: *const c_char,
) -> *const c_char {
    string_getter("httpsrv_request_header", sess, |r| {
        // SAFETY: `name` is NULL or a NUL-terminated string (this function's contract).
        match unsafe { c_bytes(name) } {
            Ok(n) => r.header_c(n).unwrap_or(std::ptr::null()),
            Err(_) => std::ptr::null(),
        }
    })
}

/// The number of request fields; `(size_t)-1` for a NULL or stale handle.
#[no_mangle]
pub extern "C" fn httpsrv_request_header_count(sess: *mut httpsrv_session) -> usize {
    boundary_value(
        "httpsrv_request_header_count",
        usize::MAX,
        || match session_of(sess) {
            Ok(s) => s.request().header_count(),
            Err(_) => usize::MAX,
        },
    )
}

/// Field number `index` (in the order received): writes its name and value.
/// Errors: `EINVAL` NULL argument, `ESTALE` stale handle, `ENOENT` past the end.
///
/// # Safety
/// `name` and `value` are NULL or point to writable `const char *` storage.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_request_header_at(
    sess: *mut httpsrv_session,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const c_char,
) -> c_int {
    boundary("httpsrv_request_header_at", || {
        if name.is_null() || value.is_null() {
            return Err(EINVAL);
        }
        let s = session_of(sess)?;
        let (n, v) = s.request().header_at_c(index).ok_or(ENOENT)?;
        // SAFETY: both are non-NULL (checked above), so by this function's contract they point
        // to writable `const char *` storage.
        unsafe {
            *name = n;
            *value = v;
        }
        Ok(())
    })
}

/// The whole request body, de-chunked, read before the handler ran; `*len` gets its length.
/// NULL and `*len` 0 when there is none. NULL (and `*len` untouched) for a NULL or stale
/// handle. `len` may be NULL. The bytes are read-only and stay valid while the session lives: a
/// body larger than `body_buffer_bytes` is a read-only mapping of its spool file in
/// `body_temp_dir`, so writing to it crashes.
///
/// # Safety
/// `len` is NULL or points to writable `size_t` storage.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_request_body(
    sess: *mut httpsrv_session,
    len: *mut usize,
) -> *const c_void {
    boundary_value("httpsrv_request_body", std::ptr::null(), || {
        let Ok(s) = session_of(sess) else {
            return std::ptr::null();
        };
        if !len.is_null() {
            // SAFETY: non-NULL, so writable `size_t` storage by this function's contract.
            unsafe { *len = s.body().len() };
        }
        if s.body().is_empty() {
            std::ptr::null()
        } else {
            s.body().as_ptr() as *const c_void
        }
    })
}

/// Writes the client's address as `"ip:port"` (`"[v6]:port"`), NUL-terminated, into `buf`.
/// Errors: `EINVAL` NULL argument, `ESTALE` stale handle, `ENOBUFS` when `cap` is too small
/// (nothing is written).
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_request_peer(
    sess: *mut httpsrv_session,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    boundary("httpsrv_request_peer", || {
        if buf.is_null() {
            return Err(EINVAL);
        }
        let s = session_of(sess)?;
        let mut text = Vec::with_capacity(48);
        let _ = write!(text, "{}", s.peer());
        if text.len() + 1 > cap {
            return Err(ENOBUFS);
        }
        text.push(0);
        // SAFETY: `buf` is non-NULL (checked above), so by this function's contract it has
        // `cap` writable bytes, and `text.len() <= cap`; `text` is our own, apart from `buf`.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr() as *const c_char, buf, text.len()) };
        Ok(())
    })
}

/// `"https"` when the request came over TLS, else `"http"`. NULL for a NULL or stale handle.
/// A static string. Any thread.
#[no_mangle]
pub extern "C" fn httpsrv_request_scheme(sess: *mut httpsrv_session) -> *const c_char {
    boundary_value(
        "httpsrv_request_scheme",
        std::ptr::null(),
        || match session_of(sess) {
            Ok(s) if s.is_tls() => c"https".as_ptr(),
            Ok(_) => c"http".as_ptr(),
            Err(_) => std::ptr::null(),
        },
    )
}

/// What the TLS handshake of the request's connection agreed on: `what` = `"version"`
/// (`"TLSv1.2"`, `"TLSv1.3"`), `"cipher"` (the IANA name, e.g. `"TLS_AES_128_GCM_SHA256"`),
/// `"sni"` (the server name the client asked for) or `"alpn"` (`"http/1.1"`). NULL on a
/// cleartext connection, for an unknown or NULL `what`, when the client sent no such value, or
/// for a NULL or stale handle. The string stays valid until the handle goes stale. Any thread.
///
/// # Safety
/// `what` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn httpsrv_request_tls(
    sess: *mut httpsrv_session,
    what: *const c_char,
) -> *const c_char {
    boundary_value("httpsrv_request_tls", std::ptr::null(), || {
        let Ok(s) = session_of(sess) else {
            return std::ptr::null();
        };
        // SAFETY: `what` is NULL or a NUL-terminated string (this function's contract).
        let (Some(info), Ok(what)) = (s.tls_info(), unsafe { c_bytes(what) }) else {
            return std::ptr::null();
        };
        let value = match what {
            b"version" => Some(info.version),
            b"cipher" => Some(info.cipher),
            b"sni" => info.sni.as_deref(),
            b"alpn" => info.alpn.as_deref(),
            _ => None,
        };
        value.map_or(std::ptr::null(), |v| v.as_ptr())
    })
}
