//! The JSON Schema of `models.yaml`, generated from the manifest types (draft-07).
//!
//! `schema/models.schema.json` in the repository is this output; a test fails when the two
//! differ, so editors always validate against what this build accepts.

use schemars::generate::SchemaSettings;

use super::Manifest;

/// The schema as pretty-printed JSON with a trailing newline.
pub fn json_schema() -> String {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<Manifest>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::super::validate::*;
    use super::*;

    fn properties(schema: &serde_json::Value, def: Option<&str>) -> Vec<String> {
        let node = match def {
            None => schema,
            Some(name) => &schema["definitions"][name],
        };
        let mut keys: Vec<String> = node["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn schema_and_validator_accept_the_same_keys() {
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).expect("json");
        assert_eq!(properties(&schema, None), sorted(ROOT_KEYS));
        assert_eq!(properties(&schema, Some("ModelEntry")), sorted(MODEL_KEYS));
        assert_eq!(properties(&schema, Some("HfSource")), sorted(HF_KEYS));
        assert_eq!(properties(&schema, Some("UrlSource")), sorted(URL_KEYS));
        assert_eq!(
            properties(&schema, Some("OllamaSource")),
            sorted(OLLAMA_KEYS)
        );
        assert_eq!(properties(&schema, Some("OciSource")), sorted(OCI_KEYS));
        assert_eq!(properties(&schema, Some("FileExpect")), sorted(FILE_KEYS));
        assert_eq!(
            properties(&schema, Some("Requirements")),
            sorted(REQUIRES_KEYS)
        );
        assert_eq!(properties(&schema, Some("Hooks")), sorted(HOOK_KEYS));
        assert_eq!(properties(&schema, Some("TypeDecl")), sorted(TYPE_KEYS));
    }
}
