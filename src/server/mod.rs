//! The server: options, listeners, routes and modules before start; loops and pool after.

mod clock;
pub mod config;
mod connection;
pub mod event_loop;
pub mod handles;
pub mod link;
pub mod log;
mod loop_shared;
pub mod module;
pub mod pool;
mod recycle;
pub mod routes;
pub mod runtime;
pub mod session;

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::abi::{httpsrv_log_fn, httpsrv_server};
use crate::errors::{self, EBUSY, EDEADLK, EINVAL};
use crate::io::certs::{CertError, CertStore};
use crate::io::{TlsAcceptor, TlsSettings};
use config::Config;
use event_loop::EventLoop;
use log::Logger;
use loop_shared::{Command, LoopShared, Siblings};
use module::Module;
use routes::{HandlerFn, Routes};
use runtime::Runtime;

thread_local! {
    static LIBRARY_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of ours (loop or pool): `stop` from it would deadlock.
pub fn mark_library_thread() {
    LIBRARY_THREAD.with(|c| c.set(true));
}

fn is_library_thread() -> bool {
    LIBRARY_THREAD.with(|c| c.get())
}

/// Loop ids are process-wide so a thread can tell whether it is a given session's loop.
static NEXT_LOOP_ID: AtomicUsize = AtomicUsize::new(1);

struct Running {
    rt: Arc<Runtime>,
    loops: Vec<(Arc<LoopShared>, JoinHandle<()>)>,
}

/// A bound listening socket, and whether its connections speak TLS.
struct Listener {
    socket: std::net::TcpListener,
    tls: bool,
}

#[derive(Default)]
struct Inner {
    config: Config,
    listeners: Vec<Listener>,
    /// The certificates of every TLS listener (see `io::certs`); shared with the running
    /// loops' TLS configuration, so a reload reaches new handshakes.
    certs: Arc<CertStore>,
    routes: Routes,
    logger: Logger,
    modules: Vec<Module>,
    started: bool,
    running: Option<Running>,
}

#[derive(Default)]
pub struct Server {
    inner: Mutex<Inner>,
}

fn backlog(listener: &std::net::TcpListener) {
    // std listens with a small backlog; a burst of connections should queue, not be dropped.
    // SAFETY: a valid listening socket; calling listen again only resizes its queue.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
}

impl Server {
    fn log_error(&self, message: &str) {
        let logger = self.inner.lock().logger;
        logger.log(log::ERROR, message);
    }

    pub fn set(&self, key: &str, value: &str) -> Result<(), c_int> {
        let mut inner = self.inner.lock();
        if inner.started {
            return Err(EBUSY);
        }
        let result = inner.config.set(key, value);
        let logger = inner.logger;
        drop(inner);
        result.map_err(|why| {
            logger.log(log::ERROR, &why);
            EINVAL
        })
    }

    pub fn listen(&self, addr: &str) -> Result<(), c_int> {
        let socket = self.bind(addr)?;
        self.inner
            .lock()
            .listeners
            .push(Listener { socket, tls: false });
        Ok(())
    }

    /// `listen`, for TLS with this certificate and key (the default certificate when it is
    /// the first TLS listener). The files are loaded before the address is bound.
    pub fn listen_tls(&self, addr: &str, cert_file: &str, key_file: &str) -> Result<(), c_int> {
        let parsed = self.parse_logged(addr)?;
        let certs = {
            let inner = self.inner.lock();
            if inner.started {
                return Err(EBUSY);
            }
            inner.certs.clone()
        };
        let loaded = certs
            .load(cert_file.as_ref(), key_file.as_ref())
            .map_err(|e| self.cert_error("listen_tls", &e))?;
        let socket = self.bind_parsed(addr, parsed)?;
        let mut inner = self.inner.lock();
        if inner.started {
            return Err(EBUSY);
        }
        certs.insert(cert_file.as_ref(), key_file.as_ref(), true, loaded);
        inner.listeners.push(Listener { socket, tls: true });
        Ok(())
    }

    /// One more certificate for every TLS listener, chosen by SNI. Any time, from any thread.
    pub fn add_certificate(&self, cert_file: &str, key_file: &str) -> Result<(), c_int> {
        let certs = self.inner.lock().certs.clone();
        let loaded = certs
            .load(cert_file.as_ref(), key_file.as_ref())
            .map_err(|e| self.cert_error("add_certificate", &e))?;
        certs.insert(cert_file.as_ref(), key_file.as_ref(), false, loaded);
        Ok(())
    }

    /// Reads every certificate and key file again; on any error nothing changes.
    pub fn reload_certificates(&self) -> Result<(), c_int> {
        let certs = self.inner.lock().certs.clone();
        certs
            .reload()
            .map_err(|e| self.cert_error("reload_certificates", &e))
    }

    /// Opens the log files again (the access log), for log rotation. Nothing to do before
    /// start (start opens them) or without an access log file.
    pub fn reopen_logs(&self) -> Result<(), c_int> {
        let inner = self.inner.lock();
        let (Some(running), logger) = (inner.running.as_ref(), inner.logger) else {
            return Ok(());
        };
        let rt = running.rt.clone();
        drop(inner);
        rt.reopen_access_log().map_err(|e| {
            let path = rt.config.access_log.as_deref().unwrap_or("");
            logger.log(
                log::ERROR,
                &format!("reopen_logs: access_log {path}: {e} (the old file stays in use)"),
            );
            errors::from_io(&e)
        })
    }

    fn cert_error(&self, function: &str, e: &CertError) -> c_int {
        self.log_error(&format!("{function}: {e}"));
        e.code
    }

    fn parse_logged(&self, addr: &str) -> Result<SocketAddr, c_int> {
        addr.parse().map_err(|_| {
            self.log_error(&format!("listen: '{addr}' is not an IP:port address"));
            EINVAL
        })
    }

    /// Binds a listening socket for `addr`, unless the server has started.
    fn bind(&self, addr: &str) -> Result<std::net::TcpListener, c_int> {
        let parsed = self.parse_logged(addr)?;
        if self.inner.lock().started {
            return Err(EBUSY);
        }
        self.bind_parsed(addr, parsed)
    }

    fn bind_parsed(&self, addr: &str, parsed: SocketAddr) -> Result<std::net::TcpListener, c_int> {
        let listener = std::net::TcpListener::bind(parsed).map_err(|e| {
            self.log_error(&format!("listen on {addr}: {e}"));
            errors::from_io(&e)
        })?;
        backlog(&listener);
        listener
            .set_nonblocking(true)
            .map_err(|e| errors::from_io(&e))?;
        Ok(listener)
    }

    pub fn port(&self, index: usize) -> Option<u16> {
        let inner = self.inner.lock();
        inner
            .listeners
            .get(index)?
            .socket
            .local_addr()
            .ok()
            .map(|a| a.port())
    }

    pub fn route(
        &self,
        method: Option<&str>,
        path: &str,
        pool: bool,
        handler: HandlerFn,
        userdata: *mut c_void,
    ) -> Result<(), c_int> {
        let mut inner = self.inner.lock();
        if inner.started {
            return Err(EBUSY);
        }
        inner.routes.add(method, path, pool, handler, userdata)
    }

    pub fn set_logger(&self, f: httpsrv_log_fn, userdata: *mut c_void) {
        self.inner.lock().logger = Logger::new(f, userdata);
    }

    pub fn load_module(
        &self,
        srv: *mut httpsrv_server,
        path: &str,
        args: *const c_char,
    ) -> Result<(), c_int> {
        let opened = module::open(path).map_err(|(code, why)| {
            self.log_error(&why);
            code
        })?;
        // No lock here: the module's init calls back into this server to add routes.
        let module = opened.init(srv, args).inspect_err(|rc| {
            self.log_error(&format!("module {path}: httpsrv_module_init returned {rc}"));
        })?;
        self.inner.lock().modules.push(module);
        Ok(())
    }

    pub fn start(&self) -> Result<(), c_int> {
        let mut inner = self.inner.lock();
        if inner.started {
            return Err(EBUSY);
        }
        if inner.listeners.is_empty() {
            return Err(EINVAL);
        }
        let rt = Runtime::new(inner.config.clone(), inner.routes.clone(), inner.logger).map_err(
            |e| {
                inner.logger.log(log::ERROR, &format!("access_log: {e}"));
                errors::from_io(&e)
            },
        )?;
        let rt = Arc::new(rt);
        let pool_threads = if rt.routes.has_pool_routes() {
            rt.config.pool_threads
        } else {
            0
        };
        let mut running = Running {
            rt: rt.clone(),
            loops: Vec::new(),
        };
        let fail = |running: Running, e: std::io::Error| {
            Self::shutdown(running, Duration::ZERO);
            errors::from_io(&e)
        };
        if let Err(e) = rt.pool.start(pool_threads) {
            return Err(fail(running, e));
        }
        let tls = if inner.listeners.iter().any(|l| l.tls) {
            let settings = TlsSettings {
                tls12: rt.config.tls12,
                session_resumption: rt.config.tls_session_resumption,
            };
            match TlsAcceptor::configure(inner.certs.clone(), &settings) {
                Ok(acceptor) => Some(acceptor),
                Err(why) => {
                    inner.logger.log(log::ERROR, &why);
                    return Err(fail(running, std::io::Error::from_raw_os_error(EINVAL)));
                }
            }
        } else {
            None
        };
        let siblings = Siblings::default();
        for i in 0..rt.config.threads {
            let mut listeners = Vec::new();
            for l in &inner.listeners {
                match l.socket.try_clone() {
                    Ok(socket) => listeners.push((socket, tls.clone().filter(|_| l.tls))),
                    Err(e) => return Err(fail(running, e)),
                }
            }
            let id = NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed);
            let lp = match EventLoop::new(id, rt.clone(), listeners, siblings.clone()) {
                Ok(lp) => lp,
                Err(e) => return Err(fail(running, e)),
            };
            let shared = lp.shared();
            match std::thread::Builder::new()
                .name(format!("httpsrv-loop-{i}"))
                .spawn(move || lp.run())
            {
                Ok(t) => running.loops.push((shared, t)),
                Err(e) => return Err(fail(running, e)),
            }
        }
        // From now on a loop hands a new connection to the one holding the fewest.
        let _ = siblings.set(running.loops.iter().map(|(lp, _)| lp.clone()).collect());
        inner.started = true;
        inner.running = Some(running);
        Ok(())
    }

    fn shutdown(running: Running, grace: Duration) {
        running.rt.set_stopping();
        for (lp, _) in &running.loops {
            lp.send(Command::Stop { grace });
        }
        for (_, t) in running.loops {
            let _ = t.join();
        }
        // Pool handlers may still be running (a sleeping handler); their sessions have ended.
        running.rt.pool.shutdown();
    }

    pub fn stop(&self, grace_ms: u32) -> Result<(), c_int> {
        if is_library_thread() {
            return Err(EDEADLK);
        }
        let running = {
            let mut inner = self.inner.lock();
            // Close the listening sockets: a stopped server must refuse connections, not let
            // them queue in a backlog nobody accepts from.
            if inner.running.is_some() {
                inner.listeners.clear();
            }
            inner.running.take()
        };
        if let Some(running) = running {
            Self::shutdown(running, Duration::from_millis(u64::from(grace_ms)));
        }
        Ok(())
    }

    /// Stops, then finalises and unloads every module (last loaded first).
    pub fn free(self: Box<Self>, srv: *mut httpsrv_server) {
        if self.stop(0).is_err() {
            self.log_error("httpsrv_server_free called from a library thread: leaking the server");
            std::mem::forget(self);
            return;
        }
        let modules = std::mem::take(&mut self.inner.lock().modules);
        for m in modules.into_iter().rev() {
            m.close(Some(srv));
        }
    }

    /// (requests, open connections, bytes sent) since start; zeros when not running.
    pub fn stats(&self) -> (u64, u64, u64) {
        let inner = self.inner.lock();
        let Some(running) = inner.running.as_ref() else {
            return (0, 0, 0);
        };
        let mut requests = 0;
        let mut bytes = 0;
        for (lp, _) in &running.loops {
            requests += lp.requests.load(Ordering::Relaxed);
            bytes += lp.bytes_sent();
        }
        (requests, running.rt.open_connections() as u64, bytes)
    }
}
