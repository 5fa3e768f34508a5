//! The tests' TLS clients that are not rustls: tests/tls_client.py (Python's ssl module, that
//! is OpenSSL), driven over its stdin and stdout, and curl. Shared by tests/tls.rs and tests/httpsrvd_cli.rs
//! (`#[path]`-included); every read is bounded by the script's own socket timeout.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("tls_client.py")
}

pub fn json_field(line: &str, key: &str) -> Option<String> {
    // The client writes flat JSON objects; a small reader for its string and number fields.
    let pat = format!("\"{key}\": ");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    c => out.push(c),
                },
                c => out.push(c),
            }
        }
        None
    } else {
        Some(
            rest.chars()
                .take_while(|c| !matches!(c, ',' | '}'))
                .collect::<String>()
                .trim()
                .to_string(),
        )
    }
}

pub fn fingerprint(cert: &Path) -> String {
    let out = Command::new("python3")
        .arg(client_script())
        .args(["fingerprint", cert.to_str().unwrap()])
        .output()
        .expect("python3");
    json_field(&String::from_utf8_lossy(&out.stdout), "fingerprint").expect("a fingerprint")
}

// ---------------------------------------------------------------------------------------------
// the Python client

pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The "connected" line: version, cipher, alpn, cert.
    pub hello: String,
}

impl Client {
    pub fn connect(port: u16, sni: Option<&str>, version: Option<&str>) -> Client {
        let mut cmd = Command::new("python3");
        cmd.arg(client_script())
            .args(["connect", &port.to_string()]);
        if let Some(s) = sni {
            cmd.args(["--sni", s]);
        }
        if let Some(v) = version {
            cmd.args(["--tls", v]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = Client {
            child,
            stdin,
            stdout,
            hello: String::new(),
        };
        c.hello = c.line();
        assert!(
            c.hello.contains("\"connected\""),
            "handshake failed: {}",
            c.hello
        );
        c
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("client output");
        l
    }

    pub fn field(&self, key: &str) -> String {
        json_field(&self.hello, key).unwrap_or_default()
    }

    /// One request on the connection: (status, body, the response line).
    pub fn get(&mut self, path: &str) -> (u16, String, String) {
        writeln!(self.stdin, "GET {path}").unwrap();
        let l = self.line();
        let status = json_field(&l, "status")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no response to {path}: {l}"));
        (status, json_field(&l, "body").unwrap_or_default(), l)
    }

    /// Pipelined `POST /t/echo` requests with bodies of `sizes` bytes (chunked or with a
    /// Content-Length), sent while the answers are read: how many came back whole, and the
    /// client's report.
    pub fn posts(&mut self, sizes: &[usize], chunked: bool) -> (usize, String) {
        let list: Vec<String> = sizes.iter().map(|n| n.to_string()).collect();
        let mode = if chunked { " chunked" } else { "" };
        writeln!(self.stdin, "POSTS {}{mode}", list.join(",")).unwrap();
        let l = self.line();
        let ok = json_field(&l, "ok")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no report of the uploads: {l}"));
        (ok, l)
    }

    /// Reads to the end: whether it ended with close_notify.
    pub fn eof_clean(&mut self) -> bool {
        writeln!(self.stdin, "EOF").unwrap();
        let l = self.line();
        assert!(l.contains("\"eof\""), "{l}");
        l.contains("\"clean\": true")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "QUIT");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl did: its exit code and output.
pub struct Curl {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `curl https://NAME:PORT/PATH` with NAME resolved to 127.0.0.1 and `ca` the only trusted
/// certificate, so it succeeds only when the server sends that certificate for NAME.
pub fn curl_https(port: u16, name: &str, ca: &Path, path: &str) -> Curl {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca.to_str().expect("a UTF-8 path"),
        ])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    Curl {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
