//! httpsrv: an HTTP/1.1 server library with a C ABI, for native modules that answer requests
//! and stream their responses. The C contract is in `include/httpsrv.h` (generated from the
//! `ffi` module by cbindgen).

pub mod abi;
pub mod errors;
pub mod ffi;
pub mod http;
pub mod proto;
pub mod server;
mod sys;

pub use abi::{
    httpsrv_close_fn, httpsrv_done_fn, httpsrv_handler_fn, httpsrv_log_fn, httpsrv_release_fn,
    httpsrv_server, httpsrv_session, httpsrv_task_fn, HTTPSRV_ABI_VERSION, HTTPSRV_COMPRESS_AUTO,
    HTTPSRV_COMPRESS_OFF, HTTPSRV_COMPRESS_ON, HTTPSRV_DONE, HTTPSRV_PENDING, HTTPSRV_ROUTE_POOL,
};
pub use ffi::library::*;
pub use ffi::request::*;
pub use ffi::response::*;
pub use ffi::server::*;
pub use ffi::session::*;
