//! Certificates for TLS listeners: loading PEM files, the names each certificate serves, and the
//! resolver that picks one per handshake by the client's SNI name. A reload builds a whole new
//! set and swaps it in at once: new handshakes see the new set, established connections keep
//! the certificate they were given.

use std::collections::HashMap;
use std::ffi::c_int;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::errors::{EBADMSG, EIO, ENOENT};

/// The cryptography behind every TLS connection (see the commit that chose it for figures).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Session tickets for resumption, from the same provider.
pub fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
}

/// Why a certificate or key file was refused: an errno for C and a line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    /// `ENOENT` a missing file, `EBADMSG` no usable certificate or key, or another errno the
    /// file system gave (`EACCES`).
    pub code: c_int,
    pub message: String,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn bad(file: &Path, why: impl fmt::Display) -> CertError {
    CertError {
        code: EBADMSG,
        message: format!("{}: {why}", file.display()),
    }
}

fn read_file(file: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(file).map_err(|e| CertError {
        code: match e.kind() {
            std::io::ErrorKind::NotFound => ENOENT,
            _ => e.raw_os_error().unwrap_or(EIO),
        },
        message: format!("{}: {e}", file.display()),
    })
}

/// A certificate chain and its private key, read from their PEM files, and the DNS names of the
/// end-entity certificate's subject alternative names (lower case; `*.` wildcards kept).
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
}

/// Reads `cert_file` (the chain, end-entity first) and `key_file` (RSA, ECDSA or Ed25519 in
/// PKCS#8, PKCS#1 or SEC1 form) and checks that the key belongs to the certificate.
pub fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, CertError> {
    let cert_pem = read_file(cert_file)?;
    let key_pem = read_file(key_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_file, format!("unreadable PEM: {}", pem_error(&e))))?;
    let Some(leaf) = chain.first() else {
        return Err(bad(cert_file, "no certificate in the file"));
    };
    let names = dns_names(leaf).map_err(|e| bad(cert_file, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key_file, format!("no private key: {}", pem_error(&e))))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(key_file, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    // Every key type this provider loads can say its public key, so "unknown" is refused too.
    certified.keys_match().map_err(|_| {
        bad(
            key_file,
            format!("the key does not match {}", cert_file.display()),
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
    })
}

/// A PEM error as text for a person: the PEM reader's own text shows the lines it quotes as
/// lists of byte values.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "no '-----END {}-----' line",
            String::from_utf8_lossy(end_marker).trim()
        ),
        Error::IllegalSectionStart { line } => format!(
            "malformed begin line '{}'",
            String::from_utf8_lossy(line).trim()
        ),
        other => other.to_string(),
    }
}

/// The DNS names of a certificate's subject alternative names, lower case.
fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let cert =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("not a certificate: {e:?}"))?;
    Ok(cert
        .valid_dns_names()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect())
}

/// One certificate of the set, with the files it is reloaded from.
#[derive(Clone)]
struct Entry {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// Added by `listen_tls`: the first such is the certificate for clients without SNI.
    listener: bool,
    loaded: Loaded,
}

/// Every certificate, indexed for the resolver.
#[derive(Default)]
struct CertSet {
    entries: Vec<Entry>,
    /// Exact names, and wildcard names by the part after `*.`; the first certificate wins.
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    fallback: Option<usize>,
}

impl CertSet {
    fn new(entries: Vec<Entry>) -> CertSet {
        let mut set = CertSet {
            fallback: entries
                .iter()
                .position(|e| e.listener)
                .or((!entries.is_empty()).then_some(0)),
            ..CertSet::default()
        };
        for (i, e) in entries.iter().enumerate() {
            for name in &e.loaded.names {
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.entry(parent.to_string()).or_insert(i),
                    None => set.exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        set.entries = entries;
        set
    }

    /// The certificate for a client that asked for `sni`: exact name, then a wildcard covering
    /// its first label, then the first listener's.
    fn pick(&self, sni: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let found = sni.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(&i) = self.exact.get(&name) {
                return Some(i);
            }
            let (_, parent) = name.split_once('.')?;
            self.wildcard.get(parent).copied()
        });
        let i = found.or(self.fallback)?;
        self.entries.get(i).map(|e| &e.loaded.key)
    }
}

/// The server's certificates, shared by every TLS listener's configuration. Changes (add,
/// reload) are serialised and swap the whole set; a handshake reads whichever set is current.
pub struct CertStore {
    provider: Arc<CryptoProvider>,
    current: Mutex<Arc<CertSet>>,
    /// Held while a change loads files, so two changes never lose one another's work.
    changing: Mutex<()>,
}

impl Default for CertStore {
    fn default() -> Self {
        CertStore {
            provider: provider(),
            current: Mutex::new(Arc::new(CertSet::default())),
            changing: Mutex::new(()),
        }
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertStore({} certificates)", self.len())
    }
}

impl CertStore {
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    pub fn len(&self) -> usize {
        self.current.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a certificate and key with this store's provider (see `load`).
    pub fn load(&self, cert_file: &Path, key_file: &Path) -> Result<Loaded, CertError> {
        load(cert_file, key_file, &self.provider)
    }

    /// Adds a loaded certificate to the set; `listener` marks one from `listen_tls`.
    pub fn insert(&self, cert_file: &Path, key_file: &Path, listener: bool, loaded: Loaded) {
        let _changing = self.changing.lock();
        let mut entries = self.current.lock().entries.clone();
        entries.push(Entry {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            listener,
            loaded,
        });
        *self.current.lock() = Arc::new(CertSet::new(entries));
    }

    /// `load`, then `insert`.
    pub fn add(&self, cert_file: &Path, key_file: &Path, listener: bool) -> Result<(), CertError> {
        let loaded = self.load(cert_file, key_file)?;
        self.insert(cert_file, key_file, listener, loaded);
        Ok(())
    }

    /// Reads every certificate and key file again. On any error nothing changes.
    pub fn reload(&self) -> Result<(), CertError> {
        let _changing = self.changing.lock();
        let old = self.current.lock().clone();
        let mut entries = Vec::with_capacity(old.entries.len());
        for e in &old.entries {
            entries.push(Entry {
                cert_file: e.cert_file.clone(),
                key_file: e.key_file.clone(),
                listener: e.listener,
                loaded: load(&e.cert_file, &e.key_file, &self.provider)?,
            });
        }
        *self.current.lock() = Arc::new(CertSet::new(entries));
        Ok(())
    }

    /// The certificate for a handshake whose client asked for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.lock().clone();
        set.pick(sni).cloned()
    }
}

/// rustls' view of the store: one certificate per handshake.
#[derive(Debug)]
pub struct Resolver(pub Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.pick(hello.server_name())
    }
}

#[cfg(test)]
#[path = "testcerts.rs"]
pub(crate) mod testcerts;

#[cfg(test)]
mod tests {
    use super::testcerts::*;
    use super::*;

    fn leaf(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].as_ref().to_vec()
    }

    #[test]
    fn loads_every_key_type_and_form() {
        let d = dir("forms");
        let p = provider();
        for kind in [RSA_PKCS8, RSA_PKCS1, EC_SEC1, EC_PKCS8, ED25519] {
            let (crt, key) = make(&d, kind, kind, &["a.test"]);
            let loaded = load(&crt, &key, &p).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(loaded.names, vec!["a.test".to_string()], "{kind}");
        }
    }

    #[test]
    fn refuses_missing_empty_mismatched_and_swapped_files() {
        let d = dir("errors");
        let p = provider();
        let (crt, key) = make(&d, "one", EC_SEC1, &["one.test"]);
        let (_, other_key) = make(&d, "two", EC_SEC1, &["two.test"]);
        let missing = d.join("missing.pem");
        assert_eq!(load(&missing, &key, &p).err().map(|e| e.code), Some(ENOENT));
        assert_eq!(load(&crt, &missing, &p).err().map(|e| e.code), Some(ENOENT));
        let empty = d.join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let garbage = d.join("garbage.pem");
        std::fs::write(
            &garbage,
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (c, k) in [
            (&empty, &key),
            (&crt, &empty),
            (&key, &key),
            (&crt, &crt),
            (&garbage, &key),
        ] {
            let e = load(c, k, &p).err().map(|e| e.code);
            assert_eq!(e, Some(EBADMSG), "{} {}", c.display(), k.display());
        }
        let e = load(&crt, &other_key, &p).err().expect("a mismatch");
        assert_eq!(e.code, EBADMSG);
        assert!(e.message.contains("does not match"), "{}", e.message);
        // A PEM section without its end: the message quotes the line as text.
        let cut = d.join("cut.pem");
        std::fs::write(&cut, b"-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let e = load(&cut, &key, &p).err().expect("a cut file");
        assert_eq!(e.code, EBADMSG);
        let want = "cut.pem: unreadable PEM: no '-----END CERTIFICATE-----' line";
        assert!(e.message.ends_with(want), "{}", e.message);
    }

    #[test]
    fn picks_exact_then_wildcard_then_the_first_listeners() {
        let d = dir("resolver");
        let store = CertStore::default();
        let (c0, k0) = make(&d, "extra", EC_SEC1, &["extra.test"]);
        let (c1, k1) = make(&d, "main", EC_SEC1, &["main.test"]);
        let (c2, k2) = make(&d, "wild", EC_SEC1, &["*.wild.test", "exact.wild.test"]);
        let (c3, k3) = make(&d, "deep", EC_SEC1, &["a.b.wild.test"]);
        // Added before the listener's certificate, it is still not the default.
        store.add(&c0, &k0, false).unwrap();
        store.add(&c1, &k1, true).unwrap();
        store.add(&c2, &k2, false).unwrap();
        store.add(&c3, &k3, false).unwrap();
        let which = |sni: Option<&str>| leaf(&store.pick(sni).unwrap());
        let extra = which(Some("extra.test"));
        let main = which(None);
        let wild = which(Some("x.wild.test"));
        assert_ne!(extra, main);
        assert_eq!(which(Some("MAIN.test")), main, "names compare without case");
        assert_eq!(which(Some("unknown.test")), main);
        assert_eq!(which(Some("exact.wild.test")), wild);
        assert_eq!(which(Some("other.WILD.test.")), wild);
        assert_eq!(which(Some("wild.test")), main, "a wildcard needs a label");
        assert_eq!(
            which(Some("x.y.wild.test")),
            main,
            "a wildcard covers one label"
        );
        assert_ne!(which(Some("a.b.wild.test")), wild, "an exact name wins");
    }

    #[test]
    fn a_failed_reload_changes_nothing_and_a_good_one_swaps_all() {
        let d = dir("reload");
        let store = CertStore::default();
        let (crt, key) = make(&d, "site", EC_SEC1, &["site.test"]);
        store.add(&crt, &key, true).unwrap();
        let before = leaf(&store.pick(None).unwrap());
        std::fs::write(&key, b"not a key").unwrap();
        assert_eq!(store.reload().err().map(|e| e.code), Some(EBADMSG));
        assert_eq!(leaf(&store.pick(None).unwrap()), before);
        make(&d, "site", ED25519, &["site.test"]);
        store.reload().unwrap();
        assert_ne!(leaf(&store.pick(Some("site.test")).unwrap()), before);
        assert_eq!(store.len(), 1);
    }
}
