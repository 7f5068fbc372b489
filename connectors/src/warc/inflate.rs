//! Gzip decoding: a safe wrapper over libdeflate for whole members in memory,
//! and a check that a candidate offset really starts a gzip member (used to
//! resynchronise after corrupt data).

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use flate2::{Decompress, FlushDecompress, Status};
use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
    libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// gzip magic bytes and the only compression method gzip defines (deflate).
pub(crate) const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Outcome of inflating one gzip member held entirely in memory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Member {
    /// The member decoded and its CRC-32 and size matched.
    Done { in_len: usize, out_len: usize },
    /// The output buffer was too small; nothing usable was written.
    NeedSpace,
    /// Corrupt, truncated, or longer than the input given.
    Bad,
}

/// A libdeflate decompressor (about 10 KiB of tables), reused for every member.
pub(crate) struct Libdeflate(NonNull<libdeflate_decompressor>);

// SAFETY: a libdeflate decompressor holds no thread-local state; it may move
// between threads as long as one thread uses it at a time, which `&mut self`
// guarantees.
unsafe impl Send for Libdeflate {}

impl Libdeflate {
    /// # Errors
    ///
    /// `OutOfMemory` when libdeflate cannot allocate its tables.
    pub(crate) fn new() -> std::io::Result<Self> {
        // SAFETY: plain allocation call with no arguments.
        let ptr = unsafe { libdeflate_alloc_decompressor() };
        NonNull::new(ptr)
            .map(Libdeflate)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "libdeflate_alloc_decompressor failed"))
    }

    /// Inflates the gzip member at the start of `input` (which may be followed
    /// by more data) into `out`.
    pub(crate) fn gzip_member(&mut self, input: &[u8], out: &mut [MaybeUninit<u8>]) -> Member {
        let mut in_len = 0usize;
        let mut out_len = 0usize;
        // SAFETY: the pointers and lengths describe live buffers borrowed for
        // the duration of the call; libdeflate only writes to `out` (and reads
        // back what it wrote), so uninitialised output memory is fine; the
        // decompressor is valid and used by this thread only.
        let result = unsafe {
            libdeflate_gzip_decompress_ex(
                self.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut in_len,
                &mut out_len,
            )
        };
        if result == libdeflate_result_LIBDEFLATE_SUCCESS {
            Member::Done { in_len, out_len }
        } else if result == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE {
            Member::NeedSpace
        } else {
            Member::Bad
        }
    }
}

impl Drop for Libdeflate {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// A streaming gzip decoder for one member (flate2 on zlib-rs).
pub(crate) fn streaming_decoder() -> Decompress {
    Decompress::new_gzip(15)
}

/// How a candidate member start fared when decoding its beginning.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Candidate {
    /// Decoded `VERIFY_OUT` bytes, or the whole member, without an error; or
    /// ran out of input at end of file with no error (a truncated last member).
    Plausible,
    /// Not a gzip member.
    Rejected,
}

/// Output that a candidate must produce without error to count as a member.
const VERIFY_OUT: u64 = 64 * 1024;

/// Checks whether `input` starts with a gzip member: the header is valid and
/// the deflate data decodes without error for [`VERIFY_OUT`] bytes of output,
/// to the member's end, or to the end of `input`. `scratch` is reused output space.
pub(crate) fn verify_member_start(input: &[u8], scratch: &mut Vec<u8>) -> Candidate {
    if input.len() < 4 || input[..3] != GZIP_MAGIC || input[3] & 0xe0 != 0 {
        return Candidate::Rejected;
    }
    scratch.resize(32 * 1024, 0);
    let mut dec = streaming_decoder();
    loop {
        let consumed = usize::try_from(dec.total_in()).unwrap_or(input.len()).min(input.len());
        let before = (dec.total_in(), dec.total_out());
        match dec.decompress(&input[consumed..], scratch, FlushDecompress::None) {
            Ok(Status::StreamEnd) => return Candidate::Plausible,
            Ok(_) => {
                if dec.total_out() >= VERIFY_OUT {
                    return Candidate::Plausible;
                }
                if (dec.total_in(), dec.total_out()) == before {
                    // Ran out of input with no error so far.
                    return Candidate::Plausible;
                }
            }
            Err(_) => return Candidate::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn libdeflate_reports_member_length() {
        let a = gz(b"first member");
        let b = gz(b"second");
        let mut both = a.clone();
        both.extend_from_slice(&b);
        let mut d = Libdeflate::new().unwrap();
        let mut out = vec![MaybeUninit::new(0u8); 64];
        assert_eq!(d.gzip_member(&both, &mut out), Member::Done { in_len: a.len(), out_len: 12 });
        assert_eq!(d.gzip_member(&both[a.len()..], &mut out), Member::Done { in_len: b.len(), out_len: 6 });
        assert_eq!(d.gzip_member(&both, &mut out[..4]), Member::NeedSpace);
        assert_eq!(d.gzip_member(&both[..a.len() - 1], &mut out), Member::Bad);
        let mut flipped = a.clone();
        let n = flipped.len();
        flipped[n - 6] ^= 0x55; // CRC-32
        assert_eq!(d.gzip_member(&flipped, &mut out), Member::Bad);
    }

    #[test]
    fn candidates() {
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let member = gz(&text);
        let mut scratch = Vec::new();
        assert_eq!(verify_member_start(&member, &mut scratch), Candidate::Plausible);
        assert_eq!(verify_member_start(&member[..100], &mut scratch), Candidate::Plausible);
        assert_eq!(verify_member_start(b"\x1f\x8b\x08\x00garbage garbage garbage", &mut scratch), Candidate::Rejected);
        assert_eq!(verify_member_start(b"WARC/1.0\r\n", &mut scratch), Candidate::Rejected);
    }
}
