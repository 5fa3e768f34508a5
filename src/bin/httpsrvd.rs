//! `httpsrvd`: the host program. It drives the library through its C API exactly as a C host
//! would: create a server, apply options, bind listeners (cleartext and TLS), add certificates,
//! load modules, start, then wait for signals: SIGHUP reloads the certificates and reopens the
//! access log, SIGINT or SIGTERM stop gracefully.
//!
//! Exit codes: 0 clean stop, 1 other runtime failure, 2 bad usage, 3 rejected option,
//! 4 listen failure (an address, or a certificate or key that cannot be loaded), 5 module load
//! failure.

#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{c_char, c_int, c_uint, CStr, CString, OsString};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;
use std::ptr;

use httpsrv::{
    httpsrv_server, httpsrv_server_add_certificate, httpsrv_server_free, httpsrv_server_listen,
    httpsrv_server_listen_tls, httpsrv_server_load_module, httpsrv_server_new, httpsrv_server_port,
    httpsrv_server_reload_certificates, httpsrv_server_reopen_logs, httpsrv_server_route,
    httpsrv_server_set, httpsrv_server_start, httpsrv_server_stop, httpsrv_stats_handler,
    httpsrv_strerror, httpsrv_version,
};

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_OPTION: u8 = 3;
const EXIT_LISTEN: u8 = 4;
const EXIT_MODULE: u8 = 5;

const DEFAULT_LISTEN: &CStr = c"127.0.0.1:8080";
const DEFAULT_GRACE_MS: c_uint = 5000;

const USAGE: &str = "\
Usage: httpsrvd [FLAGS]

Runs an httpsrv HTTP/1.1 server with the given modules until SIGINT or SIGTERM.

Flags (a value may also be given as --flag=VALUE):
  --listen ADDR         address to listen on, e.g. 127.0.0.1:8080 or [::1]:0 (port 0: any free
                        port); repeatable; default 127.0.0.1:8080 when there is no --listen
                        and no --tls
  --tls ADDR=CERT:KEY   a TLS (HTTPS) listener on ADDR with the PEM certificate chain CERT
                        (end-entity first) and its private key KEY (RSA, ECDSA or Ed25519;
                        PKCS#8, PKCS#1 or SEC1); split at the first '=' and the first ':'
                        after it; repeatable; the first one's certificate is the default
  --cert CERT:KEY       one more certificate for every TLS listener, chosen by the client's
                        SNI name against its subject alternative names; split at the first
                        ':'; repeatable; needs a --tls listener
  --module PATH[=ARGS]  load a module (a shared object exporting httpsrv_module_init) and pass
                        it ARGS (text after the first '='); a PATH without '/' is relative to
                        the current directory; repeatable, loaded in order
  --set KEY=VALUE       set a server option; repeatable; the keys, defaults and meanings are in
                        the option table of README.md (\"Options\")
  --stats PATH          answer GET PATH (e.g. /stats) with the server's counters as JSON:
                        {\"requests\":N,\"open_connections\":N,\"bytes_sent\":N}; repeatable
  --access-log FILE     write a Combined Log Format line per request to FILE ('-': stderr);
                        the same as --set access_log=FILE
  --grace-ms N          on stop, give in-flight responses up to N ms to finish; default 5000
  -h, --help            print this help and exit
  --version             print the version and exit

On start, one line per listener goes to stdout, in the order of the flags:
httpsrvd listening on http://HOST:PORT/ (https:// for --tls)

Signals: SIGHUP reads every certificate and key file again (new handshakes get the new
certificates; if a file is bad the old ones stay and the server keeps running) and reopens the
access log file (rename it, send SIGHUP: new lines go to a new file at the old path).
SIGINT and SIGTERM stop gracefully.

Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage, 3 rejected option,
4 listen failure (an address, or a --tls or --cert file that cannot be loaded),
5 module load failure.
";

/// Every function of the C API (API.md), referenced from the executable. The host calls only a
/// few of them, and the linker would leave the rest of the rlib's functions out of the binary;
/// modules the host `dlopen`s resolve `httpsrv_*` from the executable (`--export-dynamic`), so a
/// missing one makes a module fail to load with an undefined symbol. `#[used]` keeps this table,
/// and with it every function, in the link.
#[used]
static C_API: ExportTable = ExportTable([
    httpsrv::httpsrv_version as *const (),
    httpsrv::httpsrv_strerror as *const (),
    httpsrv::httpsrv_server_new as *const (),
    httpsrv::httpsrv_server_set as *const (),
    httpsrv::httpsrv_server_listen as *const (),
    httpsrv::httpsrv_server_port as *const (),
    httpsrv::httpsrv_server_route as *const (),
    httpsrv::httpsrv_server_load_module as *const (),
    httpsrv::httpsrv_server_set_logger as *const (),
    httpsrv::httpsrv_server_start as *const (),
    httpsrv::httpsrv_server_stop as *const (),
    httpsrv::httpsrv_server_free as *const (),
    httpsrv::httpsrv_request_method as *const (),
    httpsrv::httpsrv_request_target as *const (),
    httpsrv::httpsrv_request_path as *const (),
    httpsrv::httpsrv_request_query as *const (),
    httpsrv::httpsrv_request_version as *const (),
    httpsrv::httpsrv_request_header as *const (),
    httpsrv::httpsrv_request_header_count as *const (),
    httpsrv::httpsrv_request_header_at as *const (),
    httpsrv::httpsrv_request_body as *const (),
    httpsrv::httpsrv_request_peer as *const (),
    httpsrv::httpsrv_request_host as *const (),
    httpsrv::httpsrv_response_status_set as *const (),
    httpsrv::httpsrv_response_header_set as *const (),
    httpsrv::httpsrv_response_header_add as *const (),
    httpsrv::httpsrv_response_header_remove as *const (),
    httpsrv::httpsrv_response_append as *const (),
    httpsrv::httpsrv_response_flush as *const (),
    httpsrv::httpsrv_response_flush_async as *const (),
    httpsrv::httpsrv_response_clear as *const (),
    httpsrv::httpsrv_response_headers_sent as *const (),
    httpsrv::httpsrv_response_compression as *const (),
    httpsrv::httpsrv_response_bytes_sent as *const (),
    httpsrv::httpsrv_response_pending as *const (),
    httpsrv::httpsrv_session_on_close as *const (),
    httpsrv::httpsrv_session_set_data as *const (),
    httpsrv::httpsrv_session_data as *const (),
    httpsrv::httpsrv_session_post as *const (),
    httpsrv::httpsrv_session_abort as *const (),
    httpsrv::httpsrv_server_stats as *const (),
    httpsrv::httpsrv_stats_handler as *const (),
    httpsrv::httpsrv_response_append_ref as *const (),
    httpsrv::httpsrv_server_listen_tls as *const (),
    httpsrv::httpsrv_server_add_certificate as *const (),
    httpsrv::httpsrv_server_reload_certificates as *const (),
    httpsrv::httpsrv_server_reopen_logs as *const (),
    httpsrv::httpsrv_request_scheme as *const (),
    httpsrv::httpsrv_request_tls as *const (),
]);

struct ExportTable([*const (); 49]);

// SAFETY: the table only holds code addresses; nothing reads through them or calls them here.
unsafe impl Sync for ExportTable {}

/// A failure with the exit code it maps to and the message for stderr.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Ok for a C call that returned 0; else exit `code` with "`what`: <the errno's text>".
    fn check(err: c_int, code: u8, what: impl FnOnce() -> String) -> Result<(), Failure> {
        if err == 0 {
            Ok(())
        } else {
            Err(Failure::new(code, format!("{}: {}", what(), strerror(err))))
        }
    }
}

struct ModuleSpec {
    path: CString,
    args: Option<CString>,
}

/// A listener, in the order of the flags (listener i is the i-th listen call).
enum Listen {
    Plain(CString),
    Tls {
        addr: CString,
        cert: CString,
        key: CString,
    },
}

impl Listen {
    fn addr(&self) -> &CStr {
        match self {
            Listen::Plain(addr) | Listen::Tls { addr, .. } => addr,
        }
    }
}

struct Config {
    listen: Vec<Listen>,
    /// `--cert`: (certificate, key) files added for SNI.
    certs: Vec<(CString, CString)>,
    modules: Vec<ModuleSpec>,
    sets: Vec<(CString, CString)>,
    /// Paths where `httpsrv_stats_handler` answers GET, mounted after the modules.
    stats: Vec<CString>,
    grace_ms: c_uint,
}

enum Action {
    Run(Config),
    Help,
    Version,
}

fn main() -> ExitCode {
    // Referenced at run time too, so no linker or optimizer setting can drop the table.
    std::hint::black_box(&C_API.0);

    let action = match parse_args(std::env::args_os().skip(1)) {
        Ok(action) => action,
        Err(message) => {
            eprintln!("httpsrvd: {message}");
            eprintln!("Try 'httpsrvd --help' for more information.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match action {
        Action::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Action::Version => {
            println!("httpsrvd {}", library_version());
            ExitCode::SUCCESS
        }
        Action::Run(config) => match run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("httpsrvd: {}", failure.message);
                ExitCode::from(failure.code)
            }
        },
    }
}

/// Parses the flags (without the program name). `Err` is a usage error message.
fn parse_args(args: impl Iterator<Item = OsString>) -> Result<Action, String> {
    let mut config = Config {
        listen: Vec::new(),
        certs: Vec::new(),
        modules: Vec::new(),
        sets: Vec::new(),
        stats: Vec::new(),
        grace_ms: DEFAULT_GRACE_MS,
    };
    let mut args = args.map(OsString::into_vec);
    while let Some(arg) = args.next() {
        // `--flag=VALUE` carries its value inline; split at the first '=' only, so
        // `--set=key=value` keeps `key=value` whole.
        let (flag, inline) = match arg.iter().position(|&b| b == b'=') {
            Some(i) if arg.starts_with(b"--") => (arg[..i].to_vec(), Some(arg[i + 1..].to_vec())),
            _ => (arg, None),
        };
        let flag_text = String::from_utf8_lossy(&flag).into_owned();
        let takes_value = matches!(
            flag.as_slice(),
            b"--listen"
                | b"--tls"
                | b"--cert"
                | b"--module"
                | b"--set"
                | b"--grace-ms"
                | b"--stats"
                | b"--access-log"
        );
        if !takes_value {
            if inline.is_some() {
                return Err(format!("{flag_text} takes no value"));
            }
            match flag.as_slice() {
                b"-h" | b"--help" => return Ok(Action::Help),
                b"--version" => return Ok(Action::Version),
                _ => return Err(format!("unknown argument '{flag_text}'")),
            }
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("{flag_text} needs a value")),
        };
        match flag.as_slice() {
            b"--listen" => config
                .listen
                .push(Listen::Plain(c_string(value, &flag_text)?)),
            b"--tls" => config.listen.push(parse_tls(&value)?),
            b"--cert" => {
                let Some((cert, key)) = split_cert_key(&value) else {
                    return Err(format!(
                        "--cert needs CERT:KEY, got '{}'",
                        String::from_utf8_lossy(&value)
                    ));
                };
                config
                    .certs
                    .push((c_string(cert, "--cert")?, c_string(key, "--cert")?));
            }
            b"--module" => config.modules.push(parse_module(value)?),
            b"--set" => {
                let Some((key, val)) = split_once_eq(&value) else {
                    return Err(format!(
                        "--set needs KEY=VALUE, got '{}'",
                        String::from_utf8_lossy(&value)
                    ));
                };
                config
                    .sets
                    .push((c_string(key, "--set")?, c_string(val, "--set")?));
            }
            b"--access-log" => {
                if value.is_empty() {
                    return Err("--access-log needs a FILE (or - for stderr)".to_string());
                }
                config
                    .sets
                    .push((c"access_log".to_owned(), c_string(value, "--access-log")?));
            }
            b"--stats" => {
                if !value.starts_with(b"/") {
                    return Err(format!(
                        "--stats needs a PATH starting with '/', got '{}'",
                        String::from_utf8_lossy(&value)
                    ));
                }
                config.stats.push(c_string(value, "--stats")?);
            }
            _ => {
                // Only --grace-ms is left (see `takes_value`).
                let text = String::from_utf8_lossy(&value);
                config.grace_ms = text.trim().parse::<c_uint>().map_err(|_| {
                    format!("--grace-ms needs a whole number of milliseconds, got '{text}'")
                })?;
            }
        }
    }
    let tls = config
        .listen
        .iter()
        .any(|l| matches!(l, Listen::Tls { .. }));
    if !config.certs.is_empty() && !tls {
        return Err("--cert needs a --tls listener to serve its certificate".to_string());
    }
    if config.listen.is_empty() {
        config.listen.push(Listen::Plain(DEFAULT_LISTEN.to_owned()));
    }
    Ok(Action::Run(config))
}

/// `ADDR=CERT:KEY`: split at the first '=' (an address has none) and the first ':' after it.
fn parse_tls(value: &[u8]) -> Result<Listen, String> {
    let parts = split_once_eq(value).and_then(|(addr, files)| {
        let (cert, key) = split_cert_key(files)?;
        (!addr.is_empty()).then_some((addr, cert, key))
    });
    let Some((addr, cert, key)) = parts else {
        return Err(format!(
            "--tls needs ADDR=CERT:KEY, got '{}'",
            String::from_utf8_lossy(value)
        ));
    };
    Ok(Listen::Tls {
        addr: c_string(addr, "--tls")?,
        cert: c_string(cert, "--tls")?,
        key: c_string(key, "--tls")?,
    })
}

/// `CERT:KEY`, both non-empty, split at the first ':'.
fn split_cert_key(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = value.iter().position(|&b| b == b':')?;
    let (cert, key) = (&value[..i], &value[i + 1..]);
    (!cert.is_empty() && !key.is_empty()).then_some((cert, key))
}

/// `PATH[=ARGS]`: split at the first '='. A PATH without '/' gets a `./` prefix, so `dlopen`
/// loads the file in the current directory instead of searching the system library path.
fn parse_module(value: Vec<u8>) -> Result<ModuleSpec, String> {
    let (path, args) = match split_once_eq(&value) {
        Some((path, args)) => (path, Some(args)),
        None => (value.as_slice(), None),
    };
    if path.is_empty() {
        return Err("--module needs a PATH".to_string());
    }
    let mut full = Vec::with_capacity(path.len() + 2);
    if !path.contains(&b'/') {
        full.extend_from_slice(b"./");
    }
    full.extend_from_slice(path);
    Ok(ModuleSpec {
        path: c_string(full, "--module")?,
        args: args.map(|a| c_string(a, "--module")).transpose()?,
    })
}

fn split_once_eq(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = value.iter().position(|&b| b == b'=')?;
    Some((&value[..i], &value[i + 1..]))
}

/// Arguments come from C strings, so an interior NUL cannot happen; still an error, not a panic.
fn c_string(bytes: impl Into<Vec<u8>>, flag: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{flag}: value contains a NUL byte"))
}

/// Owns the server handle so every early return frees it (which also stops it and unloads
/// modules).
struct Server(*mut httpsrv_server);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: the handle came from httpsrv_server_new and is freed exactly once, here.
        unsafe { httpsrv_server_free(self.0) };
    }
}

fn run(config: &Config) -> Result<(), Failure> {
    // Block the signals this host handles before the library starts any thread: threads
    // inherit the mask, so the signals stay pending for `sigwait` below instead of killing the
    // process or landing on a library thread.
    let signals = block_signals()?;

    // SAFETY: no arguments. `server.0` (NULL returns just below) then stays a live server
    // until `server` drops, as the calls below require of their `srv`.
    // (The crate declares `httpsrv_server_new` safe; the allow keeps this compiling either way.)
    #[allow(unused_unsafe)]
    let server = Server(unsafe { httpsrv_server_new() });
    if server.0.is_null() {
        return Err(Failure::new(
            EXIT_RUNTIME,
            "cannot create the server: out of memory",
        ));
    }

    for (key, value) in &config.sets {
        // SAFETY: `server.0` as above; `key` and `value` are live CStrings.
        let err = unsafe { httpsrv_server_set(server.0, key.as_ptr(), value.as_ptr()) };
        Failure::check(err, EXIT_OPTION, || {
            format!(
                "option {}={} rejected",
                key.to_string_lossy(),
                value.to_string_lossy()
            )
        })?;
    }

    for listen in &config.listen {
        match listen {
            Listen::Plain(addr) => {
                // SAFETY: `server.0` as above; `addr` is a live CString.
                let err = unsafe { httpsrv_server_listen(server.0, addr.as_ptr()) };
                Failure::check(err, EXIT_LISTEN, || {
                    format!("cannot listen on {}", addr.to_string_lossy())
                })?;
            }
            Listen::Tls { addr, cert, key } => {
                // SAFETY: `server.0` as above; the strings are live CStrings. The library
                // also logs the reason of a failure with the file's name.
                let err = unsafe {
                    httpsrv_server_listen_tls(server.0, addr.as_ptr(), cert.as_ptr(), key.as_ptr())
                };
                Failure::check(err, EXIT_LISTEN, || {
                    format!(
                        "cannot listen with TLS on {} (certificate {}, key {})",
                        addr.to_string_lossy(),
                        cert.to_string_lossy(),
                        key.to_string_lossy()
                    )
                })?;
            }
        }
    }

    for (cert, key) in &config.certs {
        // SAFETY: `server.0` as above; `cert` and `key` are live CStrings.
        let err = unsafe { httpsrv_server_add_certificate(server.0, cert.as_ptr(), key.as_ptr()) };
        Failure::check(err, EXIT_LISTEN, || {
            format!(
                "cannot add the certificate {} with key {}",
                cert.to_string_lossy(),
                key.to_string_lossy()
            )
        })?;
    }

    for module in &config.modules {
        let args = module.args.as_ref().map_or(ptr::null(), |a| a.as_ptr());
        // SAFETY: `server.0` as above; `path` is a live CString, `args` one or NULL.
        let err = unsafe { httpsrv_server_load_module(server.0, module.path.as_ptr(), args) };
        Failure::check(err, EXIT_MODULE, || {
            format!("cannot load module {}", module.path.to_string_lossy())
        })?;
    }

    // After the modules, so a clash with a module's route names the --stats flag.
    for path in &config.stats {
        // SAFETY: `server.0` as above; `path` is a live CString. The handler's userdata is that
        // same server, which its routes never outlive (freeing it stops them first).
        let err = unsafe {
            httpsrv_server_route(
                server.0,
                c"GET".as_ptr(),
                path.as_ptr(),
                0,
                Some(httpsrv_stats_handler),
                server.0.cast(),
            )
        };
        Failure::check(err, EXIT_OPTION, || {
            format!("--stats {} rejected", path.to_string_lossy())
        })?;
    }

    // SAFETY: `server.0` as above.
    let err = unsafe { httpsrv_server_start(server.0) };
    Failure::check(err, EXIT_RUNTIME, || "cannot start the server".to_string())?;

    // Listener i is the i-th successful listen call.
    let mut lines = String::new();
    for (index, listen) in config.listen.iter().enumerate() {
        // SAFETY: `server.0` as above.
        let port = unsafe { httpsrv_server_port(server.0, index) };
        let Ok(port) = u16::try_from(port) else {
            return Err(Failure::new(
                EXIT_RUNTIME,
                format!("cannot read the port of listener {index}"),
            ));
        };
        let scheme = match listen {
            Listen::Plain(_) => "http",
            Listen::Tls { .. } => "https",
        };
        lines.push_str(&format!(
            "httpsrvd listening on {scheme}://{}/\n",
            url_authority(&listen.addr().to_string_lossy(), port)
        ));
    }
    // Scripts and tests wait for these lines, so flush now. A closed stdout is not a reason
    // to stop serving (SIGPIPE is ignored, so this is just an error value).
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("httpsrvd: cannot write to stdout: {e}");
    }
    drop(stdout);

    let tls = config
        .listen
        .iter()
        .any(|l| matches!(l, Listen::Tls { .. }));
    while wait_for_signal(&signals)? == libc::SIGHUP {
        reload(&server, tls);
    }
    eprintln!("httpsrvd: stopping");

    // SAFETY: `server.0` as above.
    let err = unsafe { httpsrv_server_stop(server.0, config.grace_ms) };
    drop(server);
    Failure::check(err, EXIT_RUNTIME, || {
        "stopping the server failed".to_string()
    })
}

/// SIGHUP: certificates and key files read again (TLS), the access log reopened. A failure
/// is logged and changes nothing: the old certificates or log file stay in use, and the server
/// keeps running. One line on stderr says what was done.
fn reload(server: &Server, tls: bool) {
    let mut done = Vec::new();
    if tls {
        // SAFETY: `server.0` is a live, started server (see `run`).
        let err = unsafe { httpsrv_server_reload_certificates(server.0) };
        if err == 0 {
            done.push("certificates reloaded");
        } else {
            eprintln!(
                "httpsrvd: SIGHUP: certificates not reloaded, the old ones stay in use: {}",
                strerror(err)
            );
        }
    }
    // SAFETY: as above.
    let err = unsafe { httpsrv_server_reopen_logs(server.0) };
    if err == 0 {
        done.push("logs reopened");
    } else {
        eprintln!(
            "httpsrvd: SIGHUP: logs not reopened, the old file stays in use: {}",
            strerror(err)
        );
    }
    if !done.is_empty() {
        eprintln!("httpsrvd: SIGHUP: {}", done.join(", "));
    }
}

fn block_signals() -> Result<libc::sigset_t, Failure> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only touch this
    // thread's mask and the process's SIGPIPE disposition.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let err = libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
        if err != 0 {
            return Err(Failure::new(
                EXIT_RUNTIME,
                format!("cannot block SIGINT/SIGTERM/SIGHUP: {}", os_error(err)),
            ));
        }
        // Defence in depth: a write to a closed socket or pipe from the host or a module must
        // fail with EPIPE, not kill the process. The library itself never raises SIGPIPE.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        Ok(set)
    }
}

/// Waits for SIGINT, SIGTERM or SIGHUP (blocked in every thread) and returns which one came.
fn wait_for_signal(set: &libc::sigset_t) -> Result<c_int, Failure> {
    loop {
        let mut signal: c_int = 0;
        // SAFETY: `set` is a valid, initialised signal set; `signal` is a valid out pointer.
        let err = unsafe { libc::sigwait(set, &mut signal) };
        match err {
            0 => return Ok(signal),
            libc::EINTR => continue,
            _ => {
                return Err(Failure::new(
                    EXIT_RUNTIME,
                    format!("sigwait failed: {}", os_error(err)),
                ))
            }
        }
    }
}

/// `HOST:PORT` for the URL: the host as given (brackets for IPv6), the port as bound.
fn url_authority(addr: &str, port: u16) -> String {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return SocketAddr::new(sa.ip(), port).to_string();
    }
    // Not a numeric address (a host name, say): keep the host text as given.
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host,
        None => addr,
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The library's text for one of its error codes.
fn strerror(err: c_int) -> String {
    // SAFETY: httpsrv_strerror returns NULL or a NUL-terminated string that stays valid.
    let text = unsafe { cstr_to_string(httpsrv_strerror(err)) };
    match text {
        Some(text) => format!("{text} (error {err})"),
        None => format!("error {err}"),
    }
}

fn os_error(err: c_int) -> std::io::Error {
    std::io::Error::from_raw_os_error(err)
}

fn library_version() -> String {
    // SAFETY: httpsrv_version returns a static NUL-terminated string (or NULL).
    unsafe { cstr_to_string(httpsrv_version()) }
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for this call.
unsafe fn cstr_to_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-NULL, so NUL-terminated and valid for this call by this function's
        // contract.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(OsString::from))? {
            Action::Run(config) => Ok(config),
            Action::Help | Action::Version => Err("not a run".to_string()),
        }
    }

    fn addrs(config: &Config) -> Vec<String> {
        config
            .listen
            .iter()
            .map(|l| match l {
                Listen::Plain(a) => a.to_string_lossy().into_owned(),
                Listen::Tls { addr, cert, key } => format!(
                    "tls {} {} {}",
                    addr.to_string_lossy(),
                    cert.to_string_lossy(),
                    key.to_string_lossy()
                ),
            })
            .collect()
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(addrs(&config), ["127.0.0.1:8080"]);
        assert_eq!(config.grace_ms, DEFAULT_GRACE_MS);
    }

    #[test]
    fn tls_listeners_and_certificates_keep_their_order() {
        let config = parse(&[
            "--tls",
            "127.0.0.1:8443=/c/site.crt:/c/site.key",
            "--listen=127.0.0.1:0",
            "--tls=[::1]:0=a.pem:b:c.pem",
            "--cert",
            "/c/other.crt:/c/other.key",
        ])
        .unwrap();
        assert_eq!(
            addrs(&config),
            [
                "tls 127.0.0.1:8443 /c/site.crt /c/site.key",
                "127.0.0.1:0",
                "tls [::1]:0 a.pem b:c.pem",
            ]
        );
        assert_eq!(config.certs.len(), 1);
        assert_eq!(config.certs[0].0.to_bytes(), b"/c/other.crt");
        assert_eq!(config.certs[0].1.to_bytes(), b"/c/other.key");
        // --tls alone: no default cleartext listener besides it
        let config = parse(&["--tls", "127.0.0.1:0=c:k"]).unwrap();
        assert_eq!(addrs(&config), ["tls 127.0.0.1:0 c k"]);
    }

    #[test]
    fn module_path_and_args() {
        let config = parse(&[
            "--module",
            "hello.so=a=b",
            "--module=/x/y.so",
            "--module",
            "z.so=",
        ])
        .unwrap();
        let m = &config.modules;
        assert_eq!(m[0].path.to_bytes(), b"./hello.so");
        assert_eq!(m[0].args.as_deref().map(CStr::to_bytes), Some(&b"a=b"[..]));
        assert_eq!(m[1].path.to_bytes(), b"/x/y.so");
        assert!(m[1].args.is_none());
        assert_eq!(m[2].path.to_bytes(), b"./z.so");
        assert_eq!(m[2].args.as_deref().map(CStr::to_bytes), Some(&b""[..]));
    }

    #[test]
    fn set_and_inline_values() {
        let config = parse(&["--set=a=b=c", "--listen=[::1]:0", "--grace-ms", "7"]).unwrap();
        assert_eq!(config.sets[0].0.to_bytes(), b"a");
        assert_eq!(config.sets[0].1.to_bytes(), b"b=c");
        assert_eq!(config.listen[0].addr().to_bytes(), b"[::1]:0");
        assert_eq!(config.grace_ms, 7);
    }

    #[test]
    fn stats_and_access_log() {
        let config = parse(&[
            "--set",
            "threads=1",
            "--access-log",
            "/tmp/a.log",
            "--stats=/stats",
            "--stats",
            "/x/counters",
        ])
        .unwrap();
        assert_eq!(config.sets.len(), 2);
        assert_eq!(config.sets[1].0.to_bytes(), b"access_log");
        assert_eq!(config.sets[1].1.to_bytes(), b"/tmp/a.log");
        assert_eq!(config.stats.len(), 2);
        assert_eq!(config.stats[0].to_bytes(), b"/stats");
        assert_eq!(config.stats[1].to_bytes(), b"/x/counters");
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["--set", "novalue"][..],
            &["--module"],
            &["--module", "=x"],
            &["--help=1"],
            &["-x"],
            &["--grace-ms", "-1"],
            &["--stats"],
            &["--stats", "stats"],
            &["--stats="],
            &["--access-log"],
            &["--access-log="],
            &["--tls"],
            &["--tls", "127.0.0.1:0"],
            &["--tls", "127.0.0.1:0=cert"],
            &["--tls", "127.0.0.1:0=cert:"],
            &["--tls", "127.0.0.1:0=:key"],
            &["--tls", "=cert:key"],
            &["--cert", "cert"],
            &["--cert", "c:k"],
            &["--listen", "127.0.0.1:0", "--cert", "c:k"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        assert!(matches!(
            parse_args(["-h"].iter().map(OsString::from)),
            Ok(Action::Help)
        ));
    }

    #[test]
    fn authority() {
        assert_eq!(url_authority("127.0.0.1:0", 8080), "127.0.0.1:8080");
        assert_eq!(url_authority("[::1]:0", 81), "[::1]:81");
        assert_eq!(url_authority("localhost:0", 82), "localhost:82");
        assert_eq!(url_authority("[fe80::1%lo]:0", 83), "[fe80::1%lo]:83");
    }
}
