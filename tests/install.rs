//! `make install` into a temporary prefix, then use what it installed the way a C programmer
//! would: the files and symlinks, the soname, `pkg-config`, a module compiled with the installed
//! flags, and C programs linked against the installed shared and static libraries that serve
//! one request each over 127.0.0.1.
//!
//! `make install` runs `cargo build --release`; while another cargo holds the build directory it
//! waits for cargo's lock, so every wait here is bounded generously. Without `make` the test
//! prints a notice and passes; without `readelf` and `objdump` the soname check is skipped.

#[path = "common/tempdir.rs"]
mod tempdir;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tempdir::TempDir;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");
/// `make install` may compile the release build and wait for other cargo runs to finish.
const MAKE_TIMEOUT: Duration = Duration::from_secs(1200);
const CC_TIMEOUT: Duration = Duration::from_secs(120);
const TIMEOUT: Duration = Duration::from_secs(10);

/// The first executable `name` on PATH.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The C compiler: `$CC` (a plain command name or path), else `cc`.
fn c_compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty() && !cc.contains(' '))
        .unwrap_or_else(|| "cc".to_string())
}

struct Ran {
    success: bool,
    output: String,
}

/// Runs `cmd` in a process group of its own with stdin closed and its output in a file (no
/// pipe can fill up), for at most `limit`; past that the whole group is killed and the test
/// fails with the output so far.
fn run_bounded(cmd: &mut Command, scratch: &Path, limit: Duration) -> Ran {
    let log_path = scratch.join(format!(
        "cmd-{}.log",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let log = std::fs::File::create(&log_path).expect("create command log");
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let pgid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: kill(2) on the process group this test created for the child.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("{described} did not finish within {limit:?}; output:\n{output}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    Ran {
        success: status.success(),
        output,
    }
}

/// `make -C <repo> ARGS...` with a clean make environment (no jobserver of an outer make).
fn make(args: &[&OsStr], scratch: &Path) -> Ran {
    let mut cmd = Command::new("make");
    cmd.arg("--no-print-directory")
        .arg("-C")
        .arg(MANIFEST_DIR)
        .args(args)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    run_bounded(&mut cmd, scratch, MAKE_TIMEOUT)
}

fn must_succeed(ran: Ran, what: &str) -> String {
    assert!(ran.success, "{what} failed:\n{}", ran.output);
    ran.output
}

fn have_make() -> bool {
    if find_tool("make").is_some() {
        return true;
    }
    println!("NOTICE: make is not installed; skipping the make install test");
    false
}

/// `PREFIX=... [DESTDIR=...]` as make arguments. LDCONFIG=: keeps a root test run from
/// refreshing the system's linker cache.
fn install_args(prefix: &Path, destdir: Option<&Path>) -> Vec<std::ffi::OsString> {
    let mut args = vec!["install".into(), "LDCONFIG=:".into()];
    let mut p = std::ffi::OsString::from("PREFIX=");
    p.push(prefix);
    args.push(p);
    if let Some(destdir) = destdir {
        let mut d = std::ffi::OsString::from("DESTDIR=");
        d.push(destdir);
        args.push(d);
    }
    args
}

fn as_os(args: &[std::ffi::OsString]) -> Vec<&OsStr> {
    args.iter().map(|a| a.as_os_str()).collect()
}

/// Checks the installed tree under `root` (PREFIX, or DESTDIR+PREFIX) for a PREFIX of
/// `prefix`, and returns the path of the real shared library.
fn check_tree(root: &Path, prefix: &Path) -> PathBuf {
    let lib = root.join("lib");
    let real_name = format!("libhttpsrv.so.{VERSION}");
    let soname = format!("libhttpsrv.so.{MAJOR}");

    let real = lib.join(&real_name);
    let meta = std::fs::symlink_metadata(&real)
        .unwrap_or_else(|e| panic!("{} missing: {e}", real.display()));
    assert!(meta.is_file(), "{} is not a regular file", real.display());
    assert!(meta.len() > 0, "{} is empty", real.display());
    let elf = std::fs::read(&real).expect("read the shared library");
    assert!(elf.starts_with(b"\x7fELF"), "{} is not ELF", real.display());

    // The symlinks are relative, so the tree works wherever DESTDIR puts it.
    for (link, expected_target) in [
        (&soname, &real_name),
        (&"libhttpsrv.so".to_string(), &soname),
    ] {
        let path = lib.join(link);
        let target = std::fs::read_link(&path)
            .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", path.display()));
        assert!(
            target.is_relative(),
            "{} -> {} is absolute",
            path.display(),
            target.display()
        );
        assert!(
            target == Path::new(expected_target) || target == Path::new(&real_name),
            "{} -> {}, expected {expected_target}",
            path.display(),
            target.display()
        );
        assert_eq!(
            std::fs::canonicalize(&path).expect("resolve symlink"),
            std::fs::canonicalize(&real).expect("resolve real file"),
            "{} does not lead to {real_name}",
            path.display()
        );
    }

    let archive = std::fs::read(lib.join("libhttpsrv.a")).expect("lib/libhttpsrv.a");
    assert!(
        archive.starts_with(b"!<arch>\n"),
        "libhttpsrv.a is not an ar archive"
    );

    let header =
        std::fs::read_to_string(root.join("include/httpsrv.h")).expect("include/httpsrv.h");
    for needle in [
        "HTTPSRV_ABI_VERSION",
        "httpsrv_server_new",
        "httpsrv_response_flush",
        "httpsrv_server_stats",
    ] {
        assert!(
            header.contains(needle),
            "{needle} missing from the installed header"
        );
    }

    let daemon = root.join("bin/httpsrvd");
    let mode = daemon
        .metadata()
        .unwrap_or_else(|e| panic!("{} missing: {e}", daemon.display()))
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "bin/httpsrvd is not executable");

    let pc_path = lib.join("pkgconfig/httpsrv.pc");
    let pc = std::fs::read_to_string(&pc_path).expect("lib/pkgconfig/httpsrv.pc");
    let field = |name: &str| {
        pc.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} line in httpsrv.pc:\n{pc}"))
    };
    assert_eq!(
        field("prefix="),
        prefix.to_str().expect("UTF-8 prefix"),
        "{pc}"
    );
    assert_eq!(field("Version:"), VERSION, "{pc}");
    assert_eq!(field("Libs:"), "-L${libdir} -lhttpsrv", "{pc}");
    assert_eq!(field("Libs.private:"), "-lpthread -ldl -lm", "{pc}");
    assert_eq!(field("Cflags:"), "-I${includedir}", "{pc}");
    assert!(
        !pc.contains('@'),
        "unreplaced placeholder in httpsrv.pc:\n{pc}"
    );
    real
}

/// The SONAME of an ELF shared object per `readelf -d` or `objdump -p`; `None` when neither
/// tool is installed.
fn soname_of(path: &Path, scratch: &Path) -> Option<String> {
    if find_tool("readelf").is_some() {
        let out = must_succeed(
            run_bounded(
                Command::new("readelf").arg("-d").arg(path),
                scratch,
                TIMEOUT,
            ),
            "readelf -d",
        );
        // 0x000000000000000e (SONAME)             Library soname: [libhttpsrv.so.0]
        let line = out.lines().find(|l| l.contains("(SONAME)"))?;
        let start = line.find('[')? + 1;
        let end = line.rfind(']')?;
        return Some(line[start..end].to_string());
    }
    if find_tool("objdump").is_some() {
        let out = must_succeed(
            run_bounded(
                Command::new("objdump").arg("-p").arg(path),
                scratch,
                TIMEOUT,
            ),
            "objdump -p",
        );
        //   SONAME               libhttpsrv.so.0
        let line = out.lines().find(|l| l.trim_start().starts_with("SONAME"))?;
        return line.split_whitespace().nth(1).map(str::to_string);
    }
    println!("NOTICE: neither readelf nor objdump is installed; skipping the soname check");
    None
}

/// `pkg-config ARGS httpsrv` against the installed .pc only.
fn pkg_config(pc_dir: &Path, args: &[&str], scratch: &Path) -> String {
    let mut cmd = Command::new("pkg-config");
    cmd.args(args)
        .arg("httpsrv")
        .env("PKG_CONFIG_PATH", pc_dir)
        .env_remove("PKG_CONFIG_SYSROOT_DIR");
    let out = must_succeed(run_bounded(&mut cmd, scratch, TIMEOUT), "pkg-config");
    out.trim().to_string()
}

const MODULE_C: &str = r#"/* A module built with the installed header and pkg-config flags. */
#include <stdio.h>
#include <string.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

static char greeting[128];

static int from_module(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    if (err == 0)
        err = httpsrv_response_append(sess, greeting, strlen(greeting));
    return err == 0 ? HTTPSRV_DONE : -1;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    snprintf(greeting, sizeof greeting, "module args=%s\n", args != NULL ? args : "(none)");
    return httpsrv_server_route(srv, "GET", "/from-module", 0, from_module, NULL);
}
"#;

const HOST_C: &str = r#"/* A program linked with -lhttpsrv: serves GET /hello (and the routes of the module named
 * by argv[1], if any) on 127.0.0.1:0, prints the port, and stops when stdin closes. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <unistd.h>

#include "httpsrv.h"

static int hello(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    static const char body[] = "hello from a program linked with libhttpsrv\n";
    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    if (err == 0)
        err = httpsrv_response_append(sess, body, sizeof body - 1);
    return err == 0 ? HTTPSRV_DONE : -1;
}

#define CHECK(call)                                                     \
    do {                                                                \
        int err_ = (call);                                              \
        if (err_ != 0) {                                                \
            fprintf(stderr, "%s: %s\n", #call, httpsrv_strerror(err_)); \
            return 1;                                                   \
        }                                                               \
    } while (0)

int main(int argc, char **argv)
{
    alarm(60); /* never outlive a test that went wrong */
    httpsrv_server *srv = httpsrv_server_new();
    if (srv == NULL)
        return 1;
    CHECK(httpsrv_server_set(srv, "threads", "1"));
    CHECK(httpsrv_server_listen(srv, "127.0.0.1:0"));
    CHECK(httpsrv_server_route(srv, "GET", "/hello", 0, hello, NULL));
    if (argc > 1)
        CHECK(httpsrv_server_load_module(srv, argv[1], "from-the-host"));
    CHECK(httpsrv_server_start(srv));
    printf("version %s\nport %d\n", httpsrv_version(), httpsrv_server_port(srv, 0));
    fflush(stdout);

    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    CHECK(httpsrv_server_stop(srv, 1000));
    httpsrv_server_free(srv);
    puts("stopped");
    return 0;
}
"#;

/// A running C host; killed and reaped when dropped, unless it already exited.
struct HostGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET target` on a fresh connection with `Connection: close`; the status line and the body.
fn get(port: u16, target: &str) -> (String, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    conn.set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    conn.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("send request");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// Runs the compiled host (with `LD_LIBRARY_PATH` when given and the module when given),
/// checks it answers on its port, then closes its stdin and expects a clean exit. Returns the
/// host's memory map while it served, to tell which library it ran with.
fn exercise_host(host: &Path, ld_library_path: Option<&Path>, module: Option<&Path>) -> String {
    let mut cmd = Command::new(host);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("LD_PRELOAD");
    match ld_library_path {
        Some(dir) => cmd.env("LD_LIBRARY_PATH", dir),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    if let Some(module) = module {
        cmd.arg(module);
    }
    let mut child = cmd.spawn().expect("run the C host");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut guard = HostGuard {
        stdin: child.stdin.take(),
        child,
    };
    let (err_tx, err_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = err_tx.send(text);
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_text = |rx: &mpsc::Receiver<String>| rx.recv_timeout(TIMEOUT).unwrap_or_default();

    let mut port = None;
    let deadline = Instant::now() + TIMEOUT;
    while port.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(v) = line.strip_prefix("version ") {
                    assert_eq!(v, VERSION, "httpsrv_version() of the installed library");
                }
                port = line
                    .strip_prefix("port ")
                    .and_then(|p| p.parse::<u16>().ok());
            }
            Err(_) => {
                let _ = guard.child.kill();
                panic!(
                    "{} printed no port; stderr:\n{}",
                    host.display(),
                    stderr_text(&err_rx)
                );
            }
        }
    }
    let port = port.expect("port");
    assert_ne!(port, 0);

    let maps =
        std::fs::read_to_string(format!("/proc/{}/maps", guard.child.id())).unwrap_or_default();

    let (status, body) = get(port, "/hello");
    assert!(status.starts_with("HTTP/1.1 200"), "/hello: {status}");
    assert_eq!(body, "hello from a program linked with libhttpsrv\n");
    if module.is_some() {
        let (status, body) = get(port, "/from-module");
        assert!(status.starts_with("HTTP/1.1 200"), "/from-module: {status}");
        assert_eq!(body, "module args=from-the-host\n");
    }
    let (status, _) = get(port, "/nope");
    assert!(status.starts_with("HTTP/1.1 404"), "/nope: {status}");

    // Closing stdin asks the host to stop; it must exit cleanly and in time.
    drop(guard.stdin.take());
    let deadline = Instant::now() + TIMEOUT;
    let exit = loop {
        if let Some(status) = guard.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the C host did not stop");
        thread::sleep(Duration::from_millis(20));
    };
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(TIMEOUT) {
        rest.push(line);
    }
    assert!(
        exit.success(),
        "the C host exited with {exit}; stderr:\n{}",
        stderr_text(&err_rx)
    );
    assert_eq!(rest, ["stopped"], "the C host's last output");
    maps
}

#[test]
fn make_install_then_build_and_run_against_it() {
    if !have_make() {
        return;
    }
    let tmp = TempDir::new("install-prefix");
    let prefix = tmp.0.join("usr");
    must_succeed(
        make(&as_os(&install_args(&prefix, None)), &tmp.0),
        "make install",
    );

    let real = check_tree(&prefix, &prefix);
    if let Some(soname) = soname_of(&real, &tmp.0) {
        assert_eq!(soname, format!("libhttpsrv.so.{MAJOR}"));
    }

    // The installed httpsrvd runs and knows its version.
    let mut cmd = Command::new(prefix.join("bin/httpsrvd"));
    cmd.arg("--version");
    let out = must_succeed(run_bounded(&mut cmd, &tmp.0, TIMEOUT), "httpsrvd --version");
    assert_eq!(out.trim(), format!("httpsrvd {VERSION}"));

    let cc = c_compiler();
    if find_tool(&cc).is_none() && !Path::new(&cc).is_file() {
        println!("NOTICE: no C compiler ({cc}); skipping the build against the installed files");
        return;
    }
    let pc_dir = prefix.join("lib/pkgconfig");
    let include = prefix.join("include");
    let libdir = prefix.join("lib");
    let flags: Vec<String> = if find_tool("pkg-config").is_some() {
        assert_eq!(pkg_config(&pc_dir, &["--modversion"], &tmp.0), VERSION);
        let static_libs = pkg_config(&pc_dir, &["--static", "--libs"], &tmp.0);
        for lib in ["-lhttpsrv", "-lpthread", "-ldl", "-lm"] {
            assert!(static_libs.contains(lib), "{lib} missing: {static_libs}");
        }
        let flags = pkg_config(&pc_dir, &["--cflags", "--libs"], &tmp.0);
        let expected = format!("-I{} -L{} -lhttpsrv", include.display(), libdir.display());
        assert_eq!(
            flags.split_whitespace().collect::<Vec<_>>().join(" "),
            expected
        );
        flags.split_whitespace().map(str::to_string).collect()
    } else {
        println!("NOTICE: pkg-config is not installed; using -I/-L flags by hand");
        vec![
            format!("-I{}", include.display()),
            format!("-L{}", libdir.display()),
            "-lhttpsrv".to_string(),
        ]
    };

    // A module, compiled exactly as the brief for module authors says.
    let module_src = tmp.0.join("module.c");
    std::fs::write(&module_src, MODULE_C).expect("write module.c");
    let module = tmp.0.join("module.so");
    let mut cmd = Command::new(&cc);
    cmd.arg(&module_src)
        .arg("-o")
        .arg(&module)
        .args(&flags)
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"]);
    must_succeed(
        run_bounded(&mut cmd, &tmp.0, CC_TIMEOUT),
        "compiling the module",
    );

    // A program linked with the installed shared library (the source before -l, so linkers
    // that default to --as-needed keep the library).
    let host_src = tmp.0.join("host.c");
    std::fs::write(&host_src, HOST_C).expect("write host.c");
    let host = tmp.0.join("host");
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(&host_src)
        .arg("-o")
        .arg(&host)
        .args(&flags);
    must_succeed(
        run_bounded(&mut cmd, &tmp.0, CC_TIMEOUT),
        "linking the host",
    );
    if find_tool("readelf").is_some() {
        let mut cmd = Command::new("readelf");
        cmd.arg("-d").arg(&host);
        let out = must_succeed(run_bounded(&mut cmd, &tmp.0, TIMEOUT), "readelf -d host");
        let needed = format!("Shared library: [libhttpsrv.so.{MAJOR}]");
        assert!(
            out.contains(&needed),
            "the host does not need the soname:\n{out}"
        );
    }
    let maps = exercise_host(&host, Some(&libdir), Some(&module));
    let real_canon = std::fs::canonicalize(&real).expect("canonical library path");
    assert!(
        maps.contains(real_canon.to_str().expect("UTF-8 path")),
        "the host did not run with the installed {}:\n{maps}",
        real_canon.display()
    );

    // The same program linked with the static library and Libs.private: it needs nothing at
    // run time but libc (and libgcc_s, which the compiler adds).
    let static_host = tmp.0.join("host-static");
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", include.display()))
        .arg(&host_src)
        .arg("-o")
        .arg(&static_host)
        .arg(libdir.join("libhttpsrv.a"))
        .args(["-lpthread", "-ldl", "-lm"]);
    must_succeed(
        run_bounded(&mut cmd, &tmp.0, CC_TIMEOUT),
        "linking the host with libhttpsrv.a",
    );
    let maps = exercise_host(&static_host, None, None);
    assert!(
        !maps.contains("libhttpsrv.so"),
        "the static host loaded a shared libhttpsrv:\n{maps}"
    );
}

#[test]
fn make_install_honours_destdir_and_uninstall_removes_it() {
    if !have_make() {
        return;
    }
    let tmp = TempDir::new("install-destdir");
    let stage = tmp.0.join("stage");
    let prefix = Path::new("/opt/httpsrv-test");
    must_succeed(
        make(&as_os(&install_args(prefix, Some(&stage))), &tmp.0),
        "make install DESTDIR=...",
    );
    let root = stage.join("opt/httpsrv-test");
    check_tree(&root, prefix);
    assert!(
        !prefix.exists(),
        "make install wrote outside DESTDIR: {} exists",
        prefix.display()
    );

    let mut args = install_args(prefix, Some(&stage));
    args[0] = "uninstall".into();
    must_succeed(make(&as_os(&args), &tmp.0), "make uninstall DESTDIR=...");
    let mut left = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else {
                left.push(path);
            }
        }
    }
    assert!(left.is_empty(), "make uninstall left {left:?}");
}
