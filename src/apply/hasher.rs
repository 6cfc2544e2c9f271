//! Hashing a file while it is being downloaded, in order, whatever order its parts arrive in.
//!
//! Ranged connections finish their parts out of order, but SHA-256 must see the bytes in
//! order. The hasher runs on its own thread and hashes straight from the network buffers: each
//! connection hands it every buffer it has just written ([`PrefixHasher::offer`], a refcounted
//! `Bytes`, so no copy), with its offset. A buffer that extends the hashed prefix is hashed at
//! once; one further ahead is held until the prefix reaches it. Only buffers that start within
//! [`WINDOW`] bytes of the hashed prefix are taken, which bounds the memory held; the bytes of a
//! buffer not taken are read back from the file (from the page cache, just written) once the
//! engine reports that the file is complete up to there ([`PrefixHasher::advance`]), and so are
//! bytes written by an earlier, interrupted apply. So hashing overlaps the download instead of
//! following it, without a second pass over the bytes near the prefix, and the final digest is
//! ready moments after the last byte lands.
//!
//! Durability is overlapped the same way: every [`FLUSH_EVERY`] bytes hashed, a flusher thread
//! asks the kernel to write the file out (`fdatasync` on its own descriptor), so the fsync
//! before publishing only has the tail left to write instead of the whole file.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::digest::ContentHasher;
pub use crate::digest::Digests;

/// Bytes hashed between two background flushes.
pub const FLUSH_EVERY: u64 = 128 << 20;

/// Network buffers are taken only if they start less than this many bytes past the hashed
/// prefix; the others are read back from the file.
pub const WINDOW: u64 = 16 << 20;

enum Msg {
    /// These bytes were written at this offset.
    Piece(u64, Bytes),
    /// The file is complete up to this offset.
    Advance(u64),
    /// The file is being rewritten from the start.
    Reset,
}

/// A running hasher for one file.
pub struct PrefixHasher {
    tx: mpsc::Sender<Msg>,
    /// Hashed up to here (published by the hasher thread).
    hashed: Arc<AtomicU64>,
    thread: JoinHandle<std::io::Result<Digests>>,
}

impl PrefixHasher {
    /// Starts hashing `path` (which must exist); `with_md5` adds an MD5 alongside.
    pub fn start(path: &Path, with_md5: bool) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let flush_file = std::fs::OpenOptions::new().write(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        let hashed = Arc::new(AtomicU64::new(0));
        let prefix = Prefix::new(file, with_md5, hashed.clone());
        let thread = std::thread::Builder::new()
            .name("modelctl-hash".into())
            .spawn(move || run(prefix, rx, flush_file))?;
        Ok(Self { tx, hashed, thread })
    }

    /// `bytes` were just written at `offset`: hashed from memory if they are near enough to
    /// the hashed prefix, else read back later.
    pub fn offer(&self, offset: u64, bytes: Bytes) {
        if offset < self.hashed.load(Ordering::Acquire).saturating_add(WINDOW) {
            let _ = self.tx.send(Msg::Piece(offset, bytes));
        }
    }

    /// The file is now complete from its start up to `end`. Every piece offered before this
    /// call (by any thread) is taken into account, so call it after the offers it covers.
    pub fn advance(&self, end: u64) {
        let _ = self.tx.send(Msg::Advance(end));
    }

    /// The file is being rewritten from scratch.
    pub fn reset(&self) {
        let _ = self.tx.send(Msg::Reset);
    }

    /// Waits for the hash of everything advanced so far.
    pub fn finish(self) -> std::io::Result<Digests> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread failed")))
    }
}

/// The hasher thread: applies the messages, with a flusher thread beside it.
fn run(mut prefix: Prefix, rx: mpsc::Receiver<Msg>, flush_file: File) -> std::io::Result<Digests> {
    let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
    let flusher = std::thread::Builder::new()
        .name("modelctl-flush".into())
        .spawn(move || {
            for () in flush_rx {
                let _ = flush_file.sync_data();
            }
        });
    let mut next_flush = FLUSH_EVERY;
    let mut result = Ok(());
    for msg in rx {
        result = match msg {
            Msg::Piece(offset, bytes) => prefix.piece(offset, bytes),
            Msg::Advance(end) => prefix.advance(end),
            Msg::Reset => {
                prefix.reset();
                next_flush = FLUSH_EVERY;
                Ok(())
            }
        };
        if result.is_err() {
            break;
        }
        if prefix.pos >= next_flush {
            // A flush already running covers this one: never queue behind it.
            let _ = flush_tx.try_send(());
            next_flush = prefix.pos + FLUSH_EVERY;
        }
    }
    drop(flush_tx);
    if let Ok(flusher) = flusher {
        let _ = flusher.join();
    }
    result.map(|()| prefix.hasher.finish())
}

/// The hashing state: how far the hash has got, how far the file is complete, and the pieces
/// waiting ahead of the hashed prefix.
struct Prefix {
    file: File,
    with_md5: bool,
    hasher: ContentHasher,
    /// Hashed up to here.
    pos: u64,
    /// The file is complete up to here.
    complete: u64,
    /// Pieces beyond `pos`, by offset.
    ahead: BTreeMap<u64, Bytes>,
    /// `pos`, for [`PrefixHasher::offer`].
    hashed: Arc<AtomicU64>,
    buf: Vec<u8>,
}

impl Prefix {
    fn new(file: File, with_md5: bool, hashed: Arc<AtomicU64>) -> Self {
        Self {
            file,
            with_md5,
            hasher: ContentHasher::new(with_md5),
            pos: 0,
            complete: 0,
            ahead: BTreeMap::new(),
            hashed,
            buf: Vec::new(),
        }
    }

    fn piece(&mut self, offset: u64, bytes: Bytes) -> std::io::Result<()> {
        if offset > self.pos {
            self.ahead.insert(offset, bytes);
            return Ok(());
        }
        self.consume(offset, &bytes);
        self.catch_up()
    }

    fn advance(&mut self, end: u64) -> std::io::Result<()> {
        self.complete = self.complete.max(end);
        self.catch_up()
    }

    fn reset(&mut self) {
        self.hasher = ContentHasher::new(self.with_md5);
        self.complete = 0;
        self.ahead.clear();
        self.set_pos(0);
    }

    /// Hashes the part of a piece (starting at or before `pos`) that lies beyond `pos`.
    fn consume(&mut self, offset: u64, bytes: &Bytes) {
        let skip = usize::try_from(self.pos - offset).unwrap_or(usize::MAX);
        if let Some(new) = bytes.get(skip..) {
            self.hasher.update(new);
            self.set_pos(self.pos + new.len() as u64);
        }
    }

    /// Hashes held pieces that the prefix has reached, and reads back from the file what is
    /// complete but was never offered or did not fit in the window.
    fn catch_up(&mut self) -> std::io::Result<()> {
        loop {
            while let Some(entry) = self.ahead.first_entry()
                && *entry.key() <= self.pos
            {
                let (offset, bytes) = entry.remove_entry();
                self.consume(offset, &bytes);
            }
            let until = self
                .ahead
                .first_key_value()
                .map_or(self.complete, |(offset, _)| (*offset).min(self.complete));
            if until <= self.pos {
                return Ok(());
            }
            self.read_back(until)?;
        }
    }

    /// Hashes the file from `pos` up to `until`, read from disk (the page cache).
    fn read_back(&mut self, until: u64) -> std::io::Result<()> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; 1 << 20];
        }
        while self.pos < until {
            let want =
                usize::try_from(until - self.pos).map_or(self.buf.len(), |n| n.min(self.buf.len()));
            let n = self.file.read_at(&mut self.buf[..want], self.pos)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than the downloaded length",
                ));
            }
            self.hasher.update(&self.buf[..n]);
            self.set_pos(self.pos + n as u64);
        }
        Ok(())
    }

    fn set_pos(&mut self, pos: u64) {
        self.pos = pos;
        self.hashed.store(pos, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn out_of_order_parts_hash_like_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data = data();
        std::fs::write(&path, &data).expect("write");
        let h = PrefixHasher::start(&path, true).expect("start");
        h.advance(1_000_000);
        h.advance(500);
        h.reset();
        h.advance(2_000_000);
        h.advance(3_000_000);
        let d = h.finish().expect("finish");
        assert_eq!(d.sha256, crate::digest::Sha256::of(&data));
        assert_eq!(d.bytes, 3_000_000);
        assert!(d.md5.is_some());
    }

    #[test]
    fn offered_pieces_mix_with_bytes_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data = data();
        std::fs::write(&path, &data).expect("write");
        let piece = |a: usize, b: usize| Bytes::copy_from_slice(&data[a..b]);
        let h = PrefixHasher::start(&path, false).expect("start");
        // A resumed prefix on disk, then pieces out of order, one never offered (read back),
        // and one overlapping what is already hashed.
        h.advance(100_000);
        h.offer(2_000_000, piece(2_000_000, 3_000_000));
        h.offer(100_000, piece(100_000, 600_000));
        h.offer(1_000_000, piece(1_000_000, 2_000_000));
        h.offer(50_000, piece(50_000, 700_000));
        h.advance(3_000_000);
        let d = h.finish().expect("finish");
        assert_eq!(d.sha256, crate::digest::Sha256::of(&data));
        assert_eq!(d.bytes, 3_000_000);
    }

    #[test]
    fn pieces_beyond_the_window_are_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let len = usize::try_from(WINDOW).expect("fits") + 8192;
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let h = PrefixHasher::start(&path, false).expect("start");
        // Too far ahead of the hashed prefix: not taken, read back after the advance.
        h.offer(WINDOW, Bytes::copy_from_slice(&data[len - 8192..]));
        h.offer(4096, Bytes::copy_from_slice(&data[4096..len - 8192]));
        h.offer(0, Bytes::copy_from_slice(&data[..4096]));
        h.advance(len as u64);
        let d = h.finish().expect("finish");
        assert_eq!(d.sha256, crate::digest::Sha256::of(&data));
    }
}
