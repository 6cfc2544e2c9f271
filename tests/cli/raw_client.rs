//! A blocking HTTP client for the fakes' self-tests: it follows no redirects, sends exactly
//! the headers it is given, and reads a body to its end or to the error that cut it, so a test
//! sees what the fake really sent.

use reqwest::Method;
use serde_json::Value;

/// A blocking client that follows no redirects and reads bodies to the end or the error.
pub struct Client {
    pub runtime: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// The body ended cleanly (not cut).
    pub complete: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    /// The NDJSON lines of the body.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }
}

impl Client {
    pub fn new() -> Self {
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    pub fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Reply, reqwest::Error> {
        self.runtime.block_on(async {
            let mut request = self.http.request(method, url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.body(body);
            }
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            let complete = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            Ok(Reply {
                status,
                headers,
                body,
                complete,
            })
        })
    }

    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        self.try_send(method, url, headers, body).expect("response")
    }

    pub fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], None)
    }

    pub fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, None)
    }

    pub fn post(&self, url: &str, body: &Value) -> Reply {
        self.send(Method::POST, url, &[], Some(body.to_string()))
    }
}
