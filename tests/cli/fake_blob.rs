//! How the fakes serve file bytes, shared by the Hub's CDN (`fake_hub.rs`) and the Ollama
//! registry's (`fake_ollama.rs`): strict `Range` and `If-Range` handling, per-file faults
//! (a corrupted byte, a body cut short, ranges ignored), and a count of the body bytes sent.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

/// Body frames are at most this large, so a cut lands within 64 KiB of its byte.
const FRAME: usize = 64 << 10;

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("header value")
}

/// What goes wrong when a file's bytes are served.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub corrupt: bool,
    /// Cut bodies after this many bytes, this many more times.
    pub cut: Option<(u64, usize)>,
    pub ignore_range: bool,
}

/// The faults tests give a fake server's blobs. A server says how it names a blob (a path, a
/// digest) in [`BlobFaults::fault`]; the setters are the same everywhere.
pub trait BlobFaults {
    /// Applies `change` to the fault of the blob `blob` names.
    fn fault(&self, blob: &str, change: &dyn Fn(&mut Fault));

    /// Flips the middle byte of the blob in every body that contains it.
    fn corrupt_byte(&self, blob: &str) {
        self.fault(blob, &|f| f.corrupt = true);
    }

    /// The next `times` bodies of the blob longer than `n_bytes` stop after `n_bytes`, the
    /// connection closed though `Content-Length` promised more; later ones are whole.
    fn cut_after(&self, blob: &str, n_bytes: u64, times: usize) {
        self.fault(blob, &|f| f.cut = Some((n_bytes, times)));
    }

    /// Ranged requests for the blob get `200` and the whole blob.
    fn ignore_range(&self, blob: &str) {
        self.fault(blob, &|f| f.ignore_range = true);
    }

    /// Removes the faults set on the blob.
    fn heal(&self, blob: &str) {
        self.fault(blob, &|f| *f = Fault::default());
    }
}

/// `Range: bytes=a-b`, `a-` or `-n` against `size`: `Ok(Some((first, last)))` to serve,
/// `Ok(None)` to ignore (absent or malformed), `Err(())` when unsatisfiable.
pub fn parse_range(range: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(first), Ok(last)) if last >= first => (first, last),
        (Ok(first), Err(_)) if b.is_empty() => (first, u64::MAX),
        (Err(_), Ok(suffix)) if a.is_empty() && suffix > 0 => {
            (size.saturating_sub(suffix), u64::MAX)
        }
        _ => return Ok(None),
    };
    if first >= size {
        return Err(());
    }
    Ok(Some((first, last.min(size - 1))))
}

/// Serves `bytes` (the file of sha256 `sha`) under `etag`, honouring `Range` and `If-Range`,
/// with the file's faults; the body bytes handed to the connection are added to `counter`.
pub fn send(
    faults: &Mutex<BTreeMap<String, Fault>>,
    method: &Method,
    headers: &HeaderMap,
    bytes: Bytes,
    sha: &str,
    etag: &str,
    counter: Arc<AtomicU64>,
) -> Response {
    let mut faults = faults.lock().expect("faults");
    let fault = faults.entry(sha.to_owned()).or_default();
    let size = bytes.len() as u64;
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok && !fault.ignore_range);
    let mut response = Response::new(Body::empty());
    let h = response.headers_mut();
    h.insert(header::ETAG, value(etag));
    h.insert(header::ACCEPT_RANGES, value("bytes"));
    let (first, end) = match parse_range(range, size) {
        Err(()) => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
            return response;
        }
        Ok(Some((first, last))) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {first}-{last}/{size}")),
            );
            (first, last + 1)
        }
        Ok(None) => (0, size),
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, (end - first).into());
    if method == Method::HEAD {
        return response;
    }
    let mut body = bytes.slice(first as usize..end as usize);
    let middle = size / 2;
    if fault.corrupt && (first..end).contains(&middle) {
        let mut flipped = body.to_vec();
        flipped[(middle - first) as usize] ^= 0xff;
        body = Bytes::from(flipped);
    }
    let mut cut = None;
    if let Some((n, times)) = fault.cut.as_mut()
        && *times > 0
        && (body.len() as u64) > *n
    {
        *times -= 1;
        cut = Some(*n as usize);
    }
    *response.body_mut() = Body::new(Counted {
        end: cut.unwrap_or(body.len()),
        data: body,
        pos: 0,
        fail: cut.is_some(),
        pause: None,
        counter,
    });
    response
}

/// A body handed out in frames, counted as it goes, that may end in an error (the
/// connection is then torn down short of its `Content-Length`).
struct Counted {
    data: Bytes,
    pos: usize,
    /// Where the body stops.
    end: usize,
    /// Whether it stops with an error.
    fail: bool,
    /// Lets the sent bytes reach the socket before the connection is torn down.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    counter: Arc<AtomicU64>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.pos < this.end {
            let next = (this.pos + FRAME).min(this.end);
            let frame = this.data.slice(this.pos..next);
            this.counter
                .fetch_add((next - this.pos) as u64, Ordering::SeqCst);
            this.pos = next;
            return Poll::Ready(Some(Ok(http_body::Frame::data(frame))));
        }
        if !this.fail {
            return Poll::Ready(None);
        }
        let pause = this
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
        if pause.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.fail = false;
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut");
        Poll::Ready(Some(Err(cut)))
    }
}
