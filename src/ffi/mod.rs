//! The C boundary: every exported function lives in this module tree.
//!
//! Each function goes through one of the `boundary` helpers below, which catch panics, so no
//! panic crosses into C, and which turn Rust results into the C conventions of `API.md`
//! (errno as a positive `int`, NULL or -1 for getters).

use std::any::Any;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::abi::*;
use crate::server::session::Session;

use crate::errors::{EINVAL, EIO};

pub mod library;
pub mod request;
pub mod response;
pub mod server;
pub mod session;

fn report_panic(function: &str, payload: Box<dyn Any + Send>) {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    crate::server::log::global_error(&format!("panic caught in {function}: {text}"));
}

/// Runs the releases of lent memory that the call made due (no lock is held any more).
#[inline]
fn release_lent_memory() {
    // Almost every call has nothing to release: decide that without the unwinding frame.
    if crate::http::lent::releases_due() {
        run_lent_releases();
    }
}

#[inline(never)]
fn run_lent_releases() {
    if catch_unwind(crate::http::lent::run_releases).is_err() {
        crate::server::log::global_error("panic while releasing lent memory");
    }
}

/// Runs an action for C: `Ok` becomes 0, `Err(e)` becomes `e`, a panic becomes `EIO`.
pub(crate) fn boundary(function: &str, f: impl FnOnce() -> Result<(), c_int>) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(f));
    release_lent_memory();
    match r {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => e,
        Err(p) => {
            report_panic(function, p);
            EIO
        }
    }
}

/// Runs a getter for C: a panic gives `on_panic` (NULL, -1 or 0 as the contract says).
pub(crate) fn boundary_value<T>(function: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    let r = catch_unwind(AssertUnwindSafe(f));
    release_lent_memory();
    match r {
        Ok(v) => v,
        Err(p) => {
            report_panic(function, p);
            on_panic
        }
    }
}

/// Borrows a C string argument; NULL is `EINVAL`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned slice.
pub(crate) unsafe fn c_bytes<'a>(p: *const c_char) -> Result<&'a [u8], c_int> {
    if p.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: `p` is non-NULL here and, by this function's contract, NUL-terminated and
    // valid for 'a.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// Like `c_bytes`, but the text must be UTF-8.
///
/// # Safety
/// As for `c_bytes`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    // SAFETY: `p` meets `c_bytes`'s contract, which is this function's own.
    let bytes = unsafe { c_bytes(p) }?;
    std::str::from_utf8(bytes).map_err(|_| EINVAL)
}

/// A session for the duration of one C call.
pub(crate) enum SessionRef {
    /// The session whose handler is running on this thread and made this call.
    Running(*const Session),
    /// Looked up in the handle table.
    Shared(Arc<Session>),
}

impl std::ops::Deref for SessionRef {
    type Target = Session;

    fn deref(&self) -> &Session {
        match self {
            // SAFETY: see `session::running`: valid while the handler that made this call runs,
            // and a SessionRef never outlives the call.
            SessionRef::Running(p) => unsafe { &**p },
            SessionRef::Shared(s) => s,
        }
    }
}

/// The live session behind a handle: `EINVAL` for NULL, `ESTALE` once released.
pub(crate) fn session_of(sess: *mut httpsrv_session) -> Result<SessionRef, c_int> {
    if sess.is_null() {
        return Err(EINVAL);
    }
    let handle = sess as usize as u64;
    if let Some(p) = crate::server::session::running(handle) {
        return Ok(SessionRef::Running(p));
    }
    crate::server::session::lookup(handle)
        .map(SessionRef::Shared)
        .ok_or(crate::errors::ESTALE)
}

/// The server behind a pointer from `httpsrv_server_new`; `EINVAL` for NULL.
///
/// # Safety
/// `srv` is NULL or a pointer returned by `httpsrv_server_new` and not yet freed.
pub(crate) unsafe fn server_of<'a>(
    srv: *const httpsrv_server,
) -> Result<&'a crate::server::Server, c_int> {
    // SAFETY: by this function's contract `srv` is NULL (`as_ref` gives None) or the
    // `Box<Server>` pointer that `httpsrv_server_new` returned and nothing has freed yet.
    unsafe { (srv as *const crate::server::Server).as_ref() }.ok_or(EINVAL)
}
