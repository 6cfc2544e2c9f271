//! When to try a request again, and how long to wait first.
//!
//! Connection errors, stalls, 5xx, 408 and 429 are worth another attempt; other 4xx (401, 403,
//! 404, 416), TLS failures and names that do not resolve are not (waiting does not fix a
//! missing file or a bad certificate). A transport error is judged by its kinds ([`Fault`]:
//! reqwest's `is_timeout`/`is_connect`, the `std::io::ErrorKind` and `hyper::Error` found in
//! its sources), never by its message text. Waits
//! grow exponentially with full jitter, so many clients that failed together do not retry
//! together; a server's `Retry-After` is honoured but capped, so a header saying "come back
//! tomorrow" fails fast instead of hanging the apply.

use std::time::{Duration, SystemTime};

/// How many attempts and how long between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first wait; each later one may be up to twice as long.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub cap: Duration,
    /// The longest `Retry-After` honoured; a longer one fails the request at once.
    pub retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Give up; the text says why.
    GiveUp(String),
}

/// An exponential schedule with jitter: the wait after the n-th failure is drawn between half
/// of `base × 2ⁿ⁻¹` (at most `cap`) and all of it. Requests use it through [`RetryPolicy`];
/// `watch` uses it between failed rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The jittered wait after `failures` failures in a row (counting from 1).
    pub fn wait(&self, failures: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let ceiling = exp.min(self.cap);
        // Jitter: uniformly between half the ceiling and the ceiling.
        let half = ceiling / 2;
        half + half.mul_f64(jitter())
    }
}

impl RetryPolicy {
    /// The jittered wait before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        Backoff {
            base: self.base,
            cap: self.cap,
        }
        .wait(attempt)
    }

    /// The verdict on a response status after `attempt` attempts.
    pub fn on_status(&self, status: u16, retry_after: Option<&str>, attempt: u32) -> Verdict {
        let retryable = matches!(status, 408 | 429 | 500..=599);
        if !retryable {
            return Verdict::GiveUp(format!("HTTP {status}"));
        }
        if attempt >= self.attempts {
            return Verdict::GiveUp(format!("HTTP {status}, {}", failed_after(attempt)));
        }
        match retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())) {
            Some(wait) if wait > self.retry_after_cap => Verdict::GiveUp(format!(
                "HTTP {status}: the server asks to retry in {} s, longer than the {} s this tool waits",
                wait.as_secs(),
                self.retry_after_cap.as_secs()
            )),
            Some(wait) => Verdict::RetryAfter(wait),
            None => Verdict::RetryAfter(self.backoff(attempt)),
        }
    }

    /// The verdict on a transport error (reset, refused, stall) after `attempt` attempts.
    pub fn on_transport_error(&self, attempt: u32) -> Verdict {
        if attempt >= self.attempts {
            Verdict::GiveUp(failed_after(attempt))
        } else {
            Verdict::RetryAfter(self.backoff(attempt))
        }
    }
}

/// "failed after 3 attempts", or "failed after 1 attempt" when nothing was retried.
fn failed_after(attempts: u32) -> String {
    match attempts {
        1 => "failed after 1 attempt".to_owned(),
        n => format!("failed after {n} attempts"),
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A number in [0, 1) that differs between calls and processes, without a random crate: the
/// standard library seeds every `RandomState` from the OS.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What went wrong below HTTP, judged by error kinds (reqwest's, then the `std::io::ErrorKind`
/// or `hyper::Error` found by walking `source()`), never by matching message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connecting or waiting for bytes took longer than the client's timeout.
    Timeout,
    /// The connection was refused, reset, aborted or closed early, or the network was
    /// unreachable for a moment: worth another attempt.
    Connection,
    /// The TLS handshake failed (rustls reports a refused certificate as `InvalidData` while
    /// connecting): waiting does not fix a certificate.
    Tls,
    /// Connecting failed for a cause the I/O layer gives no kind for: the resolver's
    /// (`getaddrinfo` errors carry none). A host name that does not resolve is not retried, so
    /// a machine without network hears so at once.
    Resolve,
    /// The request could not be built or a redirect was refused by policy.
    Request,
    /// The HTTP exchange broke otherwise (a garbled or cut answer, a stream reset): retried.
    Protocol,
}

impl Fault {
    /// The fault behind a reqwest error.
    pub fn of(err: &reqwest::Error) -> Self {
        if err.is_builder() || err.is_redirect() {
            return Fault::Request;
        }
        if err.is_timeout() {
            return Fault::Timeout;
        }
        if let Some(kind) = io_kind(err) {
            return match kind {
                kind if transient_io(kind) => Fault::Connection,
                std::io::ErrorKind::InvalidData if err.is_connect() => Fault::Tls,
                _ if err.is_connect() => Fault::Resolve,
                _ => Fault::Protocol,
            };
        }
        match cause::<hyper::Error>(err) {
            Some(h) if h.is_user() => Fault::Request,
            Some(h) if h.is_incomplete_message() || h.is_closed() || h.is_canceled() => {
                Fault::Connection
            }
            _ if err.is_connect() => Fault::Resolve,
            _ => Fault::Protocol,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Fault::Timeout | Fault::Connection | Fault::Protocol)
    }
}

/// Whether a reqwest error is worth retrying ([`Fault::is_transient`]).
pub fn is_transient(err: &reqwest::Error) -> bool {
    Fault::of(err).is_transient()
}

/// I/O kinds of a connection that failed for now: another attempt may find it working.
fn transient_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | Interrupted
            | WouldBlock
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

/// The kind of the first `io::Error` in `err`'s chain, looking through `io::Error`s that wrap
/// others (reqwest's connector wraps rustls's `InvalidData` in an `Other`): the innermost kind
/// other than `Other`, which is the most specific.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut io = cause::<std::io::Error>(err)?;
    let mut kind = io.kind();
    while let Some(inner) = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
    {
        io = inner;
        if io.kind() != std::io::ErrorKind::Other {
            kind = io.kind();
        }
    }
    Some(kind)
}

/// The first error of type `T` in `err`'s chain of sources, `err` itself included.
fn cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let p = RetryPolicy::default();
        assert!(matches!(p.on_status(503, None, 1), Verdict::RetryAfter(_)));
        assert!(
            matches!(p.on_status(429, Some("3"), 1), Verdict::RetryAfter(d) if d == Duration::from_secs(3))
        );
        assert!(matches!(p.on_status(408, None, 1), Verdict::RetryAfter(_)));
        for fatal in [401, 403, 404, 416] {
            assert!(
                matches!(p.on_status(fatal, None, 1), Verdict::GiveUp(_)),
                "{fatal}"
            );
        }
        assert!(matches!(
            p.on_status(503, None, p.attempts),
            Verdict::GiveUp(_)
        ));
        assert!(
            matches!(p.on_status(429, Some("86400"), 1), Verdict::GiveUp(m) if m.contains("86400"))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_within_its_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for attempt in 1..10 {
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(p.cap);
            let wait = p.backoff(attempt);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn the_innermost_io_kind_decides() {
        use std::io::{Error, ErrorKind};
        // reqwest's connector wraps rustls's refusal of a certificate this way.
        let wrapped = Error::other(Error::new(ErrorKind::InvalidData, "UnknownIssuer"));
        assert_eq!(io_kind(&wrapped), Some(ErrorKind::InvalidData));
        let refused = Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(io_kind(&refused), Some(ErrorKind::ConnectionRefused));
        assert!(transient_io(ErrorKind::ConnectionReset));
        assert!(!transient_io(ErrorKind::InvalidData));
        assert!(!transient_io(ErrorKind::PermissionDenied));
    }
}
