//! Properties over arbitrary input: nothing panics, and no accepted name leaves the store.

use std::path::{Component, Path};

use modelctl::names::{ModelId, RelPath};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_paths_stay_inside_the_store(text in "[a-zA-Z0-9._/\\\\: -]{0,40}|.{0,40}") {
        if let Ok(path) = RelPath::parse(&text) {
            let root = Path::new("/store/models/llm/m");
            let joined = path.under(root);
            prop_assert!(joined.starts_with(root));
            prop_assert!(joined.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
        }
        if let Ok(id) = ModelId::parse(&text) {
            prop_assert!(!id.as_str().contains('/') && id.as_str() != "..");
        }
    }

    #[test]
    fn any_manifest_text_is_either_accepted_or_explained(text in "(version: 1\n)?(models:\n)?([ a-z_:{}\\[\\],'\"&*!#|>-]{0,12}\n){0,12}") {
        if let Err(problems) = modelctl::manifest::parse_str(&text, "models.yaml") {
            prop_assert!(!problems.problems.is_empty());
            let rendered = problems.render(false);
            prop_assert!(rendered.contains("problem"));
        }
    }

    #[test]
    fn any_lock_text_is_either_accepted_or_refused(text in "(version: 1\n)?([ a-z_:\"{}\\[\\],-]{0,16}\n){0,12}") {
        match modelctl::lock::parse_str(&text, Path::new("models.lock")) {
            // What is accepted renders canonically, and that text reads back the same.
            Ok(lock) => {
                let rendered = modelctl::lock::render(&lock);
                let again = modelctl::lock::parse_str(&rendered, Path::new("models.lock"));
                prop_assert_eq!(again.ok(), Some(lock));
            }
            // What is refused says which file and why.
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains("models.lock"), "{}", message);
            }
        }
    }
}
