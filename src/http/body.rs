//! A buffered request body: kept in memory up to a threshold (`body_buffer_bytes`), beyond it
//! written to an unlinked temporary file in `body_temp_dir` and, once complete, mapped
//! read-only, so a handler still sees one contiguous slice while the memory that uploads hold
//! stays bounded whatever their number (nginx's `client_body_temp_path` does the same).
//!
//! [`BodyWriter`] receives the bytes (the caller need not know where they go); its `finish`
//! gives the [`Body`] a handler reads. The file system calls are the four functions of
//! [`spool`].

use std::fs::File;
use std::io;
use std::path::Path;

/// Largest staging vector a spooled body keeps between two `append_from` calls.
const STAGING_KEPT: usize = 16 * 1024;

/// Where a body goes once it outgrows memory.
#[derive(Clone, Copy, Debug)]
pub struct Spill<'a> {
    /// Bodies up to this many bytes stay in memory.
    pub threshold: usize,
    /// The directory of the spool files (each unlinked as soon as it exists).
    pub dir: &'a Path,
}

/// A body being received.
#[derive(Debug, Default)]
pub struct BodyWriter {
    to: Store,
}

/// Boxed spool state: a writer is no larger than a `Vec`, so the connection state that holds
/// one stays small (moved on every request).
#[derive(Debug)]
enum Store {
    Memory(Vec<u8>),
    File(Box<SpoolFile>),
}

#[derive(Debug)]
struct SpoolFile {
    /// Unlinked, holding `len` bytes.
    file: File,
    len: usize,
    /// Receives decoded bytes before they are written (see `append_from`).
    staging: Vec<u8>,
}

impl Default for Store {
    fn default() -> Self {
        Store::Memory(Vec::new())
    }
}

impl BodyWriter {
    /// Bytes received so far.
    pub fn len(&self) -> usize {
        match &self.to {
            Store::Memory(v) => v.len(),
            Store::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body went to a file.
    pub fn is_spooled(&self) -> bool {
        matches!(self.to, Store::File(_))
    }

    /// Appends `data`; past `spill.threshold` the body moves to a spool file. An error means
    /// the spool file could not be created or written: the body is lost.
    pub fn append(&mut self, data: &[u8], spill: &Spill<'_>) -> io::Result<()> {
        match &mut self.to {
            Store::Memory(v) if v.len() + data.len() <= spill.threshold => {
                reserve_bounded(v, data.len(), spill.threshold);
                v.extend_from_slice(data);
                Ok(())
            }
            Store::Memory(_) => {
                self.move_to_file(spill)?;
                // Now a file: this call writes.
                self.append(data, spill)
            }
            Store::File(f) => {
                spool::write_all(&mut f.file, data)?;
                f.len += data.len();
                Ok(())
            }
        }
    }

    /// Moves the bytes held in memory to a new spool file (and lets go of their memory).
    fn move_to_file(&mut self, spill: &Spill<'_>) -> io::Result<()> {
        if let Store::Memory(v) = &mut self.to {
            let mut file = spool::create_unlinked(spill.dir)?;
            spool::write_all(&mut file, v)?;
            self.to = Store::File(Box::new(SpoolFile {
                file,
                len: v.len(),
                staging: Vec::new(),
            }));
        }
        Ok(())
    }

    /// Appends what `fill` pushes onto the vector it is given (a decoder's output), and
    /// returns `fill`'s result with the outcome of storing it.
    pub fn append_from<T>(
        &mut self,
        spill: &Spill<'_>,
        fill: impl FnOnce(&mut Vec<u8>) -> T,
    ) -> (T, io::Result<()>) {
        let mut staging = match &mut self.to {
            Store::Memory(v) => {
                let out = fill(v);
                if v.len() <= spill.threshold {
                    return (out, Ok(()));
                }
                return (out, self.move_to_file(spill));
            }
            Store::File(f) => std::mem::take(&mut f.staging),
        };
        staging.clear();
        let out = fill(&mut staging);
        let stored = self.append(&staging, spill);
        if let Store::File(f) = &mut self.to {
            // Kept for the next call when small: a trickled upload decodes a little at a time.
            if staging.capacity() <= STAGING_KEPT {
                staging.clear();
                f.staging = staging;
            }
        }
        (out, stored)
    }

    /// The complete body: the memory copy, or the spool file mapped read-only.
    pub fn finish(self) -> io::Result<Body> {
        match self.to {
            Store::Memory(v) => Ok(Body(Kept::Memory(v))),
            Store::File(f) if f.len == 0 => Ok(Body::default()),
            Store::File(f) => Ok(Body(Kept::Mapped(spool::map_read_only(&f.file, f.len)?))),
        }
    }
}

/// Reserves room for `extra` more bytes without growing the capacity past `threshold` (the
/// caller checked that `len + extra` fits): appended bodies never hold more than that.
fn reserve_bounded(v: &mut Vec<u8>, extra: usize, threshold: usize) {
    let need = v.len() + extra;
    if need > v.capacity() {
        let grown = (v.capacity() * 2).clamp(need, threshold.max(need));
        v.reserve_exact(grown - v.len());
    }
}

/// A complete request body, readable as one slice while it lives.
#[derive(Debug, Default)]
pub struct Body(Kept);

#[derive(Debug)]
enum Kept {
    Memory(Vec<u8>),
    Mapped(spool::Mapping),
}

impl Default for Kept {
    fn default() -> Self {
        Kept::Memory(Vec::new())
    }
}

impl Body {
    /// A body held in memory.
    pub fn from_vec(v: Vec<u8>) -> Body {
        Body(Kept::Memory(v))
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Kept::Memory(v) => v,
            Kept::Mapped(m) => m.as_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body is a mapping of its spool file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Kept::Mapped(_))
    }
}

/// The file system calls of spooling: create an unlinked file, write to it, map it.
pub mod spool {
    use std::ffi::c_void;
    use std::fs::{File, OpenOptions};
    use std::io::{self, ErrorKind, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A new, empty, readable and writable file in `dir` that no name refers to: it is gone
    /// once the last descriptor and mapping of it are. `O_TMPFILE` where the file system has
    /// it (never a name), else a fresh name removed at once.
    pub fn create_unlinked(dir: &Path) -> io::Result<File> {
        let anonymous = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(dir);
        match anonymous {
            Ok(f) => Ok(f),
            // The file system (or an old kernel, EISDIR) does not do O_TMPFILE.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                create_named_then_unlink(dir)
            }
            Err(e) => Err(e),
        }
    }

    /// `create_unlinked` without `O_TMPFILE`: a new name (`create_new`, mode 0600), removed
    /// before the file is used.
    pub fn create_named_then_unlink(dir: &Path) -> io::Result<File> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let mut tries = 0;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = dir.join(format!(
                ".httpsrv-body-{}-{}-{nanos:x}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(f) => {
                    std::fs::remove_file(&path)?;
                    return Ok(f);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data` at the file's end.
    pub fn write_all(file: &mut File, data: &[u8]) -> io::Result<()> {
        file.write_all(data)
    }

    /// The first `len` bytes of `file`, mapped read-only. `len` is not 0 and the file holds at
    /// least `len` bytes (this module wrote them).
    pub fn map_read_only(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh private read-only mapping chosen by the kernel (NULL address): it
        // overlaps no memory of ours. The descriptor is open for reading; failure is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        match NonNull::new(ptr.cast::<u8>()) {
            Some(ptr) => Ok(Mapping { ptr, len }),
            None => Err(io::Error::other("mmap returned NULL")),
        }
    }

    /// A read-only mapping of a spool file, unmapped when dropped. It keeps the file's data
    /// alive after its descriptor is closed.
    #[derive(Debug)]
    pub struct Mapping {
        ptr: NonNull<u8>,
        len: usize,
    }

    // SAFETY: the mapping is read-only memory owned by this value alone; reading it from any
    // thread is sound, and only `drop` (with `&mut self`) unmaps it.
    unsafe impl Send for Mapping {}
    // SAFETY: as above: shared references only read.
    unsafe impl Sync for Mapping {}

    impl Mapping {
        pub fn as_slice(&self) -> &[u8] {
            // SAFETY: `ptr` is a live mapping of `len` readable bytes until `drop`. The file
            // behind it has no name and no other descriptor in the library, so nothing
            // truncates it under the mapping (which would make reads fault).
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `ptr` and `len` are exactly a mapping made by `map_read_only`, unmapped
            // only here, and no slice of it outlives `self`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast::<c_void>(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir()
                .join(format!("httpsrv-body-unit-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn entries(&self) -> usize {
            std::fs::read_dir(&self.0).unwrap().count()
        }
        fn spill(&self, threshold: usize) -> Spill<'_> {
            Spill {
                threshold,
                dir: &self.0,
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 31 + seed) % 251) as u8).collect()
    }

    #[test]
    fn small_bodies_stay_in_memory() {
        let dir = Dir::new("small");
        let spill = dir.spill(1000);
        let mut w = BodyWriter::default();
        let data = pattern(1000, 1);
        for piece in data.chunks(7) {
            w.append(piece, &spill).unwrap();
        }
        assert!(!w.is_spooled());
        let body = w.finish().unwrap();
        assert!(!body.is_mapped());
        assert_eq!(body.as_slice(), &data[..]);
        assert_eq!(dir.entries(), 0);
    }

    #[test]
    fn large_bodies_spool_unlinked_and_map() {
        let dir = Dir::new("large");
        let spill = dir.spill(1000);
        let data = pattern(300_000, 2);
        for cut in [1, 999, 1000, 1001, 4096] {
            let mut w = BodyWriter::default();
            for piece in data.chunks(cut) {
                w.append(piece, &spill).unwrap();
                assert_eq!(dir.entries(), 0, "the spool file has no name");
            }
            assert!(w.is_spooled());
            let body = w.finish().unwrap();
            assert!(body.is_mapped());
            assert_eq!(body.len(), data.len());
            assert!(body.as_slice() == &data[..], "cut {cut}");
        }
    }

    #[test]
    fn append_from_crosses_the_threshold_in_any_split() {
        let dir = Dir::new("from");
        let spill = dir.spill(100);
        let data = pattern(5000, 3);
        for cut in [1, 60, 100, 101, 333] {
            let mut w = BodyWriter::default();
            for piece in data.chunks(cut) {
                let (n, stored) = w.append_from(&spill, |v| {
                    v.extend_from_slice(piece);
                    piece.len()
                });
                stored.unwrap();
                assert_eq!(n, piece.len());
            }
            assert_eq!(w.len(), data.len());
            let body = w.finish().unwrap();
            assert!(body.as_slice() == &data[..], "cut {cut}");
        }
    }

    #[test]
    fn memory_never_holds_more_than_the_threshold() {
        let dir = Dir::new("cap");
        let spill = dir.spill(1000);
        let mut w = BodyWriter::default();
        for _ in 0..100 {
            w.append(&[1; 9], &spill).unwrap();
            if let Store::Memory(v) = &w.to {
                assert!(v.capacity() <= 1000, "{}", v.capacity());
            }
        }
    }

    #[test]
    fn named_fallback_leaves_no_name() {
        let dir = Dir::new("named");
        let mut f = spool::create_named_then_unlink(&dir.0).unwrap();
        assert_eq!(dir.entries(), 0);
        spool::write_all(&mut f, b"abc").unwrap();
        let m = spool::map_read_only(&f, 3).unwrap();
        drop(f);
        assert_eq!(m.as_slice(), b"abc");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = Dir::new("gone");
        let gone = dir.0.join("nope");
        let spill = Spill {
            threshold: 4,
            dir: &gone,
        };
        let mut w = BodyWriter::default();
        w.append(b"abcd", &spill).unwrap();
        let e = w.append(b"e", &spill).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(spool::create_named_then_unlink(&gone).is_err());
    }

    #[test]
    fn empty_and_from_vec() {
        assert!(Body::default().is_empty());
        assert_eq!(Body::from_vec(b"xy".to_vec()).as_slice(), b"xy");
        let dir = Dir::new("empty");
        let spill = dir.spill(0);
        let mut w = BodyWriter::default();
        w.append(b"", &spill).unwrap();
        assert!(w.finish().unwrap().is_empty());
    }
}
