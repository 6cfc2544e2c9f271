//! `activate`, `deactivate`, `config`, `remove` and `add`: the commands that edit models.yaml.
//!
//! Each turns its arguments into one of the typed edits of [`crate::ops::edit`] (which checks
//! names against the validated manifest and refuses an edit that would break the file), and
//! prints the lines it changed. None of them touches the store: `modelctl apply` makes it so.

use std::path::Path;
use std::process::ExitCode;

use miette::{Result, miette};
use yaml_edit::ScalarValue;

use crate::cli::{ActivateArgs, AddArgs, ConfigArgs, DeactivateArgs, RemoveArgs};
use crate::manifest::edit::Edited;
use crate::ops::edit::{
    ConfigChange, NewModel, edit_activate, edit_add_checked, edit_config, edit_deactivate,
    edit_remove_all,
};
use crate::printer::OutputError;
use crate::settings::Settings;

/// `modelctl activate ID [--type TYPE]`: `active.<type>: ID`.
pub fn activate(settings: &Settings, args: &ActivateArgs) -> Result<ExitCode> {
    let edited = edit_activate(settings, &args.id, args.kind.as_deref())?;
    report(settings, &edited)
}

/// `modelctl deactivate TYPE|ID`: removes that type's `active` entry.
pub fn deactivate(settings: &Settings, args: &DeactivateArgs) -> Result<ExitCode> {
    let edited = edit_deactivate(settings, &args.target)?;
    report(settings, &edited)
}

/// `modelctl config ID KEY=VALUE… [--unset KEY]`: edits the model's `config` mapping.
pub fn config(settings: &Settings, args: &ConfigArgs) -> Result<ExitCode> {
    let edited = edit_config(settings, &args.id, &config_changes(args)?)?;
    report(settings, &edited)
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

/// `modelctl remove ID…`: removes the models and any `active` entry naming them.
pub fn remove(settings: &Settings, args: &RemoveArgs) -> Result<ExitCode> {
    let before = crate::manifest::load(&settings.manifest_path).ok();
    let edited = edit_remove_all(settings, &args.ids)?;
    let code = report(settings, &edited)?;
    if let Some(manifest) = before.filter(|_| edited.changed()) {
        say_what_the_hf_cache_keeps(settings, &manifest, &args.ids);
    }
    Ok(code)
}

/// Removing an `hf` model leaves the Hugging Face cache as it is: says what it still holds
/// of the model's repository, and what removes it.
fn say_what_the_hf_cache_keeps(
    settings: &Settings,
    manifest: &crate::manifest::Manifest,
    ids: &[String],
) {
    let cache = crate::sources::hf::cache::HfCache::new(&settings.hf.cache_dir);
    for id in ids {
        let source = crate::names::ModelId::parse(id)
            .ok()
            .and_then(|id| manifest.models.get(&id))
            .map(|entry| &entry.source);
        let Some(crate::manifest::Source::Hf(source)) = source else {
            continue;
        };
        let repo = crate::sources::hf::Repo::of(source);
        let kind = match repo.kind {
            crate::manifest::RepoType::Model => "model",
            crate::manifest::RepoType::Dataset => "dataset",
            crate::manifest::RepoType::Space => "space",
        };
        if let Some(bytes) = cache.held(&repo) {
            settings.printer.say(format_args!(
                "note: the HF cache still holds {} of `{}` in `{}`; modelctl leaves it there \
                 (`hf cache rm {kind}/{}` removes it)",
                crate::units::human_bytes(bytes),
                repo.id,
                cache.repo_dir(&repo).display(),
                repo.id
            ));
        }
    }
}

/// `modelctl add ID --type T (--hf … | --url … | --ollama …) [--activate]`: declares a new
/// model, and with `--activate` makes it its type's active model. An `--ollama` name is
/// checked against the daemon, then the registry, first. `--from-ollama` and
/// `--from-hf-cache` declare what those already hold.
pub fn add(settings: &Settings, args: &AddArgs) -> Result<ExitCode> {
    if let Some(names) = &args.from_ollama {
        return add_from_ollama(settings, names, args.kind.as_deref().unwrap_or("llm"));
    }
    if let Some(repos) = &args.from_hf_cache {
        return add_from_hf_cache(settings, repos, args.kind.as_deref());
    }
    let model = new_model(settings, args);
    if let (Some(given), Some(written)) = (&args.url, &model.url)
        && given.trim_start_matches("./") != written.trim_start_matches("./")
    {
        settings.printer.say(format_args!(
            "note: `--url {given}` is written as `{written}`"
        ));
    }
    let edited = edit_add_checked(settings, &model, &|| match &model.ollama {
        Some(name) => say_what_the_name_is(settings, name),
        None => Ok(()),
    })?;
    if let Some(given) = &args.url
        && !given.contains("://")
        && !Path::new(given).exists()
    {
        settings.printer.warn(format_args!(
            "warning: `{given}` does not exist yet; `modelctl apply` reads it from there"
        ));
    }
    report(settings, &edited)
}

/// `modelctl add --from-ollama [NAME…] [--type T]`: declares the daemon's models that
/// models.yaml lacks.
fn add_from_ollama(settings: &Settings, names: &[String], kind: &str) -> Result<ExitCode> {
    let adoption = crate::ops::ollama_names::adopt(settings, names, kind)?;
    let printer = settings.printer;
    for (name, id) in &adoption.already {
        printer.say(format_args!("  {name}: already declared as `{id}`"));
    }
    for a in &adoption.adopted {
        printer.say(format_args!(
            "  {}: declared as `{}` ({})",
            a.name,
            a.id,
            crate::units::human_bytes(a.size)
        ));
    }
    if adoption.adopted.is_empty() && adoption.already.is_empty() {
        printer.say(format_args!("The Ollama daemon has no models."));
    }
    report(settings, &adoption.edited)
}

/// `modelctl add --from-hf-cache [REPO…] [--type T]`: declares the HF cache's model
/// repositories that models.yaml lacks, pinned at the cached commit.
fn add_from_hf_cache(
    settings: &Settings,
    repos: &[String],
    kind: Option<&str>,
) -> Result<ExitCode> {
    let adoption = crate::ops::hf_cache_names::adopt(settings, repos, kind)?;
    let printer = settings.printer;
    for (repo, id) in &adoption.already {
        printer.say(format_args!("  {repo}: already declared as `{id}`"));
    }
    for a in &adoption.adopted {
        printer.say(format_args!(
            "  {}: declared as `{}` ({}, {} file{}, {}, at {})",
            a.repo.repo,
            a.id,
            a.kind,
            a.repo.files.len(),
            if a.repo.files.len() == 1 { "" } else { "s" },
            crate::units::human_bytes(a.repo.size),
            &a.repo.commit[..12]
        ));
    }
    if adoption.adopted.is_empty() && adoption.already.is_empty() {
        printer.say(format_args!(
            "The HF cache `{}` holds no model repository.",
            settings.hf.cache_dir.display()
        ));
    }
    report(settings, &adoption.edited)
}

/// Says what the daemon or the registry knows of an `--ollama` name; refuses one neither has.
fn say_what_the_name_is(settings: &Settings, name: &str) -> Result<()> {
    use crate::ops::ollama_names::NameCheck;
    match crate::ops::ollama_names::check_name(settings, name)? {
        NameCheck::InDaemon(found) => settings.printer.say(format_args!(
            "note: the Ollama daemon has `{}` ({}, {})",
            found.name.display_shortest(),
            found.digest.short(),
            crate::units::human_bytes(found.size)
        )),
        NameCheck::InRegistry(digest) => settings.printer.say(format_args!(
            "note: the registry has `{name}` ({}); `modelctl apply` pulls it",
            digest.short()
        )),
        NameCheck::Unchecked(why) => settings
            .printer
            .warn(format_args!("warning: `{name}` is not checked: {why}")),
    }
    Ok(())
}

/// `add`'s arguments as the model to declare.
fn new_model(settings: &Settings, args: &AddArgs) -> NewModel {
    NewModel {
        id: args.id.clone().unwrap_or_default(),
        kind: args.kind.clone().unwrap_or_default(),
        hf: args.hf.clone(),
        revision: args.revision.clone(),
        include: args.include.clone(),
        url: args.url.as_deref().map(|url| local_url(settings, url)),
        sha256: args.sha256.clone(),
        ollama: args.ollama.clone(),
        oci: args.oci.clone(),
        description: args.description.clone(),
        activate: args.activate,
    }
}

/// A path given to `--url` as models.yaml needs it. The shell completed it relative to the
/// current directory, but models.yaml reads paths relative to itself: a file under the
/// manifest's directory becomes `./sub/w.bin`, anything else (an absolute path, a file
/// outside the project) a `file://` URL. URLs with a scheme are kept as they are.
fn local_url(settings: &Settings, given: &str) -> String {
    if given.contains("://") {
        return given.to_owned();
    }
    let Ok(cwd) = std::env::current_dir() else {
        return given.to_owned();
    };
    let path = crate::settings::normalize(&cwd.join(given));
    let base = settings.manifest_dir();
    if !Path::new(given).is_absolute()
        && let Ok(inside) = path.strip_prefix(&base)
    {
        return format!("./{}", inside.display());
    }
    url::Url::from_file_path(&path).map_or_else(|()| given.to_owned(), |u| u.to_string())
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
