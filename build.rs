//! Generates include/httpsrv.h from the Rust sources with cbindgen.
//!
//! The header is committed. Locally the build refreshes it; under CI (or with
//! HTTPSRV_CHECK_HEADER set) it only writes `$OUT_DIR/httpsrv.h`, so the header test and
//! `git diff --exit-code include/` catch a header that was not regenerated and committed.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=HTTPSRV_CHECK_HEADER");
    // httpsrvd links the library statically; modules it loads resolve httpsrv_* from it.
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    // A versioned soname, so `make install` can ship libhttpsrv.so.MAJOR with its symlinks.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhttpsrv.so.{major}");

    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let generated = out_dir.join("httpsrv.h");
    bindings.write_to_file(&generated);

    let check_only =
        std::env::var_os("CI").is_some() || std::env::var_os("HTTPSRV_CHECK_HEADER").is_some();
    if !check_only {
        let committed = crate_dir.join("include/httpsrv.h");
        let new = std::fs::read(&generated).expect("header just written");
        if std::fs::read(&committed).ok().as_deref() != Some(&new[..]) {
            std::fs::create_dir_all(crate_dir.join("include")).expect("create include/");
            std::fs::write(&committed, new).expect("write include/httpsrv.h");
        }
    }
}
