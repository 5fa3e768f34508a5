//! The error log: a module's callback, or stderr.

use std::ffi::{c_int, c_void, CString};

use crate::abi::httpsrv_log_fn;

pub(crate) const ERROR: c_int = 0;
pub(crate) const WARN: c_int = 1;
pub(crate) const INFO: c_int = 2;

/// Where a server's messages go.
#[derive(Clone, Copy)]
pub struct Logger {
    sink: httpsrv_log_fn,
    userdata: *mut c_void,
}

// SAFETY: the userdata is the module's opaque pointer, never dereferenced here; the module
// promised it and its callback may be used from any thread.
unsafe impl Send for Logger {}
// SAFETY: as for `Send`; sharing a Logger only lets threads call the callback concurrently,
// which the module allowed.
unsafe impl Sync for Logger {}

impl Default for Logger {
    fn default() -> Self {
        Logger {
            sink: None,
            userdata: std::ptr::null_mut(),
        }
    }
}

impl Logger {
    pub fn new(sink: httpsrv_log_fn, userdata: *mut c_void) -> Self {
        Logger { sink, userdata }
    }

    pub fn log(&self, level: c_int, message: &str) {
        match self.sink {
            Some(f) => {
                let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the module registered this callback for exactly this use.
                unsafe { f(level, text.as_ptr(), self.userdata) }
            }
            None => eprintln!("httpsrv[{}]: {message}", level_name(level)),
        }
    }
}

fn level_name(level: c_int) -> &'static str {
    match level {
        ERROR => "error",
        WARN => "warn",
        INFO => "info",
        _ => "debug",
    }
}

/// For failures that belong to no server (a panic caught at the boundary).
pub fn global_error(message: &str) {
    eprintln!("httpsrv[error]: {message}");
}
