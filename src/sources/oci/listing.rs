//! Listing a tar layer of an `oci:` artifact while locking: the layer is streamed from the
//! registry (`GET` of its blob, through the session that fetched the manifest), never stored, and read as
//! it arrives by [`super::tar::list`], which checks every entry before reading its bytes and
//! hashes each regular file. The layer's own bytes are hashed on the way; the listing counts
//! only once they add up to the layer's size and digest, so a registry that serves other bytes
//! than its manifest names is refused, whatever they list.

use std::io::Read;

use tokio::sync::mpsc;

use super::manifest::TarLayer;
use super::tar::{self, TarFile};
use super::{OciError, registry_error};
use crate::digest::{ContentHasher, Extra};
use crate::names::PathSet;
use crate::net::error_chain;
use crate::registry::reference::OciRef;
use crate::registry::session::Session;

/// Chunks of the layer in flight between the download and the reader.
const IN_FLIGHT: usize = 16;

/// The files of tar layer `layer` of `reference` (`given` as models.yaml writes it), fetched
/// through the `session` that fetched its manifest, checked against `paths` (the model's
/// other files), which then holds them too.
pub(super) async fn list_layer(
    session: &Session,
    reference: &OciRef,
    given: &str,
    layer: &TarLayer,
    paths: &mut PathSet,
) -> Result<Vec<TarFile>, OciError> {
    let refuse = |why: String, help: &str| OciError::Layer {
        reference: given.to_owned(),
        index: layer.index,
        digest: format!("sha256:{}", layer.digest.hex()),
        why,
        help: help.to_owned(),
    };
    let repo = reference.repository();
    let path = format!("/v2/{repo}/blobs/sha256:{}", layer.digest.hex());
    let shown = session.blob_url(repo, &layer.digest).map_or_else(
        |_| path.clone(),
        |u| crate::net::SafeUrl::from(&u).to_string(),
    );
    let response = session
        .get(repo, &path, None)
        .await
        .map_err(|e| registry_error(reference, given, e))?;
    let (chunks, receiver) = mpsc::channel(IN_FLIGHT);
    let (digest, size) = (layer.digest, layer.size);
    let mut set = std::mem::take(paths);
    let reader = tokio::task::spawn_blocking(move || {
        let mut bytes = LayerBytes::new(receiver);
        let listed = tar::list(&mut bytes, &digest, size, &mut set);
        // The rest (the archive's end blocks and padding) counts toward the digest too.
        let drained = listed
            .is_ok()
            .then(|| std::io::copy(&mut bytes, &mut std::io::sink()));
        (listed, drained, bytes.finish(), set)
    });
    let streamed = stream(response, size, chunks).await;
    let (listed, drained, seen, set) = reader
        .await
        .map_err(|e| refuse(format!("its reader stopped: {e}"), "run the command again"))?;
    *paths = set;
    const AGAIN: &str = "run the command again; if it keeps failing, the registry holds a damaged blob: push the artifact again";
    if let Err(why) = streamed {
        return Err(refuse(
            format!("its download from {shown} failed: {why}"),
            AGAIN,
        ));
    }
    if let Some(Err(e)) = drained {
        return Err(refuse(format!("reading it: {e}"), AGAIN));
    }
    let files = listed.map_err(|source| OciError::Tar {
        reference: given.to_owned(),
        index: layer.index,
        help: miette::Diagnostic::help(&source).map(|h| h.to_string()),
        source: Box::new(source),
    })?;
    if seen.bytes != size || seen.sha256 != digest {
        return Err(refuse(
            format!(
                "{shown} served {} bytes hashing to sha256:{}, not the {size} bytes of its digest",
                seen.bytes,
                seen.sha256.hex()
            ),
            AGAIN,
        ));
    }
    Ok(files)
}

/// Sends the body to the reader, chunk by chunk, until it ends, passes `size`, fails, or the
/// reader stops (it refused an entry). Returns why the download itself failed.
async fn stream(
    mut response: reqwest::Response,
    size: u64,
    chunks: mpsc::Sender<std::io::Result<Vec<u8>>>,
) -> Result<(), String> {
    let mut sent: u64 = 0;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(()),
            Err(e) => {
                let why = error_chain(&e.without_url());
                let _ = chunks.send(Err(std::io::Error::other(why.clone()))).await;
                return Err(why);
            }
        };
        sent += chunk.len() as u64;
        if sent > size {
            let why = format!("it sent more than the {size} bytes the manifest gives");
            let _ = chunks.send(Err(std::io::Error::other(why.clone()))).await;
            return Err(why);
        }
        if chunks.send(Ok(chunk.to_vec())).await.is_err() {
            return Ok(());
        }
    }
}

/// The layer's bytes as a blocking [`Read`], hashed as they are read.
struct LayerBytes {
    chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    hasher: ContentHasher,
}

impl LayerBytes {
    fn new(chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        Self {
            chunks,
            chunk: Vec::new(),
            at: 0,
            hasher: ContentHasher::new(Extra::default()),
        }
    }

    /// What the bytes read so far hash to, and how many they were.
    fn finish(self) -> crate::digest::Digests {
        self.hasher.finish()
    }
}

impl Read for LayerBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.hasher.update(&buf[..n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256;

    #[test]
    fn layer_bytes_read_across_chunks_and_hash_what_was_read() {
        let (tx, rx) = mpsc::channel(4);
        for part in [&b"hello "[..], b"", b"tar world"] {
            tx.try_send(Ok(part.to_vec())).expect("room");
        }
        drop(tx);
        let mut bytes = LayerBytes::new(rx);
        let mut all = Vec::new();
        bytes.read_to_end(&mut all).expect("reads");
        assert_eq!(all, b"hello tar world");
        let seen = bytes.finish();
        assert_eq!(seen.bytes, 15);
        assert_eq!(seen.sha256, Sha256::of(b"hello tar world"));
    }

    #[test]
    fn a_failed_download_is_a_read_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(b"abc".to_vec())).expect("room");
        tx.try_send(Err(std::io::Error::other("connection reset")))
            .expect("room");
        let mut bytes = LayerBytes::new(rx);
        let mut all = Vec::new();
        let err = bytes.read_to_end(&mut all).expect_err("fails");
        assert!(err.to_string().contains("connection reset"), "{err}");
    }
}
