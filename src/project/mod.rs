//! The project one command or API request works on: the settings, the validated manifest,
//! the lock and the store's paths, and what is done with them before anything is applied —
//! scanning the store, resolving unpinned entries (with cargo's `--locked` and `--offline`
//! rules), asking the Ollama daemon and the HF cache what they hold, and planning. The
//! commands (`commands/`), `watch` and the HTTP API all start from a [`Project`].

use std::collections::BTreeMap;

use miette::{IntoDiagnostic, Result, WrapErr};

use crate::lock::{LockedSource, Lockfile, fingerprint};
use crate::manifest::Manifest;
use crate::names::ModelId;
use crate::settings::Settings;
use crate::sources::Resolution;
use crate::sources::ResolveContext;
use crate::sources::hf::cache::{CacheView, Declared, HfCache};
use crate::sources::ollama::DaemonView;
use crate::sources::ollama::daemon::{Daemon, DaemonError};
use crate::sources::ollama::daemon_pin::DaemonAccess;
use crate::store::{StatCache, Store, StoreState};

mod sharing;

pub use sharing::Neighbour;

/// The manifest, lock and store one command works on.
pub struct Project {
    pub settings: Settings,
    pub manifest: Manifest,
    pub lock: Lockfile,
    pub store: Store,
}

impl Project {
    pub fn load(settings: Settings) -> Result<Self> {
        let manifest = crate::manifest::load(&settings.manifest_path)?;
        let lock = crate::lock::load(&settings.lock_path)?;
        let store = Store::new(settings.store_root(&manifest)).sharing(settings.cache.clone());
        Ok(Self {
            settings,
            manifest,
            lock,
            store,
        })
    }

    /// Takes the store lock, saying who holds it while waiting; then records this project as
    /// a root of the store and of the machine cache, before anything changes.
    pub fn lock_store(&self) -> Result<crate::store::StoreLock> {
        let root = self.store.root().display().to_string();
        let lock =
            crate::store::StoreLock::acquire(&self.store, self.settings.lock_timeout, &|holder| {
                match holder {
                    "" => crate::log_line!("waiting for lock on `{root}`"),
                    holder => crate::log_line!("waiting for lock on `{root}` (held by {holder})"),
                }
            })?;
        self.record_root()?;
        Ok(lock)
    }

    /// This project as a root ([`crate::store::roots`]).
    pub fn root(&self) -> crate::store::Root {
        crate::store::Root {
            manifest: self.settings.manifest_path.clone(),
            lock: self.settings.lock_path.clone(),
            store: self.store.root().to_owned(),
        }
    }

    /// Records this project in its store (an error: other projects sharing the store rely on
    /// it) and in the machine cache (a warning: it only decides what `cache prune` keeps, and
    /// the store's own links keep the rest).
    fn record_root(&self) -> Result<()> {
        let root = self.root();
        let projects = self.store.projects();
        projects.record(&root).into_diagnostic().wrap_err_with(|| {
            format!(
                "cannot record this project in `{}`",
                projects.dir().display()
            )
        })?;
        if let Some(cache) = self.store.machine_cache() {
            let roots = crate::store::Roots::new(cache.roots_dir());
            if let Err(e) = roots.record(&root) {
                crate::log_line!(
                    "warning: cannot record this project as a root of the machine cache `{}`: {e}",
                    roots.dir().display()
                );
            }
        }
        Ok(())
    }

    /// Gets ready to change the store: checks `--locked` and that the store is writable, takes
    /// the store lock, then reads the project again, because another apply may have rewritten
    /// models.lock and the store while this one waited; then clears what an interrupted apply
    /// left behind. Returns the project as it is now, and the lock to hold while changing it.
    pub fn lock_for_changes(self) -> Result<(Project, crate::store::StoreLock)> {
        self.check_locked()?;
        self.store.check_writable()?;
        let lock = self.lock_store()?;
        let now = Project::load(self.settings.clone())?;
        if now.store != self.store {
            return Err(miette::miette!(
                help = "run it again",
                "models.yaml moved the store while this waited for the lock"
            ));
        }
        now.check_locked()?;
        let cleared = now.store.clear_interrupted()?;
        if cleared > 0 {
            crate::log_line!("Removed {cleared} leftovers of an interrupted apply.");
        }
        Ok((now, lock))
    }

    /// Scans the store, keeping the stat cache up to date when the store is writable.
    pub fn scan(&self) -> Result<StoreState> {
        let cache_path = self.store.stat_cache_path();
        let mut cache = StatCache::load(&cache_path);
        let state = self.scan_with(&mut cache)?;
        if self.store.root().exists() {
            // A read-only store still plans; it just hashes again next time.
            let _ = cache.save(&cache_path);
        }
        Ok(state)
    }

    /// Scans the store with a stat cache the caller loads and saves.
    pub fn scan_with(&self, cache: &mut StatCache) -> Result<StoreState> {
        let announce = |files: usize, bytes: u64| {
            if bytes >= 1_000_000_000 {
                crate::log_line!(
                    "Hashing {files} files ({}) not in the stat cache; later runs will be fast.",
                    crate::units::human_bytes(bytes)
                );
            }
        };
        let (state, stats) = crate::store::scan(&self.store, cache, &announce)?;
        tracing::info!(
            "scanned `{}`: {} files, {} hashed ({} bytes), the rest known from the stat cache",
            self.store.root().display(),
            stats.files,
            stats.hashed_files,
            stats.hashed_bytes
        );
        Ok(state)
    }

    /// Resolves what is unpinned and plans against `state` and this machine, then checks that
    /// the pinned files it is about to download are still what the lock says upstream.
    pub fn plan(&self, state: &StoreState) -> Result<crate::plan::Plan> {
        let resolutions = self.resolve_unpinned()?;
        let facts = crate::system::gather(self.store.root());
        let hf_cache = self.hf_cache_view(&resolutions, state);
        let daemon = self.daemon_view(state);
        let neighbours = self.neighbours_view();
        let machine_cache = self.machine_cache_view();
        let ollama_blobs = self.ollama_blobs_view(&resolutions);
        let mut plan = crate::plan::plan(crate::plan::PlanInput {
            manifest: &self.manifest,
            lock: &self.lock,
            resolutions: &resolutions,
            state,
            facts: &facts,
            hf_cache: &hf_cache,
            daemon: &daemon,
            locked: self.settings.network.locked,
            neighbours: &neighbours,
            machine_cache: &machine_cache,
            ollama_blobs: &ollama_blobs,
        });
        self.check_upstream(&mut plan)?;
        let mirrors: Vec<String> = self.mirrors()?.iter().map(|m| m.url_text()).collect();
        let routes = crate::plan::Routes {
            mirrors: &mirrors,
            mirror_only: self.settings.mirror_only,
            ollama_direct: matches!(daemon, DaemonView::Directory(_)),
        };
        crate::plan::route_downloads(&mut plan, routes);
        Ok(plan)
    }

    /// The registries downloads are asked of first: `MODELCTL_MIRROR`'s, then models.yaml's.
    pub fn mirrors(&self) -> Result<Vec<crate::registry::Target>> {
        Ok(crate::registry::mirror::mirrors(
            self.settings.mirror_env.as_deref(),
            &self.manifest.mirrors,
        )?)
    }

    /// A client for the Ollama daemon at `OLLAMA_HOST`.
    pub fn daemon(&self) -> std::result::Result<Daemon, DaemonError> {
        Daemon::at(self.settings.ollama_host.as_deref(), &self.settings.net)
    }

    /// What the Ollama daemon has, when an Ollama model is declared or in the store.
    fn daemon_view(&self, state: &StoreState) -> DaemonView {
        let declared = self
            .manifest
            .models
            .values()
            .any(|e| matches!(e.source, crate::manifest::Source::Ollama(_)));
        let present = state.models.values().any(|m| m.ollama.is_some());
        if !(declared || present) || self.settings.network.offline {
            return DaemonView::NotAsked;
        }
        let daemon = match self.daemon() {
            Ok(daemon) => daemon,
            Err(why) => return DaemonView::Unreachable(why.to_string()),
        };
        let installed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(daemon.installed()).map_err(|e| e.to_string()));
        match (installed, &self.settings.ollama_models) {
            (Ok(list), _) => DaemonView::from_installed(&list),
            (Err(_), Some(dir)) => self.ollama_directory_view(dir),
            (Err(why), None) => DaemonView::Unreachable(format!(
                "{why}; or set OLLAMA_MODELS to pull into Ollama's directory without a daemon"
            )),
        }
    }

    /// The declared Ollama models whose manifests are in `OLLAMA_MODELS`.
    fn ollama_directory_view(&self, dir: &std::path::Path) -> DaemonView {
        let layout = crate::sources::ollama::layout::OllamaDir::new(dir);
        let models = self
            .manifest
            .models
            .values()
            .filter_map(|e| match &e.source {
                crate::manifest::Source::Ollama(o) => {
                    crate::sources::ollama::OllamaRef::parse(&o.ollama).ok()
                }
                _ => None,
            })
            .filter_map(|name| {
                let digest = layout.manifest_digest(&name)?;
                Some((name.to_string().to_ascii_lowercase(), digest))
            })
            .collect();
        DaemonView::Directory(models)
    }

    /// What the Hugging Face cache holds for the declared `hf` models, each pinned by the
    /// lock or by this run's resolution ([`HfCache::view`]).
    fn hf_cache_view(
        &self,
        resolutions: &BTreeMap<ModelId, Resolution>,
        state: &StoreState,
    ) -> CacheView {
        let declared = self.manifest.models.iter().filter_map(|(id, entry)| {
            let crate::manifest::Source::Hf(source) = &entry.source else {
                return None;
            };
            let pinned = self
                .lock
                .models
                .get(id)
                .filter(|l| l.fingerprint == fingerprint(entry));
            let locked = match (pinned, resolutions.get(id)) {
                (Some(locked), _) | (None, Some(Resolution::Resolved { model: locked, .. })) => {
                    locked
                }
                _ => return None,
            };
            Some(Declared {
                id,
                kind: &entry.kind,
                repo: crate::sources::hf::Repo::of(source),
                locked,
            })
        });
        HfCache::new(&self.settings.hf.cache_dir).view(
            declared,
            state,
            &self.store,
            self.manifest.hf_cache,
        )
    }

    /// For each locked `url` model the plan downloads, asks the server whether the file is
    /// still the one the lock pins. A changed file is a warning, or an error under `--locked`.
    fn check_upstream(&self, plan: &mut crate::plan::Plan) -> Result<()> {
        let wanted: Vec<ModelId> = plan
            .models
            .iter()
            .filter(|m| {
                plan.model_actions(&m.id).any(|a| {
                    matches!(
                        a,
                        crate::plan::Action::Download { .. }
                            | crate::plan::Action::Pull { present: false, .. }
                    )
                })
            })
            .filter(|m| self.lock.models.contains_key(&m.id))
            .map(|m| m.id.clone())
            .collect();
        // Mirror-only: the origin is not to be asked anything (an air-gapped node).
        if wanted.is_empty() || self.settings.network.offline || self.settings.mirror_only {
            return Ok(());
        }
        let ctx = self.resolve_context()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        for id in wanted {
            let (Some(entry), Some(locked)) = (
                self.manifest.models.get(&id),
                plan.next_lock.models.get(&id),
            ) else {
                continue;
            };
            if let crate::manifest::Source::Ollama(source) = &entry.source {
                // Pulling a moved tag would put something else into Ollama: always an error.
                match runtime.block_on(ollama_drift(&ctx, &id, source, locked)) {
                    Some((notice, true)) => plan.errors.push(notice),
                    Some((notice, false)) => plan.warnings.push(notice),
                    None => {}
                }
                continue;
            }
            let drift = match &entry.source {
                crate::manifest::Source::Url(source) => {
                    runtime.block_on(url_drift(&ctx, &id, source, locked))
                }
                crate::manifest::Source::Oci(source) => {
                    runtime.block_on(oci_drift(&ctx, &id, source, locked))
                }
                _ => None,
            };
            let Some((notice, changed)) = drift else {
                continue;
            };
            match self.settings.network.locked {
                Some(flag) if changed => plan.errors.push(crate::plan::Notice {
                    message: format!("{} ({flag} was passed)", notice.message),
                    ..notice
                }),
                _ => plan.warnings.push(notice),
            }
        }
        Ok(())
    }

    pub(super) fn resolve_context(&self) -> Result<ResolveContext> {
        let client = crate::net::Client::new(&self.settings.net)
            .into_diagnostic()
            .wrap_err("cannot set up the HTTP client")?;
        Ok(ResolveContext {
            client,
            offline: self.settings.network.offline,
            manifest_dir: self.settings.manifest_dir(),
            hf: self.settings.hf.clone(),
            unreachable: Default::default(),
            ollama: Some(std::sync::Arc::new(DaemonAccess::new(
                self.settings.ollama_host.as_deref(),
                &self.settings.ollama_stores,
                &self.settings.net,
            ))),
            docker_config: self.settings.docker_config.clone(),
        })
    }

    /// Ids whose lock entry is missing or was resolved from a different manifest entry.
    pub fn unpinned(&self) -> Vec<ModelId> {
        self.manifest
            .models
            .iter()
            .filter(|(id, entry)| {
                self.lock
                    .models
                    .get(*id)
                    .is_none_or(|l| l.fingerprint != fingerprint(entry))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Refuses, under `--locked`/`--frozen`, any run that would change models.lock.
    pub fn check_locked(&self) -> Result<()> {
        let Some(flag) = self.settings.network.locked else {
            return Ok(());
        };
        let mut reasons: Vec<String> = self
            .unpinned()
            .iter()
            .map(|id| match self.lock.models.contains_key(id) {
                true => format!("`{id}` changed in models.yaml"),
                false => format!("`{id}` is not in models.lock"),
            })
            .collect();
        reasons.extend(
            self.lock
                .models
                .keys()
                .filter(|id| !self.manifest.models.contains_key(*id))
                .map(|id| format!("`{id}` is no longer in models.yaml")),
        );
        if reasons.is_empty() {
            return Ok(());
        }
        Err(LockedViolation {
            flag,
            details: reasons.join(", "),
        }
        .into())
    }

    /// Resolves every unpinned entry through its source (or says why not, when offline),
    /// keeping the sha256s the lock learned for files that provably did not change.
    pub fn resolve_unpinned(&self) -> Result<BTreeMap<ModelId, Resolution>> {
        self.resolve(self.unpinned(), Learned::Carry)
    }

    /// Resolves the given entries through their sources, whatever the lock says. With
    /// [`Learned::Proven`] (as `update` does), a learned sha256 is kept only where the store
    /// holds bytes with both it and the file's git blob id: a lock written from stale bytes is
    /// repaired, and its sha256s are learned again from verified bytes.
    pub fn resolve(
        &self,
        ids: Vec<ModelId>,
        learned: Learned<'_>,
    ) -> Result<BTreeMap<ModelId, Resolution>> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let ctx = self.resolve_context()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        Ok(runtime.block_on(async {
            let mut out = BTreeMap::new();
            for id in ids {
                if let Some(entry) = self.manifest.models.get(&id) {
                    tracing::info!(target: "modelctl::resolve", "resolving {id} ({})", entry.source.label());
                    let started = std::time::Instant::now();
                    let mut resolution = crate::sources::resolve(&ctx, entry).await;
                    log_resolution(&id, &resolution, started.elapsed());
                    if let (Resolution::Resolved { model: new, .. }, Some(old)) =
                        (&mut resolution, self.lock.models.get(&id))
                    {
                        new.carry_learned(old, &|sha, oid| learned.proves(sha, oid));
                    }
                    out.insert(id, resolution);
                }
            }
            out
        }))
    }
}

/// What resolving `id` came to, for `-v` (and how long it took, for `-vv`).
fn log_resolution(id: &ModelId, resolution: &Resolution, took: std::time::Duration) {
    match resolution {
        Resolution::Resolved { model, .. } => {
            let bytes: u64 = model.files.iter().map(|f| f.size).sum();
            tracing::info!(
                target: "modelctl::resolve",
                "resolved {id}: {} file(s), {}",
                model.files.len(),
                crate::units::human_bytes(bytes)
            );
        }
        Resolution::Failed { .. } | Resolution::PullToPin { .. } => {
            let reason = resolution.failure().unwrap_or_default();
            tracing::info!(target: "modelctl::resolve", "cannot resolve {id}: {reason}");
        }
    }
    tracing::debug!(target: "modelctl::resolve", "resolving {id} took {took:.1?}");
}

/// Whether a URL still serves the file the lock pins: a notice and `true` when it changed, a
/// notice and `false` when the server cannot say, `None` when it is unchanged.
async fn url_drift(
    ctx: &ResolveContext,
    id: &ModelId,
    source: &crate::manifest::UrlSource,
    locked: &crate::lock::LockedModel,
) -> Option<(crate::plan::Notice, bool)> {
    let (message, changed) = match crate::sources::url::drift(ctx, source, locked).await {
        Ok(None) => return None,
        Ok(Some(change)) => (
            format!(
                "the upstream file changed since models.lock was written: {change}; \
                 run `modelctl update {id}` to pin the new file"
            ),
            true,
        ),
        Err(why) => (format!("cannot check the upstream file: {why}"), false),
    };
    let notice = crate::plan::Notice {
        model: Some(id.clone()),
        message,
    };
    Some((notice, changed))
}

/// Whether an `oci:` tag still names the locked manifest: a notice and `true` when it moved
/// (the pinned blobs are still what `apply` fetches), a notice and `false` when the registry
/// cannot say, `None` when it has not moved or the reference is a digest.
async fn oci_drift(
    ctx: &ResolveContext,
    id: &ModelId,
    source: &crate::manifest::OciSource,
    locked: &crate::lock::LockedModel,
) -> Option<(crate::plan::Notice, bool)> {
    let LockedSource::Oci { digest, .. } = &locked.source else {
        return None;
    };
    if source.oci.contains('@') {
        return None;
    }
    let (message, moved) = match crate::sources::oci::current_digest(ctx, source).await {
        Ok(now) if now == *digest => return None,
        Ok(now) => (
            format!(
                "`{}` moved upstream: the registry now serves manifest sha256:{}, models.lock \
                 pins sha256:{}; run `modelctl update {id}` to pin the new one",
                source.oci,
                now.short(),
                digest.short()
            ),
            true,
        ),
        Err(why) => (
            format!("cannot check `{}` upstream: {why}", source.oci),
            false,
        ),
    };
    let notice = crate::plan::Notice {
        model: Some(id.clone()),
        message,
    };
    Some((notice, moved))
}

/// Whether an Ollama tag still names the locked manifest: an error when it moved, a warning
/// when the registry cannot say (the daemon may still have the pinned model).
async fn ollama_drift(
    ctx: &ResolveContext,
    id: &ModelId,
    source: &crate::manifest::OllamaSource,
    locked: &crate::lock::LockedModel,
) -> Option<(crate::plan::Notice, bool)> {
    // A pin from the daemon is not the registry's to judge.
    let LockedSource::Ollama {
        digest,
        pinned_from: crate::lock::PinnedFrom::Registry,
        ..
    } = &locked.source
    else {
        return None;
    };
    let registry_only = ResolveContext {
        ollama: None,
        ..ctx.clone()
    };
    let resolved = crate::sources::ollama::resolve(&registry_only, source).await;
    let (message, moved) = match resolved.map(|p| p.source) {
        Ok(LockedSource::Ollama { digest: now, .. }) if now == *digest => return None,
        Ok(LockedSource::Ollama { digest: now, .. }) => (
            format!(
                "`{}` moved upstream: the registry now serves {}, models.lock pins {}; \
                 run `modelctl update {id}` to pin the new one, then apply",
                source.ollama,
                now.short(),
                digest.short()
            ),
            true,
        ),
        Ok(_) => return None,
        Err(why) => (
            format!(
                "cannot check `{}` against the registry before pulling it: {why}",
                source.ollama
            ),
            false,
        ),
    };
    Some((
        crate::plan::Notice {
            model: Some(id.clone()),
            message,
        },
        moved,
    ))
}

/// Which sha256s learned by downloading a re-resolution keeps for unchanged files.
#[derive(Debug, Clone, Copy)]
pub enum Learned<'a> {
    /// All of them (the lock's pairing of sha256 and git blob id is trusted).
    Carry,
    /// Those the store proves: a blob with that sha256 has that git blob id.
    Proven(&'a StoreState),
}

impl Learned<'_> {
    fn proves(&self, sha256: crate::digest::Sha256, git_oid: crate::digest::GitOid) -> bool {
        match self {
            Learned::Carry => true,
            Learned::Proven(state) => state.blob_git_oids.get(&git_oid) == Some(&sha256),
        }
    }
}

/// `--locked` was passed but the lock would change.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("models.lock needs to be updated but {flag} was passed")]
#[diagnostic(
    code(lock::locked),
    help("{details}; run `modelctl lock` and commit models.lock, or run without {flag}")
)]
pub struct LockedViolation {
    pub flag: &'static str,
    pub details: String,
}
