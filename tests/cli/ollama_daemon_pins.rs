//! Ollama models as Ollama users have them, with a registry modelctl cannot reach: pins taken
//! from the daemon (a pulled model and one made with `ollama create`), applied, activated and
//! swapped, `plan --locked` afterwards, drift when a model is re-created under the same name,
//! `update`, removal through `/api/delete`, and names neither the registry nor the daemon knows.
//! The registry refuses connections (a closed port), fails DNS (`.invalid`), or answers 404.

use serde_json::Value;

use crate::fake_ollama::{
    FakeOllama, FakeRegistry, MEDIA_MODEL, MEDIA_TEMPLATE, sample_config, sha256_hex,
};
use crate::support::{Project, Run};

/// A registry host nothing listens on: the port was bound, then closed.
fn closed_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

/// A model's layers and config: weights from `seed`, a template.
fn image_parts(seed: u8) -> (Vec<u8>, Vec<u8>) {
    let weights: Vec<u8> = (0..50_000u32)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    (weights, b"{{ .Prompt }}".to_vec())
}

struct Daemon {
    daemon: FakeOllama,
    project: Project,
    /// `http://HOST/library`, for names on the unreachable registry.
    reg: String,
}

impl Daemon {
    /// A daemon that has `pulled:8b` (installed and pullable, as if pulled earlier) and
    /// `my-finetune` (installed only, as `ollama create` leaves it), both named on `host`.
    fn new(host: &str) -> Self {
        let s = Self {
            daemon: FakeOllama::start(),
            project: Project::new(),
            reg: format!("http://{host}/library"),
        };
        s.install("pulled:8b", 3, true);
        s.install("my-finetune:latest", 7, false);
        s
    }

    fn full(&self, tag: &str) -> String {
        format!("{}/{tag}", self.reg.trim_start_matches("http://"))
    }

    /// Installs `tag` (also publishing it to the daemon's catalogue when `pullable`).
    fn install(&self, tag: &str, seed: u8, pullable: bool) -> String {
        let (weights, template) = image_parts(seed);
        let parts = [(MEDIA_MODEL, &weights[..]), (MEDIA_TEMPLATE, &template[..])];
        let config = sample_config(&parts);
        if pullable {
            self.daemon.publish(&self.full(tag), &parts, &config);
        }
        self.daemon.install(&self.full(tag), &parts, &config).digest
    }

    fn manifest(&self, active: &str) -> String {
        format!(
            "version: 1
# the stack
models:
  chat:
    type: llm
    source: {{ ollama: \"{reg}/pulled:8b\", keep_alive: 5m }}
  tuned:  # made here with `ollama create`
    type: llm
    source: {{ ollama: \"{reg}/my-finetune\" }}
active:
  llm: {active}
",
            reg = self.reg
        )
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], more: &[(&str, &str)]) -> Run {
        let url = self.daemon.url();
        let mut env = vec![
            ("OLLAMA_HOST", url.as_str()),
            ("MODELCTL_HTTP_RETRY_BASE_MS", "1"),
            ("MODELCTL_HTTP_RETRIES", "1"),
        ];
        env.extend_from_slice(more);
        self.project.run_env(args, &env)
    }

    fn pulls(&self) -> usize {
        self.daemon
            .requests()
            .iter()
            .filter(|r| r.path() == "/api/pull")
            .count()
    }
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

fn status_rows(s: &Daemon) -> Vec<Value> {
    let run = s.run(&["status", "--json"]);
    ok(&run);
    let rows: Value = serde_json::from_str(&run.stdout).expect("status json");
    rows.as_array().expect("rows").clone()
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter().find(|r| r["id"] == id).expect("row")
}

#[test]
fn with_the_registry_refusing_connections_apply_pins_from_the_daemon_activates_and_swaps() {
    let s = Daemon::new(&closed_host());
    let pulled = s.daemon.installed_image(&s.full("pulled:8b")).expect("a");
    let tuned = s
        .daemon
        .installed_image(&s.full("my-finetune:latest"))
        .expect("b");
    s.project.write("models.yaml", &s.manifest("chat"));

    let plan = s.run(&["plan"]);
    ok(&plan);
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(said.contains("pinned from the Ollama daemon"), "{said}");
    assert!(said.contains("the registry is not reachable"), "{said}");
    assert_eq!(
        said.matches("not asked again in this run").count(),
        1,
        "the second model on the same registry does not wait through the retries again: {said}"
    );
    assert!(said.contains("already in Ollama"), "{said}");

    let apply = s.run(&["apply", "--yes"]);
    ok(&apply);
    assert_eq!(
        s.pulls(),
        0,
        "models the daemon has are recorded, not pulled"
    );
    let lock = s.project.read("models.lock");
    assert!(lock.contains(&pulled.digest), "{lock}");
    assert!(lock.contains(&tuned.digest), "{lock}");
    assert_eq!(lock.matches("pinned_from: \"daemon\"").count(), 2, "{lock}");

    let loads = s.daemon.generate_calls();
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert!(loads[0].model.contains("pulled:8b"), "{loads:?}");
    let rows = status_rows(&s);
    assert_eq!(row(&rows, "chat")["state"], "installed", "{rows:?}");
    assert_eq!(row(&rows, "tuned")["state"], "installed", "{rows:?}");

    let locked = s.run(&["plan", "--locked", "--detailed-exitcode"]);
    assert_eq!(locked.code, 0, "{}\n{}", locked.stdout, locked.stderr);
    let frozen = s.run(&["plan", "--frozen", "--detailed-exitcode"]);
    assert_eq!(frozen.code, 0, "{}\n{}", frozen.stdout, frozen.stderr);
    let show = s.run(&["show", "tuned"]);
    ok(&show);
    assert!(
        show.stdout.contains("pinned from the Ollama daemon"),
        "{}",
        show.stdout
    );

    // A change of `active.llm` loads the new model and unloads the old one.
    s.project.write("models.yaml", &s.manifest("tuned"));
    ok(&s.run(&["apply", "--yes"]));
    let calls = s.daemon.generate_calls();
    let last: Vec<String> = calls[1..]
        .iter()
        .map(|c| format!("{} {:?}", c.model, c.keep_alive))
        .collect();
    assert!(
        last.iter().any(|c| c.contains("my-finetune")),
        "the new one is loaded: {last:?}"
    );
    assert!(
        last.iter()
            .any(|c| c.contains("pulled:8b") && c.contains("Number(0)")),
        "the old one is unloaded: {last:?}"
    );
    assert_eq!(s.pulls(), 0);

    // Removal goes through `/api/delete`.
    let only_tuned = s.manifest("tuned").replace(
        &format!(
            "  chat:\n    type: llm\n    source: {{ ollama: \"{}/pulled:8b\", keep_alive: 5m }}\n",
            s.reg
        ),
        "",
    );
    s.project.write("models.yaml", &only_tuned);
    ok(&s.run(&["apply", "--yes"]));
    let deletes: Vec<_> = s
        .daemon
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/api/delete")
        .collect();
    assert_eq!(deletes.len(), 1, "{:?}", s.daemon.installed());
    assert!(
        deletes[0].json()["model"]
            .as_str()
            .expect("model")
            .contains("pulled:8b")
    );
    assert_eq!(s.daemon.installed().len(), 1, "{:?}", s.daemon.installed());
}

#[test]
fn with_dns_failing_lock_pins_both_models_from_the_daemon() {
    let s = Daemon::new("registry.invalid");
    s.project.write("models.yaml", &s.manifest("chat"));
    let lock = s.run(&["lock"]);
    ok(&lock);
    let text = s.project.read("models.lock");
    let tuned = s
        .daemon
        .installed_image(&s.full("my-finetune:latest"))
        .expect("tuned");
    assert!(text.contains(&tuned.digest), "{text}");
    assert_eq!(text.matches("pinned_from: \"daemon\"").count(), 2, "{text}");
    assert!(
        lock.stderr.contains("pinned from the Ollama daemon"),
        "{}",
        lock.stderr
    );
}

#[test]
fn a_model_re_created_under_the_same_name_is_drift_until_update_pins_it_again() {
    let s = Daemon::new(&closed_host());
    s.project.write("models.yaml", &s.manifest("chat"));
    ok(&s.run(&["apply", "--yes"]));
    let before = s.project.read("models.lock");

    let recreated = s.install("my-finetune:latest", 11, false);
    let plan = s.run(&["plan"]);
    ok(&plan);
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        said.contains("changed in the Ollama daemon") && said.contains("modelctl update tuned"),
        "{said}"
    );
    assert!(
        said.contains("1 model differs from its pin (tuned)"),
        "{said}"
    );
    let locked = s.run(&["plan", "--locked"]);
    assert_ne!(locked.code, 0, "drift is an error under --locked");
    assert!(
        format!("{}{}", locked.stdout, locked.stderr).contains("--locked was passed"),
        "{}\n{}",
        locked.stdout,
        locked.stderr
    );
    let apply = s.run(&["apply", "--yes"]);
    ok(&apply);
    assert!(
        !apply.stdout.contains("The store matches"),
        "a drifted pin is never reported up to date: {}",
        apply.stdout
    );
    assert_eq!(s.project.read("models.lock"), before, "drift never re-pins");
    assert_eq!(row(&status_rows(&s), "tuned")["state"], "drifted");
    assert_eq!(s.pulls(), 0, "a drifted daemon pin is not pulled over");

    let update = s.run(&["update", "tuned"]);
    ok(&update);
    let said = format!("{}{}", update.stdout, update.stderr);
    assert!(said.contains("tuned: updated"), "{said}");
    assert!(
        said.contains(&recreated[..12]),
        "the change is shown: {said}"
    );
    assert!(s.project.read("models.lock").contains(&recreated));
    ok(&s.run(&["apply", "--yes"]));
    let again = s.run(&["plan", "--locked", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
}

#[test]
fn a_model_the_registry_does_not_have_is_pinned_from_the_daemon_and_its_layers_read_from_its_store()
{
    let registry = FakeRegistry::start();
    let s = Daemon::new(&registry.host());
    // The daemon's store is on this machine: its manifest file gives the layers.
    let store = s.project.path("ollama-store");
    let tuned = s
        .daemon
        .installed_image(&s.full("my-finetune:latest"))
        .expect("tuned");
    let manifest = store.join(format!(
        "manifests/{}/library/my-finetune/latest",
        registry.host()
    ));
    std::fs::create_dir_all(manifest.parent().expect("dir")).expect("mkdir");
    std::fs::write(&manifest, &tuned.manifest).expect("manifest");
    s.project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  tuned:\n    type: llm\n    source: {{ ollama: \"{}/my-finetune\" }}\n",
            s.reg
        ),
    );
    let store_env = store.display().to_string();
    let lock = s.run_with(&["lock"], &[("OLLAMA_MODELS", &store_env)]);
    ok(&lock);
    assert!(
        lock.stderr.contains("the registry does not have it"),
        "{}",
        lock.stderr
    );
    let text = s.project.read("models.lock");
    assert!(text.contains(&format!("sha256:{}", tuned.digest)), "{text}");
    assert!(
        text.contains(&sha256_hex(&tuned.layers[0].bytes)),
        "the weights layer is recorded: {text}"
    );
    assert!(text.contains(MEDIA_MODEL), "{text}");
}

#[test]
fn a_name_neither_the_registry_nor_the_daemon_knows_is_refused_with_the_closest_name() {
    let registry = FakeRegistry::start();
    let s = Daemon::new(&registry.host());
    s.project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  tuned:\n    type: llm\n    source: {{ ollama: \"{}/my-finetun\" }}\n",
            s.reg
        ),
    );
    let plan = s.run(&["plan"]);
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        said.contains("in neither the registry nor the Ollama daemon"),
        "{said}"
    );
    assert!(said.contains("did you mean"), "{said}");
    assert!(said.contains("my-finetune:latest"), "{said}");
    assert!(!s.project.path("models.lock").exists());
}

#[test]
fn add_from_ollama_declares_what_the_daemon_has_keeping_comments() {
    let s = Daemon::new(&closed_host());
    let start = "version: 1\n# my models\nmodels:\n  old:   # keep me\n    type: llm\n    source: { ollama: \"REG/pulled:8b\" }\n"
        .replace("REG", &s.reg);
    s.project.write("models.yaml", &start);

    let run = s.run(&["add", "--from-ollama"]);
    ok(&run);
    let after = s.project.read("models.yaml");
    assert!(after.starts_with(&start), "kept as it was: {after}");
    assert!(after.contains("  my-finetune:\n"), "{after}");
    assert!(
        after.contains(&format!("ollama: {}", s.full("my-finetune:latest"))),
        "{after}"
    );
    assert_eq!(
        after.matches("pulled:8b").count(),
        1,
        "declared once: {after}"
    );
    assert!(
        run.stderr.contains("already declared as `old`"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("+   my-finetune:"), "{}", run.stdout);

    // It locks and applies as written.
    ok(&s.run(&["apply", "--yes"]));
    assert!(s.project.read("models.lock").contains("my-finetune"));

    // Named models only; an unknown name gets the closest one the daemon has.
    let again = s.run(&["add", "--from-ollama", "my-finetun"]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("did you mean") && again.stderr.contains("my-finetune"),
        "{}",
        again.stderr
    );
    assert_eq!(s.project.read("models.yaml"), after, "nothing written");
}

#[test]
fn add_ollama_checks_the_name_against_the_daemon_then_the_registry() {
    let registry = FakeRegistry::start();
    let s = Daemon::new(&registry.host());
    let (weights, template) = image_parts(9);
    let parts = [(MEDIA_MODEL, &weights[..]), (MEDIA_TEMPLATE, &template[..])];
    let published = registry.publish(&s.full("public:1b"), &parts, &sample_config(&parts));
    s.project.write("models.yaml", "version: 1\nmodels: {}\n");

    let tuned = format!("{}/my-finetune", s.reg);
    let run = s.run(&["add", "tuned", "--type", "llm", "--ollama", &tuned]);
    ok(&run);
    assert!(
        run.stderr.contains("the Ollama daemon has"),
        "{}",
        run.stderr
    );

    let public = format!("{}/public:1b", s.reg);
    let run = s.run(&["add", "public", "--type", "llm", "--ollama", &public]);
    ok(&run);
    assert!(
        run.stderr.contains("the registry has") && run.stderr.contains(&published.digest[..12]),
        "{}",
        run.stderr
    );

    let before = s.project.read("models.yaml");
    let typo = format!("{}/my-finetun", s.reg);
    let run = s.run(&["add", "typo", "--type", "llm", "--ollama", &typo]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("in neither the Ollama daemon nor the registry")
            && run.stderr.contains("did you mean"),
        "{}",
        run.stderr
    );
    assert_eq!(s.project.read("models.yaml"), before, "nothing written");
}

#[test]
fn a_model_neither_pinnable_nor_in_the_daemon_is_pulled_through_the_daemon_then_pinned() {
    let s = Daemon::new(&closed_host());
    // The daemon can pull it (its registry is reachable from the daemon), but has not yet.
    let (weights, template) = image_parts(13);
    let parts = [(MEDIA_MODEL, &weights[..]), (MEDIA_TEMPLATE, &template[..])];
    let image = s
        .daemon
        .publish(&s.full("fresh:1b"), &parts, &sample_config(&parts));
    s.project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  fresh:\n    type: llm\n    source: {{ ollama: \"{}/fresh:1b\" }}\nactive:\n  llm: fresh\n",
            s.reg
        ),
    );

    let plan = s.run(&["plan"]);
    ok(&plan);
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(said.contains("not pinned yet"), "{said}");
    assert!(
        said.contains("through the Ollama daemon, then pin the digest it reports"),
        "{said}"
    );
    assert_eq!(s.pulls(), 0, "plan pulls nothing");

    let lock = s.run(&["lock"]);
    assert_ne!(lock.code, 0, "lock cannot pin it without pulling");
    assert!(
        lock.stderr.contains("modelctl apply` pulls"),
        "{}",
        lock.stderr
    );

    let apply = s.run(&["apply", "--yes"]);
    ok(&apply);
    assert_eq!(s.pulls(), 1, "pulled through the daemon");
    let text = s.project.read("models.lock");
    assert!(text.contains(&image.digest), "{text}");
    assert!(text.contains("pinned_from: \"daemon\""), "{text}");
    let loads = s.daemon.generate_calls();
    assert!(
        loads.iter().any(|c| c.model.contains("fresh:1b")),
        "{loads:?}"
    );
    assert_eq!(row(&status_rows(&s), "fresh")["state"], "installed");
    let again = s.run(&["plan", "--locked", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
}
