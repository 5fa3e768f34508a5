//! Certificates made at test time with the `openssl` command (no private key is committed).
//! Shared by the unit tests (`io::certs`, `io::tls`) and tests/tls.rs, which includes this
//! file with `#[path]`: it uses only std.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Key kinds the tests make.
pub const RSA_PKCS8: &str = "rsa-pkcs8";
pub const RSA_PKCS1: &str = "rsa-pkcs1";
pub const EC_SEC1: &str = "ec-sec1";
pub const EC_PKCS8: &str = "ec-pkcs8";
pub const ED25519: &str = "ed25519";

/// A fresh directory `name` under `base`.
pub fn dir_in(base: &Path, name: &str) -> PathBuf {
    let d = base.join(format!("httpsrv-certs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temporary directory");
    d
}

/// A fresh directory under the system's temporary directory.
#[allow(dead_code)]
pub fn dir(name: &str) -> PathBuf {
    dir_in(&std::env::temp_dir(), name)
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `<stem>.key` of a kind and a self-signed `<stem>.crt` for `names` in `dir`;
/// returns (certificate, key).
pub fn make(dir: &Path, stem: &str, kind: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{stem}.key"));
    let crt = dir.join(format!("{stem}.crt"));
    let k = key.to_str().expect("a UTF-8 path");
    match kind {
        RSA_PKCS8 => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            k,
        ]),
        RSA_PKCS1 => openssl(&["genrsa", "-traditional", "-out", k, "2048"]),
        EC_SEC1 => openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ]),
        EC_PKCS8 => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            k,
        ]),
        ED25519 => openssl(&["genpkey", "-algorithm", "ED25519", "-out", k]),
        other => panic!("unknown key kind {other}"),
    }
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let subject = format!("/CN={}", names.first().copied().unwrap_or("test"));
    // Not a CA: webpki (the tests' rustls client) refuses a CA certificate as a server's.
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        k,
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-out",
    ];
    let c = crt.to_str().expect("a UTF-8 path");
    args.push(c);
    let ext = format!("subjectAltName={san}");
    if !names.is_empty() {
        args.extend(["-addext", &ext]);
    }
    openssl(&args);
    (crt, key)
}
