//! Ollama names as a user already has them: `add --from-ollama [NAME…]` declares the daemon's
//! models that models.yaml lacks (all of them when none is named), and `add ID --ollama NAME`
//! checks the name against the daemon, then the registry, before declaring it.
//!
//! Every name and digest comes through the same validation as registry data
//! ([`crate::sources::ollama::daemon::Daemon::installed`] drops what does not parse). Nothing
//! here touches the store or the daemon's models; the edit goes through
//! [`crate::manifest::edit`], which keeps comments and re-validates the file.

use miette::{Result, miette};
use yaml_edit::MappingBuilder;

use crate::manifest::edit::{Edited, edit, insert_model};
use crate::manifest::{Manifest, Source};
use crate::names::ModelId;
use crate::settings::Settings;
use crate::sources::ollama::OllamaRef;
use crate::sources::ollama::daemon::{Daemon, Installed};
use crate::sources::ollama::registry::{self, RegistryError};

/// One model declared from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub id: ModelId,
    /// The name as `ollama list` shows it, which models.yaml now holds.
    pub name: String,
    pub size: u64,
}

/// What `add --from-ollama` did.
#[derive(Debug)]
pub struct Adoption {
    pub edited: Edited,
    pub adopted: Vec<Adopted>,
    /// Daemon models already declared, with the id that declares them.
    pub already: Vec<(String, ModelId)>,
}

/// What is known of a name `add --ollama` was given.
#[derive(Debug, Clone, PartialEq)]
pub enum NameCheck {
    /// The daemon has it (its digest and size).
    InDaemon(Installed),
    /// The registry has it (the sha256 of its manifest).
    InRegistry(crate::digest::Sha256),
    /// Neither could be asked; the text says why.
    Unchecked(String),
}

/// The daemon's models, or an error that says how to reach it.
fn installed(settings: &Settings) -> Result<Vec<Installed>> {
    let daemon = daemon(settings)?;
    // The daemon's error already says how to reach it (`ollama serve`, OLLAMA_HOST).
    runtime()?
        .block_on(daemon.installed())
        .map_err(|e| miette!("cannot list the Ollama daemon's models: {e}"))
}

fn daemon(settings: &Settings) -> Result<Daemon> {
    Ok(Daemon::at(settings.ollama_host.as_deref(), &settings.net)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| miette!("cannot start the async runtime: {e}"))
}

/// Declares the daemon's models (those named, or all) that models.yaml lacks, as `kind`.
pub fn adopt(settings: &Settings, names: &[String], kind: &str) -> Result<Adoption> {
    let installed = installed(settings)?;
    let chosen = choose(&installed, names)?;
    let mut adopted = Vec::new();
    let mut already = Vec::new();
    let edited = edit(&settings.manifest_path, |manifest, root| {
        super::edit::known_type(manifest, kind)?;
        let mut taken: Vec<String> = manifest.models.keys().map(|i| i.to_string()).collect();
        for model in &chosen {
            if let Some(id) = declared_as(manifest, &model.name) {
                already.push((model.name.display_shortest(), id));
                continue;
            }
            let id = free_id(&model.name, &taken)?;
            taken.push(id.to_string());
            let name = model.name.display_shortest();
            let entry = MappingBuilder::new()
                .pair("type", kind)
                .mapping("source", |s| s.pair("ollama", name.as_str()));
            insert_model(root, id.as_str(), entry);
            adopted.push(Adopted {
                id,
                name,
                size: model.size,
            });
        }
        Ok(())
    })?;
    Ok(Adoption {
        edited,
        adopted,
        already,
    })
}

/// The daemon models `names` ask for (all of them for none); a name it does not have is an
/// error with the closest one it has.
fn choose<'a>(installed: &'a [Installed], names: &[String]) -> Result<Vec<&'a Installed>> {
    if names.is_empty() {
        return Ok(installed.iter().collect());
    }
    names
        .iter()
        .map(|text| {
            let name = OllamaRef::parse(text)
                .map_err(|e| miette!("`{text}` is not an Ollama model name: {e}"))?;
            installed
                .iter()
                .find(|i| i.name.same_model(&name))
                .ok_or_else(|| {
                    miette!(
                        help = crate::sources::ollama::unknown_help(&name, installed),
                        "the Ollama daemon has no model `{text}`"
                    )
                })
        })
        .collect()
}

/// The id of the manifest entry that already declares `name`, if one does.
fn declared_as(manifest: &Manifest, name: &OllamaRef) -> Option<ModelId> {
    manifest
        .models
        .iter()
        .find_map(|(id, entry)| match &entry.source {
            Source::Ollama(o) => OllamaRef::parse(&o.ollama)
                .is_ok_and(|n| n.same_model(name))
                .then(|| id.clone()),
            _ => None,
        })
}

/// An id for `name` no model has yet: `llama3:8b` → `llama3-8b`, `my-finetune:latest` →
/// `my-finetune`, with `-2`, `-3`… when taken.
fn free_id(name: &OllamaRef, taken: &[String]) -> Result<ModelId> {
    let base = id_for(name);
    (1..1000)
        .map(|n| match n {
            1 => base.clone(),
            n => format!("{base}-{n}"),
        })
        .find(|candidate| !taken.iter().any(|t| t.eq_ignore_ascii_case(candidate)))
        .and_then(|candidate| ModelId::parse(&candidate).ok())
        .ok_or_else(|| miette!("cannot find a free model id for `{name}`"))
}

/// The id a model name suggests: the model and its tag (unless `latest`), in id characters.
fn id_for(name: &OllamaRef) -> String {
    let raw = match name.tag.as_str() {
        "latest" => name.model.clone(),
        tag => format!("{}-{tag}", name.model),
    };
    let mut id: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .collect();
    id.truncate(64);
    id
}

/// What the daemon, then the registry, know of `text`. A name neither has is an error with the
/// closest names the daemon has; when neither can be asked, the name is declared unchecked.
pub fn check_name(settings: &Settings, text: &str) -> Result<NameCheck> {
    let name = OllamaRef::parse(text).map_err(|e| {
        miette!(
            help = "write the name as `ollama pull` takes it: `model`, `model:tag` or `namespace/model:tag`",
            "`{text}` is not an Ollama model name: {e}"
        )
    })?;
    if settings.network.offline {
        return Ok(NameCheck::Unchecked("the network is off".into()));
    }
    let runtime = runtime()?;
    let from_daemon = daemon(settings)
        .ok()
        .and_then(|d| runtime.block_on(d.installed()).ok());
    if let Some(found) = from_daemon
        .iter()
        .flatten()
        .find(|i| i.name.same_model(&name))
    {
        return Ok(NameCheck::InDaemon(found.clone()));
    }
    let client = crate::net::Client::new(&settings.net)
        .map_err(|e| miette!("cannot set up the HTTP client: {e}"))?;
    match runtime.block_on(registry::manifest(&client, &name)) {
        Ok(manifest) => Ok(NameCheck::InRegistry(manifest.digest)),
        Err(RegistryError::NotFound { .. }) => {
            let help = match &from_daemon {
                Some(list) => crate::sources::ollama::unknown_help(&name, list),
                None => "check the name on https://ollama.com/library; the Ollama daemon could not be asked for the names it has".to_owned(),
            };
            Err(miette!(
                help = help,
                "`{text}` is in neither the Ollama daemon nor the registry {}",
                name.host
            ))
        }
        Err(e) => Ok(NameCheck::Unchecked(format!(
            "the Ollama daemon does not have it{}, and the registry cannot say: {e}",
            if from_daemon.is_none() {
                " (or cannot be asked)"
            } else {
                ""
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_model_and_its_tag() {
        let id = |n: &str| id_for(&OllamaRef::parse(n).expect("name"));
        assert_eq!(id("llama3:8b"), "llama3-8b");
        assert_eq!(id("my-finetune"), "my-finetune");
        assert_eq!(id("user/qwen2.5:0.5b-instruct"), "qwen2.5-0.5b-instruct");
        let taken = vec!["llama3-8b".to_owned()];
        let name = OllamaRef::parse("llama3:8b").expect("name");
        assert_eq!(
            free_id(&name, &taken).expect("free").as_str(),
            "llama3-8b-2"
        );
    }
}
