//! A real browser against the server-sent-events demo: headless Chromium, driven through
//! chromedriver (WebDriver over HTTP on 127.0.0.1), opens `/sse.html` from `c_examples/sse.c`
//! served by `httpsrvd`, and the test checks that the ten events arrived one by one, 300 ms
//! apart, not in a burst at the end: once plain (`/events`) and once gzip-compressed
//! (`/events-gzip`). A raw socket check confirms that `/events-gzip` really is gzip and that
//! every event can be decoded as soon as it arrives.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them); without
//! them the browser part prints a notice and passes. The browser talks to 127.0.0.1 only:
//! every other host name fails to resolve and every other address goes to a closed proxy.

#[path = "common/tempdir.rs"]
mod tempdir;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tempdir::TempDir;

const HTTPSRVD: &str = env!("CARGO_BIN_EXE_httpsrvd");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const TIMEOUT: Duration = Duration::from_secs(10);
/// Starting the browser on a busy machine can take a while.
const BROWSER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// The page needs about 3 s for its ten events.
const TITLE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the demo serves by default (sse.c): 10 events, 300 ms apart.
const EVENTS: usize = 10;
const INTERVAL_MS: i64 = 300;

// ---------------------------------------------------------------------------------------------
// Temporary files and processes, all cleaned up on drop.

/// Kills and reaps a child (and, for a group leader, its whole process group) when dropped.
struct ChildGuard {
    child: Child,
    group: bool,
}

impl ChildGuard {
    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.group {
                if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
                    // SAFETY: kill(2) on the process group this test created for the child.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first executable `name` on PATH.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads lines from `pipe` on a thread and sends them; the channel closes at end of file.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (until `deadline`) for a line from `rx` for which `pick` returns a value.
fn wait_for_line<T>(
    rx: &mpsc::Receiver<String>,
    deadline: Instant,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> Result<T, Vec<String>> {
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(value) = pick(&line) {
                    return Ok(value);
                }
                seen.push(line);
            }
            Err(_) => return Err(seen),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server: httpsrvd with sse.c compiled here, as scripts/demo.sh compiles it.

struct DemoServer {
    _guard: ChildGuard,
    port: u16,
}

fn start_demo(dir: &Path) -> DemoServer {
    let cc = std::env::var("CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty())
        .unwrap_or_else(|| "gcc".to_string());
    let module = dir.join("sse.so");
    let root = Path::new(MANIFEST_DIR);
    let out = Command::new(&cc)
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-O2", "-pthread",
        ])
        .arg(format!("-I{}", root.join("include").display()))
        .arg("-o")
        .arg(&module)
        .arg(root.join("c_examples/sse.c"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling c_examples/sse.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(HTTPSRVD)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--module")
        .arg(&module)
        .args(["--grace-ms", "500"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn httpsrvd");
    let stdout = child.stdout.take().expect("stdout");
    let guard = ChildGuard {
        child,
        group: false,
    };
    let rx = lines_of(stdout);
    let port = wait_for_line(&rx, Instant::now() + TIMEOUT, |line| {
        line.strip_prefix("httpsrvd listening on http://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|port| port.parse::<u16>().ok())
    })
    .unwrap_or_else(|seen| panic!("httpsrvd printed no listening line: {seen:?}"));
    DemoServer {
        _guard: guard,
        port,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP: the gzip stream, byte by byte.

/// Decodes as much of a chunked body as has arrived: the payload so far, and whether the last
/// chunk was seen. Panics on malformed framing.
fn dechunk(body: &[u8]) -> (Vec<u8>, bool) {
    let mut payload = Vec::new();
    let mut rest = body;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (payload, false);
        };
        let line = std::str::from_utf8(&rest[..eol]).expect("chunk size line is ASCII");
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        let data = &rest[eol + 2..];
        if size == 0 {
            // Last chunk: no trailers expected, just the final CRLF.
            return (payload, data.starts_with(b"\r\n"));
        }
        if data.len() < size + 2 {
            return (payload, false);
        }
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk not followed by CRLF");
        payload.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

/// `/events-gzip` with `Accept-Encoding: gzip` is gzip on the wire, and every event can be
/// decoded from the bytes received when it is due, not only at the end of the stream.
#[test]
fn events_gzip_is_gzip_and_decodes_event_by_event() {
    let tmp = TempDir::new("browser-raw");
    let server = start_demo(&tmp.0);
    let (count, interval) = (4usize, 300u64);

    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    conn.set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    let request = format!(
        "GET /events-gzip?count={count}&interval={interval} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Accept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    );
    let t0 = Instant::now();
    conn.write_all(request.as_bytes()).expect("send request");

    let mut raw = Vec::new();
    let mut head_end = None;
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut fed = 0;
    // When each event became decodable, in ms after the request.
    let mut decoded_at: Vec<u128> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = t0 + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "the stream did not end in time");
        let n = conn.read(&mut buf).expect("read the stream");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if head_end.is_none() {
            head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        }
        let Some(start) = head_end else { continue };
        let (payload, _) = dechunk(&raw[start..]);
        decoder
            .write_all(&payload[fed..])
            .expect("valid gzip so far");
        decoder.flush().expect("flush the decoder");
        fed = payload.len();
        let text = String::from_utf8_lossy(decoder.get_ref()).into_owned();
        while decoded_at.len() < count
            && text.contains(&format!("data: tick {}\n\n", decoded_at.len() + 1))
        {
            decoded_at.push(t0.elapsed().as_millis());
        }
    }

    let start = head_end.expect("a response head");
    let head = String::from_utf8_lossy(&raw[..start]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    for field in [
        "content-encoding: gzip",
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "vary: accept-encoding",
    ] {
        assert!(
            head.lines().any(|l| l.trim() == field),
            "{field} missing:\n{head}"
        );
    }
    let (payload, complete) = dechunk(&raw[start..]);
    assert!(complete, "no last chunk");
    assert_eq!(
        &payload[..2],
        b"\x1f\x8b",
        "the body does not start like gzip"
    );
    let text =
        String::from_utf8(decoder.finish().expect("a complete gzip stream")).expect("UTF-8 events");
    let expected: String = (1..=count).map(|i| format!("data: tick {i}\n\n")).collect();
    assert_eq!(text, expected);

    // Event i is sent (i - 1) * interval ms after the first one. If the compressor held data
    // back, the early events would only become decodable at the end.
    assert_eq!(decoded_at.len(), count, "{decoded_at:?}");
    let last_due = (count as u128 - 1) * u128::from(interval);
    assert!(
        decoded_at[count - 1] - decoded_at[0] >= last_due / 2,
        "events became decodable at {decoded_at:?} ms, not about {interval} ms apart"
    );
    for pair in decoded_at.windows(2) {
        assert!(
            pair[1] - pair[0] >= u128::from(interval) / 3,
            "events became decodable at {decoded_at:?} ms: a burst, not one by one"
        );
    }

    // Without Accept-Encoding the same stream is plain.
    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    conn.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    conn.write_all(
        b"GET /events-gzip?count=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .expect("send request");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(!text.contains("content-encoding"), "{text}");
    assert!(text.contains("data: tick 1\n\n"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A minimal JSON reader for chromedriver's answers.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let value = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(value)
    }
}

/// JSON text for a string.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, self.i))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".to_string()),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    members.push((key, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad number at {start}"))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let text = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|_| "bad \\u escape".to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string".to_string());
            };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| "bad UTF-8".to_string()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated escape".to_string());
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xd800..0xdc00).contains(&code)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                code =
                                    0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00));
                            }
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    };
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

#[test]
fn json_reader_reads_what_chromedriver_sends() {
    let v = Json::parse(
        r#"{"value":{"sessionId":"ab\"c","capabilities":{"n":1.5e1,"ok":true,"x":null}},
            "list":[["12","tick 1"],[],{}],"u":"\u00e9\ud83d\ude00"}"#,
    )
    .unwrap();
    let value = v.get("value").unwrap();
    assert_eq!(value.get("sessionId").and_then(Json::as_str), Some("ab\"c"));
    let caps = value.get("capabilities").unwrap();
    assert_eq!(caps.get("n"), Some(&Json::Num(15.0)));
    assert_eq!(caps.get("ok"), Some(&Json::Bool(true)));
    assert_eq!(caps.get("x"), Some(&Json::Null));
    assert_eq!(v.get("u").and_then(Json::as_str), Some("é😀"));
    assert!(matches!(v.get("list"), Some(Json::Arr(items)) if items.len() == 3));
    assert!(Json::parse("{\"a\":}").is_err());
    assert_eq!(json_str("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
}

// ---------------------------------------------------------------------------------------------
// chromedriver and headless Chromium.

/// The Chromium binary: Debian's real one (not the /usr/bin/chromium wrapper script, which adds
/// flags and extensions of its own), else whatever `chromium` is on PATH.
fn find_chromium() -> Option<PathBuf> {
    let debian = Path::new("/usr/lib/chromium/chromium");
    if is_executable(debian) {
        return Some(debian.to_path_buf());
    }
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| find_tool(name))
}

/// A chromedriver with one browser session; on drop the session is deleted (Chromium quits),
/// then chromedriver's process group is killed, then any process still using this run's
/// profile directory (a Chromium helper that escaped the group) is killed by its pid.
struct Browser {
    driver: ChildGuard,
    port: u16,
    session: Option<String>,
    profile: PathBuf,
    log: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.request("DELETE", &format!("/session/{id}"), None, TIMEOUT);
        }
        self.driver.kill();
        kill_processes_using(&self.profile);
    }
}

/// Kills every process whose command line mentions `marker` (this run's unique profile
/// directory): only processes this test started carry it.
fn kill_processes_using(marker: &Path) {
    let Some(marker) = marker.to_str() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            // SAFETY: kill(2) on a process of this test run, identified by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    fn start(chromedriver: &Path, chromium: &Path, dir: &Path) -> Browser {
        let profile = dir.join("profile");
        let home = dir.join("home");
        std::fs::create_dir_all(&profile).expect("profile dir");
        std::fs::create_dir_all(&home).expect("home dir");
        let log = dir.join("chromedriver.log");
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .arg("--allowed-ips=127.0.0.1")
            // Chromium writes caches and settings under HOME; keep them in the temp dir.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let stdout = child.stdout.take().expect("stdout");
        let mut browser = Browser {
            driver: ChildGuard { child, group: true },
            port: 0,
            session: None,
            profile: profile.clone(),
            log,
        };
        let rx = lines_of(stdout);
        // "ChromeDriver was started successfully on port 40231."
        browser.port = wait_for_line(&rx, Instant::now() + TIMEOUT, |line| {
            line.split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse().ok())
        })
        .unwrap_or_else(|seen| panic!("chromedriver did not report its port: {seen:?}"));

        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            format!("--user-data-dir={}", profile.display()),
            "--disable-dev-shm-usage".to_string(),
            "--disable-extensions".to_string(),
            "--disable-default-apps".to_string(),
            "--no-default-browser-check".to_string(),
            "--disable-domain-reliability".to_string(),
            "--disable-client-side-phishing-detection".to_string(),
            "--disable-breakpad".to_string(),
            "--metrics-recording-only".to_string(),
            "--password-store=basic".to_string(),
            // Nothing but 127.0.0.1: no other name or address resolves, and any other
            // address goes to a proxy on a closed port (loopback always bypasses proxies).
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_string(),
            "--proxy-server=http://127.0.0.1:9".to_string(),
            "--window-size=800,600".to_string(),
        ];
        let args_json: Vec<String> = args.iter().map(|a| json_str(a)).collect();
        let body = format!(
            r#"{{"capabilities":{{"alwaysMatch":{{"goog:chromeOptions":{{"binary":{},"args":[{}]}}}}}}}}"#,
            json_str(chromium.to_str().expect("UTF-8 chromium path")),
            args_json.join(",")
        );
        let value = browser
            .request("POST", "/session", Some(&body), BROWSER_START_TIMEOUT)
            .unwrap_or_else(|e| {
                panic!("cannot start a Chromium session: {e}{}", browser.log_tail())
            });
        let id = value
            .get("sessionId")
            .and_then(Json::as_str)
            .unwrap_or_else(|| panic!("no sessionId in {value:?}"))
            .to_string();
        browser.session = Some(id);
        browser
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("\nchromedriver log (tail):\n{}", &text[start..])
    }

    /// One WebDriver command; the `value` of the answer, or the error it reports.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        limit: Duration,
    ) -> Result<Json, String> {
        let mut conn = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            TIMEOUT,
        )
        .map_err(|e| format!("connect to chromedriver: {e}"))?;
        conn.set_read_timeout(Some(limit))
            .map_err(|e| e.to_string())?;
        conn.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        conn.write_all(request.as_bytes())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        // chromedriver may keep the connection open despite `Connection: close`: the answer
        // ends where its Content-Length (or last chunk) says.
        let deadline = Instant::now() + limit;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let (head, body) = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let body = &raw[end + 4..];
                let length = head.lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                let chunked = head
                    .lines()
                    .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
                if let Some(length) = length {
                    if body.len() >= length {
                        break (head, body[..length].to_vec());
                    }
                } else if chunked {
                    let (payload, complete) = dechunk(body);
                    if complete {
                        break (head, payload);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("{method} {path}: no complete answer in {limit:?}"));
            }
            match conn.read(&mut buf) {
                Ok(0) => match raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    // Neither length nor chunks: the body ends with the connection.
                    Some(end) => {
                        break (
                            String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
                            raw[end + 4..].to_vec(),
                        )
                    }
                    None => return Err(format!("{method} {path}: connection closed early")),
                },
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("{method} {path}: {e}")),
            }
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        let status = head.split(' ').nth(1).unwrap_or("");
        let json = Json::parse(&body)
            .map_err(|e| format!("{method} {path}: {e} in {body:?} (status {status})"))?;
        let value = json.get("value").cloned().unwrap_or(Json::Null);
        if status != "200" {
            let error = value.get("error").and_then(Json::as_str).unwrap_or("?");
            let message = value.get("message").and_then(Json::as_str).unwrap_or("");
            return Err(format!("{method} {path}: {status} {error}: {message}"));
        }
        Ok(value)
    }

    fn session_path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.session.as_deref().unwrap_or(""))
    }

    fn navigate(&self, url: &str) {
        let body = format!("{{\"url\":{}}}", json_str(url));
        self.request(
            "POST",
            &self.session_path("/url"),
            Some(&body),
            BROWSER_START_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}{}", self.log_tail()));
    }

    fn title(&self) -> String {
        self.request("GET", &self.session_path("/title"), None, TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}{}", self.log_tail()))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn execute(&self, script: &str) -> Json {
        let body = format!("{{\"script\":{},\"args\":[]}}", json_str(script));
        self.request(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&body),
            TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}{}", self.log_tail()))
    }
}

/// Opens `page`, waits for the title `done`, and returns every event's (data-t, data-event).
fn events_seen(browser: &Browser, base: &str, page: &str) -> Vec<(i64, String)> {
    browser.navigate(&format!("{base}{page}"));
    let deadline = Instant::now() + TITLE_TIMEOUT;
    let mut title = browser.title();
    while title != "done" {
        if Instant::now() >= deadline {
            let status = browser.execute(
                "var s = document.getElementById('status'); return s ? s.textContent : '';",
            );
            panic!(
                "{page}: title still {title:?} after {TITLE_TIMEOUT:?} (status {status:?}); events: {:?}",
                list_events(browser)
            );
        }
        thread::sleep(Duration::from_millis(100));
        title = browser.title();
    }
    list_events(browser)
}

fn list_events(browser: &Browser) -> Vec<(i64, String)> {
    let value = browser.execute(
        "return Array.prototype.map.call(document.querySelectorAll('#events li'), \
         function (li) { return [li.getAttribute('data-t'), li.getAttribute('data-event')]; });",
    );
    let Json::Arr(items) = value else {
        panic!("not a list: {value:?}");
    };
    items
        .iter()
        .map(|item| match item {
            Json::Arr(pair) if pair.len() == 2 => {
                let t = pair[0]
                    .as_str()
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or_else(|| panic!("bad data-t in {item:?}"));
                (t, pair[1].as_str().unwrap_or("").to_string())
            }
            _ => panic!("bad item {item:?}"),
        })
        .collect()
}

/// The events arrived one by one: all ten in order, strictly increasing times spread over at
/// least half the nominal 2.7 s, and at least five gaps of 100 ms or more (a stream delivered
/// in one burst at the end would have none).
fn check_one_by_one(page: &str, events: &[(i64, String)]) {
    let names: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
    let expected: Vec<String> = (1..=EVENTS).map(|i| format!("tick {i}")).collect();
    assert_eq!(names, expected, "{page}: events {events:?}");
    let times: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] > pair[0],
            "{page}: times not strictly increasing: {times:?}"
        );
    }
    let spread = times[EVENTS - 1] - times[0];
    let nominal = (EVENTS as i64 - 1) * INTERVAL_MS;
    assert!(
        spread >= nominal / 2,
        "{page}: events arrived within {spread} ms, nominally {nominal} ms: {times:?}"
    );
    let big_gaps = times.windows(2).filter(|p| p[1] - p[0] >= 100).count();
    assert!(
        big_gaps >= 5,
        "{page}: only {big_gaps} gaps of 100 ms or more, a burst: {times:?}"
    );
    println!("{page}: event times (ms since load) {times:?}");
}

#[test]
fn chromium_receives_events_one_by_one() {
    let Some(chromedriver) = find_tool("chromedriver") else {
        println!(
            "NOTICE: chromedriver is not installed (Debian: chromium-driver); skipping the browser test"
        );
        return;
    };
    let Some(chromium) = find_chromium() else {
        println!("NOTICE: chromium is not installed; skipping the browser test");
        return;
    };
    let tmp = TempDir::new("browser-chromium");
    let server = start_demo(&tmp.0);
    let base = format!("http://127.0.0.1:{}", server.port);
    let browser = Browser::start(&chromedriver, &chromium, &tmp.0);

    for page in ["/sse.html", "/sse.html?src=/events-gzip"] {
        let events = events_seen(&browser, &base, page);
        check_one_by_one(page, &events);
    }
    let src = browser.execute("return document.getElementById('src').textContent;");
    assert_eq!(
        src.as_str(),
        Some("/events-gzip"),
        "the page used another stream"
    );
    drop(browser);
    drop(server);
}
