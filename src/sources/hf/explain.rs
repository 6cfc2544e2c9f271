//! What a failed Hub request means, and what to do about it.
//!
//! The Hub says why it refused in its `X-Error-Code` header (`GatedRepo`, `RepoNotFound`,
//! `RevisionNotFound`, `EntryNotFound`) and `X-Error-Message`; [`explain`] turns that, the
//! status and whether a token was sent into one message with the fix (accept the license, set
//! `HF_TOKEN`, check the name or the revision, wait out a rate limit). [`FileContext`] carries
//! what a download needs to explain its own failures to the engine. It reads nothing and
//! sends nothing.

use reqwest::StatusCode;

use super::{HubConfig, Repo};
use crate::net::Refusal;

/// A failed Hub request explained, with the fix (the Hub's `X-Error-Code` decides which).
pub fn explain(
    config: &HubConfig,
    repo: &Repo,
    revision: Option<&str>,
    path: Option<&str>,
    refusal: &Refusal<'_>,
) -> String {
    let Refusal {
        status,
        code,
        message,
        why,
    } = *refusal;
    let id = &repo.id;
    let said = message
        .map(|m| format!(" (the Hub says: {m})"))
        .unwrap_or_default();
    let token_hint = match &config.token {
        Some(t) => format!("the token from {} does not grant it", t.origin()),
        None => "no token is set".to_owned(),
    };
    if code == Some("GatedRepo") {
        return format!(
            "`{id}` is a gated repository and {token_hint}: accept its license at {} while logged in, \
             then set HF_TOKEN to a token of that account{said}",
            repo.page(config)
        );
    }
    if status == StatusCode::UNAUTHORIZED
        && message == Some("Invalid credentials in Authorization header")
    {
        let origin = config.token.as_ref().map_or("HF_TOKEN", |t| t.origin());
        return format!(
            "the Hub rejected the token from {origin} as invalid or expired: create a new one at {}/settings/tokens and set HF_TOKEN",
            config.shown_endpoint()
        );
    }
    match (code, status.as_u16()) {
        (Some("RepoNotFound"), _) | (None, 401) => format!(
            "repository `{id}` was not found on {} ({why}): check the name and `repo_type`; \
             if it is private, set HF_TOKEN to a token that can read it ({token_hint}){said}",
            config.shown_endpoint()
        ),
        (Some("RevisionNotFound"), _) => format!(
            "revision `{}` was not found in `{id}` ({why}): check the branch, tag or commit in models.yaml{said}",
            revision.unwrap_or("?")
        ),
        (Some("EntryNotFound"), _) | (None, 404) if path.is_some() => format!(
            "`{}` was not found in `{id}` at {} ({why}): the repository changed or the file was renamed; \
             run `modelctl update` to re-pin the model{said}",
            path.unwrap_or("?"),
            revision.map_or("the locked commit".to_owned(), |r| format!("`{r}`"))
        ),
        (_, 403) => format!(
            "access to `{id}` was denied ({why}): {token_hint}; for a gated model, accept its license at {}{said}",
            repo.page(config)
        ),
        (_, 404) => format!(
            "`{id}` was not found on {} ({why}): check the name and `repo_type`{said}",
            config.shown_endpoint()
        ),
        (_, 429) => format!(
            "the Hub is rate-limiting requests ({why}): wait a few minutes; requests with a token (HF_TOKEN) get higher limits{said}"
        ),
        _ => format!("the Hub answered {why} for `{id}`{said}"),
    }
}

/// Explains download failures of one Hub file for the engine.
#[derive(Debug)]
pub struct FileContext {
    pub config: HubConfig,
    pub repo: Repo,
    pub commit: String,
    pub path: String,
}

impl crate::net::ExplainStatus for FileContext {
    fn explain(&self, refusal: &Refusal<'_>) -> String {
        explain(
            &self.config,
            &self.repo,
            Some(&self.commit),
            Some(&self.path),
            refusal,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RepoType;

    fn repo() -> Repo {
        Repo {
            kind: RepoType::Model,
            id: "org/name".into(),
        }
    }

    #[test]
    fn gated_and_missing_repositories_get_their_own_fix() {
        let config = HubConfig::default();
        let repo = repo();
        let gated = explain(
            &config,
            &repo,
            None,
            None,
            &Refusal {
                status: StatusCode::FORBIDDEN,
                code: Some("GatedRepo"),
                message: None,
                why: "HTTP 403",
            },
        );
        assert!(
            gated.contains("accept its license at https://huggingface.co/org/name"),
            "{gated}"
        );
        let missing = explain(
            &config,
            &repo,
            None,
            None,
            &Refusal {
                status: StatusCode::NOT_FOUND,
                code: Some("RepoNotFound"),
                message: None,
                why: "HTTP 404",
            },
        );
        assert!(missing.contains("HF_TOKEN"), "{missing}");
        let rev = explain(
            &config,
            &repo,
            Some("v9"),
            None,
            &Refusal {
                status: StatusCode::NOT_FOUND,
                code: Some("RevisionNotFound"),
                message: None,
                why: "HTTP 404",
            },
        );
        assert!(rev.contains("revision `v9`"), "{rev}");
    }
}
