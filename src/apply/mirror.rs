//! The mirror step of a download: before a locked file with a sha256 is fetched from its
//! origin, each mirror is asked, in order, for the blob of that digest in the repository of a
//! model that wants it (`HEAD /v2/<ns>/<id>/blobs/sha256:<hex>`, answering the registry's
//! `401` as `push` does, [`crate::registry::session`]); the first that has it serves it through
//! the same download engine as any origin (`GET` of the blob: ranged, resumable, and verified
//! against the lock, so a mirror cannot slip in other bytes). What each mirror said when none
//! served the file comes back as one clause per mirror, for the executor's one-line notice (or
//! its error, under mirror-only). A mirror that cannot be reached is not asked again in the
//! same apply. An Ollama model pulled without a daemon asks the mirrors for its manifest too
//! (`GET /v2/<ns>/<id>/manifests/sha256:<pin>`), kept only when its bytes hash to the pin.

use std::sync::{Arc, Mutex};

use super::fetch::{Downloaded, Engine, FetchError, FileJob, FileProgress};
use crate::registry::Target;
use crate::registry::auth::{self, Credentials};
use crate::registry::session::{Session, SessionError};

/// One mirror, with why it is skipped (unreachable, or its credentials unreadable).
struct Mirror {
    session: Session,
    shown: String,
    down: Mutex<Option<String>>,
}

/// The mirrors of one apply, in the order they are asked.
pub struct Mirrors {
    list: Vec<Mirror>,
    /// Mirror-only: a file no mirror serves is an error, never fetched from its origin.
    pub only: bool,
}

/// Where the credentials for mirrors come from.
pub struct Logins<'a> {
    /// `MODELCTL_REGISTRY_AUTH`, used for the mirrors of `MODELCTL_MIRROR` (set together on a
    /// node) and never for the manifest's.
    pub env_auth: Option<&'a str>,
    /// Hosts of the `MODELCTL_MIRROR` mirrors.
    pub env_hosts: Vec<String>,
    /// The docker config `docker login` writes (credentials per host).
    pub docker_config: Option<&'a std::path::Path>,
}

impl Logins<'_> {
    /// The credentials for `target`: the environment's for a mirror of `MODELCTL_MIRROR`,
    /// else its host's `docker login`.
    fn credentials(&self, target: &Target) -> Result<Option<Credentials>, auth::AuthError> {
        let env = self
            .env_auth
            .filter(|_| self.env_hosts.contains(&target.host));
        auth::find(env, self.docker_config, &target.host)
    }
}

/// How asking the mirrors went.
pub enum Attempt {
    /// A mirror served verified bytes: the download, and the mirror's `url_text`.
    Served(Downloaded, String),
    /// No mirror served it: what each said, one clause per mirror.
    Missed(Vec<String>),
    Cancelled,
}

impl Mirrors {
    pub fn new(
        client: &crate::net::Client,
        targets: Vec<Target>,
        only: bool,
        logins: &Logins<'_>,
    ) -> Self {
        let list = targets
            .into_iter()
            .map(|target| {
                let (credentials, down) = match logins.credentials(&target) {
                    Ok(found) => (found, None),
                    Err(e) => (None, Some(format!("its credentials: {e}"))),
                };
                Mirror {
                    shown: target.url_text(),
                    session: Session::new(client.clone(), target, credentials),
                    down: Mutex::new(down),
                }
            })
            .collect();
        Self { list, only }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether a download goes through the mirrors first: there are some, or mirror-only
    /// wants what none can serve said as an error.
    pub fn asked(&self) -> bool {
        self.only || !self.is_empty()
    }

    /// The first mirror, as `push --to` takes it.
    pub fn first(&self) -> Option<&str> {
        self.list.first().map(|m| m.shown.as_str())
    }

    /// Asks each mirror in turn for `job`'s blob in the repository of each of `ids` (the
    /// models that want it) and downloads it from the first that has it.
    pub async fn fetch(
        &self,
        engine: &Engine,
        job: &FileJob,
        ids: &[String],
        progress: Arc<dyn FileProgress>,
    ) -> Attempt {
        let Some(digest) = job.sha256 else {
            return Attempt::Missed(vec!["it has no sha256 to ask a mirror for".to_owned()]);
        };
        let mut said = Vec::new();
        for mirror in &self.list {
            if let Some(why) = mirror.down.lock().ok().and_then(|d| d.clone()) {
                said.push(format!("{} is unavailable ({why})", mirror.shown));
                continue;
            }
            let repo = match mirror.find(&digest, ids).await {
                Ok(Some(repo)) => repo,
                Ok(None) => {
                    said.push(format!("{} does not have it", mirror.shown));
                    continue;
                }
                Err(why) => {
                    said.push(format!("{} failed ({why})", mirror.shown));
                    continue;
                }
            };
            let url = match mirror.session.blob_url(&repo, &digest) {
                Ok(url) => url,
                Err(e) => {
                    said.push(format!("{} has no usable blob URL ({e})", mirror.shown));
                    continue;
                }
            };
            let from_mirror = FileJob {
                url,
                etag: None,
                token: None,
                authorization: mirror.session.authorization(&repo),
                explain: None,
                ..job.clone()
            };
            match engine.fetch(&from_mirror, progress.clone()).await {
                Ok(downloaded) => return Attempt::Served(downloaded, mirror.shown.clone()),
                Err(FetchError::Cancelled) => return Attempt::Cancelled,
                Err(FetchError::Mismatch { mismatch, .. }) => said.push(format!(
                    "{} served other bytes ({mismatch}; discarded)",
                    mirror.shown
                )),
                Err(e) => said.push(format!("{} failed ({e})", mirror.shown)),
            }
        }
        Attempt::Missed(said)
    }
}

/// How asking the mirrors for a manifest went.
pub enum ManifestAttempt {
    /// A mirror had bytes that hash to the digest asked for: the bytes, and the mirror's
    /// `url_text`.
    Served(Vec<u8>, String),
    /// No mirror had them: what each said, one clause per mirror.
    Missed(Vec<String>),
}

/// Largest manifest read from a mirror.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

impl Mirrors {
    /// Asks each mirror in turn for the manifest `digest` names in the repository of `id`
    /// (`GET /v2/<ns>/<id>/manifests/sha256:<hex>`); bytes that hash to anything else are
    /// discarded, and the next mirror is asked.
    pub async fn manifest(&self, id: &str, digest: &crate::digest::Sha256) -> ManifestAttempt {
        let mut said = Vec::new();
        for mirror in &self.list {
            if let Some(why) = mirror.down.lock().ok().and_then(|d| d.clone()) {
                said.push(format!("{} is unavailable ({why})", mirror.shown));
                continue;
            }
            let repo = mirror.session.target().repository(id);
            match mirror
                .session
                .manifest_by_digest(&repo, digest, MAX_MANIFEST_BYTES)
                .await
            {
                Ok(Some(bytes)) if crate::digest::Sha256::of(&bytes) == *digest => {
                    return ManifestAttempt::Served(bytes, mirror.shown.clone());
                }
                Ok(Some(bytes)) => said.push(format!(
                    "{} served a manifest with other bytes (sha256:{}; discarded)",
                    mirror.shown,
                    crate::digest::Sha256::of(&bytes).short()
                )),
                Ok(None) => said.push(format!("{} does not have it", mirror.shown)),
                Err(e) => {
                    if matches!(e, SessionError::Unreachable { .. })
                        && let Ok(mut down) = mirror.down.lock()
                    {
                        *down = Some(e.to_string());
                    }
                    said.push(format!("{} failed ({e})", mirror.shown));
                }
            }
        }
        ManifestAttempt::Missed(said)
    }
}

impl Mirror {
    /// The first repository of `ids` that holds the blob. A mirror that cannot be reached is
    /// marked down, so the other files skip it.
    async fn find(
        &self,
        digest: &crate::digest::Sha256,
        ids: &[String],
    ) -> Result<Option<String>, String> {
        for id in ids {
            let repo = self.session.target().repository(id);
            match self.session.has_blob(&repo, digest).await {
                Ok(true) => return Ok(Some(repo)),
                Ok(false) => {}
                Err(e @ SessionError::Unreachable { .. }) => {
                    let why = e.to_string();
                    if let Ok(mut down) = self.down.lock() {
                        *down = Some(why.clone());
                    }
                    return Err(why);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environments_login_goes_only_to_the_environments_mirrors() {
        let logins = Logins {
            env_auth: Some("bot:pw"),
            env_hosts: vec!["10.0.0.5:5000".to_owned()],
            docker_config: None,
        };
        let node = Target::parse("http://10.0.0.5:5000/cache").expect("target");
        let shared = Target::parse("registry.example.com/fleet").expect("target");
        assert!(logins.credentials(&node).expect("read").is_some());
        assert!(logins.credentials(&shared).expect("read").is_none());
    }
}
