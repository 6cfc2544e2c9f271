//! The Hugging Face access token: where it comes from, and the rule that it never shows.
//!
//! The token is found the way `huggingface_hub` finds it: `HF_TOKEN`, then the legacy
//! `HUGGING_FACE_HUB_TOKEN`, then the file at `HF_TOKEN_PATH` (default `$HF_HOME/token`, which
//! `hf auth login` writes). [`Token`] keeps the value private: its `Debug` names only where it came
//! from, so no log line, error chain or panic message can print it. It is sent only as an
//! `Authorization` header to the Hub endpoint (reqwest drops it on redirects to another origin,
//! such as the CDN), and never over plain http to a host other than this machine.

use std::path::{Path, PathBuf};

pub use crate::net::Token;

/// The token found, and a warning about how it is stored, if any.
#[derive(Debug, Default)]
pub struct Discovered {
    pub token: Option<Token>,
    pub warning: Option<String>,
}

/// Finds the token from the environment (looked up through `env`) and the token file.
pub fn discover(env: &dyn Fn(&str) -> Option<String>, hf_home: &Path) -> Discovered {
    for name in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(value) = env(name).map(|v| v.trim().to_owned())
            && !value.is_empty()
        {
            return Discovered {
                token: Some(Token::new(value, name)),
                warning: None,
            };
        }
    }
    let path = env("HF_TOKEN_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home.join("token"));
    read_file(&path)
}

fn read_file(path: &Path) -> Discovered {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Discovered::default();
    };
    let value = text.trim().to_owned();
    if value.is_empty() {
        return Discovered::default();
    }
    Discovered {
        warning: loose_permissions(path),
        token: Some(Token::new(value, path.display().to_string())),
    }
}

/// A warning when other users may read the token file.
fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the Hugging Face token file `{}` is readable by other users (mode {:o}); \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

/// Whether a token may travel to `url`: only over https, or to this machine.
pub fn may_send_to(url: &url::Url) -> bool {
    if url.scheme() == "https" {
        return true;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_over_the_file_and_debug_hides_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "hf_FROMFILE\n").expect("write");
        let env = |name: &str| (name == "HF_TOKEN").then(|| "hf_SENTINEL".to_owned());
        let found = discover(&env, dir.path());
        let token = found.token.expect("token");
        assert_eq!(token.expose(), "hf_SENTINEL");
        assert!(!format!("{token:?}").contains("SENTINEL"));

        let found = discover(&|_| None, dir.path());
        assert_eq!(found.token.expect("file token").expose(), "hf_FROMFILE");
    }

    #[test]
    fn a_world_readable_token_file_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tok");
        std::fs::write(&path, "hf_x").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let env = |name: &str| (name == "HF_TOKEN_PATH").then(|| path.display().to_string());
        let found = discover(&env, dir.path());
        assert!(found.warning.expect("warning").contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(discover(&env, dir.path()).warning.is_none());
    }

    #[test]
    fn tokens_travel_only_over_https_or_to_this_machine() {
        let ok = |u: &str| may_send_to(&url::Url::parse(u).expect("url"));
        assert!(ok("https://huggingface.co/x"));
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(ok("http://localhost/x"));
        assert!(ok("http://[::1]:9/x"));
        assert!(!ok("http://mirror.example.com/x"));
        assert!(!ok("http://10.0.0.1/x"));
    }
}
