//! `REGISTRY/NAMESPACE/NAME:TAG` or `REGISTRY/NAMESPACE/NAME@sha256:<64 hex>`: an artifact in an
//! OCI registry, as an `oci:` source names it. The registry part follows the rules of
//! `push --to` ([`Target`]): `https://` by default, `http://host:port/…` for a registry
//! without TLS, no credentials, query or fragment in it. The repository is every component
//! after the host, each as the distribution spec allows it; the reference is a tag or a
//! sha256 digest, never both, and never missing (no implicit `latest`).

use super::{Target, is_tag};
use crate::digest::Sha256;

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag: it may move, and the lock pins the manifest it named.
    Tag(String),
    /// A manifest digest: the bytes fetched must hash to it.
    Digest(Sha256),
}

/// A parsed `oci:` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// The registry, with the repository as its namespace.
    pub target: Target,
    pub reference: Reference,
}

impl OciRef {
    /// Parses a reference, saying what is wrong in a clause for an error message.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, reference) = split_reference(text)?;
        let target = Target::parse(name).map_err(|e| e.why.replace("namespace", "repository"))?;
        Ok(Self { target, reference })
    }

    /// The repository in the registry: `team/models/voice`.
    pub fn repository(&self) -> &str {
        &self.target.namespace
    }

    /// The reference as the manifest URL takes it: the tag, or `sha256:<hex>`.
    pub fn reference_text(&self) -> String {
        match &self.reference {
            Reference::Tag(tag) => tag.clone(),
            Reference::Digest(d) => format!("sha256:{}", d.hex()),
        }
    }

    /// `GET` here fetches the manifest: `/v2/<repo>/manifests/<reference>`.
    pub fn manifest_url(&self) -> Result<url::Url, url::ParseError> {
        self.target.base.join(&format!(
            "/v2/{}/manifests/{}",
            self.repository(),
            self.reference_text()
        ))
    }

    /// `GET` here fetches a blob of the repository.
    pub fn blob_url(&self, digest: &Sha256) -> Result<url::Url, url::ParseError> {
        self.target.base.join(&format!(
            "/v2/{}/blobs/sha256:{}",
            self.repository(),
            digest.hex()
        ))
    }
}

/// `name:tag` or `name@sha256:hex` → the name and the reference. A `:` before the last `/` is
/// a port, not a tag.
fn split_reference(text: &str) -> Result<(&str, Reference), String> {
    let digest_part = text.rsplit_once('@').filter(|(_, d)| !d.contains('/'));
    if let Some((name, digest)) = digest_part {
        let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
            format!("`{digest}` after `@` is not a `sha256:` digest (only sha256 is supported)")
        })?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "`{digest}` is not `sha256:` and 64 lowercase hex digits"
            ));
        }
        let digest = Sha256::parse(hex).map_err(|e| e.to_string())?;
        return Ok((name, Reference::Digest(digest)));
    }
    let last = text.rsplit('/').next().unwrap_or(text);
    let Some((_, tag)) = last.rsplit_once(':') else {
        return Err("it names no tag or digest; end it in `:TAG` or `@sha256:<64 hex>`".to_owned());
    };
    if !is_tag(tag) {
        return Err(format!(
            "`{tag}` is not a tag (letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`)"
        ));
    }
    let name = &text[..text.len() - tag.len() - 1];
    Ok((name, Reference::Tag(tag.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_digests_parse_with_the_registry_rules_of_push() {
        let r = OciRef::parse("registry.example.com/team/voice:v1").expect("tag");
        assert_eq!(r.target.base.as_str(), "https://registry.example.com/");
        assert_eq!(r.repository(), "team/voice");
        assert_eq!(r.reference, Reference::Tag("v1".to_owned()));
        assert_eq!(
            r.manifest_url().expect("url").as_str(),
            "https://registry.example.com/v2/team/voice/manifests/v1"
        );
        let hex = "a".repeat(64);
        let r = OciRef::parse(&format!("http://127.0.0.1:5000/ns/voice@sha256:{hex}")).expect("d");
        assert_eq!(r.target.host, "127.0.0.1:5000");
        assert_eq!(r.reference_text(), format!("sha256:{hex}"));
    }

    #[test]
    fn bad_references_say_why() {
        let hex = "a".repeat(64);
        for (bad, why) in [
            ("registry.example.com/team/voice", "no tag or digest"),
            ("http://127.0.0.1:5000/ns/voice", "no tag or digest"),
            ("registry.example.com/Team/voice:v1", "`Team`"),
            ("registry.example.com/team/voice:-x", "not a tag"),
            ("registry.example.com/team/voice@md5:abc", "sha256"),
            ("registry.example.com/team/voice@sha256:ABC", "64 lowercase"),
            ("ftp://r.example/ns/voice:v1", "scheme"),
            ("https://u:p@r.example/ns/voice:v1", "credentials"),
        ] {
            let err = OciRef::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(OciRef::parse(&format!("r.example/a/b:t@sha256:{hex}")).is_err());
        assert!(
            OciRef::parse("r.example/voice:v1").is_ok(),
            "one component is a repository"
        );
    }
}
