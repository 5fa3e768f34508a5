//! What a running server shares between its loops, its pool and its sessions.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::config::Config;
use super::log::{self, Logger};
use super::pool::Pool;
use super::routes::Routes;
use crate::http::compress::CompressorPool;
use crate::http::request::Request;

pub struct Runtime {
    pub config: Config,
    pub routes: Routes,
    pub logger: Logger,
    pub pool: Pool,
    /// Deflate states for compressed responses, shared by every loop and pool thread.
    pub compressors: CompressorPool,
    stopping: AtomicBool,
    connections: AtomicUsize,
    access_log: Option<Mutex<Box<dyn Write + Send>>>,
}

/// The access log file at `path`, created if missing, every line appended at its end.
fn open_access_log(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Runtime {
    pub fn new(config: Config, routes: Routes, logger: Logger) -> std::io::Result<Runtime> {
        let access_log: Option<Mutex<Box<dyn Write + Send>>> = match config.access_log.as_deref() {
            None => None,
            Some("-") => Some(Mutex::new(Box::new(std::io::stderr()))),
            Some(path) => Some(Mutex::new(Box::new(open_access_log(path)?))),
        };
        // As many as can compress at once: every loop and every pool thread.
        let compressors = CompressorPool::new(config.threads + config.pool_threads);
        Ok(Runtime {
            compressors,
            config,
            routes,
            logger,
            pool: Pool::default(),
            stopping: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            access_log,
        })
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Counts a new connection, or refuses it past `max_connections`.
    pub fn admit_connection(&self) -> bool {
        let max = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn log_error(&self, message: &str) {
        self.logger.log(log::ERROR, message);
    }

    pub fn log_info(&self, message: &str) {
        self.logger.log(log::INFO, message);
    }

    /// Whether `access_log` is set.
    pub fn logs_access(&self) -> bool {
        self.access_log.is_some()
    }

    /// Opens the access log file again at its path, for log rotation: once a rotator renamed
    /// the file, lines go to a new file at the old path. The lines written before go to the old
    /// file, whole (each line is one write under the lock). Nothing to do without an access log
    /// or for stderr. On an error the old file stays in use and the error is returned.
    pub fn reopen_access_log(&self) -> std::io::Result<()> {
        let (Some(sink), Some(path)) = (&self.access_log, self.config.access_log.as_deref()) else {
            return Ok(());
        };
        if path == "-" {
            return Ok(());
        }
        let file = open_access_log(path)?;
        *sink.lock() = Box::new(file);
        Ok(())
    }

    /// One Combined Log Format line for a finished response, when `access_log` is set.
    /// `request` is None for a request refused before it could be parsed.
    pub fn access_log(
        &self,
        peer: &SocketAddr,
        request: Option<&Request>,
        status: u16,
        body_bytes: u64,
    ) {
        let Some(sink) = &self.access_log else {
            return;
        };
        let field = |name: &[u8]| {
            request
                .and_then(|r| r.header(name))
                .map(|v| String::from_utf8_lossy(v).replace('"', "\\\""))
                .unwrap_or_else(|| "-".to_string())
        };
        let request_line = match request {
            Some(r) => format!(
                "{} {} HTTP/{}.{}",
                r.method(),
                r.target(),
                r.version() / 10,
                r.version() % 10
            ),
            None => "-".to_string(),
        };
        let line = format!(
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
            peer.ip(),
            common_log_date(),
            request_line,
            status,
            body_bytes,
            field(b"referer"),
            field(b"user-agent"),
        );
        let _ = sink.lock().write_all(line.as_bytes());
    }
}

/// Now as the Common Log Format wants it: `10/Oct/2000:13:55:36 +0000` (always UTC).
fn common_log_date() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = crate::http::date::civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m as usize).clamp(1, 12) - 1],
        y,
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}
