//! A connection as its loop sees it: its transport (through the `Link` it shares with its
//! session), the read buffer lent from the loop's pool, the request being read, and the
//! connection's own output queue.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::link::Link;
use super::loop_shared::ConnKey;
use super::session::Session;
use crate::errors::ECONNRESET;
use crate::http::body::BodyWriter;
use crate::http::outqueue::OutQueue;
use crate::http::request::Request;
use crate::proto::h1::chunked::ChunkedDecoder;

const READ_CHUNK: usize = 4096;
/// Read buffers are lent to connections from a per-loop pool of buffers this large.
const POOLED_BUFFER: usize = 16 * 1024;
const MAX_POOLED_BUFFERS: usize = 256;

pub(super) enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
}

pub(super) enum Phase {
    /// Waiting for a request head. While `receiving`, `since` is when it started arriving
    /// (or the connection was accepted); before that, when the connection went idle.
    Head {
        since: Instant,
        receiving: bool,
    },
    /// Boxed: every connection's slot is as large as its largest phase, and an idle
    /// connection should not pay for a body being read.
    Body(Box<Receiving>),
    Active(Arc<Session>),
    /// A library-written response is going out; then close (after lingering) or go on.
    Closing {
        linger_until: Option<Instant>,
    },
}

/// A request whose body is being read.
pub(super) struct Receiving {
    pub(super) request: Request,
    /// In memory up to `body_buffer_bytes`, else in a spool file.
    pub(super) body: BodyWriter,
    pub(super) state: BodyState,
    pub(super) last_read: Instant,
}

/// A finished response handed to the connection's queue (`Progress::Handed`), and its
/// session, which is complete once the queue was written past its end.
struct Delivery {
    /// Where the response's bytes start and end, counted as `Deliveries::written` counts.
    start: u64,
    end: u64,
    session: Arc<Session>,
}

/// The sessions whose responses wait in the connection's queue, in order. Made when a
/// connection first hands over a pipelined response; an idle connection holds none.
#[derive(Default)]
pub(super) struct Deliveries {
    /// Bytes written from the queue since this was made: where the offsets count from.
    written: u64,
    waiting: VecDeque<Delivery>,
}

pub(super) struct Conn {
    pub(super) key: ConnKey,
    /// The transport, shared with the session it carries (see `Link`).
    pub(super) link: Arc<Link>,
    pub(super) peer: SocketAddr,
    pub(super) rbuf: Vec<u8>,
    pub(super) rpos: usize,
    pub(super) phase: Phase,
    pub(super) requests: u32,
    pub(super) read_closed: bool,
    /// The socket may hold unread bytes: set by a readable event, cleared by a read that
    /// emptied it. Saves the recv that would only say EAGAIN after each keep-alive response.
    pub(super) readable: bool,
    /// The client closed or reset: read on to the end, a short read is no proof of an empty
    /// socket then (the end of stream raises no further event).
    pub(super) peer_done: bool,
    /// Responses the library writes itself (404, 4xx errors, 100 Continue), and pipelined
    /// responses handed over by their sessions, so that a batch leaves in one send.
    pub(super) direct: OutQueue,
    pub(super) direct_progress: Instant,
    /// The sessions whose responses wait in `direct`.
    pub(super) delivering: Option<Box<Deliveries>>,
    pub(super) deadline: Option<Instant>,
}

pub(super) enum Read {
    /// This many bytes were added; the socket has no more for now.
    Ok(usize),
    /// The buffer holds enough unparsed input; stop reading for now.
    Full,
    Eof,
    Failed(i32),
}

impl Conn {
    pub(super) fn unread(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Puts in line the session whose response was just appended to `direct`, from `before`
    /// (its length then) on.
    pub(super) fn hand_over(&mut self, before: usize, session: Arc<Session>) {
        let d = self.delivering.get_or_insert_with(Box::default);
        d.waiting.push_back(Delivery {
            start: d.written + before as u64,
            end: d.written + self.direct.len() as u64,
            session,
        });
    }

    /// Sessions whose responses wait in `direct`.
    pub(super) fn waiting(&self) -> usize {
        self.delivering.as_ref().map_or(0, |d| d.waiting.len())
    }

    /// `n` bytes of `direct` were written.
    pub(super) fn direct_wrote(&mut self, n: usize) {
        if let Some(d) = &mut self.delivering {
            d.written += n as u64;
        }
    }

    /// The first waiting session, with how many bytes of its response were written, if they
    /// all were (or, `all` set, in any case: the connection is closing).
    pub(super) fn next_delivered(&mut self, all: bool) -> Option<(Arc<Session>, u64)> {
        let d = self.delivering.as_mut()?;
        let front = d.waiting.front()?;
        if !all && front.end > d.written {
            return None;
        }
        let front = d.waiting.pop_front()?;
        let sent = d
            .written
            .saturating_sub(front.start)
            .min(front.end - front.start);
        Some((front.session, sent))
    }

    /// Lets go of the (empty) line of waiting sessions while the connection is idle.
    pub(super) fn release_deliveries(&mut self) {
        if self
            .delivering
            .as_ref()
            .is_some_and(|d| d.waiting.is_empty())
        {
            self.delivering = None;
        }
    }

    pub(super) fn read(&mut self, limit: usize, pool: &mut Vec<Vec<u8>>) -> Read {
        if self.rbuf.capacity() == 0 {
            self.rbuf = pool
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(POOLED_BUFFER));
        }
        if !self.readable {
            return Read::Ok(0);
        }
        let mut added = 0;
        let mut transport = self.link.lock();
        loop {
            if self.rbuf.len() - self.rpos >= limit {
                return Read::Full;
            }
            if self.rpos > 0 && self.rpos == self.rbuf.len() {
                self.rbuf.clear();
                self.rpos = 0;
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
                if self.rpos > 0 {
                    self.rbuf.drain(..self.rpos);
                    self.rpos = 0;
                }
                self.rbuf.reserve(READ_CHUNK);
            }
            let spare = self.rbuf.spare_capacity_mut();
            let room = spare.len();
            let read = transport.read(spare);
            if let Ok(n @ 1..) = read {
                let short = n < room;
                // SAFETY: the transport initialised n bytes of the spare capacity.
                unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
                added += n;
                if short && !self.peer_done && !transport.has_buffered_input() {
                    // A short read emptied the socket; with edge-triggered polling any later
                    // data raises a new event, so another recv would only return EAGAIN.
                    self.readable = false;
                    return Read::Ok(added);
                }
                continue;
            }
            let e = match read {
                Ok(_) => {
                    self.read_closed = true;
                    return Read::Eof;
                }
                Err(e) => e,
            };
            match e.kind() {
                ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Read::Ok(added);
                }
                ErrorKind::Interrupted => continue,
                _ => {
                    self.read_closed = true;
                    return Read::Failed(e.raw_os_error().unwrap_or(ECONNRESET));
                }
            }
        }
    }

    /// Hands the read buffer back to the loop once everything in it was parsed, so idle
    /// keep-alive connections hold no buffer and busy ones allocate none per request.
    pub(super) fn release_idle_buffer(&mut self, pool: &mut Vec<Vec<u8>>) {
        if self.rpos == self.rbuf.len() && self.rbuf.capacity() > 0 {
            let mut buf = std::mem::take(&mut self.rbuf);
            self.rpos = 0;
            if buf.capacity() <= POOLED_BUFFER * 4 && pool.len() < MAX_POOLED_BUFFERS {
                buf.clear();
                pool.push(buf);
            }
        }
    }
}
