//! TLS: a rustls server connection over a TCP socket, edge-triggered like `Tcp`.
//!
//! Reading takes records from the socket, decrypts them and hands out plaintext; decrypted bytes
//! that did not fit stay in rustls, so `has_buffered_input` tells the connection that a short
//! read did not empty the socket. Writing hands the output queue's plaintext to rustls, which
//! encrypts it (its one copy) up to its buffer limit, consumes it from the queue at once (lent
//! memory is released then), and sends the records with vectored writes. Records rustls still
//! holds are `has_pending_output`: a flush is complete only once they are in the kernel too.

use std::ffi::CStr;
use std::ffi::CString;
use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, OnceLock};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::{ServerConfig, ServerConnection};

use super::certs::{ticketer, CertStore, Resolver};
use super::sys;
use super::tcp::Tcp;
use crate::errors::EPROTO;
use crate::http::outqueue::OutQueue;

/// Most buffers one vectored hand-over to rustls takes.
const MAX_IOVECS: usize = 64;

/// What a finished handshake agreed on, for `httpsrv_request_tls`: NUL-terminated, and kept by
/// the connection's `Link` for as long as any session of the connection may ask.
#[derive(Debug)]
pub struct TlsInfo {
    pub version: &'static CStr,
    pub cipher: &'static CStr,
    pub sni: Option<CString>,
    pub alpn: Option<CString>,
}

/// Filled once, when the handshake completes; shared by the transport and its `Link`.
pub type InfoCell = Arc<OnceLock<TlsInfo>>;

/// Sessions the server remembers for resumption by session id (tickets need no memory).
const SESSION_CACHE: usize = 4096;

/// What the server's options say about TLS.
pub struct TlsSettings {
    /// TLS 1.2 besides TLS 1.3.
    pub tls12: bool,
    /// Tickets and a session cache.
    pub session_resumption: bool,
}

/// Makes TLS transports of accepted sockets; one per TLS listener, cloned for each loop.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    pub fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor { config }
    }

    /// The configuration of every TLS listener of a server: its certificates (chosen per
    /// handshake, so a reload reaches new handshakes), protocols, ALPN and resumption.
    pub fn configure(store: Arc<CertStore>, settings: &TlsSettings) -> Result<TlsAcceptor, String> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = if settings.tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut config = ServerConfig::builder_with_provider(store.provider().clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(store)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if settings.session_resumption {
            config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
            config.ticketer = ticketer().map_err(|e| format!("TLS session tickets: {e}"))?;
        } else {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(TlsAcceptor::new(Arc::new(config)))
    }

    /// A transport for an accepted socket; the handshake runs as it reads.
    pub fn accept(&self, stream: TcpStream) -> io::Result<Tls> {
        let conn = ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
        Ok(Tls {
            tcp: Tcp::new(stream),
            conn,
            info: Arc::new(OnceLock::new()),
            plaintext: 0,
            eof: false,
            failed: false,
            close_notify_sent: false,
        })
    }
}

pub struct Tls {
    tcp: Tcp,
    conn: ServerConnection,
    info: InfoCell,
    /// Decrypted bytes in rustls not yet read out.
    plaintext: usize,
    /// The socket ended (or the peer sent `close_notify`): reads return the end once the
    /// plaintext before it is read.
    eof: bool,
    /// rustls refused the peer's records: its alert is the last thing sent.
    failed: bool,
    close_notify_sent: bool,
}

/// The socket as rustls reads and writes it: `recv` and vectored `sendmsg`, never SIGPIPE.
struct Socket(RawFd);

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { sys::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: a zeroed msghdr is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (std documents it); the kernel only reads.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        // SAFETY: msg is initialised and its iovecs point into `bufs`, borrowed for the call.
        let n = unsafe { sys::sendmsg(self.0, &msg, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Tls {
    fn socket(&self) -> Socket {
        Socket(self.tcp.fd())
    }

    pub(super) fn info(&self) -> InfoCell {
        self.info.clone()
    }

    /// Sends the records rustls holds. True when none is left; false when the socket is full.
    fn send_records(&mut self) -> io::Result<bool> {
        let mut socket = self.socket();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut socket) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Takes in one read of records from the socket (rustls reads up to 4 KiB at a time) and
    /// decrypts them. `WouldBlock` when the socket is empty.
    fn receive(&mut self) -> io::Result<()> {
        let mut socket = self.socket();
        loop {
            match self.conn.read_tls(&mut socket) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.plaintext = state.plaintext_bytes_to_read();
                if state.peer_has_closed() {
                    self.eof = true;
                }
            }
            Err(_) => {
                // rustls queued an alert for the peer; send it and give up on the connection.
                self.failed = true;
                let _ = self.send_records();
                return Err(io::Error::from_raw_os_error(EPROTO));
            }
        }
        if self.info.get().is_none() && !self.conn.is_handshaking() {
            let _ = self.info.set(self.describe());
        }
        // Handshake messages, tickets, alerts and key updates go out as they are made; what the
        // socket does not take now goes at its next writable event.
        self.send_records()?;
        Ok(())
    }

    /// Reads plaintext like `recv(2)`: `Ok(0)` at the end, `WouldBlock` when there is none now.
    /// A short read means the socket was emptied, unless `has_buffered_input` says otherwise.
    pub(super) fn read(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.plaintext > 0 {
                let end = n + self.plaintext.min(buf.len() - n);
                let dst = &mut buf[n..end];
                dst.fill(MaybeUninit::new(0));
                // SAFETY: every byte of `dst` was just initialised, and u8 has no invalid values.
                let dst = unsafe { &mut *(dst as *mut [MaybeUninit<u8>] as *mut [u8]) };
                match self.conn.reader().read(dst) {
                    Ok(got) => {
                        n += got;
                        self.plaintext -= got.min(self.plaintext);
                        if got == 0 {
                            self.plaintext = 0;
                        }
                        continue;
                    }
                    Err(_) => self.plaintext = 0,
                }
            }
            if self.eof || self.failed {
                break;
            }
            match self.receive() {
                Ok(()) => {}
                Err(e) if n == 0 => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Hand out what came before the failure; the next read reports it.
                Err(_) => {
                    self.eof = !self.failed;
                    break;
                }
            }
        }
        if n == 0 && !self.eof && !self.failed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if n == 0 && self.failed {
            return Err(io::Error::from_raw_os_error(EPROTO));
        }
        Ok(n)
    }

    /// Whether a short read left input behind: decrypted plaintext, or an end still to report.
    pub(super) fn has_buffered_input(&self) -> bool {
        self.plaintext > 0 || self.eof || self.failed
    }

    /// Whether encrypted records wait for the socket.
    pub(super) fn has_pending_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Hands `out` to rustls as far as its buffer takes it, sending records as the socket takes
    /// them; returns the plaintext bytes consumed from `out`.
    pub(super) fn write(&mut self, out: &mut OutQueue) -> io::Result<usize> {
        if self.failed || self.close_notify_sent {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        let mut taken = 0;
        loop {
            if !self.send_records()? || out.is_empty() {
                return Ok(taken);
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let n = out.slices(&mut iov);
            let m = self.conn.writer().write_vectored(&iov[..n])?;
            if m == 0 {
                return Ok(taken);
            }
            out.consume(m);
            taken += m;
        }
    }

    fn close_notify(&mut self) {
        if !self.close_notify_sent && !self.failed {
            self.close_notify_sent = true;
            self.conn.send_close_notify();
        }
        let _ = self.send_records();
    }

    /// Ends the output with `close_notify`, then a FIN; keeps reading.
    pub(super) fn shutdown_write(&mut self) {
        self.close_notify();
        self.tcp.shutdown_write();
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.tcp
            .register(registry, token, Interest::READABLE | Interest::WRITABLE)
    }

    /// Closes: gracefully with `close_notify` (as far as the socket takes it), or with a reset.
    pub(super) fn close(mut self, registry: &Registry, reset: bool) {
        if !reset {
            self.close_notify();
        }
        self.tcp.close(registry, reset);
    }

    fn describe(&self) -> TlsInfo {
        let c_string = |b: &[u8]| CString::new(b).ok();
        TlsInfo {
            version: match self.conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => c"TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => c"TLSv1.2",
                _ => c"unknown",
            },
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .map_or(c"unknown", |s| iana_name(s.suite())),
            sni: self.conn.server_name().and_then(|s| c_string(s.as_bytes())),
            alpn: self.conn.alpn_protocol().and_then(c_string),
        }
    }
}

/// The IANA name of a cipher suite rustls offers (its own names differ for TLS 1.3).
fn iana_name(suite: rustls::CipherSuite) -> &'static CStr {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => c"TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => c"TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => c"TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => c"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => c"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            c"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        }
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => c"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => c"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            c"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        }
        _ => c"unknown",
    }
}

impl AsRawFd for Tls {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::certs::testcerts::{self, EC_SEC1};
    use crate::io::certs::CertStore;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::time::{Duration, Instant};

    /// A server transport on one end of a loopback TCP pair, and a rustls client on the other.
    fn pair(tls12_only: bool) -> (Tls, StreamOwned<ClientConnection, StdStream>) {
        let d = testcerts::dir(if tls12_only {
            "transport12"
        } else {
            "transport13"
        });
        let (crt, key) = testcerts::make(&d, "site", EC_SEC1, &["site.test"]);
        let store = Arc::new(CertStore::default());
        store.add(&crt, &key, true).expect("a certificate");
        let settings = TlsSettings {
            tls12: true,
            session_resumption: true,
        };
        let acceptor = TlsAcceptor::configure(store.clone(), &settings).expect("a config");
        let mut roots = RootCertStore::empty();
        let pem = std::fs::read(&crt).expect("the certificate");
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.expect("PEM")).expect("a root");
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut client = ClientConfig::builder_with_provider(store.provider().clone())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
        let sock = StdStream::connect(listener.local_addr().expect("an address")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        accepted.set_nonblocking(true).expect("non-blocking");
        let server = acceptor
            .accept(TcpStream::from_std(accepted))
            .expect("a TLS transport");
        let name = ServerName::try_from("site.test").expect("a name");
        let conn = ClientConnection::new(Arc::new(client), name).expect("a client");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        (server, StreamOwned::new(conn, sock))
    }

    /// Reads from the server transport until `want` bytes came, polling (the socket is
    /// non-blocking); returns them and the sizes of the reads.
    fn read_all(tls: &mut Tls, want: usize, chunk: usize) -> (Vec<u8>, Vec<usize>) {
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < want {
            assert!(
                Instant::now() < deadline,
                "read only {} of {want}",
                got.len()
            );
            let mut buf = vec![MaybeUninit::new(0u8); chunk];
            match tls.read(&mut buf) {
                Ok(0) => panic!("end of input after {}", got.len()),
                Ok(n) => {
                    // SAFETY: the transport initialised the first n bytes (they were anyway).
                    got.extend(buf[..n].iter().map(|b| unsafe { b.assume_init() }));
                    sizes.push(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        (got, sizes)
    }

    fn transfer(tls12_only: bool) {
        let (mut server, mut client) = pair(tls12_only);
        let request: Vec<u8> = (0..100u8).collect();
        let sent = request.clone();
        let peer = std::thread::spawn(move || {
            client.write_all(&sent).expect("client write");
            client.flush().expect("client flush");
            let mut body = Vec::new();
            // The server ends with close_notify: a clean end, not an unexpected EOF.
            client.read_to_end(&mut body).expect("a clean end");
            let version = client.conn.protocol_version();
            (body, version)
        });
        assert!(server.info().get().is_none());
        // 64 of 100 bytes: the rest stays decrypted in rustls, and the transport says so.
        let (first, _) = read_all(&mut server, 64, 64);
        assert_eq!(first, request[..64]);
        assert!(server.has_buffered_input(), "36 bytes wait in rustls");
        let (rest, _) = read_all(&mut server, 36, 1000);
        assert_eq!(rest, request[64..]);
        let info = server.info();
        let info = info.get().expect("the handshake completed");
        let want = if tls12_only { c"TLSv1.2" } else { c"TLSv1.3" };
        assert_eq!(info.version, want);
        assert_eq!(info.sni.as_deref(), Some(c"site.test"));
        assert_eq!(info.alpn.as_deref(), Some(c"http/1.1"));
        assert_ne!(info.cipher, c"unknown");
        // 3 MiB: more than rustls buffers and the socket takes at once.
        let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut out = OutQueue::default();
        out.push_from(body.clone(), 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut taken = 0;
        while !out.is_empty() || server.has_pending_output() {
            assert!(Instant::now() < deadline, "stuck at {taken}");
            taken += server.write(&mut out).expect("write");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(taken, body.len());
        let poll = mio::Poll::new().expect("a poll");
        server.close(poll.registry(), false);
        let (got, version) = peer.join().expect("the client");
        assert_eq!(got.len(), body.len());
        assert!(got == body, "the body arrives intact");
        let want = if tls12_only {
            rustls::ProtocolVersion::TLSv1_2
        } else {
            rustls::ProtocolVersion::TLSv1_3
        };
        assert_eq!(version, Some(want));
    }

    #[test]
    fn carries_bytes_both_ways_over_tls13() {
        transfer(false);
    }

    #[test]
    fn carries_bytes_both_ways_over_tls12() {
        transfer(true);
    }

    #[test]
    fn garbage_is_a_protocol_error_and_an_alert() {
        let (mut server, client) = pair(false);
        let mut sock = client.sock;
        sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            let mut buf = [MaybeUninit::new(0u8); 256];
            match server.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline);
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => break other,
            }
        };
        assert_eq!(err.err().and_then(|e| e.raw_os_error()), Some(EPROTO));
        assert!(
            server.has_buffered_input(),
            "the failure is reported at the next read"
        );
        assert!(server.write(&mut OutQueue::default()).is_err());
        let mut alert = [0u8; 7];
        sock.read_exact(&mut alert).expect("an alert");
        assert_eq!(alert[0], 0x15, "a TLS alert record");
    }

    #[test]
    fn iana_names() {
        assert_eq!(
            iana_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            c"TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            c"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }
}
