//! The body a handler appended since the last flush: copied bytes, and, when the module lent
//! some (`httpsrv_response_append_ref`), the lent pieces in order with the copies around them.

use super::lent::Lent;
use super::outqueue::{OutQueue, Segment};

/// Room for the longest chunk-size line: 16 hex digits and CRLF.
const LINE_ROOM: usize = 18;

#[derive(Default)]
pub struct Pending {
    /// Lent pieces, and the copied bytes before each, in order. Usually empty.
    pieces: Vec<Segment>,
    /// Bytes in `pieces`.
    pieces_len: usize,
    /// Of those, the lent ones: the module's memory, not counted against `max_pending_bytes`.
    lent_len: usize,
    /// Copied bytes after the pieces, behind `room` bytes kept free for a chunk-size line, so
    /// that a flush can frame a chunk where it lies (see `queue`).
    buf: Vec<u8>,
    room: usize,
}

impl Pending {
    /// Bytes someone else produced (a compressor's output).
    pub fn from_vec(buf: Vec<u8>) -> Pending {
        Pending {
            buf,
            ..Pending::default()
        }
    }

    pub fn len(&self) -> usize {
        self.pieces_len + self.buf.len() - self.room
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes copied in (not lent): what counts against `max_pending_bytes`.
    pub fn copied_len(&self) -> usize {
        self.len() - self.lent_len
    }

    /// Drops the bytes (releasing lent ones), keeping the copy buffer.
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.pieces_len = 0;
        self.lent_len = 0;
        self.buf.clear();
        self.room = 0;
    }

    /// Copies `data` in. `with_room`: a new buffer starts with room for a chunk-size line.
    pub fn copy(&mut self, data: &[u8], with_room: bool) {
        if with_room && self.buf.is_empty() && !data.is_empty() {
            self.buf.resize(LINE_ROOM, 0);
            self.room = LINE_ROOM;
        }
        self.buf.extend_from_slice(data);
    }

    /// Adds lent bytes after everything so far.
    pub fn lend(&mut self, lent: Lent) {
        if self.buf.len() > self.room {
            // What was copied before goes first.
            let mut before = std::mem::take(&mut self.buf);
            before.drain(..self.room);
            self.pieces_len += before.len();
            self.pieces.push(Segment::Owned(before));
        } else {
            self.buf.clear();
        }
        self.room = 0;
        self.pieces_len += lent.len();
        self.lent_len += lent.len();
        self.pieces.push(Segment::Lent(lent));
    }

    /// Makes it one buffer of copies (lent pieces are copied, then released).
    pub fn flatten(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let mut flat = Vec::with_capacity(self.len());
        for piece in self.pieces.drain(..) {
            flat.extend_from_slice(piece.bytes());
        }
        flat.extend_from_slice(&self.buf[self.room..]);
        *self = Pending::from_vec(flat);
    }

    /// All the bytes, when none is lent (after `flatten`).
    pub fn flat_bytes(&self) -> Option<&[u8]> {
        self.pieces.is_empty().then(|| &self.buf[self.room..])
    }

    /// Drops a copy buffer or piece list larger than `max` bytes (a flush of many lent pieces
    /// leaves a long list behind).
    pub fn shrink(&mut self, max: usize) {
        if self.buf.capacity() > max {
            self.buf = Vec::new();
        }
        if self.pieces.capacity() * size_of::<Segment>() > max {
            self.pieces = Vec::new();
        }
    }

    /// Queues the bytes, as a chunk when `chunk` gives its size line and end, and leaves this
    /// empty for the next bytes with its buffers: the piece list, and a copy buffer (see
    /// `keep_buffer`).
    pub fn queue(&mut self, chunk: Option<(&[u8], &[u8])>, out: &mut OutQueue) {
        let mut buf = std::mem::take(&mut self.buf);
        let room = std::mem::replace(&mut self.room, 0);
        self.pieces_len = 0;
        self.lent_len = 0;
        if let Some((line, end)) = chunk {
            if self.pieces.is_empty() && out.is_empty() && room >= line.len() {
                // In place: the size line goes into the room before the data, the chunk
                // leaves as one buffer, and its bytes are copied nowhere.
                let start = room - line.len();
                buf[start..room].copy_from_slice(line);
                buf.extend_from_slice(end);
                let copied = out.push_from(buf, start);
                return self.keep_buffer(copied, out);
            }
            out.push_copy(line);
        }
        for piece in self.pieces.drain(..) {
            out.push_segment(piece);
        }
        let copied = out.push_from(buf, room);
        if let Some((_, end)) = chunk {
            out.push_copy(end);
        }
        self.keep_buffer(copied, out);
    }

    /// The copy buffer for the next bytes: the queued one when the queue copied its bytes and
    /// handed it back, else one the queue has finished sending. Called once the flush's bytes
    /// are all queued, as the last of them may gather into that spare.
    fn keep_buffer(&mut self, copied: Option<Vec<u8>>, out: &mut OutQueue) {
        self.buf = match copied {
            Some(b) if b.capacity() > 0 => b,
            _ => out.take_spare(),
        };
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lent(bytes: &'static [u8]) -> Lent {
        // SAFETY: static bytes stay readable; no release.
        unsafe { Lent::new(bytes.as_ptr(), bytes.len(), None, std::ptr::null_mut()) }
    }

    /// A flush leaves its buffers to the next bytes: the piece list always, the copy buffer
    /// when the queue copied it. So a response that lends or copies every time allocates
    /// nothing per flush once it has served one.
    #[test]
    fn queue_hands_back_its_buffers_for_the_next_bytes() {
        let mut out = OutQueue::default();
        let mut p = Pending::default();
        p.copy(b"head ", false);
        p.lend(lent(b"lent"));
        p.copy(b" tail", false);
        p.queue(None, &mut out);
        assert_eq!(out.contents(), b"head lent tail");
        assert_eq!(p.len(), 0);
        assert!(p.pieces.is_empty() && p.pieces.capacity() >= 2);

        // Behind queued output a small piece is copied, and its buffer comes back, empty.
        p.copy(b"more", true);
        p.queue(Some((b"4\r\n", b"\r\n")), &mut out);
        assert_eq!(out.contents(), b"head lent tail4\r\nmore\r\n");
        assert!(p.buf.is_empty() && p.buf.capacity() > 0);
        assert_eq!((p.len(), p.room), (0, 0));

        // What a session keeps while it waits for reuse stays bounded.
        for _ in 0..1000 {
            p.lend(lent(b"x"));
        }
        p.queue(None, &mut out);
        assert!(p.pieces.capacity() * size_of::<Segment>() > 4096);
        p.shrink(4096);
        assert_eq!(p.pieces.capacity(), 0);
    }
}
