//! A URL that shows itself without secrets: `user:****@`, and token- or signature-like query
//! parameters masked (presigned S3, GCS and CDN links), like uv's `DisplaySafeUrl`.
//!
//! [`SafeUrl`] keeps the real URL for requests and redacts only in `Display` and `Debug`, so
//! a URL held in one cannot reach a message, a log line or models.lock with its secrets.
//! [`redact`] does the same for text that may not be a URL at all (a manifest's `url:`, which
//! may be a relative path, or a locked string).

/// A URL whose `Display` and `Debug` mask credentials and signature-like query parameters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafeUrl(url::Url);

impl SafeUrl {
    pub fn new(url: url::Url) -> Self {
        Self(url)
    }

    pub fn parse(text: &str) -> Result<Self, url::ParseError> {
        url::Url::parse(text).map(Self)
    }

    /// The real URL, secrets included: only for sending requests.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    /// The host, for messages (`the server` when there is none).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or("the server")
    }

    /// The redacted form.
    fn shown(&self) -> url::Url {
        let mut url = self.0.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("****"));
        }
        if url.query_pairs().any(|(k, _)| sensitive(&k)) {
            let pairs: Vec<(String, String)> = self
                .0
                .query_pairs()
                .map(|(k, v)| {
                    let v = if sensitive(&k) {
                        "****".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url
    }
}

impl From<url::Url> for SafeUrl {
    fn from(url: url::Url) -> Self {
        Self(url)
    }
}

impl From<&url::Url> for SafeUrl {
    fn from(url: &url::Url) -> Self {
        Self(url.clone())
    }
}

impl std::fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.shown().as_str())
    }
}

impl std::fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SafeUrl({:?})", self.shown().as_str())
    }
}

/// Whether a query parameter's name says it carries a secret.
fn sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "signature",
        "token",
        "key",
        "credential",
        "policy",
        "auth",
        "secret",
        "sig",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// Text fit for output: a URL is shown as its [`SafeUrl`]; anything else is returned as is.
pub fn redact(text: &str) -> String {
    match SafeUrl::parse(text) {
        Ok(url) => url.to_string(),
        Err(_) => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_masked() {
        let shown = redact("https://user:hunter2@example.com/a.bin?X-Amz-Signature=abc&x=1");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains("x=1"), "{shown}");
        assert_eq!(
            redact("https://example.com/a.bin"),
            "https://example.com/a.bin"
        );
    }

    #[test]
    fn a_safe_url_hides_its_secrets_in_display_and_debug_but_sends_them() {
        let url = SafeUrl::parse("https://u:pw@cdn.example/f?token=t0k&Expires=9").expect("url");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("pw") && !shown.contains("t0k"), "{shown}");
            assert!(
                shown.contains("Expires=9") && shown.contains("u:****@"),
                "{shown}"
            );
        }
        assert_eq!(url.expose().password(), Some("pw"));
        assert_eq!(url.host(), "cdn.example");
    }

    #[test]
    fn text_that_is_not_a_url_is_left_alone() {
        assert_eq!(redact("./weights/a.bin"), "./weights/a.bin");
    }
}
