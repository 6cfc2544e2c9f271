//! Pushing to an OCI registry: where to push (`--to`), who we are there, the ModelPack
//! documents that describe a model, and the distribution API calls that upload them.
//!
//! - [`Target`] is `--to REGISTRY/NAMESPACE`: `https://host[:port]/ns` (the default scheme)
//!   or `http://host:port/ns` for a registry without TLS.
//! - [`auth`] answers a registry's `401`: credentials from `MODELCTL_REGISTRY_AUTH` or
//!   `~/.docker/config.json`, `Basic`, or a bearer token from a realm on the registry's host.
//! - [`modelpack`] builds the manifest and config (docs/modelpack.md).
//! - [`session`] speaks the protocol: `HEAD` a blob, mount it, upload it, put a manifest.
//! - [`mirror`] reads the registries `apply` downloads from first (`mirrors:`,
//!   `MODELCTL_MIRROR`), which use the same syntax as `--to`.
//!
//! This layer knows neither the lock nor the store: the push operation (`ops::push`) and the
//! executor's mirror step (`apply::mirror`) hand it paths, digests and sizes.

pub mod auth;
pub mod cred_helper;
pub mod mirror;
pub mod modelpack;
pub mod reference;
pub mod session;

/// Where models are pushed: a registry's base URL and a namespace in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://host[:port]`, no path.
    pub base: url::Url,
    /// `host[:port]`, as `docker login` and `~/.docker/config.json` name it.
    pub host: String,
    /// `team/models`: one or more path components.
    pub namespace: String,
}

/// Why `--to` is not a registry and namespace.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`--to {given}` is not REGISTRY/NAMESPACE: {why}")]
#[diagnostic(
    code(modelctl::push::target),
    help(
        "give the registry and a namespace, such as `--to registry.example.com/team` (https) or `--to http://127.0.0.1:5000/team` (a registry without TLS)"
    )
)]
pub struct TargetError {
    pub given: String,
    pub why: String,
}

impl Target {
    pub fn parse(given: &str) -> Result<Self, TargetError> {
        let refuse = |why: &str| TargetError {
            given: given.to_owned(),
            why: why.to_owned(),
        };
        let text = if given.contains("://") {
            given.to_owned()
        } else {
            format!("https://{given}")
        };
        let url = url::Url::parse(&text).map_err(|e| refuse(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse("the scheme must be https:// or http://"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(
                "credentials do not belong in the URL; use `docker login` or MODELCTL_REGISTRY_AUTH",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("it has a query or a fragment"));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(refuse("it names no host")),
        };
        let namespace = url.path().trim_matches('/').to_owned();
        if namespace.is_empty() {
            return Err(refuse("it names no namespace after the host"));
        }
        if let Some(bad) = namespace.split('/').find(|c| !is_repo_component(c)) {
            return Err(refuse(&format!(
                "`{bad}` is not a repository name component (lowercase letters and digits, separated by `.`, `_`, `__` or `-`)"
            )));
        }
        let mut base = url.clone();
        base.set_path("");
        Ok(Self {
            base,
            host,
            namespace,
        })
    }

    /// The repository a model is pushed to: `namespace/id`.
    pub fn repository(&self, id: &str) -> String {
        format!("{}/{id}", self.namespace)
    }

    /// `host[:port]/namespace`, as messages show it.
    pub fn shown(&self) -> String {
        format!("{}/{}", self.host, self.namespace)
    }

    /// `scheme://host[:port]/namespace`: the form `Target::parse` reads back to the same
    /// target, as plans show a mirror (the scheme says whether it is plain http).
    pub fn url_text(&self) -> String {
        format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            self.namespace
        )
    }

    /// Plain http to a host other than a loopback address: credentials are never sent there.
    pub fn is_insecure_remote(&self) -> bool {
        self.base.scheme() == "http" && !is_loopback(&self.base)
    }
}

/// Whether `url`'s host is `localhost` or a loopback address.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// One component of a repository name, as the distribution spec allows it:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_repo_component(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !text.starts_with(alnum) || !text.ends_with(alnum) {
        return false;
    }
    let mut run = String::new();
    for c in text.chars() {
        if alnum(c) {
            if !(run.is_empty()
                || run == "."
                || run == "_"
                || run == "__"
                || run.chars().all(|s| s == '-'))
            {
                return false;
            }
            run.clear();
        } else if matches!(c, '.' | '_' | '-') {
            run.push(c);
        } else {
            return false;
        }
    }
    true
}

/// A tag as the distribution spec allows it: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(text: &str) -> bool {
    text.len() <= 128
        && text.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_https_and_keep_the_port() {
        let t = Target::parse("registry.example.com/team/models").expect("target");
        assert_eq!(t.base.as_str(), "https://registry.example.com/");
        assert_eq!(t.host, "registry.example.com");
        assert_eq!(t.namespace, "team/models");
        assert_eq!(t.repository("voice"), "team/models/voice");
        assert_eq!(t.url_text(), "https://registry.example.com/team/models");
        let t = Target::parse("http://127.0.0.1:5000/ns/").expect("target");
        assert_eq!(t.host, "127.0.0.1:5000");
        assert_eq!(t.url_text(), "http://127.0.0.1:5000/ns");
        assert_eq!(Target::parse(&t.url_text()).ok(), Some(t.clone()));
        assert!(!t.is_insecure_remote());
        assert!(
            Target::parse("http://r.example:5000/ns")
                .expect("t")
                .is_insecure_remote()
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        for bad in [
            "registry.example.com",
            "ftp://r.example/ns",
            "https://u:p@r.example/ns",
            "r.example/Team",
            "r.example/ns?x=1",
            "r.example/a..b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_components_and_tags_follow_the_distribution_spec() {
        for good in ["a", "voice-1", "a.b", "a__b", "a---b", "x9"] {
            assert!(is_repo_component(good), "{good}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a___b", "a_.b", "a/b"] {
            assert!(!is_repo_component(bad), "{bad}");
        }
        assert!(is_tag("pin-0123abcd") && is_tag("v1.0_rc-2") && is_tag("_x"));
        assert!(!is_tag("-x") && !is_tag("a:b") && !is_tag(&"a".repeat(129)) && !is_tag(""));
    }
}
