//! `activate`, `deactivate`, `config`, `remove` and `add`: the commands that edit models.yaml.
//!
//! Each checks its arguments against the validated manifest (an unknown id or type gets the
//! closest known one), makes its change through [`crate::manifest::edit`], which re-validates
//! the result and refuses an edit that would break the file, and prints the lines it changed.
//! None of them touches the store: `modelctl apply` makes it so.

use std::process::ExitCode;

use miette::{Result, miette};
use yaml_edit::{Mapping, MappingBuilder, ScalarValue};

use crate::cli::{ActivateArgs, AddArgs, ConfigArgs, DeactivateArgs, RemoveArgs};
use crate::manifest::Manifest;
use crate::manifest::edit::{Edited, edit, remove_in, set_in, set_new_mapping};
use crate::names::ModelId;
use crate::printer::OutputError;
use crate::settings::Settings;

/// `modelctl activate ID [--type TYPE]`: `active.<type>: ID`.
pub fn activate(settings: &Settings, args: &ActivateArgs) -> Result<ExitCode> {
    let edited = edit_activate(settings, &args.id, args.kind.as_deref())?;
    report(settings, &edited)
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

/// `modelctl deactivate TYPE|ID`: removes that type's `active` entry.
pub fn deactivate(settings: &Settings, args: &DeactivateArgs) -> Result<ExitCode> {
    let edited = edit_deactivate(settings, &args.target)?;
    report(settings, &edited)
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

/// `modelctl config ID KEY=VALUE… [--unset KEY]`: edits the model's `config` mapping.
pub fn config(settings: &Settings, args: &ConfigArgs) -> Result<ExitCode> {
    let edited = edit_config(settings, &args.id, &config_changes(args)?)?;
    report(settings, &edited)
}

/// One change `config` makes to a model's `config` mapping.
#[derive(Debug, Clone)]
pub(crate) enum ConfigChange {
    Set(String, ScalarValue),
    Unset(String),
}

/// The CLI's `KEY=VALUE…` and `--unset KEY…` as changes (values read as YAML plain scalars).
fn config_changes(args: &ConfigArgs) -> Result<Vec<ConfigChange>> {
    let mut changes = Vec::new();
    for pair in &args.set {
        let (key, value) = split_pair(pair)?;
        changes.push(ConfigChange::Set(key.to_owned(), scalar(value)));
    }
    changes.extend(args.unset.iter().cloned().map(ConfigChange::Unset));
    Ok(changes)
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

/// `KEY=VALUE` → (`KEY`, `VALUE`).
fn split_pair(pair: &str) -> Result<(&str, &str)> {
    pair.split_once('=')
        .filter(|(key, _)| !key.trim().is_empty())
        .ok_or_else(|| {
            miette!(
                help = "write `KEY=VALUE`, such as `steps=30`",
                "`{pair}` is not KEY=VALUE"
            )
        })
}

/// A value as YAML reads a plain scalar: an integer, a number, `true`/`false`, else a string.
fn scalar(text: &str) -> ScalarValue {
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    match text {
        "true" => ScalarValue::from(true),
        "false" => ScalarValue::from(false),
        _ => match (text.parse::<i64>(), text.parse::<f64>()) {
            (Ok(n), _) => ScalarValue::from(n),
            (_, Ok(x)) if numeric && x.is_finite() => ScalarValue::from(x),
            _ => ScalarValue::string(text),
        },
    }
}

/// The syntax-tree mapping of a declared model.
fn model_mapping(root: &Mapping, id: &ModelId) -> Result<Mapping> {
    root.get_mapping("models")
        .and_then(|models| models.get_mapping(id.as_str()))
        .ok_or_else(|| miette!("cannot edit `{id}`: it is not a plain mapping under `models:`"))
}

/// `modelctl remove ID`: removes the model and any `active` entry naming it.
pub fn remove(settings: &Settings, args: &RemoveArgs) -> Result<ExitCode> {
    let edited = edit_remove(settings, &args.id)?;
    report(settings, &edited)
}

/// The edit `remove` makes (the API's `DELETE /api/models/{id}` makes it too).
pub(crate) fn edit_remove(settings: &Settings, id: &str) -> Result<Edited> {
    edit(&settings.manifest_path, |manifest, root| {
        let id = manifest.declared(id)?;
        model_mapping(root, &id)?;
        if let Some(models) = root.get_mapping("models") {
            models.remove(id.as_str());
        }
        for (kind, _) in manifest.active.iter().filter(|(_, a)| **a == id) {
            remove_in(root, "active", kind.as_str());
        }
        Ok(())
    })
}

/// `modelctl add ID --type T (--hf … | --url … | --ollama …) [--activate]`: declares a new
/// model, and with `--activate` makes it its type's active model.
pub fn add(settings: &Settings, args: &AddArgs) -> Result<ExitCode> {
    let edited = edit_add(settings, args)?;
    report(settings, &edited)
}

/// The edit `add` makes (the API's `POST /api/models/add` makes it too).
pub(crate) fn edit_add(settings: &Settings, args: &AddArgs) -> Result<Edited> {
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
        let entry = new_entry(args);
        match root.get_mapping("models") {
            Some(models) => set_new_mapping(&models, &args.id, entry),
            None => set_new_mapping(
                root,
                "models",
                MappingBuilder::new().insert_mapping(&args.id, entry),
            ),
        }
        if args.activate {
            set_in(root, "active", &args.kind, args.id.as_str());
        }
        Ok(())
    })
}

/// Refuses a type the manifest does not know, naming the closest one.
fn known_type(manifest: &Manifest, kind: &str) -> Result<()> {
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
fn new_entry(args: &AddArgs) -> MappingBuilder {
    let mut entry = MappingBuilder::new().pair("type", args.kind.as_str());
    if let Some(description) = &args.description {
        entry = entry.pair("description", description.as_str());
    }
    entry.mapping("source", |source| new_source(args, source))
}

/// The `source:` mapping of `add`'s arguments.
fn new_source(args: &AddArgs, mut source: MappingBuilder) -> MappingBuilder {
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
    }
    source
}

/// Prints the changed lines and what to do next.
fn report(settings: &Settings, edited: &Edited) -> Result<ExitCode> {
    let printer = settings.printer;
    let name = crate::manifest::display_name(&settings.manifest_path);
    if !edited.changed() {
        printer.say(format_args!("`{name}` is unchanged."));
        return Ok(ExitCode::SUCCESS);
    }
    // The file is written: a reader that went away does not make that untrue.
    printer
        .out(edited.diff())
        .or_else(OutputError::ignore_closed)?;
    printer.say(format_args!(
        "Wrote `{name}`; run `modelctl apply` to make it so."
    ));
    Ok(ExitCode::SUCCESS)
}
