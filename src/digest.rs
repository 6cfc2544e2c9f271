//! Validated content hashes.
//!
//! A `Sha256` is always 64 lowercase hex digits: it names blobs in the store (`blobs/sha256/ab/…`),
//! so it passes through here before it can become part of a path. Input may carry a `sha256:`
//! prefix (the form Ollama and OCI registries use) and upper-case digits; the stored form has
//! neither. `Md5` exists only for legacy checksums that a source publishes and nothing better is
//! known; the plan flags it as weak. `GitOid` is the git blob id the Hub publishes for regular
//! (non-LFS) files: a SHA-1 over `blob <size>\0` and the bytes, checked like any other digest.
//! [`ContentHasher`] computes all that a reader asks for in one pass over the bytes.

use std::fmt;

use sha2::Digest as _;

/// A SHA-256 digest in canonical form (64 lowercase hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256([u8; 32]);

/// An MD5 digest (32 hex digits); weak, accepted only where a source gives nothing better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Md5([u8; 16]);

/// A git object id (SHA-1, 40 lowercase hex digits). The Hub names regular (non-LFS) files and
/// commits by it, and the HF cache names those files' blobs by it. For a file it is a digest of
/// the content (`blob <size>\0` + bytes): where the Hub publishes no sha256, it is what the
/// bytes are checked against before a sha256 is learned from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GitOid([u8; 20]);

/// Why a digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DigestError(String);

fn parse_hex<const N: usize>(text: &str, prefix: &str, name: &str) -> Result<[u8; N], DigestError> {
    let hex_part = text
        .strip_prefix(prefix)
        .or_else(|| text.strip_prefix(&prefix.replace(':', "-")))
        .unwrap_or(text);
    if hex_part.len() != N * 2 {
        return Err(DigestError(format!(
            "a {name} has {} hex digits, this one has {}",
            N * 2,
            hex_part.chars().count()
        )));
    }
    if let Some(c) = hex_part.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(DigestError(format!(
            "{c:?} is not a hex digit (a {name} uses 0-9 and a-f)"
        )));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_part, &mut out)
        .map_err(|e| DigestError(format!("not a valid {name}: {e}")))?;
    Ok(out)
}

impl Sha256 {
    /// Parses `abc…` or `sha256:abc…` (64 hex digits, any case).
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        parse_hex::<32>(text, "sha256:", "sha256").map(Self)
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 64-digit lowercase hex form.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, as `docker images` and `ollama list` show them.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl Md5 {
    /// Parses 32 hex digits (any case), optionally prefixed `md5:`.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        parse_hex::<16>(text, "md5:", "md5").map(Self)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl GitOid {
    /// Parses 40 hex digits (any case).
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        parse_hex::<20>(text, "sha1:", "git object id").map(Self)
    }

    /// The git blob id of `bytes`, as `git hash-object` computes it.
    pub fn of_blob(bytes: &[u8]) -> Self {
        let mut h = GitBlobHasher::new(bytes.len() as u64);
        h.update(bytes);
        h.finish().unwrap_or(Self([0; 20]))
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl serde::Serialize for GitOid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for GitOid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The git blob id of a stream whose length is declared up front (git's object header says it).
struct GitBlobHasher {
    sha1: sha1::Sha1,
    declared: u64,
    seen: u64,
}

impl GitBlobHasher {
    fn new(size: u64) -> Self {
        let mut sha1 = <sha1::Sha1 as sha1::Digest>::new();
        sha1::Digest::update(&mut sha1, format!("blob {size}\0").as_bytes());
        Self {
            sha1,
            declared: size,
            seen: 0,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        sha1::Digest::update(&mut self.sha1, bytes);
        self.seen += bytes.len() as u64;
    }

    /// `None` when the stream was not the declared length: its id would describe other bytes.
    fn finish(self) -> Option<GitOid> {
        (self.seen == self.declared).then(|| GitOid(sha1::Digest::finalize(self.sha1).into()))
    }
}

/// Which digests a [`ContentHasher`] computes besides SHA-256.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra {
    /// MD5, where a legacy checksum is all there is.
    pub md5: bool,
    /// The git blob id, for a stream of this many bytes (what the Hub lists as `oid`).
    pub git_blob: Option<u64>,
}

impl Extra {
    /// What checking a file against these expectations needs.
    pub fn to_check(md5: Option<Md5>, git_oid: Option<GitOid>, size: u64) -> Self {
        Self {
            md5: md5.is_some(),
            git_blob: git_oid.map(|_| size),
        }
    }
}

/// SHA-256, and MD5 or the git blob id where a check asks for them, of a stream of bytes: the
/// one hashing loop every reader of model files shares.
pub struct ContentHasher {
    sha256: sha2::Sha256,
    md5: Option<md5::Md5>,
    git: Option<GitBlobHasher>,
    bytes: u64,
}

/// What a [`ContentHasher`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub sha256: Sha256,
    pub md5: Option<Md5>,
    /// Computed when asked for and the stream had the declared length.
    pub git_oid: Option<GitOid>,
    pub bytes: u64,
}

impl ContentHasher {
    pub fn new(extra: Extra) -> Self {
        Self {
            sha256: sha2::Sha256::new(),
            md5: extra.md5.then(<md5::Md5 as md5::Digest>::new),
            git: extra.git_blob.map(GitBlobHasher::new),
            bytes: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(m) = self.md5.as_mut() {
            md5::Digest::update(m, bytes);
        }
        if let Some(g) = self.git.as_mut() {
            g.update(bytes);
        }
        self.bytes += bytes.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: Sha256(self.sha256.finalize().into()),
            md5: self.md5.map(|m| Md5(md5::Digest::finalize(m).into())),
            git_oid: self.git.and_then(GitBlobHasher::finish),
            bytes: self.bytes,
        }
    }

    /// Hashes everything `reader` yields, in 1 MiB reads.
    pub fn read_all(mut self, mut reader: impl std::io::Read) -> std::io::Result<Digests> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(self.finish());
            }
            self.update(&buf[..n]);
        }
    }
}

/// A digest that did not match: which one, what was expected and what the bytes gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub algo: &'static str,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algo = self.algo;
        write!(
            f,
            "expected {algo}:{}, got {algo}:{}",
            self.expected, self.actual
        )
    }
}

/// What a file's bytes must hash to: every digest known for it. Checking is all-or-nothing:
/// each one that is known must match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    pub sha256: Option<Sha256>,
    pub md5: Option<Md5>,
    pub git_oid: Option<GitOid>,
}

impl Expected {
    /// Whether anything at all is known to check the bytes against.
    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.md5.is_none() && self.git_oid.is_none()
    }

    /// The extra digests a hasher must compute to check a stream of `size` bytes.
    pub fn extra(&self, size: u64) -> Extra {
        Extra::to_check(self.md5, self.git_oid, size)
    }

    /// The first expectation `got` fails, strongest first.
    pub fn check(&self, got: &Digests) -> Result<(), Mismatch> {
        if let Some(want) = self.sha256
            && want != got.sha256
        {
            return Err(Mismatch {
                algo: "sha256",
                expected: want.hex(),
                actual: got.sha256.hex(),
            });
        }
        if let Some(want) = self.git_oid
            && Some(want) != got.git_oid
        {
            return Err(Mismatch {
                algo: "git-oid",
                expected: want.hex(),
                actual: got
                    .git_oid
                    .map_or_else(|| "(not computed)".to_owned(), |g| g.hex()),
            });
        }
        if let Some(want) = self.md5
            && Some(want) != got.md5
        {
            return Err(Mismatch {
                algo: "md5",
                expected: want.hex(),
                actual: got
                    .md5
                    .map_or_else(|| "(not computed)".to_owned(), |m| m.hex()),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for Md5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl serde::Serialize for Md5 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl<'de> serde::Deserialize<'de> for Md5 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_accepts_canonical_prefixed_and_uppercase_forms() {
        let hex = "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b";
        let a = Sha256::parse(hex).expect("plain");
        assert_eq!(Sha256::parse(&format!("sha256:{hex}")), Ok(a));
        assert_eq!(Sha256::parse(&format!("sha256-{hex}")), Ok(a));
        assert_eq!(Sha256::parse(&hex.to_uppercase()), Ok(a));
        assert_eq!(a.hex(), hex);
    }

    #[test]
    fn malformed_digests_are_refused() {
        let hex63 = "1e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b";
        assert!(Sha256::parse(hex63).is_err());
        assert!(Sha256::parse("sha256:../../../etc/ld.so.preload").is_err());
        assert!(Sha256::parse(&"g".repeat(64)).is_err());
        assert!(Md5::parse("10f92b55c512af7a8d39d650547a15a").is_err());
        assert!(Md5::parse("10f92b55c512af7a8d39d650547a15a7").is_ok());
    }

    #[test]
    fn git_blob_ids_match_git_hash_object() {
        // `printf 'hello\n' | git hash-object --stdin`, and the empty blob.
        assert_eq!(
            GitOid::of_blob(b"hello\n").hex(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            GitOid::of_blob(b"").hex(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        let mut short = ContentHasher::new(Extra {
            md5: false,
            git_blob: Some(7),
        });
        short.update(b"hello\n");
        assert_eq!(
            short.finish().git_oid,
            None,
            "a stream shorter than declared"
        );
    }

    #[test]
    fn every_known_digest_must_match() {
        let bytes = b"{\"v\": 1}";
        let want = Expected {
            sha256: None,
            md5: None,
            git_oid: Some(GitOid::of_blob(bytes)),
        };
        let hash = |b: &[u8]| {
            let mut h = ContentHasher::new(want.extra(b.len() as u64));
            h.update(b);
            h.finish()
        };
        assert_eq!(want.check(&hash(bytes)), Ok(()));
        let other = want
            .check(&hash(b"{\"v\": 2}"))
            .expect_err("same size, other bytes");
        assert_eq!(other.algo, "git-oid");
    }

    #[test]
    fn sha256_of_bytes_matches_known_vector() {
        assert_eq!(
            Sha256::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// Schema descriptions of digests, matching what `parse` accepts.
mod schema {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    impl JsonSchema for super::Sha256 {
        fn schema_name() -> Cow<'static, str> {
            "Sha256".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "description": "A SHA-256 digest: 64 hex digits, optionally prefixed `sha256:`",
                "pattern": "^(sha256:)?[0-9a-fA-F]{64}$"
            })
        }
    }

    impl JsonSchema for super::Md5 {
        fn schema_name() -> Cow<'static, str> {
            "Md5".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "description": "An MD5 digest (weak): 32 hex digits",
                "pattern": "^(md5:)?[0-9a-fA-F]{32}$"
            })
        }
    }
}
