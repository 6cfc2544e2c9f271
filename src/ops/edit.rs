//! The typed edits of models.yaml: activate, deactivate, config, remove and add, each made
//! through [`crate::manifest::edit`], which re-validates the result and refuses an edit that
//! would break the file. The commands of the same names and the API's changes make them; both
//! check names against the validated manifest here (an unknown id or type gets the closest
//! known one). None of them touches the store, and none prints.

use miette::{Result, miette};
use yaml_edit::{Mapping, MappingBuilder, ScalarValue};

use crate::manifest::Manifest;
use crate::manifest::edit::{Edited, edit, insert_model, remove_in, set_in};
use crate::names::ModelId;
use crate::settings::Settings;

/// A model to declare: `add`'s arguments as data. Exactly one of `hf`, `url`, `ollama` and `oci`;
/// `revision` and `include` go with `hf`, `sha256` with `url` ([`NewModel::check`] refuses
/// anything else).
#[derive(Debug, Clone, Default)]
pub struct NewModel {
    pub id: String,
    pub kind: String,
    pub hf: Option<String>,
    pub revision: Option<String>,
    pub include: Vec<String>,
    pub url: Option<String>,
    pub sha256: Option<String>,
    pub ollama: Option<String>,
    pub oci: Option<String>,
    pub description: Option<String>,
    /// Also make it its type's active model.
    pub activate: bool,
}

/// The edit `activate` makes (the API's activate and switch make it too).
pub(crate) fn edit_activate(settings: &Settings, id: &str, kind: Option<&str>) -> Result<Edited> {
    edit(&settings.manifest_path, |manifest, root| {
        let id = manifest.declared(id)?;
        let kind = match (kind, manifest.models.get(&id)) {
            (Some(kind), _) => kind.to_owned(),
            (None, Some(entry)) => entry.kind.to_string(),
            (None, None) => return Err(miette!("no model `{id}` in models.yaml")),
        };
        set_in(root, "active", &kind, id.as_str());
        Ok(())
    })
}

/// The edit `deactivate` makes (the API's deactivate makes it too).
pub(crate) fn edit_deactivate(settings: &Settings, target: &str) -> Result<Edited> {
    edit(&settings.manifest_path, |manifest, root| {
        if let Some(kind) = active_type(manifest, target)? {
            remove_in(root, "active", &kind);
        }
        Ok(())
    })
}

/// The type whose active entry `target` names (a type, or an active model's id); `None` for a
/// known type with no active model.
fn active_type(manifest: &Manifest, target: &str) -> Result<Option<String>> {
    if let Some(kind) = manifest.active.keys().find(|k| k.as_str() == target) {
        return Ok(Some(kind.to_string()));
    }
    if let Some((kind, _)) = manifest.active.iter().find(|(_, id)| id.as_str() == target) {
        return Ok(Some(kind.to_string()));
    }
    let known = manifest.known_types();
    if known.iter().any(|k| k == target) || manifest.models.keys().any(|id| id.as_str() == target) {
        return Ok(None);
    }
    let candidates = manifest
        .active
        .iter()
        .flat_map(|(k, id)| [k.as_str(), id.as_str()]);
    let help = match crate::diagnostic::closest(target, candidates) {
        Some(near) => format!("did you mean `{near}`?"),
        None => "name a type, or the id of an active model; `modelctl status` lists them".into(),
    };
    Err(miette!(
        help = help,
        "no type or model `{target}` in models.yaml"
    ))
}

/// One change `config` makes to a model's `config` mapping.
#[derive(Debug, Clone)]
pub(crate) enum ConfigChange {
    Set(String, ScalarValue),
    Unset(String),
}

/// The edit `config` makes (the API's `PUT /api/models/{id}/config` makes it too, with values
/// typed by their JSON rather than read from text).
pub(crate) fn edit_config(
    settings: &Settings,
    id: &str,
    changes: &[ConfigChange],
) -> Result<Edited> {
    if changes.is_empty() {
        return Err(miette!(
            help = "pass `KEY=VALUE` to set a key, or `--unset KEY` to remove one",
            "nothing to change"
        ));
    }
    edit(&settings.manifest_path, |manifest, root| {
        let id = manifest.declared(id)?;
        let model = model_mapping(root, &id)?;
        for change in changes {
            match change {
                ConfigChange::Set(key, value) => set_in(&model, "config", key, value.clone()),
                ConfigChange::Unset(key) => {
                    let keys = manifest.models.get(&id).map(|e| &e.config);
                    if !keys.is_some_and(|c| c.contains_key(key)) {
                        let names = keys.into_iter().flat_map(|c| c.keys().map(String::as_str));
                        let help = match crate::diagnostic::closest(key, names) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("`modelctl show {id}` shows its config"),
                        };
                        return Err(miette!(help = help, "`{id}` has no config key `{key}`"));
                    }
                    remove_in(&model, "config", key);
                }
            }
        }
        Ok(())
    })
}

/// The syntax-tree mapping of a declared model.
fn model_mapping(root: &Mapping, id: &ModelId) -> Result<Mapping> {
    root.get_mapping("models")
        .and_then(|models| models.get_mapping(id.as_str()))
        .ok_or_else(|| miette!("cannot edit `{id}`: it is not a plain mapping under `models:`"))
}

/// The edit `remove` makes (the API's `DELETE /api/models/{id}` makes it too).
pub(crate) fn edit_remove(settings: &Settings, id: &str) -> Result<Edited> {
    edit_remove_all(settings, &[id.to_owned()])
}

/// `remove ID…`: one edit for all of them, so an unknown id leaves models.yaml as it was.
pub(crate) fn edit_remove_all(settings: &Settings, ids: &[String]) -> Result<Edited> {
    edit(&settings.manifest_path, |manifest, root| {
        for id in ids {
            let id = manifest.declared(id)?;
            model_mapping(root, &id)?;
            if let Some(models) = root.get_mapping("models") {
                models.remove(id.as_str());
            }
            for (kind, _) in manifest.active.iter().filter(|(_, a)| **a == id) {
                remove_in(root, "active", kind.as_str());
            }
        }
        Ok(())
    })
}

impl NewModel {
    /// Refuses what `add` cannot declare as asked: an id that is not valid, no source or
    /// several, and a key of another source kind (`include` with a `url` source), which would
    /// otherwise be dropped without a word. Keys are named as models.yaml names them, which is
    /// also the flag's name (`include`, `--include`).
    pub fn check(&self) -> Result<()> {
        ModelId::parse(&self.id).map_err(|e| {
            miette!(
                help = "ids use letters, digits, `.`, `_` and `-` (at most 64 characters), \
                        starting with a letter or digit",
                "`{}` is not a valid model id: {e}",
                self.id
            )
        })?;
        let sources: Vec<&str> = [
            self.hf.as_ref().map(|_| "hf"),
            self.url.as_ref().map(|_| "url"),
            self.ollama.as_ref().map(|_| "ollama"),
            self.oci.as_ref().map(|_| "oci"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let kind = match sources.as_slice() {
            [one] => *one,
            [] => {
                return Err(miette!(
                    help = "give one of `hf` (a Hub repository), `url` (one file), `ollama` or `oci` (a registry artifact)",
                    "`{}` has no source",
                    self.id
                ));
            }
            several => {
                return Err(miette!(
                    help = "a model has one source; add one model per source",
                    "`{}` is given several sources: {}",
                    self.id,
                    several.join(", ")
                ));
            }
        };
        let misplaced = [
            ("revision", self.revision.is_some(), "hf"),
            ("include", !self.include.is_empty(), "hf"),
            ("sha256", self.sha256.is_some(), "url"),
        ];
        let a = |kind: &str| if kind == "url" { "a" } else { "an" };
        match misplaced
            .iter()
            .find(|(_, given, with)| *given && *with != kind)
        {
            Some((key, _, with)) => Err(miette!(
                help = format!("drop `{key}`, or declare {} `{with}` model", a(with)),
                "`{key}` goes with {} `{with}` source, and `{}` is {} `{kind}` model",
                a(with),
                self.id,
                a(kind)
            )),
            None => Ok(()),
        }
    }
}

/// The edit `add` makes (the API's `POST /api/models/add` makes it too).
pub(crate) fn edit_add(settings: &Settings, args: &NewModel) -> Result<Edited> {
    edit_add_checked(settings, args, &|| Ok(()))
}

/// [`edit_add`], with `confirm` asked once the edit is known to be valid for this manifest
/// and before it is written (the CLI checks an Ollama name against the daemon there, so a
/// typo in the id or type is reported without asking the network first).
pub(crate) fn edit_add_checked(
    settings: &Settings,
    args: &NewModel,
    confirm: &dyn Fn() -> Result<()>,
) -> Result<Edited> {
    args.check()?;
    edit(&settings.manifest_path, |manifest, root| {
        if let Ok(id) = ModelId::parse(&args.id)
            && manifest.models.contains_key(&id)
        {
            return Err(miette!(
                help = format!("pick another id, or run `modelctl remove {id}` first"),
                "`{id}` is already in models.yaml"
            ));
        }
        known_type(manifest, &args.kind)?;
        confirm()?;
        let entry = new_entry(args);
        insert_model(root, &args.id, entry);
        if args.activate {
            set_in(root, "active", &args.kind, args.id.as_str());
        }
        Ok(())
    })
}

/// Refuses a type the manifest does not know, naming the closest one.
pub(super) fn known_type(manifest: &Manifest, kind: &str) -> Result<()> {
    let known = manifest.known_types();
    if known.iter().any(|k| k == kind) {
        return Ok(());
    }
    let help = match crate::diagnostic::closest(kind, known.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!(
            "the types are {}; declare others under `types:`",
            known.join(", ")
        ),
    };
    Err(miette!(help = help, "unknown model type `{kind}`"))
}

/// The new model's mapping, in the order the examples in docs/ use.
pub(super) fn new_entry(args: &NewModel) -> MappingBuilder {
    let mut entry = MappingBuilder::new().pair("type", args.kind.as_str());
    if let Some(description) = &args.description {
        entry = entry.pair("description", description.as_str());
    }
    entry.mapping("source", |source| new_source(args, source))
}

/// The `source:` mapping of `add`'s arguments.
fn new_source(args: &NewModel, mut source: MappingBuilder) -> MappingBuilder {
    if let Some(hf) = &args.hf {
        source = source.pair("hf", hf.as_str());
        if let Some(revision) = &args.revision {
            source = source.pair("revision", revision.as_str());
        }
        if !args.include.is_empty() {
            source = source.sequence("include", |mut seq| {
                for glob in &args.include {
                    seq = seq.item(glob.as_str());
                }
                seq
            });
        }
    } else if let Some(url) = &args.url {
        source = source.pair("url", url.as_str());
        if let Some(sha256) = &args.sha256 {
            source = source.pair("sha256", sha256.as_str());
        }
    } else if let Some(ollama) = &args.ollama {
        source = source.pair("ollama", ollama.as_str());
    } else if let Some(oci) = &args.oci {
        source = source.pair("oci", oci.as_str());
    }
    source
}
