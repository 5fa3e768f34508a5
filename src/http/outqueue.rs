//! Framed output waiting for the transport: buffers in order, small pieces gathered into one,
//! so that a transport can send a flush with one plain `send` or one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::lent::Lent;

/// Segments larger than this are kept as they are; smaller pieces are copied into one gathering
/// buffer, so a flush of head, chunk framing and a few KiB of body goes out as one plain send.
const SMALL: usize = 4096;
/// A gathering buffer starts this large; one up to four times larger is kept for reuse.
const GATHER: usize = 8192;

/// Bytes waiting in the queue: the library's own, or lent by the module.
pub enum Segment {
    Owned(Vec<u8>),
    Lent(Lent),
}

impl Segment {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Segment::Owned(v) => v,
            Segment::Lent(l) => l.bytes(),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the first `n` bytes.
    fn skip(&mut self, n: usize) {
        match self {
            Segment::Owned(v) => {
                v.drain(..n.min(v.len()));
            }
            Segment::Lent(l) => l.advance(n),
        }
    }
}

#[derive(Default)]
pub struct OutQueue {
    segments: VecDeque<Segment>,
    /// Bytes of the front segment already written.
    front_offset: usize,
    /// Unwritten bytes in the queue.
    len: usize,
    /// Of those, the bytes of lent segments (the module's memory).
    lent: usize,
    /// Whether the back segment is a gathering buffer that small copies may extend.
    back_is_small: bool,
    /// A drained gathering buffer kept for the next one, so steady streaming allocates none.
    spare: Vec<u8>,
}

impl OutQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unwritten bytes that are the library's copies, not lent by the module: what counts
    /// against `max_pending_bytes`.
    pub fn copied_len(&self) -> usize {
        self.len - self.lent
    }

    /// Queues `data[start..]`. Into an empty queue, or when large, the buffer goes as it is
    /// (`start` skipped as already written); a small piece behind others is copied into the
    /// gathering buffer, and the buffer is handed back for reuse.
    pub fn push_from(&mut self, data: Vec<u8>, start: usize) -> Option<Vec<u8>> {
        let start = start.min(data.len());
        let n = data.len() - start;
        if n == 0 {
            return Some(data);
        }
        if !self.is_empty() && n <= SMALL {
            self.push_copy(&data[start..]);
            return Some(data);
        }
        self.push_whole(Segment::Owned(data), start);
        None
    }

    /// Queues lent bytes: copied when few and behind others (then released), else as they are.
    pub fn push_lent(&mut self, lent: Lent) {
        if lent.is_empty() {
            return;
        }
        if !self.is_empty() && lent.len() <= SMALL {
            self.push_copy(lent.bytes());
            return;
        }
        self.push_whole(Segment::Lent(lent), 0);
    }

    /// Queues a segment as it is, behind the others; its first `start` bytes are not sent.
    fn push_whole(&mut self, mut seg: Segment, start: usize) {
        let n = seg.len() - start;
        if self.is_empty() {
            self.clear();
            self.front_offset = start;
        } else if start > 0 {
            // Only the front segment has an offset.
            seg.skip(start);
        }
        self.len += n;
        if let Segment::Lent(_) = seg {
            self.lent += n;
        }
        self.segments.push_back(seg);
        self.back_is_small = false;
    }

    /// Queues a segment of either kind.
    pub fn push_segment(&mut self, segment: Segment) {
        match segment {
            Segment::Owned(v) => {
                if let Some(v) = self.push_from(v, 0) {
                    self.keep_spare(v);
                }
            }
            Segment::Lent(l) => self.push_lent(l),
        }
    }

    /// The kept gathering buffer, for a caller that fills a buffer of its own (empty if none).
    pub fn take_spare(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare)
    }

    /// Queues a copy of a few bytes (framing), gathered with neighbouring small pieces.
    pub fn push_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if self.back_is_small {
            if let Some(Segment::Owned(back)) = self.segments.back_mut() {
                back.extend_from_slice(data);
                return;
            }
        }
        let mut seg = std::mem::take(&mut self.spare);
        seg.reserve(data.len().max(GATHER));
        seg.extend_from_slice(data);
        self.segments.push_back(Segment::Owned(seg));
        self.back_is_small = true;
    }

    /// Lets `write` append bytes to the gathering buffer (a response head, serialised in place).
    /// Returns how many it wrote.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        if !self.back_is_small || self.segments.is_empty() {
            let mut seg = std::mem::take(&mut self.spare);
            seg.reserve(GATHER);
            self.segments.push_back(Segment::Owned(seg));
            self.back_is_small = true;
        }
        let Some(Segment::Owned(back)) = self.segments.back_mut() else {
            return 0;
        };
        let before = back.len();
        write(back);
        let n = back.len() - before;
        self.len += n;
        n
    }

    /// Moves everything queued in `other` to the back of this queue: a few KiB are copied
    /// into this queue's gathering buffer (so a batch of small pipelined responses is one
    /// buffer, and `other` keeps its own for reuse), more are moved without copying.
    pub fn append(&mut self, other: &mut OutQueue) {
        if other.is_empty() {
            return;
        }
        if other.len <= SMALL {
            for (i, seg) in other.segments.iter().enumerate() {
                let start = if i == 0 { other.front_offset } else { 0 };
                self.push_copy(&seg.bytes()[start..]);
            }
            other.clear();
            return;
        }
        if other.front_offset > 0 {
            if let Some(front) = other.segments.front_mut() {
                front.skip(other.front_offset);
            }
        }
        self.len += other.len;
        self.lent += other.lent;
        self.segments.append(&mut other.segments);
        self.back_is_small = other.back_is_small;
        other.clear();
    }

    /// Drops everything queued, keeping a gathering buffer for reuse.
    pub fn clear(&mut self) {
        while let Some(seg) = self.segments.pop_front() {
            self.keep_segment(seg);
        }
        self.front_offset = 0;
        self.len = 0;
        self.lent = 0;
        self.back_is_small = false;
    }

    /// The only unwritten buffer, when there is exactly one (a transport sends it plainly).
    #[inline]
    pub fn single(&self) -> Option<&[u8]> {
        match self.segments.len() {
            1 => self.segments[0].bytes().get(self.front_offset..),
            _ => None,
        }
    }

    /// Fills `iov` with the unwritten bytes, front first, as far as it has room; returns how
    /// many slices it filled.
    pub fn slices<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, (i, seg)) in iov.iter_mut().zip(self.segments.iter().enumerate()) {
            let start = if i == 0 { self.front_offset } else { 0 };
            *slot = IoSlice::new(&seg.bytes()[start..]);
            n += 1;
        }
        n
    }

    /// Keeps a drained buffer as the next gathering buffer if it suits better than the one kept.
    fn keep_segment(&mut self, seg: Segment) {
        if let Segment::Owned(buf) = seg {
            self.keep_spare(buf);
        }
    }

    fn keep_spare(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= GATHER * 4 && buf.capacity() > self.spare.capacity() {
            buf.clear();
            self.spare = buf;
        }
    }

    /// Drops the kept gathering buffer (an idle connection holds none).
    pub fn release_spare(&mut self) {
        self.spare = Vec::new();
    }

    /// Drops the first `n` unwritten bytes: a transport wrote them.
    #[inline]
    pub fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.segments.front() else {
                break;
            };
            let left = front.len() - self.front_offset;
            if self.lent > 0 {
                if let Segment::Lent(_) = front {
                    self.lent -= n.min(left);
                }
            }
            if n < left {
                self.front_offset += n;
                return;
            }
            n -= left;
            self.front_offset = 0;
            if let Some(done) = self.segments.pop_front() {
                self.keep_segment(done);
            }
        }
        if self.segments.is_empty() {
            self.back_is_small = false;
        }
    }

    /// Everything queued, for tests of the framing filters.
    #[cfg(test)]
    pub fn contents(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, s) in self.segments.iter().enumerate() {
            v.extend_from_slice(&s.bytes()[if i == 0 { self.front_offset } else { 0 }..]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::send_queue;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn gathers_and_writes_in_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut q = OutQueue::default();
        q.push_copy(b"head ");
        q.push_from(vec![b'y'; 1000], 0);
        q.push_copy(b"\r\n");
        assert_eq!(
            q.segments.len(),
            1,
            "small pieces are gathered into one buffer"
        );
        q.push_from(vec![b'x'; 5000], 0);
        q.push_copy(b"\r\n");
        q.push_copy(b"0\r\n\r\n");
        assert_eq!(q.segments.len(), 3, "a large body is queued as it is");
        let expect = q.contents();
        let n = send_queue(a.as_raw_fd(), &mut q).unwrap();
        assert_eq!(n, expect.len());
        assert!(q.is_empty());
        assert!(
            q.spare.capacity() >= GATHER,
            "a drained gathering buffer is kept"
        );
        q.push_copy(b"again");
        assert_eq!(q.spare.capacity(), 0, "and reused");
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, expect);
    }

    #[test]
    fn a_buffer_queued_from_an_offset_sends_only_what_follows_it() {
        let mut q = OutQueue::default();
        let big: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
        // Into an empty queue: the offset is the front's.
        assert!(q.push_from(big.clone(), 10).is_none());
        // Behind others: large, queued as it is from the offset; small, copied from it.
        assert!(q.push_from(big.clone(), 7).is_none());
        assert!(q.push_from(big.clone(), 5990).is_some());
        let mut expect = big[10..].to_vec();
        expect.extend_from_slice(&big[7..]);
        expect.extend_from_slice(&big[5990..]);
        assert_eq!(q.len(), expect.len());
        assert_eq!(q.contents(), expect);
    }

    /// Lent bytes are counted apart while queued, written or moved to another queue, so only
    /// the copies count against `max_pending_bytes`.
    #[test]
    fn copied_len_leaves_out_lent_bytes() {
        static PIECE: [u8; 10_000] = [b'l'; 10_000];
        // SAFETY: static bytes stay readable; no release.
        let lent = || unsafe { Lent::new(PIECE.as_ptr(), PIECE.len(), None, std::ptr::null_mut()) };
        let mut q = OutQueue::default();
        q.push_copy(b"head");
        q.push_lent(lent());
        q.push_copy(b"tail");
        assert_eq!((q.len(), q.copied_len()), (10_008, 8));
        q.consume(6);
        assert_eq!((q.len(), q.copied_len()), (10_002, 4));
        // Moved whole behind another queue's bytes, the lent segment stays lent.
        let mut conn = OutQueue::default();
        conn.push_copy(&[b'c'; 5000]);
        conn.append(&mut q);
        assert_eq!((conn.len(), conn.copied_len()), (15_002, 5_004));
        assert_eq!((q.len(), q.copied_len()), (0, 0));
        conn.consume(5_002);
        assert_eq!((conn.len(), conn.copied_len()), (10_000, 4));
        conn.consume(10_000);
        assert_eq!((conn.len(), conn.copied_len()), (0, 0));
    }

    #[test]
    fn partial_writes_keep_the_rest() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut q = OutQueue::default();
        let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        q.push_from(big.clone(), 0);
        let first = send_queue(a.as_raw_fd(), &mut q).unwrap();
        assert!(first < big.len());
        assert_eq!(q.len(), big.len() - first);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        while !q.is_empty() {
            send_queue(a.as_raw_fd(), &mut q).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(a);
        assert_eq!(reader.join().unwrap(), big);
    }

    #[test]
    fn closed_peer_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let mut q = OutQueue::default();
        q.push_copy(b"data");
        let e = send_queue(a.as_raw_fd(), &mut q).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }
}
