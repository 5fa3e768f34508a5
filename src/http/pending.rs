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

    /// Drops the bytes (releasing lent ones), keeping the copy buffer.
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.pieces_len = 0;
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

    /// Uses `spare` as the copy buffer if there is none.
    pub fn reuse_buffer(&mut self, mut spare: Vec<u8>) {
        if self.buf.capacity() == 0 {
            spare.clear();
            self.buf = spare;
        }
    }

    /// Drops a copy buffer larger than `max` bytes.
    pub fn shrink(&mut self, max: usize) {
        if self.buf.capacity() > max {
            self.buf = Vec::new();
        }
    }

    /// The copy buffer, for reuse (lent pieces are released).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Queues the bytes, as a chunk when `chunk` gives its size line and end. Returns the copy
    /// buffer when its bytes were copied (for reuse).
    pub fn queue(mut self, chunk: Option<(&[u8], &[u8])>, out: &mut OutQueue) -> Option<Vec<u8>> {
        if let Some((line, end)) = chunk {
            if self.pieces.is_empty() && out.is_empty() && self.room >= line.len() {
                // In place: the size line goes into the room before the data, the chunk
                // leaves as one buffer, and its bytes are copied nowhere.
                let start = self.room - line.len();
                self.buf[start..self.room].copy_from_slice(line);
                self.buf.extend_from_slice(end);
                return out.push_from(self.buf, start);
            }
            out.push_copy(line);
        }
        for piece in self.pieces {
            out.push_segment(piece);
        }
        let spare = out.push_from(self.buf, self.room);
        if let Some((_, end)) = chunk {
            out.push_copy(end);
        }
        spare
    }
}
