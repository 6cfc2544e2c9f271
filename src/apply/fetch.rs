//! The download engine: one file from a URL into a verified, fsynced file in `.modelctl/tmp/`.
//!
//! A file is split into chunks fetched over several connections at once (`Range` requests,
//! with `If-Range` when the lock knows the `ETag`), written in place into a data file sized to
//! the locked size, and hashed in order as its complete prefix grows ([`PrefixHasher`]). Only
//! one request goes out until its answer shows that the server honours `Range` (a `206` with
//! the `Content-Range` asked for); then the other connections start. Every chunk retries on its
//! own, resuming where its bytes stopped. Completed chunks, and how far unfinished ones got,
//! are recorded ([`PartialFiles`]) when a chunk completes and a few times a second while bytes
//! arrive, so a killed apply resumes instead of starting over. Small files are one chunk. The
//! engine trusts only the lock: it never writes past the locked size, checks every
//! `Content-Range`, and refuses encoded bodies. A server that ignores `Range` (a `200` to a
//! ranged request) gets the file restarted from byte 0 in one stream, never appended to: when
//! the `200` is the first answer, its body is that stream (the file is asked for once); when
//! chunks are already in flight, they are stopped and the file is asked for again whole. Once a request has been redirected (the Hub sends LFS
//! files to its CDN, release pages send files to signed storage URLs), later chunks go to
//! where it led, with no credentials unless that is the original origin; an answer of 401,
//! 403, 404 or 410 there (an expired signature) sends the next attempt through the origin
//! again. The data file is fsynced, then accepted only when its
//! sha256 (and md5, where the lock has only that) matches; otherwise the partial is deleted and
//! the error says what was expected and found. Where the lock has no checksum, its strong
//! `ETag` pins the file instead: a response under another `ETag` is refused, never hashed and
//! learned into the lock.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, RANGE, RETRY_AFTER,
};
use tokio::sync::Semaphore;

use super::hasher::{Digests, PrefixHasher};
use super::partial::{PartialFiles, PartialState};
use crate::digest::{ContentHasher, Expected, GitOid, Md5, Sha256};
use crate::failpoint;
use crate::net::SafeUrl;
use crate::net::retry::{Fault, RetryPolicy, Verdict};

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FileJob {
    /// The real URL; shown only through [`SafeUrl`].
    pub url: url::Url,
    /// The locked size: the only size the engine trusts.
    pub size: u64,
    pub sha256: Option<Sha256>,
    pub md5: Option<Md5>,
    /// The git blob id of a Hub regular file: checked like the others, computed as it streams.
    pub git_oid: Option<GitOid>,
    /// Whose expectation the digests are, for the advice when the bytes do not match.
    pub expected_by: ExpectedBy,
    /// The validator from the lock, sent as `If-Range` so a changed file is never spliced.
    pub etag: Option<String>,
    /// Sent as `Authorization: Bearer` (reqwest drops it when a redirect leaves the origin).
    pub token: Option<crate::net::Token>,
    /// A whole `Authorization` value (`Bearer …` or `Basic …`, a mirror registry's), sent as
    /// it is where `token` is not, under the same rule.
    pub authorization: Option<crate::net::Token>,
    /// Source-specific advice for a failed status (a gated Hub model, a missing revision).
    pub explain: Option<Arc<dyn ExplainStatus>>,
}

/// Where the digests a download must match come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExpectedBy {
    /// models.lock (published by the source, or learned from verified bytes).
    #[default]
    Lock,
    /// A checksum written in models.yaml; the text says where (`models.yaml, model x`).
    Manifest(String),
}

impl FileJob {
    /// Every digest the downloaded bytes must match.
    pub fn expected(&self) -> Expected {
        Expected {
            sha256: self.sha256,
            md5: self.md5,
            git_oid: self.git_oid,
        }
    }
}

pub use crate::net::ExplainStatus;

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Connections one file may use at once.
    pub connections: usize,
    /// Bytes per ranged request.
    pub chunk_size: u64,
    /// Files smaller than this are fetched in one stream.
    pub parallel_threshold: u64,
    pub retry: RetryPolicy,
    /// No bytes for this long means the connection stalled (also the client's read timeout).
    pub stall: Duration,
    /// The client's connect timeout, for messages.
    pub connect: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            connections: 16,
            chunk_size: 4 << 20,
            parallel_threshold: 16 << 20,
            retry: RetryPolicy::default(),
            stall: Duration::from_secs(30),
            connect: Duration::from_secs(10),
        }
    }
}

/// Receives byte counts for one file.
pub trait FileProgress: Send + Sync {
    /// `bytes` more arrived.
    fn add(&self, bytes: u64);
    /// The count starts over at `bytes` (a resumed or restarted download).
    fn set(&self, bytes: u64);
    /// A request failed and will be tried again; `why` says what happened and when.
    fn retrying(&self, why: &str);
}

/// Progress of one part of a larger transfer (a layer of an Ollama model): its counts are
/// reported on top of what the earlier parts already brought.
pub struct PartProgress {
    pub before: u64,
    pub whole: Arc<dyn FileProgress>,
}

impl FileProgress for PartProgress {
    fn add(&self, bytes: u64) {
        self.whole.add(bytes);
    }
    fn set(&self, bytes: u64) {
        self.whole.set(self.before + bytes);
    }
    fn retrying(&self, why: &str) {
        self.whole.retrying(why);
    }
}

/// A downloaded, verified and fsynced file, ready to be published by rename.
#[derive(Debug)]
pub struct Downloaded {
    pub data: PathBuf,
    pub digests: Digests,
    partial: PartialFiles,
}

impl Downloaded {
    /// Drops the resume state once the data file has been renamed away and linked where it
    /// is wanted (until then, it is what leads a rerun to a blob the lock has no sha256 for).
    pub fn published(self) {
        self.partial.remove_state();
    }
}

/// Why a download failed. Messages complete "cannot download `<model>/<file>` from <url>: ".
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(String),
    #[error("stalled: no data for {} s from {host}", secs.as_secs_f32())]
    Stalled { host: String, secs: Duration },
    #[error("connect timeout to {host}: no connection within {} s", secs.as_secs_f32())]
    ConnectTimeout { host: String, secs: Duration },
    #[error("{0}")]
    Transport(String),
    #[error("the server sent more than the expected {expected} bytes")]
    TooLong { expected: u64 },
    #[error("the server's `Content-Range` was `{got}`, not the requested `bytes {want}`")]
    WrongRange { got: String, want: String },
    #[error(
        "upstream content changed: the server reports {found} bytes, models.lock pins {expected}; \
         re-lock it with `modelctl lock` after checking the new file is wanted"
    )]
    SizeChanged { expected: u64, found: u64 },
    #[error(
        "upstream content changed: the server's `ETag` is now `{found}`, models.lock pins \
         `{expected}` and no checksum; re-lock it with `modelctl lock` after checking the new \
         file is wanted"
    )]
    ValidatorChanged { expected: String, found: String },
    #[error(
        "checksum mismatch: {mismatch}; the download was discarded. {}",
        advice(by)
    )]
    Mismatch {
        mismatch: crate::digest::Mismatch,
        by: ExpectedBy,
    },
    #[error("the server sent `Content-Encoding: {0}`; model files are only accepted unencoded")]
    Encoded(String),
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted")]
    Cancelled,
}

/// The engine shared by all downloads of one apply.
#[derive(Clone)]
pub struct Engine {
    client: crate::net::Client,
    config: EngineConfig,
    tmp: PathBuf,
    /// All requests of the apply share this many connections.
    permits: Arc<Semaphore>,
    cancel: Arc<AtomicBool>,
}

impl Engine {
    pub fn new(
        client: crate::net::Client,
        config: EngineConfig,
        tmp: PathBuf,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.connections.max(1)));
        Self {
            client,
            config,
            tmp,
            permits,
            cancel,
        }
    }

    /// The HTTP client downloads use (for the metadata requests that go with them).
    pub fn client(&self) -> &crate::net::Client {
        &self.client
    }

    /// The sha256 an earlier apply verified this download to have, where the lock has none:
    /// that apply may have published the blob and been killed before models.lock learned it.
    pub fn verified_before(&self, job: &FileJob) -> Option<Sha256> {
        if job.sha256.is_some() {
            return None;
        }
        self.partial_for(job).verified(&fresh_state(job, 0))
    }

    /// Forgets the download of `job` (its blob is in place).
    pub fn forget(&self, job: &FileJob) {
        self.partial_for(job).remove();
    }

    /// Where the download of `job` is staged: keyed by its sha256, or by its URL's.
    fn partial_for(&self, job: &FileJob) -> PartialFiles {
        let key = job
            .sha256
            .unwrap_or_else(|| Sha256::of(job.url.as_str().as_bytes()));
        PartialFiles::new(&self.tmp, &key)
    }

    /// Downloads `job` into a verified file in the temporary directory.
    pub async fn fetch(
        &self,
        job: &FileJob,
        progress: Arc<dyn FileProgress>,
    ) -> Result<Downloaded, FetchError> {
        let partial = self.partial_for(job);
        writable(&partial.data).map_err(io(&partial.data))?;
        let (digests, state) = if job.url.scheme() == "file" {
            (self.copy_local(job, &partial, progress).await?, None)
        } else {
            match self.download(job, &partial, progress).await {
                Ok((digests, state)) => (digests, Some(state)),
                // Bytes of another version of the file can never complete this one.
                Err(e @ FetchError::ValidatorChanged { .. }) => {
                    partial.remove();
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        };
        failpoint::hit("download.before-fsync");
        let file = std::fs::File::open(&partial.data).map_err(io(&partial.data))?;
        file.sync_all().map_err(io(&partial.data))?;
        failpoint::hit("download.before-verify");
        if let Err(e) = check(job, &digests) {
            partial.remove();
            return Err(e);
        }
        if job.sha256.is_none()
            && let Some(mut state) = state
        {
            // Until models.lock learns this sha256, only this record leads a rerun to the blob.
            state.verified = Some(digests.sha256);
            let _ = partial.save(&state);
        }
        Ok(Downloaded {
            data: partial.data.clone(),
            digests,
            partial,
        })
    }

    /// A `file://` URL: a local copy, hashed as it is written.
    async fn copy_local(
        &self,
        job: &FileJob,
        partial: &PartialFiles,
        progress: Arc<dyn FileProgress>,
    ) -> Result<Digests, FetchError> {
        let source = job.url.to_file_path().map_err(|()| {
            FetchError::Transport(format!("`{}` is not a local path", SafeUrl::from(&job.url)))
        })?;
        let target = partial.data.clone();
        let size = job.size;
        let extra = job.expected().extra(size);
        let cancel = self.cancel.clone();
        tokio::task::spawn_blocking(move || -> Result<Digests, FetchError> {
            use std::io::{Read, Write};
            let mut input = std::fs::File::open(&source).map_err(io(&source))?;
            let mut output = std::fs::File::create(&target).map_err(io(&target))?;
            let mut hasher = ContentHasher::new(extra);
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            progress.set(0);
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(FetchError::Cancelled);
                }
                let n = input.read(&mut buf).map_err(io(&source))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > size {
                    return Err(FetchError::SizeChanged {
                        expected: size,
                        found: total,
                    });
                }
                output.write_all(&buf[..n]).map_err(io(&target))?;
                hasher.update(&buf[..n]);
                progress.add(n as u64);
            }
            if total != size {
                return Err(FetchError::SizeChanged {
                    expected: size,
                    found: total,
                });
            }
            Ok(hasher.finish())
        })
        .await
        .map_err(|e| FetchError::Transport(format!("the copy task failed: {e}")))?
    }

    /// An http(s) URL: chunked, parallel, resumable.
    async fn download(
        &self,
        job: &FileJob,
        partial: &PartialFiles,
        progress: Arc<dyn FileProgress>,
    ) -> Result<(Digests, PartialState), FetchError> {
        let parallel = job.size >= self.config.parallel_threshold;
        let chunk_size = if parallel {
            self.config.chunk_size.max(1)
        } else {
            job.size.max(1)
        };
        let fresh = fresh_state(job, chunk_size);
        let loaded = partial.load(&fresh);
        if loaded.is_none() {
            // A state left over from another download must not describe the zeroed file.
            partial.remove_state();
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(loaded.is_none())
            .open(&partial.data)
            .map_err(io(&partial.data))?;
        let state = loaded.unwrap_or(fresh);
        file.set_len(job.size).map_err(io(&partial.data))?;
        let extra = job.expected().extra(job.size);
        let hasher = PrefixHasher::start(&partial.data, extra).map_err(io(&partial.data))?;

        let run = Arc::new(Run::new(
            self.clone(),
            job.clone(),
            file,
            partial.clone(),
            state,
            hasher,
            progress,
        ));
        let outcome = match run.clone().chunks().await {
            Err(FetchError::Http(msg)) if msg == RANGE_IGNORED => run.clone().whole().await,
            other => other,
        };
        let state = run.snapshot();
        let _ = partial.save(&state);
        let run = Arc::into_inner(run)
            .ok_or_else(|| FetchError::Transport("a download task outlived its file".into()))?;
        outcome?;
        let digests = run.hasher.finish().map_err(io(&partial.data))?;
        if digests.bytes != job.size {
            return Err(FetchError::SizeChanged {
                expected: job.size,
                found: digests.bytes,
            });
        }
        Ok((digests, state))
    }
}

/// The state of a download that has not started.
fn fresh_state(job: &FileJob, chunk_size: u64) -> PartialState {
    PartialState {
        url: Sha256::of(job.url.as_str().as_bytes()),
        size: job.size,
        chunk_size,
        etag: job.etag.clone().filter(|e| !e.starts_with("W/")),
        done: Default::default(),
        progress: Default::default(),
        verified: None,
    }
}

/// While bytes arrive, the resume state is saved at most this often (and whenever a chunk
/// completes): a kill loses at most about this much of each connection's transfer. A save is
/// a small write and a rename, no fsync; at full speed chunk completions save far more often.
const SAVE_EVERY: Duration = Duration::from_millis(100);

/// What the first answer of a download said about `Range`. Until it is known only one request
/// is out: a server that ignores `Range` answers every ranged request with the whole file, so
/// fanning out first would have it send the file once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranges {
    /// No answer yet: the other connections wait.
    Unknown,
    /// A `206` with the `Content-Range` asked for: the other connections start.
    Honoured,
    /// The first answer was the whole file (which that connection then streams alone), or the
    /// first connection ended before an answer: no other connection starts.
    Alone,
}

/// Ends the wait of the other connections when the first one ends without an answer (nothing
/// left to ask, a failure, even a panic): they then do not start.
struct Unblock<'a>(&'a Run);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        self.0.answered(Ranges::Alone);
    }
}

/// Marker for "the server answered a ranged request with the whole file".
const RANGE_IGNORED: &str = "range ignored";

/// One download in progress, shared by its connections.
/// The bytes one request is for: chunk `index` spans `start..end`, `written` of it are in the
/// file already so the request starts at `from`; `whole` runs fetch the file as one stream,
/// and `ranged` says whether a `Range` was sent.
#[derive(Debug, Clone, Copy)]
struct Span {
    index: u64,
    start: u64,
    end: u64,
    from: u64,
    written: u64,
    whole: bool,
    ranged: bool,
}

struct Run {
    engine: Engine,
    job: FileJob,
    file: std::fs::File,
    partial: PartialFiles,
    chunks: Mutex<Chunks>,
    hasher: PrefixHasher,
    progress: Arc<dyn FileProgress>,
    failed: AtomicBool,
    /// What the first answer said about `Range`; connections but the first wait for it.
    ranges: tokio::sync::watch::Sender<Ranges>,
    /// The file is one stream from byte 0 (the server ignores `Range`).
    whole: AtomicBool,
    /// Where the job's URL redirected to (a CDN's signed URL): later chunks go there directly
    /// instead of through the origin once per chunk, and back to the origin if it expires.
    location: Mutex<Option<url::Url>>,
}

/// Which chunks are done, and how far the first unfinished one has got.
struct Chunks {
    state: PartialState,
    queue: VecDeque<u64>,
    /// No chunk before this one is unfinished (a hint: `done` only grows, except on restart).
    first_open: u64,
    /// When the state was last saved.
    saved: Instant,
}

impl Chunks {
    fn count(&self) -> u64 {
        self.state.size.div_ceil(self.state.chunk_size).max(1)
    }

    fn range(&self, index: u64) -> (u64, u64) {
        let start = index * self.state.chunk_size;
        let end = (start + self.state.chunk_size).min(self.state.size);
        (start, end)
    }

    /// The end of the complete prefix of the file.
    fn prefix(&mut self) -> u64 {
        while self.state.done.contains(&self.first_open) {
            self.first_open += 1;
        }
        let index = self.first_open;
        let (start, end) = self.range(index);
        if start >= self.state.size {
            return self.state.size;
        }
        (start + self.state.progress.get(&index).copied().unwrap_or(0)).min(end)
    }

    fn bytes_done(&self) -> u64 {
        let done: u64 = self
            .state
            .done
            .iter()
            .map(|i| {
                let (s, e) = self.range(*i);
                e - s
            })
            .sum();
        done + self.state.progress.values().sum::<u64>()
    }
}

impl Run {
    fn new(
        engine: Engine,
        job: FileJob,
        file: std::fs::File,
        partial: PartialFiles,
        state: PartialState,
        hasher: PrefixHasher,
        progress: Arc<dyn FileProgress>,
    ) -> Self {
        let mut chunks = Chunks {
            state,
            queue: VecDeque::new(),
            first_open: 0,
            saved: Instant::now(),
        };
        chunks.queue = (0..chunks.count())
            .filter(|i| !chunks.state.done.contains(i))
            .collect();
        progress.set(chunks.bytes_done());
        hasher.advance(chunks.prefix());
        Self {
            engine,
            job,
            file,
            partial,
            chunks: Mutex::new(chunks),
            hasher,
            progress,
            failed: AtomicBool::new(false),
            ranges: tokio::sync::watch::channel(Ranges::Unknown).0,
            whole: AtomicBool::new(false),
            location: Mutex::new(None),
        }
    }

    fn snapshot(&self) -> PartialState {
        self.chunks
            .lock()
            .map(|c| c.state.clone())
            .unwrap_or_else(|p| p.into_inner().state.clone())
    }

    /// Fetches the remaining chunks over several connections: the first asks alone, the
    /// others start once its answer shows that the server honours `Range`.
    async fn chunks(self: Arc<Self>) -> Result<(), FetchError> {
        let pending = self.chunks.lock().map(|c| c.queue.len()).unwrap_or(0);
        let workers = self.engine.config.connections.min(pending).max(1);
        let mut set = tokio::task::JoinSet::new();
        for n in 0..workers {
            let run = self.clone();
            set.spawn(async move { run.worker(n == 0).await });
        }
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(FetchError::Transport(format!(
                    "a download task failed: {e}"
                )))
            });
            if let Err(e) = result {
                self.failed.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One connection: the first goes at once, the others wait for its answer.
    async fn worker(self: Arc<Self>, first: bool) -> Result<(), FetchError> {
        if first {
            let _unblock = Unblock(&self);
            return self.work().await;
        }
        let mut answer = self.ranges.subscribe();
        let honoured = matches!(
            answer.wait_for(|r| *r != Ranges::Unknown).await.as_deref(),
            Ok(Ranges::Honoured)
        );
        if !honoured {
            return Ok(());
        }
        self.work().await
    }

    /// Takes chunks from the queue until it is empty.
    async fn work(&self) -> Result<(), FetchError> {
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let next = self
                .chunks
                .lock()
                .ok()
                .and_then(|mut c| c.queue.pop_front());
            let Some(index) = next else { return Ok(()) };
            let _permit = self
                .engine
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FetchError::Cancelled)?;
            // Abandoned (another connection failed): not complete, so not recorded as done.
            let Some(finished) = self.fetch_chunk(index).await? else {
                return Ok(());
            };
            let Ok(mut c) = self.chunks.lock() else {
                return Ok(());
            };
            self.complete(&mut c, finished);
            if c.count() > 1 {
                failpoint::hit("download.after-first-chunk");
            }
        }
    }

    /// Records chunk `index` as complete. Saved under the lock: one writer at a time, never an
    /// older state last. It also records how far the other chunks in flight have got.
    fn complete(&self, c: &mut Chunks, index: u64) {
        c.state.progress.remove(&index);
        c.state.done.insert(index);
        self.hasher.advance(c.prefix());
        let _ = self.partial.save(&c.state);
        c.saved = Instant::now();
    }

    /// The fallback when a server stops honouring `Range` while chunks are in flight: the
    /// whole file in one stream, from 0.
    async fn whole(self: Arc<Self>) -> Result<(), FetchError> {
        self.failed.store(false, Ordering::Relaxed);
        self.restart_whole();
        let Some(finished) = self.fetch_chunk(0).await? else {
            return Err(FetchError::Transport(
                "the download was abandoned before the file was complete".into(),
            ));
        };
        if let Ok(mut c) = self.chunks.lock() {
            self.complete(&mut c, finished);
        }
        Ok(())
    }

    /// From now on the file is one chunk, fetched in one stream from byte 0: what was written
    /// is forgotten, never appended to.
    fn restart_whole(&self) {
        self.whole.store(true, Ordering::Relaxed);
        if let Ok(mut c) = self.chunks.lock() {
            c.state.chunk_size = c.state.size.max(1);
            c.state.done.clear();
            c.state.progress.clear();
            c.queue.clear();
            c.first_open = 0;
        }
        self.hasher.reset();
        self.progress.set(0);
    }

    /// Fetches one chunk, retrying transient failures from where its bytes stopped. Returns
    /// the chunk completed (chunk 0 once the file has become one stream), or `None` when the
    /// download failed elsewhere and this chunk was abandoned.
    async fn fetch_chunk(&self, index: u64) -> Result<Option<u64>, FetchError> {
        let policy = self.engine.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let verdict = match self.transfer(index).await {
                Ok(finished) => return Ok(finished),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Status(status, info)) => {
                    match policy.on_status(status.as_u16(), info.retry_after.as_deref(), attempt) {
                        Verdict::GiveUp(why) => {
                            let message = match &self.job.explain {
                                Some(explain) => explain.explain(&crate::net::Refusal {
                                    status,
                                    code: info.code.as_deref(),
                                    message: info.message.as_deref(),
                                    why: &why,
                                }),
                                None => status_hint(status, &why),
                            };
                            return Err(FetchError::Http(message));
                        }
                        retry => (retry, format!("HTTP {status}")),
                    }
                }
                Err(Failure::Transient(e)) => match policy.on_transport_error(attempt) {
                    Verdict::GiveUp(why) => return Err(with_attempts(e, &why)),
                    retry => (retry, e.to_string()),
                },
            };
            if let (Verdict::RetryAfter(wait), why) = verdict {
                if self.engine.cancel.load(Ordering::Relaxed) {
                    return Err(FetchError::Cancelled);
                }
                let left = policy.attempts.saturating_sub(attempt);
                self.progress.retrying(&format!(
                    "{why}; retrying in {:.1} s ({left} attempt{} left)",
                    wait.as_secs_f32(),
                    if left == 1 { "" } else { "s" }
                ));
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// One request for the rest of a chunk (of the file, once it is one stream). Returns
    /// the chunk completed, or `None` when it was abandoned because another one failed.
    async fn transfer(&self, asked: u64) -> Result<Option<u64>, Failure> {
        let whole = self.whole.load(Ordering::Relaxed);
        let index = if whole { 0 } else { asked };
        let (start, end, written) = self
            .chunks
            .lock()
            .map(|c| {
                let (start, end) = c.range(index);
                let written = c.state.progress.get(&index).copied().unwrap_or(0);
                (start, end, written)
            })
            .map_err(|_| Failure::Fatal(FetchError::Cancelled))?;
        let from = start + written;
        if from >= end {
            return Ok(Some(index));
        }
        let ranged = !(whole && from == 0);
        let response = self.request(from, end, ranged).await?;
        let mut span = Span {
            index,
            start,
            end,
            from,
            written,
            whole,
            ranged,
        };
        let offset = self.body_offset(&response, &mut span)?;
        self.stream(response, &span, offset).await
    }

    /// Sends the GET for bytes `from..end` (ranged unless it is the whole file from byte 0),
    /// to the URL a redirect taught, and checks what the answer's headers say about it.
    async fn request(
        &self,
        from: u64,
        end: u64,
        ranged: bool,
    ) -> Result<reqwest::Response, Failure> {
        let learned = self.location.lock().ok().and_then(|l| l.clone());
        let url = learned.clone().unwrap_or_else(|| self.job.url.clone());
        let mut request = self.engine.client.http().get(url.clone());
        if url.origin() == self.job.url.origin() {
            if let Some(token) = &self.job.token {
                request = request.bearer_auth(token.expose());
            } else if let Some(value) = &self.job.authorization {
                request = request.header(reqwest::header::AUTHORIZATION, value.expose());
            }
        }
        if ranged {
            request = request.header(RANGE, format!("bytes={from}-{}", end - 1));
            if let Some(etag) = self.job.etag.as_ref().filter(|e| !e.starts_with("W/")) {
                request = request.header(IF_RANGE, etag.as_str());
            }
        }
        let response = crate::net::trace::send(request)
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        if learned.is_some() && matches!(status.as_u16(), 401 | 403 | 404 | 410) {
            // A signed URL expired: ask the origin for a fresh one.
            if let Ok(mut l) = self.location.lock() {
                *l = None;
            }
            return Err(Failure::Transient(FetchError::Http(format!(
                "the redirected URL answered {status}; asking the origin again"
            ))));
        }
        if learned.is_none()
            && status.is_success()
            && response.url() != &self.job.url
            && let Ok(mut l) = self.location.lock()
        {
            *l = Some(response.url().clone());
        }
        if status.is_success() {
            self.check_validator(&response)?;
        }
        if let Some(encoding) = response
            .headers()
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            && !encoding.eq_ignore_ascii_case("identity")
        {
            return Err(Failure::Fatal(FetchError::Encoded(encoding.to_owned())));
        }
        Ok(response)
    }

    /// Where in the file the answer's body starts, from its status: `from` for the range
    /// asked, 0 for a whole-file answer (which may turn this run into one stream from byte 0,
    /// updating `span`). A range that is not the one asked, or a size that changed, is fatal.
    fn body_offset(&self, response: &reqwest::Response, span: &mut Span) -> Result<u64, Failure> {
        match response.status() {
            StatusCode::PARTIAL_CONTENT if span.ranged => {
                self.check_content_range(response, span.from, span.end)?;
                self.answered(Ranges::Honoured);
                Ok(span.from)
            }
            StatusCode::OK => {
                if let Some(len) = response
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    && len != self.job.size
                {
                    return Err(Failure::Fatal(FetchError::SizeChanged {
                        expected: self.job.size,
                        found: len,
                    }));
                }
                if !(span.whole || (span.start == 0 && span.end == self.job.size)) {
                    if !self.answered(Ranges::Alone) {
                        // Other connections are writing their chunks: stop them all first.
                        return Err(Failure::Fatal(FetchError::Http(RANGE_IGNORED.into())));
                    }
                    // The first answer, with no other request out: this body is the file from
                    // byte 0, and the only stream there will be.
                    self.restart_whole();
                    (span.index, span.start, span.end) = (0, 0, self.job.size);
                } else if span.written > 0 {
                    // The body starts at byte 0 again: never append it to what we have.
                    if let Ok(mut c) = self.chunks.lock() {
                        c.state.progress.insert(span.index, 0);
                    }
                    self.hasher.reset();
                    self.progress.set(0);
                }
                Ok(0)
            }
            other => Err(Failure::Status(other, StatusInfo::of(response))),
        }
    }

    /// A 206's `Content-Range` must be exactly the range asked, of a file of the locked size.
    fn check_content_range(
        &self,
        response: &reqwest::Response,
        from: u64,
        end: u64,
    ) -> Result<(), Failure> {
        let got = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let asked = (from, end - 1, self.job.size);
        if crate::net::headers::content_range(&got) == Some(asked) {
            return Ok(());
        }
        if let Some(total) = crate::net::headers::content_range_total(&got)
            && total != self.job.size
        {
            return Err(Failure::Fatal(FetchError::SizeChanged {
                expected: self.job.size,
                found: total,
            }));
        }
        let want = format!("{from}-{}/{}", end - 1, self.job.size);
        Err(Failure::Fatal(FetchError::WrongRange { got, want }))
    }

    /// Writes the body at `offset` on, recording progress as the bytes land, until the span
    /// ends. A body longer than the span is fatal; one that stops short is transient.
    async fn stream(
        &self,
        mut response: reqwest::Response,
        span: &Span,
        mut offset: u64,
    ) -> Result<Option<u64>, Failure> {
        let Span {
            index, start, end, ..
        } = *span;
        loop {
            if self.engine.cancel.load(Ordering::Relaxed) {
                return Err(Failure::Fatal(FetchError::Cancelled));
            }
            if self.failed.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let Some(bytes) = response.chunk().await.map_err(|e| self.transport(e))? else {
                break;
            };
            let room = end - offset;
            if bytes.len() as u64 > room {
                return Err(Failure::Fatal(FetchError::TooLong {
                    expected: self.job.size,
                }));
            }
            self.file
                .write_all_at(&bytes, offset)
                .map_err(|e| Failure::Fatal(io(&self.partial.data)(e)))?;
            offset += bytes.len() as u64;
            self.progress.add(bytes.len() as u64);
            // Recorded only now that the bytes are written, so a saved state never claims more.
            if let Ok(mut c) = self.chunks.lock() {
                c.state.progress.insert(index, offset - start);
                self.hasher.advance(c.prefix());
                if c.saved.elapsed() >= SAVE_EVERY {
                    let _ = self.partial.save(&c.state);
                    c.saved = Instant::now();
                }
            }
        }
        if offset < end {
            return Err(Failure::Transient(FetchError::Transport(format!(
                "the connection closed after {} of {} bytes",
                offset - start,
                end - start
            ))));
        }
        Ok(Some(index))
    }

    /// Records what the first answer said, unless an earlier one did; returns whether this
    /// was the first (and so the only request out).
    fn answered(&self, ranges: Ranges) -> bool {
        self.ranges.send_if_modified(|r| {
            let first = *r == Ranges::Unknown;
            if first {
                *r = ranges;
            }
            first
        })
    }

    /// Without a checksum in the lock, its strong `ETag` is what pins the file: a response
    /// with another strong validator is another file, refused instead of being hashed and
    /// learned into the lock as if it were the one locked. With a checksum, the hash decides
    /// (an `ETag` may change while the bytes do not).
    fn check_validator(&self, response: &reqwest::Response) -> Result<(), Failure> {
        if !self.job.expected().is_empty() {
            return Ok(());
        }
        let strong = |e: &&str| !e.starts_with("W/");
        let Some(expected) = self.job.etag.as_deref().filter(strong) else {
            return Ok(());
        };
        match response.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
            Some(found) if strong(&found) && found != expected => {
                Err(Failure::Fatal(FetchError::ValidatorChanged {
                    expected: expected.to_owned(),
                    found: found.to_owned(),
                }))
            }
            _ => Ok(()),
        }
    }

    fn transport(&self, err: reqwest::Error) -> Failure {
        let host = self.job.url.host_str().unwrap_or("the server").to_owned();
        if err.is_connect() && err.is_timeout() {
            return Failure::Transient(FetchError::ConnectTimeout {
                host,
                secs: self.engine.config.connect,
            });
        }
        if err.is_timeout() {
            return Failure::Transient(FetchError::Stalled {
                host,
                secs: self.engine.config.stall,
            });
        }
        let fault = Fault::of(&err);
        let detail = crate::net::error_chain(&err.without_url());
        let e = if fault == Fault::Tls {
            FetchError::Transport(format!(
                "the TLS certificate of {host} was rejected: {detail}"
            ))
        } else {
            FetchError::Transport(format!("connection to {host} failed: {detail}"))
        };
        if fault.is_transient() {
            Failure::Transient(e)
        } else {
            Failure::Fatal(e)
        }
    }
}

/// How one attempt failed.
enum Failure {
    /// Not worth retrying.
    Fatal(FetchError),
    /// A status to classify.
    Status(StatusCode, StatusInfo),
    /// A connection problem worth retrying.
    Transient(FetchError),
}

/// What a failed response said besides its status.
struct StatusInfo {
    retry_after: Option<String>,
    /// `X-Error-Code` and `X-Error-Message` (the Hub's error classification).
    code: Option<String>,
    message: Option<String>,
}

impl StatusInfo {
    fn of(response: &reqwest::Response) -> Self {
        let get = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            retry_after: get(RETRY_AFTER.as_str()),
            code: get("x-error-code"),
            message: get("x-error-message"),
        }
    }
}

fn with_attempts(e: FetchError, why: &str) -> FetchError {
    match e {
        FetchError::Stalled { host, secs } => FetchError::Transport(format!(
            "stalled: no data for {} s from {host}; {why}",
            secs.as_secs_f32()
        )),
        other => FetchError::Transport(format!("{other}; {why}")),
    }
}

/// A status with what to do about it.
fn status_hint(status: StatusCode, why: &str) -> String {
    match status.as_u16() {
        401 => format!(
            "{why}: the server wants credentials; check that the URL is public or carries its token"
        ),
        403 => format!(
            "{why}: access denied; for gated models accept the license on the model page, and check your token"
        ),
        404 | 410 => format!(
            "{why}: the file is not there; check the URL, or re-lock with `modelctl lock` if it moved"
        ),
        416 => format!(
            "{why}: the server cannot serve the requested range; the file is probably smaller than models.lock says"
        ),
        429 => format!("{why}: rate limited; try again later"),
        _ => why.to_owned(),
    }
}

/// Compares the digests with everything the lock (or manifest) expects.
fn check(job: &FileJob, digests: &Digests) -> Result<(), FetchError> {
    job.expected()
        .check(digests)
        .map_err(|mismatch| FetchError::Mismatch {
            mismatch,
            by: job.expected_by.clone(),
        })
}

/// What to do about bytes that do not match, by whose expectation they failed.
fn advice(by: &ExpectedBy) -> String {
    match by {
        ExpectedBy::Lock => {
            "If the upstream file changed on purpose, re-lock it with `modelctl lock`".to_owned()
        }
        ExpectedBy::Manifest(place) => format!(
            "The checksum comes from {place}: if the file is the one you want, fix the checksum \
             there (models.lock is not changed)"
        ),
    }
}

/// Makes a partial writable again: an apply killed between protecting a verified file for
/// publishing and renaming it into `blobs/` leaves it read-only, which would block the resume.
fn writable(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().readonly() => {
            let mode = meta.permissions().mode() | 0o200;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
        _ => Ok(()),
    }
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_left_read_only_by_a_killed_publish_becomes_writable_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let part = dir.path().join("x.part");
        std::fs::write(&part, b"verified bytes").expect("write");
        let mut perms = std::fs::metadata(&part).expect("meta").permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&part, perms).expect("chmod");
        writable(&part).expect("writable");
        assert!(
            !std::fs::metadata(&part)
                .expect("meta")
                .permissions()
                .readonly()
        );
        writable(&dir.path().join("missing.part")).expect("a missing partial is fine");
    }
}
