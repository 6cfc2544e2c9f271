//! Validated content hashes.
//!
//! A `Sha256` is always 64 lowercase hex digits: it names blobs in the store (`blobs/sha256/ab/…`),
//! so it passes through here before it can become part of a path. Input may carry a `sha256:`
//! prefix (the form Ollama and OCI registries use) and upper-case digits; the stored form has
//! neither. `Md5` exists only for legacy checksums that a source publishes and nothing better is
//! known; the plan flags it as weak.

use std::fmt;

use sha2::Digest as _;

/// A SHA-256 digest in canonical form (64 lowercase hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256([u8; 32]);

/// An MD5 digest (32 hex digits); weak, accepted only where a source gives nothing better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Md5([u8; 16]);

/// A git object id (SHA-1, 40 lowercase hex digits). The Hub names regular (non-LFS) files and
/// commits by it, and the HF cache names those files' blobs by it. It identifies; it never
/// verifies content (modelctl checks files by sha256).
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

/// SHA-256, and MD5 where a legacy checksum asks for it, of a stream of bytes: the one hashing
/// loop every reader of model files shares.
pub struct ContentHasher {
    sha256: sha2::Sha256,
    md5: Option<md5::Md5>,
    bytes: u64,
}

/// What a [`ContentHasher`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub sha256: Sha256,
    pub md5: Option<Md5>,
    pub bytes: u64,
}

impl ContentHasher {
    pub fn new(with_md5: bool) -> Self {
        Self {
            sha256: sha2::Sha256::new(),
            md5: with_md5.then(<md5::Md5 as md5::Digest>::new),
            bytes: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(m) = self.md5.as_mut() {
            md5::Digest::update(m, bytes);
        }
        self.bytes += bytes.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: Sha256(self.sha256.finalize().into()),
            md5: self.md5.map(|m| Md5(md5::Digest::finalize(m).into())),
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
