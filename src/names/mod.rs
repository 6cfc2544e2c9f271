//! The one validator for every name that reaches the filesystem.
//!
//! Model ids, type names and file paths inside a model all come from untrusted text (a
//! manifest, a lock, a Hub listing, a registry manifest). Each of them is turned into one of
//! the types below before anything touches the disk, and the store joins only these types onto
//! its root. The rules are the union of POSIX and Windows rules, so a project that is valid on
//! one machine is valid on every machine: no `..`, no absolute or drive paths, no backslashes,
//! no NUL or control characters, no reserved device names, bounded lengths. Because the
//! validated forms contain no `..` and no root, a joined path stays under the directory it was
//! joined onto (the store additionally refuses to follow symlinks when it writes). The paths of
//! one model are also checked together ([`PathSet`]): two that differ only in case or in
//! Unicode normalization are one file on macOS and Windows, so such a pair is refused wherever
//! a model's paths come from, as model ids differing only in case are.

pub mod ollama;

pub use ollama::OllamaRef;

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest model id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest type name, in bytes.
pub const MAX_TYPE_LEN: usize = 32;
/// Longest path component, in bytes (the common filesystem limit).
pub const MAX_COMPONENT_LEN: usize = 255;
/// Longest relative file path inside a model, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Why a name was refused; the text completes "… is not a valid <kind>: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub reason: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, NameError> {
    Err(NameError {
        reason: reason.into(),
    })
}

/// Windows device names, refused with or without an extension (`nul`, `aux.txt`).
const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com0", "com1", "com2", "com3", "com4", "com5", "com6", "com7",
    "com8", "com9", "lpt0", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Checks one path component against the rules every filesystem shares.
fn check_component(part: &str) -> Result<(), NameError> {
    if part.is_empty() {
        return refuse("it has an empty path component (`//` or a trailing `/`)");
    }
    if part == "." || part == ".." {
        return refuse(format!("`{part}` components are not allowed"));
    }
    if part.len() > MAX_COMPONENT_LEN {
        return refuse(format!(
            "a component is {} bytes long; the limit is {MAX_COMPONENT_LEN}",
            part.len()
        ));
    }
    if let Some(c) = part.chars().find(|c| c.is_control()) {
        return refuse(format!("it contains the control character {:?}", c));
    }
    if let Some(c) = part
        .chars()
        .find(|c| matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|'))
    {
        return refuse(format!(
            "it contains `{c}`, which is not allowed in file names on every system"
        ));
    }
    if part.ends_with('.') || part.ends_with(' ') {
        return refuse("a component ends with a dot or a space");
    }
    let stem = part.split('.').next().unwrap_or(part).to_ascii_lowercase();
    if RESERVED.contains(&stem.as_str()) {
        return refuse(format!("`{part}` is a reserved device name on Windows"));
    }
    Ok(())
}

/// A model id: the key under `models:`, a directory name in the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ModelId(String);

impl ModelId {
    /// Validates an id: ASCII letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return refuse("it is empty");
        }
        if text.len() > MAX_ID_LEN {
            return refuse(format!(
                "it is {} bytes long; the limit is {MAX_ID_LEN}",
                text.len()
            ));
        }
        if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return refuse("it must start with a letter or a digit");
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return refuse(format!(
                "it contains {c:?}; use letters, digits, `.`, `_` and `-`"
            ));
        }
        check_component(text)?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A model type name (`image_gen`, `llm`, or one declared under `types:`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TypeName(String);

impl TypeName {
    /// Validates a type name: lowercase ASCII letters, digits and `_`, starting with a letter.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return refuse("it is empty");
        }
        if text.len() > MAX_TYPE_LEN {
            return refuse(format!(
                "it is {} bytes long; the limit is {MAX_TYPE_LEN}",
                text.len()
            ));
        }
        if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
            return refuse("it must start with a lowercase letter");
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return refuse(format!(
                "it contains {c:?}; use lowercase letters, digits and `_`"
            ));
        }
        check_component(text)?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A relative path of a file inside a model (`unet/diffusion_pytorch_model.safetensors`),
/// always with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RelPath(String);

impl RelPath {
    /// Validates a relative path: components separated by `/`, each a safe file name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return refuse("it is empty");
        }
        if text.len() > MAX_PATH_LEN {
            return refuse(format!(
                "it is {} bytes long; the limit is {MAX_PATH_LEN}",
                text.len()
            ));
        }
        if text.starts_with('/') {
            return refuse("it is an absolute path; file paths are relative to the model");
        }
        if text.len() >= 2 && text.as_bytes()[1] == b':' {
            return refuse("it starts with a drive letter; file paths are relative to the model");
        }
        for part in text.split('/') {
            check_component(part)?;
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below `dir`. Safe by construction: no component is `..` or absolute.
    pub fn under(&self, dir: &Path) -> PathBuf {
        self.0.split('/').fold(dir.to_path_buf(), |p, c| p.join(c))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key under which macOS and Windows compare a name: canonically decomposed, case folded
/// and decomposed again (Unicode's canonical caseless match), so `Model.bin` and `model.bin`,
/// or the composed and the decomposed spelling of `é.bin`, have one key.
fn folded(part: &str) -> String {
    let nfd = icu_normalizer::DecomposingNormalizer::new_nfd();
    let decomposed = nfd.normalize(part);
    let folded = icu_casemap::CaseMapper::new().fold_string(&decomposed);
    nfd.normalize(&folded).into_owned()
}

/// Two paths of one model that a case-insensitive or normalization-insensitive filesystem
/// (macOS and Windows by default) takes for one: the same file, or the same folder spelled two
/// ways (`A/x` and `a/y`), so writing one would replace or mix with the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The path seen first and the one that collides with it, as spelled.
    pub first: String,
    pub second: String,
    /// Where they collide: the two spellings of the same file or folder (`A` and `a`).
    pub first_at: String,
    pub second_at: String,
}

impl fmt::Display for Collision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` and `{}`", self.first, self.second)?;
        if self.first_at != self.first || self.second_at != self.second {
            write!(
                f,
                " collide on `{}` and `{}`, which",
                self.first_at, self.second_at
            )?;
        }
        let nfc = icu_normalizer::ComposingNormalizer::new_nfc();
        if nfc.normalize(&self.first_at) == nfc.normalize(&self.second_at) {
            // The two look alike when printed: show the code points that differ.
            write!(
                f,
                " are one name in two Unicode normalizations (`{}` and `{}`)",
                escape_non_ascii(&self.first_at),
                escape_non_ascii(&self.second_at)
            )
        } else {
            f.write_str(" differ only in case")
        }
    }
}

fn escape_non_ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                c.escape_unicode().to_string()
            }
        })
        .collect()
}

/// The paths of one model, as a filesystem that ignores case and Unicode normalization sees
/// them: every file and every folder above it, by its folded key, with the spelling it was
/// first given. The one check every place that gathers a model's paths goes through (the
/// manifest's `files:`, a Hub listing, the lock).
#[derive(Debug, Default)]
pub struct PathSet {
    /// Folded key of a prefix (`unet`, `unet/config.json`) → its spelling and the path it came from.
    seen: std::collections::HashMap<String, (String, String)>,
}

impl PathSet {
    /// Adds `path`, or says which path already in the set it collides with (the set is then
    /// unchanged). The same path given twice is not a collision; callers that care about
    /// duplicates check them themselves.
    pub fn insert(&mut self, path: &RelPath) -> Result<(), Collision> {
        let text = path.as_str();
        let ends = text
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()));
        let mut key = String::with_capacity(text.len());
        let mut start = 0;
        let mut fresh = Vec::new();
        for end in ends {
            if start > 0 {
                key.push('/');
            }
            key.push_str(&folded(&text[start..end]));
            let spelling = &text[..end];
            match self.seen.get(&key) {
                Some((seen, from)) if seen != spelling => {
                    return Err(Collision {
                        first: from.clone(),
                        second: text.to_owned(),
                        first_at: seen.clone(),
                        second_at: spelling.to_owned(),
                    });
                }
                Some(_) => {}
                None => fresh.push((key.clone(), spelling.to_owned())),
            }
            start = end + 1;
        }
        for (key, spelling) in fresh {
            self.seen.insert(key, (spelling, text.to_owned()));
        }
        Ok(())
    }
}

/// The first two of `paths` that collide (see [`PathSet`]), if any do.
pub fn collision<'a>(paths: impl IntoIterator<Item = &'a RelPath>) -> Option<Collision> {
    let mut set = PathSet::default();
    paths.into_iter().find_map(|p| set.insert(p).err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_file_names_are_refused() {
        for bad in [
            "../../etc/passwd",
            "/etc/x",
            "a/../../b",
            "C:\\x",
            "D:rel",
            "\\\\host\\share",
            "\\evil",
            "a\0b",
            "CON",
            "aux.txt",
            "dir/nul",
            "trailing.",
            "trailing ",
            "a//b",
            "a/",
            "./a",
            "",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = "x".repeat(256);
        assert!(RelPath::parse(&long).is_err());
        assert!(RelPath::parse(&format!("{}/y", "d/".repeat(600))).is_err());
    }

    #[test]
    fn ordinary_repo_file_names_are_accepted() {
        for good in [
            "sd_xl_base_1.0.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "checkpoints/wav2lip_gan.pth",
            ".gitattributes",
            "tokenizer/vocab file.json",
            "中文/模型.bin",
        ] {
            let path = RelPath::parse(good).expect(good);
            let joined = path.under(Path::new("/store/models"));
            assert!(joined.starts_with("/store/models"));
        }
    }

    fn paths(list: &[&str]) -> Vec<RelPath> {
        list.iter()
            .map(|p| RelPath::parse(p).expect("valid path"))
            .collect()
    }

    #[test]
    fn paths_differing_only_in_case_or_normalization_collide() {
        let c = collision(&paths(&["Model.safetensors", "model.safetensors"])).expect("case");
        assert_eq!(
            (c.first.as_str(), c.second.as_str()),
            ("Model.safetensors", "model.safetensors")
        );
        assert_eq!(
            c.to_string(),
            "`Model.safetensors` and `model.safetensors` differ only in case"
        );

        let c =
            collision(&paths(&["\u{e9}.safetensors", "e\u{301}.safetensors"])).expect("nfc/nfd");
        assert!(
            c.to_string().contains(
                "two Unicode normalizations (`\\u{e9}.safetensors` and `e\\u{301}.safetensors`)"
            ),
            "{c}"
        );

        let c = collision(&paths(&["A/x.bin", "b.bin", "a/y.bin"])).expect("folder");
        assert_eq!(
            c.to_string(),
            "`A/x.bin` and `a/y.bin` collide on `A` and `a`, which differ only in case"
        );
        let c = collision(&paths(&["d/Sub/x", "d/sub/y"])).expect("inner folder");
        assert_eq!(
            (c.first_at.as_str(), c.second_at.as_str()),
            ("d/Sub", "d/sub")
        );
        // Full case folding, not just lowercasing: the Kelvin sign, a final sigma, ß.
        assert!(collision(&paths(&["\u{212a}.bin", "k.bin"])).is_some());
        assert!(collision(&paths(&["\u{3a3}.bin", "\u{3c2}.bin"])).is_some());
        assert!(collision(&paths(&["stra\u{df}e", "STRASSE"])).is_some());
    }

    #[test]
    fn distinct_and_repeated_paths_do_not_collide() {
        assert_eq!(
            collision(&paths(&[
                "unet/config.json",
                "unet/model.bin",
                "vae/config.json",
                "unet/config.json",
                "model.bin",
                "\u{e9}.bin",
                "e.bin",
            ])),
            None
        );
        let mut set = PathSet::default();
        let first = RelPath::parse("Dir/a").expect("path");
        assert!(set.insert(&first).is_ok());
        assert!(set.insert(&RelPath::parse("dir/b").expect("path")).is_err());
        // A refused path leaves nothing behind: `dir/c` still collides with `Dir/a` only.
        let c = set
            .insert(&RelPath::parse("dir/c").expect("path"))
            .expect_err("collides");
        assert_eq!(c.first, "Dir/a");
    }

    #[test]
    fn ids_and_types_follow_their_rules() {
        assert!(ModelId::parse("sdxl-base").is_ok());
        assert!(ModelId::parse("Llama3.1_8B").is_ok());
        for bad in ["", "-x", "..", "a/b", "a b", "nul", &"x".repeat(65)] {
            assert!(ModelId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(TypeName::parse("image_gen").is_ok());
        for bad in ["Image", "9x", "a-b", ""] {
            assert!(TypeName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

macro_rules! deserialize_by_parse {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(|e| {
                    serde::de::Error::custom(format!("`{}` is not valid: {e}", text.escape_debug()))
                })
            }
        }
    )*};
}

deserialize_by_parse!(ModelId, TypeName, RelPath);

/// Schema descriptions of the names, so editors check them as the validator does.
mod schema {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    impl JsonSchema for super::ModelId {
        fn schema_name() -> Cow<'static, str> {
            "ModelId".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "description": "A model id: letters, digits, `.`, `_` and `-`, at most 64 characters",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
            })
        }
    }

    impl JsonSchema for super::TypeName {
        fn schema_name() -> Cow<'static, str> {
            "TypeName".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "description": "A model type: image_gen, animation, tts, music, lip_sync, llm, or one declared under `types:`",
                "pattern": "^[a-z][a-z0-9_]{0,31}$"
            })
        }
    }

    impl JsonSchema for super::RelPath {
        fn schema_name() -> Cow<'static, str> {
            "RelPath".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "string",
                "description": "A file path relative to the model directory, `/` between folders",
                "pattern": "^[^/\\\\:]",
                "maxLength": 1024
            })
        }
    }
}
