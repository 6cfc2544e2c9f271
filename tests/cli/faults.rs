//! The fault-injecting HTTP server: a CDN that misbehaves on demand (docs/reliability.md, the
//! test harness).
//!
//! It serves byte buffers at paths the way a CDN does (`Content-Length`, a strong `ETag`,
//! `Accept-Ranges: bytes`, `Range` → `206` with `Content-Range`, the end clamped to the size,
//! `416` past the end, `If-Range` → the whole file when the validator does not match) and
//! breaks each `GET` the way a test asks: a reset after n body bytes, a stall, a slow body (a
//! per-connection rate cap, as a CDN's), a `200` to a ranged request, other bytes under another `ETag`, a lying `Content-Range`, a status sequence,
//! `Retry-After`, more body than asked for, `Content-Encoding: gzip`, a flipped byte, a
//! `Content-Disposition` filename, a redirect. A fault can be scripted for the next few requests
//! and changed between runs of the binary. Every request is recorded (method, path and the
//! headers tests assert on) and every body byte handed to the connection is counted, so tests
//! assert on what went over the wire rather than on wall-clock time.
//!
//! Bodies are produced by a task per response that feeds a channel (one 64 KiB frame at a
//! time), so a fault can pause, hang or abort the body at an exact byte. A global gate holds
//! every body once the server has sent a given number of bytes, until the test releases it:
//! that is how tests freeze an apply in the middle of a download to kill it or to start a
//! second one.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, watch};

/// The engine's chunk size (`src/apply/fetch.rs`), for byte bounds in assertions.
pub const CHUNK: u64 = 4 << 20;

/// Body frames are at most this large, so faults land within 64 KiB of their byte.
const FRAME: usize = 64 << 10;

/// How a `GET` goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    Ok,
    /// Close the connection after this many body bytes (the response promised more).
    ResetAfter(u64),
    /// Answer every request with `200` and the whole file.
    IgnoreRange,
    /// Serve other bytes of the same length under another `ETag` (HEAD too): the upstream
    /// file changed. `If-Range` with the old validator then gets the whole new file.
    ChangeEtagAndBytes,
    /// A `206` whose `Content-Range` starts one byte later than the bytes sent.
    WrongContentRange,
    /// These statuses for the next requests, one each, then [`Fault::Ok`].
    StatusSeq(Vec<u16>),
    /// `429` with this `Retry-After`.
    RetryAfter(String),
    /// This status, with an empty body.
    Always(u16),
    /// This status, after waiting this many milliseconds (a server that is slow to refuse):
    /// the other requests of a download are well into their bodies by then.
    LateStatus(u16, u64),
    /// Send this many body bytes, then nothing, keeping the connection open.
    StallAfter(u64),
    /// The right status and `Content-Range`, then 64 KiB more body than the range holds
    /// (chunked, so the framing does not give it away).
    OversizeBody,
    /// `Content-Encoding: gzip` on an unencoded body.
    GzipHeader,
    /// The middle byte of the file flipped, under the right `ETag`.
    WrongBytes,
    /// `Content-Disposition: attachment; filename="<this>"`.
    ContentDisposition(String),
    /// `302` to this URL or path (HEAD too).
    RedirectTo(String),
    /// The body at no more than this many bytes per second (each response on its own, as a
    /// per-connection cap), one 64 KiB frame at a time.
    Throttle(u64),
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub accept_encoding: Option<String>,
    pub authorization: Option<String>,
    pub referer: Option<String>,
    /// Body bytes handed to the connection for this request so far.
    pub body_bytes: u64,
}

impl Request {
    /// `(start, end)` of a `Range: bytes=a-b` header (`end` is `None` for `a-`).
    pub fn range_bounds(&self) -> Option<(u64, Option<u64>)> {
        let spec = self.range.as_deref()?.strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()))
    }
}

/// A served file and the faults scripted for it.
struct Served {
    bytes: Bytes,
    etag: String,
    /// Faults for the next `GET`s, one each, before `fault` applies.
    script: VecDeque<Fault>,
    fault: Fault,
    /// The other version served under [`Fault::ChangeEtagAndBytes`], made once.
    changed: Option<Bytes>,
}

impl Served {
    fn new(bytes: Bytes) -> Self {
        let etag = format!("\"v1-{}\"", &crate::support::sha256_hex(&bytes)[..16]);
        Self {
            bytes,
            etag,
            script: VecDeque::new(),
            fault: Fault::Ok,
            changed: None,
        }
    }

    /// The fault of the current request, consuming a scripted one.
    fn next_fault(&mut self) -> Fault {
        self.script
            .pop_front()
            .unwrap_or_else(|| self.fault.clone())
    }

    /// Content and validator as the server sees them now (changed upstream, or not). The
    /// other version has every bit flipped.
    fn content(&mut self, changed: bool) -> (Bytes, String) {
        if changed {
            let original = &self.bytes;
            let other = self
                .changed
                .get_or_insert_with(|| original.iter().map(|b| !b).collect());
            (other.clone(), self.etag.replace("\"v1-", "\"v2-"))
        } else {
            (self.bytes.clone(), self.etag.clone())
        }
    }
}

struct Shared {
    files: Mutex<BTreeMap<String, Served>>,
    log: Mutex<Vec<Request>>,
    body_bytes: AtomicU64,
    /// Bodies hold while the count of body bytes is at or above this.
    hold_at: watch::Sender<Option<u64>>,
}

/// The server; it stops when dropped.
pub struct FaultServer {
    pub base: String,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl FaultServer {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Arc::new(Shared {
            files: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            body_bytes: AtomicU64::new(0),
            hold_at: watch::channel(None).0,
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}"),
            shared,
            _runtime: runtime,
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serves `bytes` at `path`, behaving.
    pub fn serve(&self, path: &str, bytes: impl Into<Bytes>) {
        self.files()
            .insert(path.to_owned(), Served::new(bytes.into()));
    }

    /// Every `GET` of `path` from now on meets `fault` ([`Fault::StatusSeq`] is a script).
    pub fn set_fault(&self, path: &str, fault: Fault) {
        self.with(path, |s| {
            s.script.clear();
            match fault {
                Fault::StatusSeq(codes) => {
                    s.script = codes.into_iter().map(Fault::Always).collect();
                    s.fault = Fault::Ok;
                }
                other => s.fault = other,
            }
        });
    }

    /// The next `times` `GET`s of `path` meet `fault`, the ones after behave.
    pub fn set_fault_times(&self, path: &str, fault: Fault, times: usize) {
        self.script(path, vec![fault; times], Fault::Ok);
    }

    /// The next `GET`s of `path` meet `first`, one fault each, and the later ones `then`.
    pub fn script(&self, path: &str, first: Vec<Fault>, then: Fault) {
        self.with(path, |s| {
            s.script = first.into();
            s.fault = then;
        });
    }

    /// Every body holds once the server has sent `more` further body bytes, until
    /// [`FaultServer::release`].
    pub fn hold_after(&self, more: u64) {
        let at = self.body_bytes() + more;
        self.shared.hold_at.send_replace(Some(at));
    }

    /// Lets held bodies go on.
    pub fn release(&self) {
        self.shared.hold_at.send_replace(None);
    }

    /// Body bytes handed to connections so far, over all requests.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The recorded `GET`s of `path`.
    pub fn gets(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .collect()
    }

    /// The `ETag` `path` is served with now.
    pub fn etag(&self, path: &str) -> String {
        self.files().get(path).expect("served path").etag.clone()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Served>> {
        self.shared.files.lock().expect("files")
    }

    fn with(&self, path: &str, f: impl FnOnce(&mut Served)) {
        f(self.files().get_mut(path).expect("served path"));
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        range: text(&headers, header::RANGE),
        if_range: text(&headers, header::IF_RANGE),
        accept_encoding: text(&headers, header::ACCEPT_ENCODING),
        authorization: text(&headers, header::AUTHORIZATION),
        referer: text(&headers, header::REFERER),
        body_bytes: 0,
    };
    let index = match shared.log.lock() {
        Ok(mut log) => {
            log.push(request.clone());
            log.len() - 1
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let (fault, bytes, etag) = {
        let Ok(mut files) = shared.files.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let Some(served) = files.get_mut(uri.path()) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let fault = if method == Method::GET {
            served.next_fault()
        } else {
            served.fault.clone()
        };
        let (bytes, etag) = served.content(fault == Fault::ChangeEtagAndBytes);
        (fault, bytes, etag)
    };
    if let Fault::RedirectTo(to) = &fault {
        return (StatusCode::FOUND, [(header::LOCATION, to.clone())]).into_response();
    }
    let total = bytes.len() as u64;
    let mut response = Response::new(Body::empty());
    let h = response.headers_mut();
    h.insert(header::ETAG, value(&etag));
    h.insert(header::ACCEPT_RANGES, value("bytes"));
    h.insert(
        header::LAST_MODIFIED,
        value("Wed, 21 Oct 2026 07:28:00 GMT"),
    );
    if method == Method::HEAD {
        h.insert(header::CONTENT_LENGTH, total.into());
        return response;
    }
    match &fault {
        Fault::LateStatus(code, ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            return StatusCode::from_u16(*code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        Fault::Always(code) => {
            return StatusCode::from_u16(*code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        Fault::RetryAfter(after) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, after.clone())],
            )
                .into_response();
        }
        Fault::GzipHeader => {
            h.insert(header::CONTENT_ENCODING, value("gzip"));
        }
        Fault::ContentDisposition(name) => {
            h.insert(
                header::CONTENT_DISPOSITION,
                value(&format!("attachment; filename=\"{name}\"")),
            );
        }
        _ => {}
    }

    // Which bytes: the range asked for, unless `If-Range` names another version.
    let validator_ok = request.if_range.as_deref().is_none_or(|v| v == etag);
    let range = request
        .range_bounds()
        .filter(|_| validator_ok && fault != Fault::IgnoreRange);
    let (start, end) = match range {
        Some((start, _)) if start >= total => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut()
                .insert(header::CONTENT_RANGE, value(&format!("bytes */{total}")));
            return r;
        }
        Some((start, end)) => {
            let last = end.unwrap_or(total - 1).min(total - 1);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let shown = if fault == Fault::WrongContentRange {
                start + 1
            } else {
                start
            };
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {shown}-{last}/{total}")),
            );
            (start, last + 1)
        }
        None => (0, total),
    };
    let mut body = bytes.slice(start as usize..end as usize).to_vec();
    if fault == Fault::WrongBytes {
        let middle = total / 2;
        if (start..end).contains(&middle) {
            body[(middle - start) as usize] ^= 0xff;
        }
    }
    let (limit, tail) = match fault {
        Fault::ResetAfter(n) => (n.min(body.len() as u64), Tail::Reset),
        Fault::StallAfter(n) => (n.min(body.len() as u64), Tail::Stall),
        Fault::OversizeBody => {
            body.extend(std::iter::repeat_n(0x55, FRAME));
            (body.len() as u64, Tail::End)
        }
        _ => (body.len() as u64, Tail::End),
    };
    if fault != Fault::OversizeBody {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, body.len().into());
    }
    let pace = match fault {
        Fault::Throttle(rate) => Some(rate.max(1)),
        _ => None,
    };
    *response.body_mut() = feed(
        shared,
        index,
        Bytes::from(body),
        Feed {
            limit: limit as usize,
            tail,
            pace,
        },
    );
    response
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("header value")
}

/// How a body ends once its bytes are sent.
#[derive(Debug, Clone, Copy)]
enum Tail {
    End,
    /// Abort the connection (the response promised more bytes).
    Reset,
    /// Send nothing more until the client goes away.
    Stall,
}

/// How much of a body [`feed`] sends, how fast, and how it ends.
struct Feed {
    limit: usize,
    tail: Tail,
    /// Bytes per second, if capped.
    pace: Option<u64>,
}

/// A body fed by a task: `limit` bytes of `data`, in frames (each followed by the pause its
/// size takes at the `pace`), then the `tail`; what it sends is counted for request `index`.
fn feed(shared: Arc<Shared>, index: usize, data: Bytes, how: Feed) -> Body {
    let Feed { limit, tail, pace } = how;
    let (tx, rx) = mpsc::channel(1);
    let counter = shared.clone();
    tokio::spawn(async move {
        let mut hold = shared.hold_at.subscribe();
        let mut pos = 0;
        while pos < limit {
            loop {
                let at = *hold.borrow_and_update();
                let sent = shared.body_bytes.load(Ordering::SeqCst);
                if at.is_none_or(|at| sent < at) {
                    break;
                }
                tokio::select! {
                    changed = hold.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
            let end = (pos + FRAME).min(limit);
            if tx.send(Ok(data.slice(pos..end))).await.is_err() {
                return;
            }
            if let Some(rate) = pace {
                let pause = Duration::from_secs_f64((end - pos) as f64 / rate as f64);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = tx.closed() => return,
                }
            }
            pos = end;
        }
        match tail {
            Tail::End => {}
            Tail::Reset => {
                // Let the connection flush what was sent before it is torn down.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected");
                let _ = tx.send(Err(reset)).await;
            }
            Tail::Stall => tx.closed().await,
        }
    });
    Body::new(Fed { rx, counter, index })
}

/// The receiving end of [`feed`], counting what it hands to the connection.
struct Fed {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    counter: Arc<Shared>,
    index: usize,
}

impl HttpBody for Fed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let n = bytes.len() as u64;
                if let Ok(mut log) = self.counter.log.lock() {
                    log[self.index].body_bytes += n;
                }
                self.counter.body_bytes.fetch_add(n, Ordering::SeqCst);
                Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Deterministic bytes that do not compress or repeat, different for every seed (splitmix64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}
