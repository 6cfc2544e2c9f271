//! The one HTTP client every source sends through: it owns sending a request under the retry
//! policy, so the Hub's API, URL `HEAD`s and the Ollama registry retry alike.
//!
//! [`Client::send`] tries a request until it succeeds, gets a status the policy gives up on
//! (4xx other than 408 and 429, or a `Retry-After` past the cap), or runs out of attempts; a
//! transport error is retried only when its [`Fault`] is transient. The download engine keeps
//! its own loop (it resumes each chunk where its bytes stopped) but asks the same
//! [`RetryPolicy`] for every verdict and wait.

use reqwest::header::RETRY_AFTER;

use super::NetConfig;
use super::retry::{Fault, RetryPolicy, Verdict};

/// A reqwest client with the settings of [`super::builder`] and the retry policy.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    policy: RetryPolicy,
}

/// Why [`Client::send`] gave no successful answer.
#[derive(Debug)]
pub enum SendError {
    /// The server's final answer: a status the policy does not retry, or still failing when
    /// the attempts ran out. `why` is the policy's summary (`HTTP 404`, `HTTP 503, failed
    /// after 6 attempts`); the response is kept for its headers and body.
    Status {
        response: Box<reqwest::Response>,
        why: String,
    },
    /// No answer. `gave_up` is the policy's summary when transient faults used up the
    /// attempts; `None` when the fault was not worth retrying.
    Transport {
        error: reqwest::Error,
        fault: Fault,
        gave_up: Option<String>,
    },
}

impl SendError {
    /// The status of a final answer.
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            SendError::Status { response, .. } => Some(response.status()),
            SendError::Transport { .. } => None,
        }
    }
}

impl Client {
    /// A client with `config`'s timeouts, redirect rules and retry policy.
    pub fn new(config: &NetConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: super::builder(config).build()?,
            policy: config.retry,
        })
    }

    /// The reqwest client, for the download engine's own loop.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The retry policy.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Sends `request` once, whatever happens: for a request that must not be repeated as it
    /// is (a chunk of an upload, whose next attempt starts where the server says it stopped).
    /// A failure is final here; the caller asks [`Client::policy`] whether to go on.
    pub async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SendError> {
        match super::trace::send(request).await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => {
                let why = format!("HTTP {}", response.status().as_u16());
                Err(SendError::Status {
                    response: Box::new(response),
                    why,
                })
            }
            Err(error) => {
                let fault = Fault::of(&error);
                Err(SendError::Transport {
                    error,
                    fault,
                    gave_up: None,
                })
            }
        }
    }

    /// Sends the request `build` makes (once per attempt) until it succeeds or the policy
    /// gives up.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match super::trace::send(build(&self.http)).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok());
                    match self
                        .policy
                        .on_status(response.status().as_u16(), retry_after, attempt)
                    {
                        Verdict::RetryAfter(wait) => wait,
                        Verdict::GiveUp(why) => {
                            return Err(SendError::Status {
                                response: Box::new(response),
                                why,
                            });
                        }
                    }
                }
                Err(error) => {
                    let fault = Fault::of(&error);
                    match self.policy.on_transport_error(attempt) {
                        Verdict::RetryAfter(wait) if fault.is_transient() => wait,
                        verdict => {
                            let gave_up = match verdict {
                                Verdict::GiveUp(why) => Some(why),
                                Verdict::RetryAfter(_) => None,
                            };
                            return Err(SendError::Transport {
                                error,
                                fault,
                                gave_up,
                            });
                        }
                    }
                }
            };
            tracing::debug!(target: "modelctl::net", "attempt {attempt} failed; retrying in {wait:.1?}");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    fn fast(attempts: u32) -> NetConfig {
        NetConfig {
            connect_timeout: Duration::from_millis(300),
            read_timeout: Duration::from_millis(300),
            retry: RetryPolicy {
                attempts,
                base: Duration::from_millis(10),
                cap: Duration::from_millis(20),
                retry_after_cap: Duration::from_secs(5),
            },
            ..NetConfig::default()
        }
    }

    /// A client with `fast` settings that ignores any proxy of the environment.
    fn client(attempts: u32) -> Client {
        let config = fast(attempts);
        Client {
            http: super::super::builder(&config)
                .no_proxy()
                .build()
                .expect("client"),
            policy: config.retry,
        }
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// A server on 127.0.0.1 answering its n-th connection with `answers[n]` (the last one
    /// repeats); returns its URL and the count of requests it read.
    fn serve(answers: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/f", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let answer = answers[n.min(answers.len() - 1)];
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (url, count)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const NOT_FOUND: &str =
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const BUSY_1S: &str = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const BUSY_DAY: &str = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 86400\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    #[test]
    fn a_503_is_retried_until_the_200() {
        let (url, count) = serve(vec![UNAVAILABLE, UNAVAILABLE, OK]);
        let client = client(6);
        let response = run(client.send(|c| c.get(&url))).expect("answered");
        assert_eq!(response.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_404_gives_up_at_once() {
        let (url, count) = serve(vec![NOT_FOUND]);
        let client = client(6);
        let err = run(client.send(|c| c.get(&url))).expect_err("refused");
        assert!(
            matches!(&err, SendError::Status { why, .. } if why == "HTTP 404"),
            "{err:?}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_last_attempt_keeps_the_final_answer() {
        let (url, count) = serve(vec![UNAVAILABLE]);
        let client = client(3);
        let err = run(client.send(|c| c.get(&url))).expect_err("gave up");
        assert!(
            matches!(&err, SendError::Status { why, .. } if why.contains("after 3 attempts")),
            "{err:?}"
        );
        assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn retry_after_is_waited_for_and_a_long_one_fails_fast() {
        let (url, count) = serve(vec![BUSY_1S, OK]);
        let client = client(6);
        let started = Instant::now();
        run(client.send(|c| c.get(&url))).expect("answered");
        assert!(started.elapsed() >= Duration::from_millis(900), "waited");
        assert_eq!(count.load(Ordering::SeqCst), 2);

        let (url, count) = serve(vec![BUSY_DAY, OK]);
        let started = Instant::now();
        let err = run(client.send(|c| c.get(&url))).expect_err("too long");
        assert!(
            matches!(&err, SendError::Status { why, .. } if why.contains("86400")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_refused_connection_is_a_transient_connection_fault() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let client = client(3);
        let url = format!("http://127.0.0.1:{port}/f");
        let err = run(client.send(|c| c.get(&url))).expect_err("refused");
        let SendError::Transport { fault, gave_up, .. } = err else {
            panic!("not a transport error: {err:?}");
        };
        assert_eq!(fault, Fault::Connection);
        assert!(gave_up.is_some_and(|w| w.contains("after 3 attempts")));
    }

    #[test]
    fn a_silent_server_is_a_transient_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/f", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = accepted.clone();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                seen.fetch_add(1, Ordering::SeqCst);
                open.push(stream);
            }
        });
        let client = client(2);
        let err = run(client.send(|c| c.get(&url))).expect_err("silent");
        let SendError::Transport { fault, gave_up, .. } = err else {
            panic!("not a transport error: {err:?}");
        };
        assert_eq!(fault, Fault::Timeout);
        assert!(gave_up.is_some());
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "retried once");
    }

    #[test]
    fn a_bad_url_is_not_retried() {
        let client = client(6);
        let err = run(client.send(|c| c.get("http://[::1"))).expect_err("bad url");
        assert!(
            matches!(
                err,
                SendError::Transport {
                    fault: Fault::Request,
                    gave_up: None,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// A resolver that fails as `getaddrinfo` does: an I/O error without a kind std names.
    struct NoSuchHost(Arc<AtomicUsize>);

    impl reqwest::dns::Resolve for NoSuchHost {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(
                    std::io::Error::other("failed to lookup address information"),
                );
                Err(err)
            })
        }
    }

    #[test]
    fn a_name_that_does_not_resolve_is_not_retried() {
        let lookups = Arc::new(AtomicUsize::new(0));
        let client = Client {
            http: super::super::builder(&fast(6))
                .no_proxy()
                .dns_resolver(Arc::new(NoSuchHost(lookups.clone())))
                .build()
                .expect("client"),
            policy: fast(6).retry,
        };
        let err = run(client.send(|c| c.get("http://no-such-host.test/f"))).expect_err("dns");
        assert!(
            matches!(
                err,
                SendError::Transport {
                    fault: Fault::Resolve,
                    gave_up: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
    }
}
