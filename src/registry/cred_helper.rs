//! Docker credential helpers, as `docker login` configures them: `credHelpers` (per registry
//! host) and `credsStore` (for every host) in `config.json` name a program
//! `docker-credential-<name>` on `PATH`, asked with `get` and the registry's host on stdin; it
//! answers `{"ServerURL": …, "Username": …, "Secret": …}`, or fails with "credentials not
//! found". The name must be a plain word (no path), the program gets 30 seconds, and what it
//! prints is never shown: only whether it answered, and its error's first line.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How long a helper may take (a desktop keychain may be slow to unlock).
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a helper answered for a host.
#[derive(PartialEq, Eq)]
pub struct HelperLogin {
    pub user: String,
    pub secret: String,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Whether `name` may be a helper's name: letters, digits, `-`, `_`, `.`, not starting with
/// `.`; anything else could name another program.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Asks `docker-credential-<name>` for `host`'s login: `Ok(None)` when it has none.
pub fn get(name: &str, host: &str) -> Result<Option<HelperLogin>, String> {
    if !valid_name(name) {
        return Err(format!("`{name}` is not a credential helper name"));
    }
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("`{program}` is not on PATH"),
            _ => format!("cannot run `{program}`: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!("{host}\n").as_bytes());
    }
    let readers = [
        child.stdout.take().map(drain),
        child.stderr.take().map(drain),
    ];
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{program}` did not answer within {} s",
                    TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for `{program}`: {e}")),
        }
    };
    let [out, err] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    if !status.success() {
        let said = String::from_utf8_lossy(if err.is_empty() { &out } else { &err }).to_string();
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let first = said.lines().next().unwrap_or("").trim().to_owned();
        return Err(format!("`{program} get` failed ({status}): {first}"));
    }
    let answer: Answer = serde_json::from_slice(&out)
        .map_err(|_| format!("`{program} get` did not answer with its JSON"))?;
    if answer.username == "<token>" {
        return Err(format!(
            "`{program}` holds an identity token, which modelctl does not exchange; \
             log in with a user and password, or set MODELCTL_REGISTRY_AUTH"
        ));
    }
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(HelperLogin {
        user: answer.username,
        secret: answer.secret,
    }))
}

/// Reads a pipe to its end on a thread, so a helper that writes much never blocks on it.
fn drain(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.take(1 << 20).read_to_end(&mut bytes);
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_run() {
        assert!(valid_name("desktop"));
        assert!(valid_name("ecr-login"));
        assert!(!valid_name("../../bin/sh"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name(""));
        assert!(get("../x", "h").is_err());
    }
}
