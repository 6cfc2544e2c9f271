//! Ollama model references, normalised the way Ollama does it.
//!
//! `llama3` means `registry.ollama.ai/library/llama3:latest`; `user/m:tag` lives in namespace
//! `user`; `host:port/ns/m:tag` names another registry. Each part follows Ollama's own rules
//! (`types/model/name.go`), which also makes it safe as a path component in Ollama's on-disk
//! layout (`manifests/<host>/<ns>/<model>/<tag>`). A leading `http://` names a registry
//! reached without TLS (Ollama's `--insecure`); `https://` is the default.

use std::fmt;

use super::NameError;

pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified Ollama model name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OllamaRef {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
    /// The registry is plain http (`http://host/ns/m:tag`).
    pub insecure: bool,
}

fn check_part(part: &str, what: &str, max: usize, dots: bool) -> Result<(), NameError> {
    let err = |reason: String| Err(NameError { reason });
    if part.is_empty() || part.len() > max {
        return err(format!("its {what} must be 1 to {max} characters long"));
    }
    if !part.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return err(format!(
            "its {what} `{part}` must start with a letter, digit or `_`"
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.');
    if let Some(c) = part.chars().find(|c| !ok(*c)) {
        return err(format!("its {what} `{part}` contains {c:?}"));
    }
    Ok(())
}

impl OllamaRef {
    /// Parses `[host/][namespace/]model[:tag]` and fills in Ollama's defaults.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let (text, insecure) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
            (Some(rest), _) => (rest, true),
            (_, Some(rest)) => (rest, false),
            _ => (text, false),
        };
        let last_slash = text.rfind('/');
        let (path, tag) = match text.rfind(':') {
            Some(i) if last_slash.is_none_or(|s| i > s) => (&text[..i], &text[i + 1..]),
            _ => (text, DEFAULT_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            _ => {
                return Err(NameError {
                    reason: "it has too many `/`; use `[host/][namespace/]model[:tag]`".into(),
                });
            }
        };
        let host_ok = !host.is_empty()
            && host.len() <= 350
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
            && !host.contains("..");
        if !host_ok {
            return Err(NameError {
                reason: format!("its host `{host}` is not a valid host name"),
            });
        }
        check_part(namespace, "namespace", 80, false)?;
        check_part(model, "model name", 80, true)?;
        check_part(tag, "tag", 80, true)?;
        Ok(Self {
            host: host.to_ascii_lowercase(),
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            tag: tag.to_owned(),
            insecure,
        })
    }

    /// `https://host` (or `http://` for an insecure registry).
    pub fn base_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }

    /// Whether `other` names the same model, as Ollama matches names (case-insensitively).
    pub fn same_model(&self, other: &OllamaRef) -> bool {
        self.to_string().eq_ignore_ascii_case(&other.to_string())
    }

    /// The shortest form Ollama displays (`llama3:8b`, `user/m:tag`, `host/ns/m:tag`).
    pub fn display_shortest(&self) -> String {
        if self.host != DEFAULT_HOST {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if self.namespace != DEFAULT_NAMESPACE {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }
}

impl fmt::Display for OllamaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_ollama() {
        let r = OllamaRef::parse("llama3").expect("valid");
        assert_eq!(r.to_string(), "registry.ollama.ai/library/llama3:latest");
        assert_eq!(r.display_shortest(), "llama3:latest");
        let r = OllamaRef::parse("llama3:8b").expect("valid");
        assert_eq!(r.to_string(), "registry.ollama.ai/library/llama3:8b");
        let r = OllamaRef::parse("user/m").expect("valid");
        assert_eq!(r.display_shortest(), "user/m:latest");
        let r = OllamaRef::parse("localhost:5000/ns/m:v1").expect("valid");
        assert_eq!(r.host, "localhost:5000");
        assert_eq!(r.tag, "v1");
        let r = OllamaRef::parse("localhost:5000/ns/m").expect("valid");
        assert_eq!(r.tag, "latest");
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["../x", "a/b/c/d", "m:../../x", "", "ns.x/m", "host../n/m"] {
            assert!(OllamaRef::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
