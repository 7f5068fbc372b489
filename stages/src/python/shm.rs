//! A worker's batch buffer: memory that smelt and one Python worker both map,
//! so a batch's Arrow IPC bytes cross without a pipe.
//!
//! ```text
//! smelt: joined::write (or StreamWriter) ──encode──► Shared (memfd, mapped read-write) ──M frame (length, size)──► worker
//! worker: mmap of the same memfd (read-only) ──pyarrow IPC reader, zero-copy──► the batch
//! ```
//! Through a pipe, each megabyte of text was copied into the kernel's pipe
//! pages and out again, with a page allocated and freed per 4 KiB on both
//! sides; most of the stage's own time went there. The memfd is inherited
//! by the worker (its number is the worker's argument) and lives as long as
//! the worker and smelt keep it open, so nothing is left behind when either
//! is killed. It grows to the largest batch sent (at least 1 MiB), never
//! shrinks, and the worker maps it again when the size in a frame changes.
//!
//! smelt writes a batch only while the worker waits for one (the protocol
//! is one frame, one answer), so the two never touch the bytes at once.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// Smallest mapping (the first batch's size is not known in advance).
const MIN_SIZE: usize = 1 << 20;

/// The shared buffer of one worker.
pub struct Shared {
    fd: OwnedFd,
    map: Option<(NonNull<u8>, usize)>,
}

// SAFETY: the mapping is owned by this value alone (no other reference to it
// in this process), so moving it to another thread is moving a Vec.
unsafe impl Send for Shared {}

impl Shared {
    /// A new, empty buffer (a memfd with close-on-exec: [`Shared::inherit`]
    /// clears that in the worker's process only).
    ///
    /// # Errors
    /// The system has no memfd (not Linux, or a sandbox that forbids it).
    pub fn new() -> io::Result<Shared> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: memfd_create(2) with a NUL-terminated name; the descriptor it returns is ours alone.
            let fd = unsafe { libc::memfd_create(c"smelt-python-batch".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and nothing else owns it.
            Ok(Shared { fd: unsafe { OwnedFd::from_raw_fd(fd) }, map: None })
        }
        #[cfg(not(target_os = "linux"))]
        Err(io::Error::new(io::ErrorKind::Unsupported, "no memfd on this system"))
    }

    /// The descriptor the worker inherits.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Clears close-on-exec on `fd`. Called in the forked child before exec
    /// (`CommandExt::pre_exec`): only async-signal-safe calls.
    ///
    /// # Errors
    /// fcntl(2) failed.
    pub fn inherit(fd: RawFd) -> io::Result<()> {
        // SAFETY: fcntl(2) F_SETFD on a descriptor the process holds; async-signal-safe.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The mapped size (what the worker must map): 0 before the first batch.
    pub fn size(&self) -> usize {
        self.map.map_or(0, |(_, len)| len)
    }

    /// A writer from the start of the buffer, growing it as needed.
    pub fn writer(&mut self) -> SharedWriter<'_> {
        SharedWriter { shared: self, pos: 0 }
    }

    /// Makes the buffer hold at least `need` bytes. What it holds stays: the
    /// new mapping shows the same file.
    fn grow(&mut self, need: usize) -> io::Result<()> {
        if need <= self.size() {
            return Ok(());
        }
        let page = 4096;
        let size = need.max(self.size() * 2).max(MIN_SIZE).div_ceil(page) * page;
        // SAFETY: ftruncate(2) on our memfd; growing zero-fills, and the old pages keep their bytes.
        if unsafe { libc::ftruncate(self.fd(), size as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new shared read-write mapping of the whole (now `size`-byte) memfd; checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, self.fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        self.unmap();
        self.map = Some((ptr, size));
        Ok(())
    }

    fn unmap(&mut self) {
        if let Some((ptr, len)) = self.map.take() {
            // SAFETY: `ptr`/`len` is a mapping this value made and no slice of it outlives `&mut self`.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), len);
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.unmap();
    }
}

/// Writes into a [`Shared`] buffer from its start.
pub struct SharedWriter<'a> {
    shared: &'a mut Shared,
    pos: usize,
}

impl SharedWriter<'_> {
    /// Bytes written.
    pub fn len(&self) -> usize {
        self.pos
    }
}

impl super::joined::Sink for SharedWriter<'_> {
    fn take(&mut self, n: usize) -> io::Result<&mut [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| io::Error::other("batch too large"))?;
        self.shared.grow(end)?;
        let (ptr, _) = self.shared.map.expect("mapped by grow");
        // SAFETY: `grow` made the mapping at least `end` bytes long; the slice borrows this writer, which borrows
        // the buffer mutably, so nothing else in this process reads or remaps it meanwhile (and the worker reads
        // only after the frame that follows).
        let out = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr().add(self.pos), n) };
        self.pos = end;
        Ok(out)
    }
}

impl Write for SharedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos.checked_add(buf.len()).ok_or_else(|| io::Error::other("batch too large"))?;
        self.shared.grow(end)?;
        let (ptr, _) = self.shared.map.expect("mapped by grow");
        // SAFETY: `grow` made the mapping at least `end` bytes long, and `buf` is not part of it (it is
        // the encoder's memory), so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), ptr.as_ptr().add(self.pos), buf.len());
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Seek};

    use super::*;

    #[test]
    fn writes_land_in_the_file_and_the_buffer_grows_keeping_them() {
        let mut s = Shared::new().unwrap();
        assert_eq!(s.size(), 0);
        let mut w = s.writer();
        w.write_all(b"hello ").unwrap();
        let big = vec![7u8; MIN_SIZE + 10];
        w.write_all(&big).unwrap();
        assert_eq!(w.len(), 6 + MIN_SIZE + 10);
        assert!(s.size() >= 6 + MIN_SIZE + 10 && s.size() % 4096 == 0, "{}", s.size());
        // What another process mapping the memfd sees: read it through a second descriptor.
        let mut f = std::fs::File::open(format!("/proc/self/fd/{}", s.fd())).unwrap();
        let mut head = [0u8; 8];
        f.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"hello \x07\x07");
        f.seek(io::SeekFrom::Start((6 + MIN_SIZE + 9) as u64)).unwrap();
        let mut last = [0u8; 2];
        f.read_exact(&mut last).unwrap();
        assert_eq!(last, [7, 0], "the last byte written, then the zero-filled rest");
        // A second batch writes from the start again without growing.
        let size = s.size();
        s.writer().write_all(b"again").unwrap();
        assert_eq!(s.size(), size);
    }
}
