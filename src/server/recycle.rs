//! Finished sessions and request buffers kept by a loop for its next requests, so that serving a
//! request on a busy loop allocates nothing: the session, its response buffers, its output queue
//! and the parsed head's buffers all come back.

use std::sync::Arc;

use super::loop_shared::LoopShared;
use super::session::{Retired, Session, Start};
use crate::http::request::Request;

/// Sessions kept at most. A loop finishes most sessions before it starts the next, so a few
/// cover a busy loop; sessions of pool handlers may end in bursts, and pipelined sessions
/// complete together when the batch of their responses leaves (up to a turn's worth,
/// `event_loop::TURN_REQUESTS`).
const MAX_SPARE_SESSIONS: usize = 32;

#[derive(Default)]
pub struct Recycler {
    sessions: Vec<Retired>,
    /// The buffers the next request head is parsed into.
    request: Request,
}

impl Recycler {
    /// Where the loop parses the next request head.
    pub fn request(&mut self) -> &mut Request {
        &mut self.request
    }

    /// The request parsed into `request()`, taken out for a session.
    pub fn take_request(&mut self) -> Request {
        std::mem::take(&mut self.request)
    }

    /// A session for `start`, reused when one is spare. None when the handle table is full.
    pub fn start(&mut self, lp: &Arc<LoopShared>, mut start: Start) -> Option<Arc<Session>> {
        if let Some(spare) = self.sessions.pop() {
            let session = Session::restart(spare, &mut start);
            // `start.request` now holds the spare's old request: its buffers serve the next
            // parse. None means the handle table is full, and a new session would not fit
            // either (and `start` no longer holds this request).
            self.request = start.request;
            return session;
        }
        Session::create(lp, start)
    }

    /// Keeps a finished session for reuse, if nothing else holds it and there is room.
    #[inline]
    pub fn recycle(&mut self, session: Arc<Session>) {
        if self.sessions.len() < MAX_SPARE_SESSIONS {
            if let Some(retired) = Session::retire(session) {
                self.sessions.push(retired);
            }
        }
    }
}
