//! Library-wide functions.

use std::ffi::{c_char, c_int};

use super::boundary_value;
use crate::errors;

/// The crate version, e.g. `"0.1.0"`. Static storage; any thread.
#[no_mangle]
pub extern "C" fn httpsrv_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// A static text for any code this library returns (and "unknown error" otherwise).
/// Never NULL; never freed; any thread.
#[no_mangle]
pub extern "C" fn httpsrv_strerror(err: c_int) -> *const c_char {
    boundary_value("httpsrv_strerror", c"internal error".as_ptr(), || {
        errors::strerror(err).as_ptr()
    })
}
