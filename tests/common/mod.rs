//! Shared helpers for the integration tests: compiling the C harness, running the C host,
//! and speaking raw HTTP/1.1 over loopback sockets. Everything here is bounded in time.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Default bound for a single network read/response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// paths and compilation

pub struct Paths {
    /// the crate root (CARGO_MANIFEST_DIR)
    pub manifest: PathBuf,
    /// target/<profile>/
    pub profile_dir: PathBuf,
    /// target/ctest/
    pub ctest: PathBuf,
    /// target/<profile>/libhttpsrv.so
    pub lib: PathBuf,
}

pub fn paths() -> &'static Paths {
    static P: OnceLock<Paths> = OnceLock::new();
    P.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/<test>-<hash>
        let deps = exe.parent().expect("exe dir").to_path_buf();
        let profile_dir = if deps.file_name() == Some(OsStr::new("deps")) {
            deps.parent().expect("profile dir").to_path_buf()
        } else {
            deps.clone()
        };
        let target = profile_dir.parent().expect("target dir").to_path_buf();
        let ctest = target.join("ctest");
        fs::create_dir_all(&ctest).expect("create target/ctest");
        // `cargo test` refreshes deps/libhttpsrv.so but only `cargo build` the copy beside it:
        // use whichever is newer, so a test never runs against a stale library.
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        let top = profile_dir.join("libhttpsrv.so");
        let deps_lib = profile_dir.join("deps").join("libhttpsrv.so");
        let lib = match (modified(&top), modified(&deps_lib)) {
            (Some(a), Some(b)) if b > a => deps_lib,
            (None, Some(_)) => deps_lib,
            _ => top,
        };
        assert!(
            lib.exists(),
            "libhttpsrv.so not found in {} (cargo builds the cdylib with the tests)",
            profile_dir.display()
        );
        Paths {
            manifest,
            profile_dir,
            ctest,
            lib,
        }
    })
}

pub fn header_path() -> PathBuf {
    paths().manifest.join("include").join("httpsrv.h")
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Compiles `srcs` into `out` unless `out` is newer than every input. Compiles to a temporary
/// name and renames, so concurrent test binaries never see a half-written file.
pub fn compile(
    compiler: &str,
    srcs: &[PathBuf],
    deps: &[PathBuf],
    out: &Path,
    args: &[&str],
) -> PathBuf {
    let newest_input = srcs
        .iter()
        .chain(deps.iter())
        .filter_map(|p| mtime(p))
        .max();
    if let (Some(o), Some(i)) = (mtime(out), newest_input) {
        if o >= i {
            return out.to_path_buf();
        }
    }
    let tmp = out.with_file_name(format!(
        "{}.tmp.{}.{}",
        out.file_name().unwrap().to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let mut cmd = Command::new(compiler);
    cmd.args(["-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-g", "-O1"]);
    cmd.args(args);
    cmd.arg("-o").arg(&tmp);
    for s in srcs {
        cmd.arg(s);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    if !output.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "compiling {:?} failed:\n{}\n{}",
            srcs,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::rename(&tmp, out).expect("rename compiled output");
    out.to_path_buf()
}

fn c_dir() -> PathBuf {
    paths().manifest.join("tests").join("c")
}

/// This file: the compiler flags live here, so a change to it rebuilds the C artifacts.
fn this_file() -> PathBuf {
    paths().manifest.join("tests").join("common").join("mod.rs")
}

/// The C host (no link-time dependency on the library).
pub fn host_bin() -> PathBuf {
    static H: OnceLock<PathBuf> = OnceLock::new();
    H.get_or_init(|| {
        let src = c_dir().join("host.c");
        compile(
            "gcc",
            &[src],
            &[this_file()],
            &paths().ctest.join("host"),
            &["-std=c11", "-ldl", "-lpthread"],
        )
    })
    .clone()
}

fn require_header() -> PathBuf {
    let h = header_path();
    assert!(h.exists(), "{} does not exist yet", h.display());
    h
}

/// The include flag for modules. The header is included as a system header so that the
/// modules' own code is held to -Wall -Wextra -Werror while warnings inside the generated header
/// are reported by one dedicated test (core_http::header_compiles_without_warnings) instead of
/// failing every module build.
fn include_flag(h: &Path) -> String {
    format!("-isystem{}", h.parent().unwrap().display())
}

fn module_build(name: &str, defines: &[&str]) -> PathBuf {
    let h = require_header();
    let inc = include_flag(&h);
    let mut args = vec!["-std=c11", "-fPIC", "-shared", inc.as_str()];
    args.extend_from_slice(defines);
    args.push("-lpthread");
    compile(
        "gcc",
        &[c_dir().join("test_module.c")],
        &[h, this_file()],
        &paths().ctest.join(name),
        &args,
    )
}

/// tests/c/test_module.c as a module.
pub fn test_module() -> PathBuf {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| module_build("test_module.so", &[]))
        .clone()
}

/// test_module.c without `httpsrv_module_abi`.
pub fn test_module_no_abi() -> PathBuf {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| module_build("test_module_noabi.so", &["-DTEST_NO_ABI"]))
        .clone()
}

/// test_module.c with `httpsrv_module_abi` = 999.
pub fn test_module_bad_abi() -> PathBuf {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| module_build("test_module_badabi.so", &["-DTEST_ABI_VERSION=999"]))
        .clone()
}

/// The examples of `c_examples/`, compiled into `target/ctest/examples/`.
pub struct Examples {
    /// (source, module): every `*.c` (and `*.cpp`/`*.cc`, with g++) but the programs.
    pub modules: Vec<(PathBuf, PathBuf)>,
    /// (source, executable): `*_host.c`, programs that embed the library (they have `main`),
    /// linked against the library under test.
    pub programs: Vec<(PathBuf, PathBuf)>,
}

/// Compiles every example of `c_examples/` with -Wall -Wextra -Werror: modules as shared
/// objects, `*_host.c` as programs. Empty when there is no c_examples.
pub fn compile_examples() -> Examples {
    let mut built = Examples {
        modules: Vec::new(),
        programs: Vec::new(),
    };
    let dir = paths().manifest.join("c_examples");
    let Ok(rd) = fs::read_dir(&dir) else {
        return built;
    };
    let h = require_header();
    let inc = include_flag(&h);
    let outdir = paths().ctest.join("examples");
    fs::create_dir_all(&outdir).unwrap();
    let mut srcs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    srcs.sort();
    for src in srcs {
        let ext = src.extension().and_then(|e| e.to_str()).unwrap_or("");
        let (compiler, std) = match ext {
            "c" => ("gcc", "-std=c11"),
            "cpp" | "cc" => ("g++", "-std=c++17"),
            _ => continue,
        };
        let stem = src.file_stem().unwrap().to_string_lossy().to_string();
        if stem.ends_with("_host") {
            let exe = outdir.join(&stem);
            let lib = linkable_library();
            let rpath = format!("-Wl,-rpath,{}", lib.parent().unwrap().display());
            // The library goes after the source, as a linker input.
            let inputs = [src.clone(), lib];
            compile(
                compiler,
                &inputs,
                std::slice::from_ref(&h),
                &exe,
                &[std, &inc, &rpath, "-lpthread"],
            );
            built.programs.push((src, exe));
            continue;
        }
        let so = outdir.join(format!("{stem}.so"));
        let args = [std, "-fPIC", "-shared", inc.as_str(), "-lpthread"];
        compile(
            compiler,
            std::slice::from_ref(&src),
            std::slice::from_ref(&h),
            &so,
            &args,
        );
        built.modules.push((src, so));
    }
    built
}

/// The library under test as a program links it: `target/ctest/lib/libhttpsrv.so`, beside a
/// `libhttpsrv.so.MAJOR` (its soname, which the program then needs), both links to
/// `paths().lib`.
/// The links are replaced atomically, so concurrent test binaries never see one missing.
fn linkable_library() -> PathBuf {
    let dir = paths().ctest.join("lib");
    fs::create_dir_all(&dir).expect("create target/ctest/lib");
    let soname = format!("libhttpsrv.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    for name in [soname.as_str(), "libhttpsrv.so"] {
        let tmp = dir.join(format!(
            "{name}.tmp.{}.{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::os::unix::fs::symlink(&paths().lib, &tmp).expect("symlink the library");
        fs::rename(&tmp, dir.join(name)).expect("rename the library link");
    }
    dir.join("libhttpsrv.so")
}

// ---------------------------------------------------------------------------------------------
// the C host

static HOST_COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct HostBuilder {
    args: Vec<String>,
    default_module: bool,
    valgrind: bool,
    ready_timeout: Duration,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBuilder {
    /// A host with the test module loaded.
    pub fn new() -> Self {
        HostBuilder {
            args: Vec::new(),
            default_module: true,
            valgrind: false,
            ready_timeout: Duration::from_secs(30),
        }
    }
    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.args.push("--set".into());
        self.args.push(format!("{k}={v}"));
        self
    }
    pub fn try_set(mut self, k: &str, v: &str) -> Self {
        self.args.push("--try-set".into());
        self.args.push(format!("{k}={v}"));
        self
    }
    pub fn listen(mut self, addr: &str) -> Self {
        self.args.push("--listen".into());
        self.args.push(addr.into());
        self
    }
    /// A TLS listener (`httpsrv_server_listen_tls`); the host fails to start if it fails.
    /// TLS listeners come after the plain ones in `Server::ports`.
    pub fn tls(mut self, addr: &str, cert: &Path, key: &Path) -> Self {
        self.args.push("--tls".into());
        self.args
            .push(format!("{addr},{},{}", cert.display(), key.display()));
        self
    }
    /// `tls`, reporting the result (`LISTEN_TLS <addr> <rc>`) without failing.
    pub fn try_tls(mut self, addr: &str, cert: &Path, key: &Path) -> Self {
        self.args.push("--try-tls".into());
        self.args
            .push(format!("{addr},{},{}", cert.display(), key.display()));
        self
    }
    /// One more certificate (`httpsrv_server_add_certificate`); reports `CERT <cert> <rc>`.
    pub fn try_cert(mut self, cert: &Path, key: &Path) -> Self {
        self.args.push("--try-cert".into());
        self.args
            .push(format!("{},{}", cert.display(), key.display()));
        self
    }
    /// Loads `path` (with `args` when given) in addition to (after) the test module.
    pub fn module(mut self, path: &Path, args: Option<&str>) -> Self {
        self.args.push("--module".into());
        match args {
            Some(a) => self.args.push(format!("{}={}", path.display(), a)),
            None => self.args.push(path.display().to_string()),
        }
        self
    }
    /// Routes the library's log to the host's stdout ("HLOG <level> <message>").
    pub fn logger(mut self) -> Self {
        self.args.push("--logger".into());
        self.args.push("stdout".into());
        self
    }
    pub fn no_default_module(mut self) -> Self {
        self.default_module = false;
        self
    }
    pub fn valgrind(mut self) -> Self {
        self.valgrind = true;
        self.ready_timeout = Duration::from_secs(120);
        self
    }

    fn command(&self) -> (Command, PathBuf) {
        let host = host_bin();
        let lib = paths().lib.clone();
        let mut argv: Vec<String> = vec![lib.display().to_string()];
        if self.default_module {
            argv.push("--module".into());
            argv.push(test_module().display().to_string());
        }
        argv.extend(self.args.iter().cloned());
        let mut cmd = if self.valgrind {
            let mut c = Command::new("valgrind");
            c.args([
                "--error-exitcode=99",
                "--leak-check=no",
                "--quiet",
                "--trace-children=no",
            ]);
            c.arg(&host);
            c
        } else {
            Command::new(&host)
        };
        cmd.args(&argv);
        let n = HOST_COUNTER.fetch_add(1, Ordering::SeqCst);
        let errpath = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "host-{}-{}.stderr",
            std::process::id(),
            n
        ));
        let errfile = fs::File::create(&errpath).expect("stderr file");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(errfile));
        (cmd, errpath)
    }

    /// Starts the host and waits for READY (panics on failure, with its output).
    pub fn start(self) -> Server {
        let timeout = self.ready_timeout;
        let mut s = self.spawn();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match s.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(p) = line.strip_prefix("PORT ") {
                        let p: i32 = p.trim().parse().unwrap_or(-1);
                        assert!(
                            p > 0 && p < 65536,
                            "bad port line {line:?}: {}",
                            s.diagnostics()
                        );
                        s.ports.push(p as u16);
                    } else if line == "READY" {
                        break;
                    } else if line.starts_with("FAILED")
                        || line.starts_with("MISSING")
                        || line.starts_with("DLOPEN")
                    {
                        panic!("host failed to start: {line}\n{}", s.diagnostics());
                    }
                }
                Err(_) => panic!("host not READY within {timeout:?}\n{}", s.diagnostics()),
            }
        }
        s
    }

    /// Spawns the host without waiting for anything.
    pub fn spawn(self) -> Server {
        let (mut cmd, errpath) = self.command();
        let mut child = cmd.spawn().expect("spawn host");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let all2 = all.clone();
        thread::spawn(move || {
            let r = BufReader::new(stdout);
            for line in r.lines() {
                let Ok(line) = line else { break };
                all2.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // receiver gone: keep draining so the host never blocks on stdout
                }
            }
        });
        Server {
            child,
            stdin,
            rx,
            all,
            ports: Vec::new(),
            errpath,
            exited: None,
        }
    }
}

pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    all: Arc<Mutex<Vec<String>>>,
    ports: Vec<u16>,
    errpath: PathBuf,
    exited: Option<ExitStatus>,
}

impl Server {
    /// A host with the test module and default options.
    pub fn start() -> Server {
        HostBuilder::new().start()
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }
    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// Every stdout line so far.
    pub fn output(&self) -> Vec<String> {
        self.all.lock().unwrap().clone()
    }
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.errpath).unwrap_or_default()
    }
    pub fn diagnostics(&self) -> String {
        let err = self.stderr();
        let tail = if err.len() > 8000 {
            &err[err.len() - 8000..]
        } else {
            &err[..]
        };
        format!(
            "--- host stdout ---\n{}\n--- host stderr (tail) ---\n{}",
            self.output().join("\n"),
            tail
        )
    }

    /// Sends one command line to the host.
    pub fn send_cmd(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        writeln!(stdin, "{cmd}").expect("write host stdin");
        stdin.flush().unwrap();
    }

    /// Waits for the next stdout line starting with `prefix` (earlier lines are skipped).
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line starting with {prefix:?} within {timeout:?}\n{}",
                        self.diagnostics()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "host stdout closed before {prefix:?}\n{}",
                        self.diagnostics()
                    )
                }
            }
        }
    }

    /// `stop <grace>`: returns the rc printed by the host.
    pub fn stop(&mut self, grace_ms: u32, timeout: Duration) -> i32 {
        self.send_cmd(&format!("stop {grace_ms}"));
        let l = self.expect_line("STOPPED ", timeout);
        l["STOPPED ".len()..].trim().parse().unwrap()
    }

    /// Closes stdin and waits (bounded) for the host to exit; kills it on timeout.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.stdin.take();
        self.wait_exit(timeout)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
                // let the reader thread collect the last lines
                thread::sleep(Duration::from_millis(50));
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the host process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    // -- test module helpers

    /// GET `path` on a fresh connection; returns the parsed response.
    pub fn get(&self, path: &str) -> Response {
        get(self.port(), path)
    }

    /// The test module's event log.
    pub fn log(&self) -> String {
        let r = self.get("/t/log");
        assert_eq!(r.status, 200, "GET /t/log");
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Polls the event log until `pred` holds; Err(log) on timeout.
    pub fn wait_log<F: Fn(&str) -> bool>(
        &self,
        pred: F,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.log();
            if pred(&l) {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(l);
            }
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Like wait_log, panicking with the log and `what` on timeout.
    pub fn must_log<F: Fn(&str) -> bool>(&self, what: &str, pred: F, timeout: Duration) -> String {
        match self.wait_log(pred, timeout) {
            Ok(l) => l,
            Err(l) => panic!("event log: {what} did not happen within {timeout:?}; log:\n{l}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        let _ = fs::remove_file(&self.errpath);
    }
}

/// Lines of the log matching a prefix.
pub fn log_lines<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The REASON of the first "close <tag> REASON bytes" line of the test module's log.
pub fn close_reason(log: &str, tag: &str) -> Option<String> {
    let pre = format!("close {tag} ");
    log.lines().find_map(|l| {
        l.strip_prefix(&pre)
            .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
    })
}

/// Parses "k=v" words of a log line.
pub fn log_fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Asserts a check report (from the test module) has an END line and no FAIL.
pub fn assert_report(what: &str, body: &str) {
    let fails: Vec<&str> = body.lines().filter(|l| l.contains("FAIL")).collect();
    assert!(
        body.lines().any(|l| l.starts_with("END ")),
        "{what}: report has no END line (truncated?):\n{body}"
    );
    assert!(
        fails.is_empty(),
        "{what}: {} failed checks:\n{}\n--- full report ---\n{body}",
        fails.len(),
        fails.join("\n")
    );
}

pub fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------------
// sockets

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: zero is a valid sockaddr_in6.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            // SAFETY: as above.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn setsockopt_int(fd: i32, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: valid fd, pointer to a live int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Connects to `addr`, setting SO_RCVBUF to `rcvbuf` before connecting when given (so the
/// advertised window stays small). Read/write timeouts are set.
pub fn connect_opts(addr: SocketAddr, rcvbuf: Option<i32>) -> TcpStream {
    let fam = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on an fd we own; the fd is handed to TcpStream.
    unsafe {
        let fd = libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(sz) = rcvbuf {
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, sz).expect("SO_RCVBUF");
        }
        let (ss, len) = sockaddr(&addr);
        let r = libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len);
        assert!(r == 0, "connect {addr}: {}", io::Error::last_os_error());
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

pub fn connect(port: u16) -> TcpStream {
    connect_opts(SocketAddr::from(([127, 0, 0, 1], port)), None)
}

pub fn connect_small_rcvbuf(port: u16, rcvbuf: i32) -> TcpStream {
    connect_opts(SocketAddr::from(([127, 0, 0, 1], port)), Some(rcvbuf))
}

/// SO_LINGER {1, 0}: close() then sends a RST.
pub fn set_linger0(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and a pointer to a live linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// Resets the connection (RST) by closing with SO_LINGER 0.
pub fn reset(s: TcpStream) {
    set_linger0(&s);
    drop(s);
}

// ---------------------------------------------------------------------------------------------
// a tiny HTTP/1.x response parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// no body by rule (HEAD, 1xx, 204, 304)
    NoBody,
    ContentLength,
    Chunked,
    /// close-delimited
    Close,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// the status line as received, without CRLF
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// chunk sizes in order (the last one is 0) when chunked
    pub chunks: Vec<usize>,
    pub framing: Framing,
    /// the raw bytes of this response (head and framed body)
    pub raw: Vec<u8>,
    pub head_len: usize,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.raw[..self.head_len]).into_owned()
    }
    /// Whether the response says the connection closes.
    pub fn conn_close(&self) -> bool {
        self.header("Connection")
            .map(|v| v.to_ascii_lowercase().contains("close"))
            .unwrap_or(false)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response from the start of `buf`. `head_request`: the request was HEAD.
/// `eof`: no more bytes will come (completes close-delimited bodies).
/// Ok(None): incomplete. Err: malformed.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    eof: bool,
) -> Result<Option<Response>, String> {
    let Some(he) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 1 << 20 {
            return Err("head larger than 1 MiB".into());
        }
        return Ok(None);
    };
    let head_len = he + 4;
    let head = std::str::from_utf8(&buf[..he]).map_err(|_| "head not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let mut sp = status_line.splitn(3, ' ');
    let version = sp.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let code = sp
        .next()
        .ok_or_else(|| format!("no status in {status_line:?}"))?;
    if code.len() != 3 {
        return Err(format!("bad status code in {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status code in {status_line:?}"))?;
    let reason = sp.next().map(|s| s.to_string());
    let Some(reason) = reason else {
        return Err(format!(
            "status line without the SP before the reason: {status_line:?}"
        ));
    };
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| format!("bad header line {l:?}"))?;
        if n.is_empty() || n.contains(' ') || n.contains('\t') {
            return Err(format!("bad header name in {l:?}"));
        }
        headers.push((
            n.to_string(),
            v.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    let mut resp = Response {
        version,
        status,
        reason,
        status_line,
        headers,
        body: Vec::new(),
        chunks: Vec::new(),
        framing: Framing::NoBody,
        raw: Vec::new(),
        head_len,
    };
    let te = resp
        .header("Transfer-Encoding")
        .map(|s| s.to_ascii_lowercase());
    let cl = resp.header("Content-Length").map(|s| s.to_string());
    let rest = &buf[head_len..];
    let total;
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        resp.framing = Framing::NoBody;
        total = head_len;
    } else if let Some(te) = te {
        if !te.ends_with("chunked") {
            return Err(format!("unexpected Transfer-Encoding {te:?}"));
        }
        resp.framing = Framing::Chunked;
        let mut pos = 0usize;
        loop {
            let Some(le) = find(&rest[pos..], b"\r\n") else {
                return Ok(None);
            };
            let line = std::str::from_utf8(&rest[pos..pos + le])
                .map_err(|_| "chunk size not UTF-8".to_string())?;
            let hex = line.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            pos += le + 2;
            resp.chunks.push(size);
            if size == 0 {
                // trailers until an empty line
                loop {
                    let Some(le) = find(&rest[pos..], b"\r\n") else {
                        return Ok(None);
                    };
                    pos += le + 2;
                    if le == 0 {
                        break;
                    }
                }
                break;
            }
            if rest.len() < pos + size + 2 {
                return Ok(None);
            }
            resp.body.extend_from_slice(&rest[pos..pos + size]);
            if &rest[pos + size..pos + size + 2] != b"\r\n" {
                return Err(format!("chunk of {size} bytes not followed by CRLF"));
            }
            pos += size + 2;
        }
        total = head_len + pos;
    } else if let Some(cl) = cl {
        let n: usize = cl
            .trim()
            .parse()
            .map_err(|_| format!("bad Content-Length {cl:?}"))?;
        if rest.len() < n {
            return Ok(None);
        }
        resp.framing = Framing::ContentLength;
        resp.body = rest[..n].to_vec();
        total = head_len + n;
    } else {
        resp.framing = Framing::Close;
        if !eof {
            return Ok(None);
        }
        resp.body = rest.to_vec();
        total = buf.len();
    }
    resp.raw = buf[..total].to_vec();
    Ok(Some(resp))
}

/// A client connection with a receive buffer.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub eof: bool,
    /// a read error that ended the stream (ECONNRESET...)
    pub error: Option<io::ErrorKind>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
            error: None,
        }
    }
    pub fn open(port: u16) -> Conn {
        Conn::new(connect(port))
    }
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }
    pub fn send_str(&mut self, s: &str) {
        self.send(s.as_bytes())
    }

    /// One read with a bound; returns the number of bytes read (0 at EOF or timeout).
    pub fn read_some(&mut self, timeout: Duration) -> usize {
        if self.eof {
            return 0;
        }
        let t = if timeout.is_zero() {
            Duration::from_millis(1)
        } else {
            timeout
        };
        self.stream.set_read_timeout(Some(t)).unwrap();
        let mut tmp = vec![0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                0
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                0
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => {
                self.eof = true;
                self.error = Some(e.kind());
                0
            }
        }
    }

    /// Reads one response (consuming it from the buffer). Err with the bytes seen on timeout,
    /// EOF before completion or a parse error.
    pub fn try_read_response(
        &mut self,
        head_request: bool,
        timeout: Duration,
    ) -> Result<Response, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match parse_response(&self.buf, head_request, self.eof) {
                Ok(Some(r)) => {
                    self.buf.drain(..r.raw.len());
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(format!(
                        "{e}; bytes: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
            if self.eof {
                return Err(format!(
                    "connection ended ({:?}) before a complete response; bytes: {:?}",
                    self.error,
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "timeout waiting for a response; bytes: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            self.read_some((deadline - now).min(Duration::from_millis(500)));
        }
    }

    pub fn read_response(&mut self, head_request: bool) -> Response {
        self.try_read_response(head_request, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads until `pred(buf)` holds, EOF or timeout; returns whether pred held.
    pub fn read_until<F: Fn(&[u8]) -> bool>(&mut self, pred: F, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.buf) {
                return true;
            }
            let now = Instant::now();
            if self.eof || now >= deadline {
                return false;
            }
            self.read_some((deadline - now).min(Duration::from_millis(500)));
        }
    }

    /// Reads until EOF (or timeout); returns whether EOF was seen.
    pub fn read_to_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.read_some((deadline - now).min(Duration::from_millis(500)));
        }
        true
    }

    /// Whether the peer closed the connection (EOF or reset) within `timeout`, with no more
    /// bytes arriving than those returned.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.read_to_eof(timeout)
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Sends `bytes` on a fresh connection and returns the raw bytes of one complete response, or
/// everything until close.
pub fn request(port: u16, bytes: &[u8]) -> Vec<u8> {
    let head = bytes.starts_with(b"HEAD ");
    let mut c = Conn::open(port);
    c.send(bytes);
    match c.try_read_response(head, IO_TIMEOUT) {
        Ok(r) => r.raw,
        Err(_) => c.buf,
    }
}

/// GET `path` over HTTP/1.1 on a fresh connection.
pub fn get(port: u16, path: &str) -> Response {
    let mut c = Conn::open(port);
    c.send_str(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
    c.read_response(false)
}

pub fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// The pattern of /t/loop-big and /t/pool/big: byte i = i % 251. Returns the first mismatch.
pub fn check_pattern(body: &[u8], start: usize) -> Option<usize> {
    body.iter()
        .enumerate()
        .position(|(i, b)| *b != ((start + i) % 251) as u8)
}

pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::ENOEXEC => "ENOEXEC",
        libc::EADDRINUSE => "EADDRINUSE",
        _ => "?",
    }
}

pub fn is_ip_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
