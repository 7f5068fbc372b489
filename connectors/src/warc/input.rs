//! A sliding window over a file: large reads, bounded memory, cheap rewinds.
//!
//! `buf[start..end]` holds the file bytes from `offset()` on. `fill_to(n)` makes
//! at least `n` bytes available (fewer only at end of file) by moving the
//! unread rest to the front and reading as much as the buffer takes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

pub(crate) struct Input<R = File> {
    src: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    eof: bool,
    /// A read error held back until the bytes read before it are used.
    error: Option<io::Error>,
}

impl<R: Read + Seek> Input<R> {
    /// A window of `capacity` bytes over `src`, whose read position is `offset`.
    pub(crate) fn new(src: R, capacity: usize, offset: u64) -> Self {
        Input { src, buf: vec![0; capacity], start: 0, end: 0, buf_offset: offset, eof: false, error: None }
    }

    /// File offset of the first unread byte.
    pub(crate) fn offset(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    /// The unread bytes in memory.
    pub(crate) fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// True once nothing more will be read: the file has been read to its end
    /// or a read failed (the window may still hold bytes).
    pub(crate) fn at_eof(&self) -> bool {
        self.eof || self.error.is_some()
    }

    /// Marks `n` bytes as read. `n` is clamped to what is available.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
    }

    /// Makes at least `want` bytes available unless the file ends, or a read
    /// fails, first.
    ///
    /// # Errors
    ///
    /// A read error of the underlying file, returned once no bytes read
    /// before it remain (then the input counts as ended).
    pub(crate) fn fill_to(&mut self, want: usize) -> io::Result<()> {
        if self.end - self.start >= want || self.at_eof() {
            if self.start == self.end {
                if let Some(e) = self.error.take() {
                    self.eof = true;
                    return Err(e);
                }
            }
            return Ok(());
        }
        if self.buf.len() - self.start < want || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.buf_offset += self.start as u64;
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
        }
        while self.end - self.start < want {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.start == self.end {
                        self.eof = true;
                        return Err(e);
                    }
                    self.error = Some(e);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Moves the read position to `offset` (backwards or forwards), re-reading
    /// from the file if it is outside the window.
    ///
    /// # Errors
    ///
    /// A seek error of the underlying file.
    pub(crate) fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        let buffered_end = self.buf_offset + self.end as u64;
        if offset >= self.buf_offset && offset <= buffered_end {
            // In the window: `offset - buf_offset <= end`, which is a usize.
            self.start = usize::try_from(offset - self.buf_offset).unwrap_or(self.end);
            return Ok(());
        }
        self.src.seek(SeekFrom::Start(offset))?;
        self.buf_offset = offset;
        self.start = 0;
        self.end = 0;
        self.eof = false;
        self.error = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn fill_slide_and_seek() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut input = Input::new(Cursor::new(data.clone()), 64, 0);
        input.fill_to(10).unwrap();
        assert!(input.avail().len() >= 10);
        input.consume(60);
        input.fill_to(30).unwrap();
        assert_eq!(input.offset(), 60);
        assert_eq!(&input.avail()[..30], &data[60..90]);
        // a request larger than the buffer grows it
        input.fill_to(200).unwrap();
        assert_eq!(&input.avail()[..200], &data[60..260]);
        // rewind inside the window, then outside it
        input.seek_to(100).unwrap();
        assert_eq!(input.avail()[0], data[100]);
        input.seek_to(5).unwrap();
        input.fill_to(1).unwrap();
        assert_eq!(input.offset(), 5);
        assert_eq!(input.avail()[0], data[5]);
        input.seek_to(990).unwrap();
        input.fill_to(100).unwrap();
        assert_eq!(input.avail(), &data[990..]);
        assert!(input.at_eof());
    }
}
