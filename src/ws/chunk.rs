//! Payload buffers for the data path, lent from process-wide pools while a frame (or a
//! burst of reads) is on its way and given back right after, so an idle tunnel holds none.
//!
//! Each buffer keeps [`MAX_HEADER_LEN`] bytes of room in front for the frame header, so
//! header and payload go out in one write. Large buffers make bulk transfers cheap (few
//! reads and writes per megabyte); at most [`MAX_LARGE_LENT`] are out at once, after
//! which callers get small ones, so memory stays bounded however many tunnels are busy.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use super::frame::MAX_HEADER_LEN;

/// Payload room of a large buffer, for frames and reads while data is flowing.
pub(crate) const LARGE: usize = 256 * 1024;
/// Payload room of a small buffer, for short frames, or when large ones are all lent.
pub(crate) const SMALL: usize = 16 * 1024;
/// Large buffers out at once, process-wide: 16 MiB at most.
pub(crate) const MAX_LARGE_LENT: usize = 64;
/// Small buffers kept for reuse when given back; more are freed.
const MAX_SMALL_FREE: usize = 256;

struct Large {
    free: Vec<Box<[u8]>>,
    lent: usize,
}

static LARGE_POOL: Mutex<Large> = Mutex::new(Large { free: Vec::new(), lent: 0 });
static SMALL_POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// A lent buffer: header room, then payload room. Goes back to its pool when dropped.
/// Its bytes are whatever the last user left there.
pub struct Chunk {
    buf: Option<Box<[u8]>>,
    large: bool,
}

impl Chunk {
    /// A large buffer if one may be lent, else a small one.
    pub fn large() -> Self {
        let taken = {
            let mut pool = LARGE_POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.lent < MAX_LARGE_LENT {
                pool.lent += 1;
                Some(pool.free.pop())
            } else {
                None
            }
        };
        match taken {
            Some(buf) => Self { buf: Some(buf.unwrap_or_else(|| vec![0; MAX_HEADER_LEN + LARGE].into())), large: true },
            None => Self::small(),
        }
    }

    /// A small buffer.
    pub fn small() -> Self {
        let buf = SMALL_POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Self { buf: Some(buf.unwrap_or_else(|| vec![0; MAX_HEADER_LEN + SMALL].into())), large: false }
    }

    /// A buffer for a frame whose payload is `len` bytes: small if that fits.
    pub fn for_frame(len: u64) -> Self {
        if len <= SMALL as u64 { Self::small() } else { Self::large() }
    }

    /// Payload room after the header room.
    pub fn capacity(&self) -> usize {
        self.len() - MAX_HEADER_LEN
    }
}

impl Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.buf.as_deref().expect("present until dropped")
    }
}

impl DerefMut for Chunk {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().expect("present until dropped")
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        if self.large {
            let mut pool = LARGE_POOL.lock().unwrap_or_else(|e| e.into_inner());
            pool.lent -= 1;
            pool.free.push(buf);
        } else {
            let mut pool = SMALL_POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < MAX_SMALL_FREE {
                pool.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_fallback() {
        assert_eq!(Chunk::for_frame(10).capacity(), SMALL);
        assert_eq!(Chunk::for_frame(SMALL as u64).capacity(), SMALL);
        // Other tests in this process may hold large buffers: take what is left, and then some.
        let held: Vec<Chunk> = (0..MAX_LARGE_LENT + 2).map(|_| Chunk::large()).collect();
        let large = held.iter().filter(|c| c.capacity() == LARGE).count();
        assert!(large <= MAX_LARGE_LENT);
        assert!(held.iter().any(|c| c.capacity() == SMALL), "past the limit, small buffers");
        drop(held);
        assert_eq!(Chunk::for_frame(SMALL as u64 + 1).len(), MAX_HEADER_LEN + LARGE, "given back, lent again");
    }
}
