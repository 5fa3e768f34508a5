//! Server options (`httpsrv_server_set`): parsing and validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::body::{spool, Spill};
use crate::http::{compress, response};

/// Every option of the table in `API.md`, with its default.
#[derive(Clone, Debug)]
pub struct Config {
    pub threads: usize,
    pub pool_threads: usize,
    pub send_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u32,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
    /// A buffered request body larger than this goes to a spool file in `body_temp_dir`.
    pub body_buffer_bytes: usize,
    pub body_temp_dir: PathBuf,
    pub max_connections: usize,
    pub max_pending_bytes: usize,
    pub http10_buffering: bool,
    pub compression: bool,
    pub compression_level: u32,
    pub compression_min_length: usize,
    pub compression_types: Vec<String>,
    pub access_log: Option<String>,
    pub server_header: String,
    /// `tls_protocols`: false for `TLSv1.3` alone.
    pub tls12: bool,
    pub tls_handshake_timeout: Duration,
    pub tls_session_resumption: bool,
}

const DEFAULT_TYPES: &str = "text/html,text/plain,text/css,text/xml,application/json,\
application/javascript,application/xml,image/svg+xml";

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pool_threads: 16,
            send_timeout: Duration::from_millis(60_000),
            header_timeout: Duration::from_millis(10_000),
            body_timeout: Duration::from_millis(60_000),
            keepalive_timeout: Duration::from_millis(75_000),
            keepalive_requests: 10_000,
            max_header_bytes: 16_384,
            max_headers: 100,
            max_body_bytes: 1_048_576,
            body_buffer_bytes: 65_536,
            // $TMPDIR, else /tmp
            body_temp_dir: std::env::temp_dir(),
            max_connections: 10_000,
            max_pending_bytes: 4_194_304,
            http10_buffering: true,
            compression: true,
            compression_level: 1,
            compression_min_length: 256,
            compression_types: compress::parse_types(DEFAULT_TYPES).unwrap_or_default(),
            access_log: None,
            server_header: "httpsrv".to_string(),
            tls12: true,
            tls_handshake_timeout: Duration::from_millis(10_000),
            tls_session_resumption: true,
        }
    }
}

fn number<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| format!("option {key}: '{value}' is not a number"))?;
    if n < min || n > max {
        return Err(format!("option {key}: {n} is outside {min}..={max}"));
    }
    Ok(n)
}

fn millis(key: &str, value: &str) -> Result<Duration, String> {
    number::<u64>(key, value, 1, 86_400_000).map(Duration::from_millis)
}

fn switch(key: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "on" | "1" | "true" | "yes" => Ok(true),
        "off" | "0" | "false" | "no" => Ok(false),
        _ => Err(format!("option {key}: '{value}' is not on or off")),
    }
}

/// `TLSv1.2,TLSv1.3` (either order) or `TLSv1.3`: whether TLS 1.2 is on.
fn tls_protocols(value: &str) -> Result<bool, String> {
    let (mut tls12, mut tls13) = (false, false);
    for v in value.split(',').map(str::trim) {
        match v {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            _ => return Err(format!("option tls_protocols: unknown protocol '{v}'")),
        }
    }
    if !tls13 {
        return Err("option tls_protocols: TLSv1.3 must be on (TLSv1.2 may be added)".into());
    }
    Ok(tls12)
}

/// A directory for spool files, made absolute (a later `chdir` of the host does not move it),
/// and tried: a file is created in it and dropped, so a directory that does not exist, is
/// not a directory or does not let us create files is refused now rather than at the first
/// large upload.
fn temp_dir(key: &str, value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err(format!("option {key}: empty path"));
    }
    let dir = std::path::absolute(Path::new(value))
        .map_err(|e| format!("option {key}: '{value}': {e}"))?;
    if !dir.is_dir() {
        return Err(format!("option {key}: '{value}' is not a directory"));
    }
    spool::create_unlinked(&dir)
        .map_err(|e| format!("option {key}: cannot create files in '{value}': {e}"))?;
    Ok(dir)
}

impl Config {
    /// Where buffered request bodies larger than `body_buffer_bytes` go.
    pub fn spill(&self) -> Spill<'_> {
        Spill {
            threshold: self.body_buffer_bytes,
            dir: &self.body_temp_dir,
        }
    }

    /// Applies one option; the error text says why it was refused.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "threads" => self.threads = number(key, value, 1, 256)?,
            "pool_threads" => self.pool_threads = number(key, value, 1, 1024)?,
            "send_timeout_ms" => self.send_timeout = millis(key, value)?,
            "header_timeout_ms" => self.header_timeout = millis(key, value)?,
            "body_timeout_ms" => self.body_timeout = millis(key, value)?,
            "keepalive_timeout_ms" => self.keepalive_timeout = millis(key, value)?,
            "keepalive_requests" => self.keepalive_requests = number(key, value, 1, u32::MAX)?,
            "max_header_bytes" => self.max_header_bytes = number(key, value, 256, 1 << 24)?,
            "max_headers" => self.max_headers = number(key, value, 1, 10_000)?,
            "max_body_bytes" => self.max_body_bytes = number(key, value, 0, 1 << 40)?,
            "body_buffer_bytes" => self.body_buffer_bytes = number(key, value, 1024, 1 << 30)?,
            "body_temp_dir" => self.body_temp_dir = temp_dir(key, value)?,
            "max_connections" => self.max_connections = number(key, value, 1, 1 << 24)?,
            "max_pending_bytes" => self.max_pending_bytes = number(key, value, 1, 1 << 40)?,
            "http10_buffering" => self.http10_buffering = switch(key, value)?,
            "compression" => self.compression = switch(key, value)?,
            "compression_level" => self.compression_level = number(key, value, 1, 9)?,
            "compression_min_length" => {
                self.compression_min_length = number(key, value, 0, 1 << 30)?
            }
            "compression_types" => {
                self.compression_types =
                    compress::parse_types(value).map_err(|e| format!("option {key}: {e}"))?
            }
            "access_log" => {
                if value.is_empty() {
                    return Err(format!("option {key}: empty path"));
                }
                self.access_log = Some(value.to_string())
            }
            "server_header" => {
                if !response::valid_value(value.as_bytes()) {
                    return Err(format!("option {key}: control characters are not allowed"));
                }
                self.server_header = value.to_string()
            }
            "tls_protocols" => self.tls12 = tls_protocols(value)?,
            "tls_handshake_timeout_ms" => self.tls_handshake_timeout = millis(key, value)?,
            "tls_session_resumption" => self.tls_session_resumption = switch(key, value)?,
            _ => return Err(format!("unknown option '{key}'")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut c = Config::default();
        assert!(c.set("threads", "2").is_ok());
        assert_eq!(c.threads, 2);
        assert!(c.set("threads", "0").is_err());
        assert!(c.set("threads", "x").is_err());
        assert!(c.set("nosuch", "1").is_err());
        assert!(c.set("http10_buffering", "off").is_ok());
        assert!(!c.http10_buffering);
        assert!(c.set("compression_level", "10").is_err());
        assert!(c.set("send_timeout_ms", "250").is_ok());
        assert_eq!(c.send_timeout, Duration::from_millis(250));
        assert!(c.set("server_header", "a\r\nb").is_err());
        assert!(c
            .set("compression_types", "text/html, application/json")
            .is_ok());
        assert!(c.tls12);
        assert!(c.set("tls_protocols", "TLSv1.3").is_ok());
        assert!(!c.tls12);
        assert!(c.set("tls_protocols", "TLSv1.3, TLSv1.2").is_ok());
        assert!(c.tls12);
        assert!(c.set("tls_protocols", "TLSv1.2").is_err());
        assert!(c.set("tls_protocols", "TLSv1.1,TLSv1.3").is_err());
        assert!(c.set("tls_protocols", "").is_err());
        assert!(c.set("tls_handshake_timeout_ms", "500").is_ok());
        assert_eq!(c.tls_handshake_timeout, Duration::from_millis(500));
        assert!(c.set("tls_session_resumption", "off").is_ok());
        assert!(!c.tls_session_resumption);
    }

    #[test]
    fn body_spool_options() {
        let mut c = Config::default();
        assert_eq!(c.body_buffer_bytes, 65_536);
        assert!(c.body_temp_dir.is_absolute());
        assert!(c.set("body_buffer_bytes", "1023").is_err());
        assert!(c.set("body_buffer_bytes", "4096").is_ok());
        assert_eq!(c.spill().threshold, 4096);
        let dir = std::env::temp_dir();
        assert!(c.set("body_temp_dir", &dir.display().to_string()).is_ok());
        assert_eq!(c.body_temp_dir, dir);
        let file = std::env::current_exe().unwrap().display().to_string();
        for bad in ["", "/nonexistent/httpsrv-spool", file.as_str()] {
            let e = c.set("body_temp_dir", bad).unwrap_err();
            assert!(e.contains("body_temp_dir"), "{e}");
        }
        assert_eq!(c.body_temp_dir, dir, "a refused value changes nothing");
    }
}
