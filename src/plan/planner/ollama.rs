//! The planner's side of Ollama models: a pull when the daemon lacks the pinned digest, only
//! recording one it has, drift of a pin taken from the daemon (which no pull can undo), and
//! models `apply` pins by pulling them through the daemon.

use super::*;
use crate::lock::PinnedFrom;

impl Planner {
    /// What makes an Ollama model pinned by the lock present: a pull when the daemon lacks the
    /// pinned digest, or only recording it when the daemon has it. A pin from the daemon that
    /// the daemon now has at another digest (re-created, or pulled again) cannot be pulled
    /// back: it is drift, reported, and left as it is.
    pub(super) fn ollama_actions(
        &mut self,
        id: &ModelId,
        locked: &LockedModel,
        present: &PresentModel,
        input: &PlanInput<'_>,
    ) -> Vec<Action> {
        let LockedSource::Ollama {
            ollama,
            digest,
            layers,
            pinned_from,
        } = &locked.source
        else {
            return Vec::new();
        };
        if let DaemonView::Unreachable(why) = input.daemon {
            self.warnings.push(Notice {
                model: Some(id.clone()),
                message: format!("cannot tell whether Ollama has `{ollama}`: {why}"),
            });
        }
        let now = input.daemon.digest_of(ollama);
        if let (PinnedFrom::Daemon, Some(Some(now))) = (pinned_from, now)
            && now != *digest
        {
            self.ollama_drift(id, ollama, *digest, now, input.locked);
            return Vec::new();
        }
        let described = present.ollama.as_ref().map(|d| d.digest) == Some(*digest);
        let in_daemon = now == Some(Some(*digest));
        if described && now.is_none_or(|_| in_daemon) {
            return Vec::new();
        }
        vec![Action::Pull {
            model: id.clone(),
            name: ollama.clone(),
            digest: *digest,
            size: if in_daemon {
                0
            } else {
                layers.iter().map(|l| l.size).sum()
            },
            present: in_daemon,
            mirrors: Vec::new(),
        }]
    }

    /// A pin from the daemon that the daemon no longer matches: a warning, or an error under
    /// `--locked`/`--frozen`.
    fn ollama_drift(
        &mut self,
        id: &ModelId,
        name: &str,
        pinned: Sha256,
        now: Sha256,
        locked: Option<&'static str>,
    ) {
        let message = format!(
            "`{name}` changed in the Ollama daemon since models.lock pinned it: the daemon has \
             {}, models.lock pins {} (re-created with `ollama create`, or pulled again); run \
             `modelctl update {id}` to pin what the daemon has",
            now.short(),
            pinned.short()
        );
        self.drifted.insert(
            id.clone(),
            format!(
                "the Ollama daemon has {} under this name, not the pinned {}",
                now.short(),
                pinned.short()
            ),
        );
        let notice = Notice {
            model: Some(id.clone()),
            message: match locked {
                Some(flag) => format!("{message} ({flag} was passed)"),
                None => message,
            },
        };
        match locked {
            Some(_) => self.errors.push(notice),
            None => self.warnings.push(notice),
        }
    }

    /// An Ollama model pinned only once `apply` has pulled it through the daemon: a lock
    /// change, and a warning that says why and what will happen.
    pub(super) fn pull_later(&mut self, id: &ModelId, name: &str, reason: &str, was_locked: bool) {
        self.warnings.push(Notice {
            model: Some(id.clone()),
            message: format!(
                "not pinned yet: {reason}; `apply` pulls `{name}` through the Ollama daemon \
                 (which may reach the registry through its own proxy) and pins the digest it \
                 reports"
            ),
        });
        self.lock_changes.push(LockChange {
            model: id.clone(),
            change: match was_locked {
                true => LockChangeKind::Updated,
                false => LockChangeKind::Added,
            },
        });
        self.pull_to_pin.insert(id.clone(), name.to_owned());
    }
}
