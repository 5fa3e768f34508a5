//! Body bytes a module lends instead of copying (`httpsrv_response_append_ref`), and the
//! release of them.
//!
//! A release callback is module code, so it must never run while the library holds a lock (it
//! may call back into the library). Dropping a `Lent` therefore only notes the release on the
//! current thread; `run_releases` runs the noted ones at points where no lock is held: the end
//! of every C call, of every loop iteration, and of every pool job.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use crate::abi::httpsrv_release_fn;

/// Bytes owned by the module, readable until their release runs.
pub struct Lent {
    ptr: *const u8,
    len: usize,
    release: httpsrv_release_fn,
    userdata: *mut c_void,
}

// SAFETY: the module promises the bytes stay readable from any thread until `release`, and
// that `release` may run on any library thread.
unsafe impl Send for Lent {}

impl Lent {
    /// # Safety
    /// `ptr` points to `len` bytes that stay readable, unchanged, until `release(userdata)` runs
    /// (or, with no `release`, as long as the library may send them).
    pub unsafe fn new(
        ptr: *const u8,
        len: usize,
        release: httpsrv_release_fn,
        userdata: *mut c_void,
    ) -> Lent {
        Lent {
            ptr,
            len,
            release,
            userdata,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the contract of `new`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives the bytes back without a release: the module keeps them (the append failed).
    pub fn refuse(mut self) {
        self.release = None;
    }

    /// Drops the first `n` bytes (already sent).
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len);
        // SAFETY: stays within the lent bytes.
        self.ptr = unsafe { self.ptr.add(n) };
        self.len -= n;
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let userdata = self.userdata as usize;
            // Only fails while this thread exits; the release is lost then, not run under a lock.
            let _ = RELEASES.try_with(|r| r.borrow_mut().push((release, userdata)));
            let _ = DUE.try_with(|d| d.set(true));
        }
    }
}

type Release = (unsafe extern "C" fn(*mut c_void), usize);

thread_local! {
    static RELEASES: RefCell<Vec<Release>> = const { RefCell::new(Vec::new()) };
    /// Some release is noted: the check every C call makes is one load.
    static DUE: Cell<bool> = const { Cell::new(false) };
}

/// Whether a release is noted on this thread: the one load every C call makes, inlined.
#[inline]
pub fn releases_due() -> bool {
    DUE.with(Cell::get)
}

/// Runs the releases noted on this thread. Call only where no library lock is held.
pub fn run_releases() {
    if !DUE.with(|d| d.replace(false)) {
        return;
    }
    loop {
        // Taken out, as a release may drop more lent memory (it may call the library).
        let mut due = RELEASES.with(|r| std::mem::take(&mut *r.borrow_mut()));
        if due.is_empty() {
            return;
        }
        for (release, userdata) in due.drain(..) {
            // SAFETY: the module gave this callback and userdata to be called once, here.
            unsafe { release(userdata as *mut c_void) };
        }
        // Back for the next release, so lending allocates nothing per response.
        RELEASES.with(|r| {
            let mut r = r.borrow_mut();
            if r.is_empty() {
                *r = due;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RELEASED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count(ud: *mut c_void) {
        RELEASED.fetch_add(ud as usize, Ordering::SeqCst);
    }

    #[test]
    fn release_runs_once_and_only_at_a_release_point() {
        static DATA: &[u8] = b"hello world";
        // SAFETY: static bytes stay readable; `count` only counts.
        let mut l = unsafe { Lent::new(DATA.as_ptr(), DATA.len(), Some(count), 5 as *mut c_void) };
        l.advance(6);
        assert_eq!(l.bytes(), b"world");
        drop(l);
        assert_eq!(RELEASED.load(Ordering::SeqCst), 0, "not inside the drop");
        run_releases();
        assert_eq!(RELEASED.load(Ordering::SeqCst), 5);
        run_releases();
        assert_eq!(RELEASED.load(Ordering::SeqCst), 5, "exactly once");
        // SAFETY: no bytes and no release.
        drop(unsafe { Lent::new(DATA.as_ptr(), 0, None, std::ptr::null_mut()) });
        run_releases();
    }
}
