//! Hashing a file while it is being downloaded, in order, whatever order its parts arrive in.
//!
//! Ranged connections finish their parts out of order, but SHA-256 must see the bytes in
//! order. The hasher runs on its own thread and is told how far the file is complete from the
//! start (the contiguous prefix); it reads the new bytes back (from the page cache, just
//! written) and feeds them to SHA-256 and, when asked, MD5. So hashing overlaps the download
//! instead of following it, and the final digest is ready moments after the last byte lands.
//!
//! Durability is overlapped the same way: every [`FLUSH_EVERY`] bytes hashed, a flusher thread
//! asks the kernel to write the file out (`fdatasync` on its own descriptor), so the fsync
//! before publishing only has the tail left to write instead of the whole file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

pub use crate::digest::Digests;
use crate::digest::{ContentHasher, Extra};

/// Bytes hashed between two background flushes.
pub const FLUSH_EVERY: u64 = 128 << 20;

enum Msg {
    /// The file is complete up to this offset.
    Advance(u64),
    /// The file is being rewritten from the start.
    Reset,
}

/// A running hasher for one file.
pub struct PrefixHasher {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<std::io::Result<Digests>>,
}

impl PrefixHasher {
    /// Starts hashing `path` (which must exist), with the `extra` digests alongside SHA-256.
    pub fn start(path: &Path, extra: Extra) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let flush_file = std::fs::OpenOptions::new().write(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("modelctl-hash".into())
            .spawn(move || {
                let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
                let flusher = std::thread::Builder::new()
                    .name("modelctl-flush".into())
                    .spawn(move || {
                        for () in flush_rx {
                            let _ = flush_file.sync_data();
                        }
                    });
                let result = run(file, rx, extra, &flush_tx);
                drop(flush_tx);
                if let Ok(flusher) = flusher {
                    let _ = flusher.join();
                }
                result
            })?;
        Ok(Self { tx, thread })
    }

    /// The file is now complete from its start up to `end`.
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

fn run(
    mut file: File,
    rx: mpsc::Receiver<Msg>,
    extra: Extra,
    flush: &mpsc::SyncSender<()>,
) -> std::io::Result<Digests> {
    let mut next_flush = FLUSH_EVERY;
    let mut hasher = ContentHasher::new(extra);
    let mut pos = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for msg in rx {
        match msg {
            Msg::Reset => {
                hasher = ContentHasher::new(extra);
                pos = 0;
                next_flush = FLUSH_EVERY;
            }
            Msg::Advance(end) => {
                if end <= pos {
                    continue;
                }
                file.seek(SeekFrom::Start(pos))?;
                while pos < end {
                    let want =
                        usize::try_from((end - pos).min(buf.len() as u64)).unwrap_or(buf.len());
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the file is shorter than the downloaded length",
                        ));
                    }
                    hasher.update(&buf[..n]);
                    pos += n as u64;
                    if pos >= next_flush {
                        // A flush already running covers this one: never queue behind it.
                        let _ = flush.try_send(());
                        next_flush = pos + FLUSH_EVERY;
                    }
                }
            }
        }
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_parts_hash_like_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let extra = Extra {
            md5: true,
            git_blob: Some(data.len() as u64),
        };
        let h = PrefixHasher::start(&path, extra).expect("start");
        h.advance(1_000_000);
        h.advance(500);
        h.reset();
        h.advance(2_000_000);
        h.advance(3_000_000);
        let d = h.finish().expect("finish");
        assert_eq!(d.sha256, crate::digest::Sha256::of(&data));
        assert_eq!(d.bytes, 3_000_000);
        assert!(d.md5.is_some());
        assert_eq!(d.git_oid, Some(crate::digest::GitOid::of_blob(&data)));
    }
}
