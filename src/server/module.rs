//! Loading modules with `dlopen`: ABI check, `httpsrv_module_init`, and `fini` at free.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use crate::abi::{httpsrv_server, HTTPSRV_ABI_VERSION};
use crate::errors::{ENOENT, ENOEXEC};

type InitFn = unsafe extern "C" fn(*mut httpsrv_server, *const c_char) -> c_int;
type FiniFn = unsafe extern "C" fn(*mut httpsrv_server);

pub struct Module {
    pub path: String,
    lib: *mut c_void,
    fini: Option<FiniFn>,
}

// SAFETY: the dlopen handle is process-global; we only use it from the thread that frees the
// server.
unsafe impl Send for Module {}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a thread-local NUL-terminated string.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".to_string()
    } else {
        // SAFETY: non-NULL, NUL-terminated, valid until the next dl call on this thread.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// A module opened and checked, not yet initialised.
pub struct Opened {
    module: Module,
    init: InitFn,
}

/// Opens a module and checks it exports the right ABI version and an init function.
pub fn open(path: &str) -> Result<Opened, (c_int, String)> {
    if path.contains('/') && std::fs::metadata(path).is_err() {
        return Err((ENOENT, format!("module {path}: no such file")));
    }
    let c_path = CString::new(path).map_err(|_| (ENOENT, format!("module {path}: bad path")))?;
    // SAFETY: a valid C string; RTLD_LOCAL keeps modules' symbols apart from each other.
    let lib = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if lib.is_null() {
        let why = dl_error();
        let code = if !path.contains('/') && why.contains("No such file") {
            ENOENT
        } else {
            ENOEXEC
        };
        return Err((code, format!("module {path}: {why}")));
    }
    let close = |why: String| {
        // SAFETY: lib came from dlopen and is closed once.
        unsafe { libc::dlclose(lib) };
        Err((ENOEXEC, format!("module {path}: {why}")))
    };
    // SAFETY: symbol lookups on a live handle with NUL-terminated names.
    let abi = unsafe { libc::dlsym(lib, c"httpsrv_module_abi".as_ptr()) } as *const c_uint;
    if abi.is_null() {
        return close("does not export httpsrv_module_abi".to_string());
    }
    // SAFETY: the module exports it as `const unsigned`.
    let version = unsafe { *abi };
    if version != HTTPSRV_ABI_VERSION {
        return close(format!(
            "ABI version {version}, this library speaks {HTTPSRV_ABI_VERSION}"
        ));
    }
    // SAFETY: as above.
    let init = unsafe { libc::dlsym(lib, c"httpsrv_module_init".as_ptr()) };
    if init.is_null() {
        return close("does not export httpsrv_module_init".to_string());
    }
    // SAFETY: as above.
    let fini = unsafe { libc::dlsym(lib, c"httpsrv_module_fini".as_ptr()) };
    Ok(Opened {
        module: Module {
            path: path.to_string(),
            lib,
            // SAFETY: the contract fixes these symbols' C signatures.
            fini: (!fini.is_null())
                .then(|| unsafe { std::mem::transmute::<*mut c_void, FiniFn>(fini) }),
        },
        // SAFETY: as above.
        init: unsafe { std::mem::transmute::<*mut c_void, InitFn>(init) },
    })
}

impl Opened {
    /// Calls the module's init with no server lock held (it registers routes).
    // Both pointers are handed to the module unchanged, never dereferenced here.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn init(self, srv: *mut httpsrv_server, args: *const c_char) -> Result<Module, c_int> {
        // SAFETY: the module's own init, called as the contract says.
        let rc = unsafe { (self.init)(srv, args) };
        if rc != 0 {
            self.module.close(None);
            return Err(rc);
        }
        Ok(self.module)
    }
}

impl Module {
    /// Calls `httpsrv_module_fini` (when given a server) and unloads the module.
    pub fn close(self, srv: Option<*mut httpsrv_server>) {
        if let (Some(fini), Some(srv)) = (self.fini, srv) {
            // SAFETY: the module's own fini.
            unsafe { fini(srv) };
        }
        // SAFETY: lib came from dlopen and is closed once.
        unsafe { libc::dlclose(self.lib) };
    }
}
