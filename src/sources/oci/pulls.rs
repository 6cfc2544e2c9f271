//! Where `apply` fetches the blobs of `oci:` models: each blob's URL in its reference's
//! repository, and a registry session per repository, so the token one blob earned serves the
//! others.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::digest::Sha256;
use crate::lock::LockedArchive;
use crate::manifest::OciSource;
use crate::net::Token;
use crate::registry::Target;
use crate::registry::auth;
use crate::registry::reference::OciRef;
use crate::registry::session::Session;

/// Where a locked file of an `oci:` model is fetched: the blob `digest` in the reference's
/// repository (the file's own, or the tar layer `archive` that holds it).
pub fn blob_of(
    source: &OciSource,
    digest: &Sha256,
    archive: Option<&LockedArchive>,
) -> Result<(url::Url, OciBlob), String> {
    let reference = OciRef::parse(&source.oci)?;
    let blob = archive.map_or(*digest, |a| a.digest);
    let url = reference.blob_url(&blob).map_err(|e| e.to_string())?;
    Ok((
        url,
        OciBlob {
            target: reference.target,
            archive: archive.map(|a| InArchive {
                digest: a.digest,
                size: a.size,
            }),
        },
    ))
}

/// The registry and repository a blob is fetched from (the target's namespace is the
/// repository), for the token its download needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciBlob {
    pub target: Target,
    /// The tar layer the file is extracted from, when it is not a layer of its own.
    pub archive: Option<InArchive>,
}

/// The tar layer a file of an `oci:` model comes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InArchive {
    pub digest: Sha256,
    pub size: u64,
}

/// The registries of the `oci:` models of one apply: a session per registry and repository,
/// so the token one blob earned serves the others.
pub struct Pulls {
    client: crate::net::Client,
    docker_config: Option<PathBuf>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Pulls {
    pub fn new(client: crate::net::Client, docker_config: Option<PathBuf>) -> Self {
        Self {
            client,
            docker_config,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The `Authorization` a download of `digest` from `blob` needs (`None`: anonymous is
    /// enough), earned by a `HEAD` of the blob that also shows the registry still has it.
    pub async fn authorization(
        &self,
        blob: &OciBlob,
        digest: &Sha256,
    ) -> Result<Option<Token>, String> {
        let repo = blob.target.namespace.clone();
        let session = self.session(blob)?;
        match session.has_blob(&repo, digest).await {
            Ok(true) => Ok(session.authorization(&repo)),
            Ok(false) => Err(format!(
                "{} no longer has blob sha256:{} in `{repo}`",
                blob.target.host,
                digest.hex()
            )),
            Err(e) => Err(format!("{e}; {}", e.help())),
        }
    }

    fn session(&self, blob: &OciBlob) -> Result<Arc<Session>, String> {
        let key = blob.target.url_text();
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| "the registry sessions are unusable".to_owned())?;
        if let Some(session) = sessions.get(&key) {
            return Ok(session.clone());
        }
        let credentials = auth::find(None, self.docker_config.as_deref(), &blob.target.host)
            .map_err(|e| e.to_string())?;
        let session = Arc::new(Session::new(
            self.client.clone(),
            blob.target.clone(),
            credentials,
        ));
        sessions.insert(key, session.clone());
        Ok(session)
    }
}
