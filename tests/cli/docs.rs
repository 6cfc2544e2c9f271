//! The documentation against the binary, so that README.md, docs/ and bench/README.md cannot
//! go stale unnoticed.
//!
//! - **Sessions.** Every ```` ```console ```` block is run. Its `$ ` lines are shell commands
//!   (a line ending in `\` continues on the next), run in order by one `bash`, with `modelctl`
//!   on `PATH`, in a scratch directory holding copies of the repository's `models.yaml`,
//!   `models.lock`, `examples/` and `schema/` (so a block reads as if typed at the root of a
//!   clone), with a clean environment. What each command prints, stdout and stderr together,
//!   must be the lines that follow it. In those lines `[..]` stands for any text within one
//!   line and a line `...` for any number of lines: for what depends on the machine (free
//!   disk, timings, temporary paths, GPUs). Blocks marked ```` ```sh ```` or ```` ```text ````
//!   are not run.
//! - **Commands and flags.** Every `modelctl COMMAND --flag …` written in inline code, in a
//!   `sh` block or on a `$ ` line names a command and flags that `modelctl COMMAND --help`
//!   lists; an inline code span that is just a `--flag` names a flag some command has.
//! - **Links.** Every relative link resolves to a file of the repository, every `#anchor` to a
//!   heading of its file, and no document points outside the repository's own tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every docs/*.md and bench/README.md, as (path relative to the repo, text).
fn documents() -> Vec<(PathBuf, String)> {
    let mut paths = vec![PathBuf::from("README.md"), PathBuf::from("bench/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("name")))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(repo().join(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// A fenced code block: its language (the info string's first word) and its lines.
struct Fence {
    lang: String,
    /// 1-based line of the opening fence.
    line: usize,
    lines: Vec<String>,
}

/// The fenced blocks of a Markdown text, and the text with them blanked out (line numbers kept).
fn split_fences(text: &str) -> (Vec<Fence>, String) {
    let mut fences = Vec::new();
    let mut prose = String::new();
    let mut open: Option<(usize, Fence)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.take() {
            None if trimmed.starts_with("```") => {
                let lang = trimmed[3..].split_whitespace().next().unwrap_or("");
                open = Some((
                    indent,
                    Fence {
                        lang: lang.to_owned(),
                        line: n + 1,
                        lines: Vec::new(),
                    },
                ));
                prose.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
            Some((_, fence)) if trimmed == "```" => {
                fences.push(fence);
                prose.push('\n');
            }
            Some((indent, mut fence)) => {
                let cut = line.len() - line.trim_start().len();
                fence.lines.push(line[cut.min(indent)..].to_owned());
                open = Some((indent, fence));
                prose.push('\n');
            }
        }
    }
    if let Some((_, fence)) = open {
        panic!("a code block opened at line {} is never closed", fence.line);
    }
    (fences, prose)
}

/// The inline code spans of prose (fences already removed), and the prose without them.
fn split_code_spans(prose: &str) -> (Vec<String>, String) {
    let chars: Vec<char> = prose.chars().collect();
    let mut spans = Vec::new();
    let mut rest = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            rest.push(chars[i]);
            i += 1;
            continue;
        }
        let ticks = chars[i..].iter().take_while(|&&c| c == '`').count();
        let start = i + ticks;
        let mut j = start;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let run = chars[j..].iter().take_while(|&&c| c == '`').count();
                if run == ticks {
                    end = Some(j);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match end {
            Some(end) => {
                let span: String = chars[start..end].iter().collect();
                spans.push(span.trim().replace('\n', " "));
                rest.push(' ');
                i = end + ticks;
            }
            None => {
                rest.extend(&chars[i..start]);
                i = start;
            }
        }
    }
    (spans, rest)
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// One `$ ` command of a console block and the lines it must print.
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn steps(fence: &Fence) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = fence.lines.iter().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(command) = line.strip_prefix("$ ") {
            let mut command = command.to_owned();
            while command.ends_with('\\') {
                match lines.next() {
                    Some((_, more)) => {
                        command.push('\n');
                        command.push_str(more);
                    }
                    None => break,
                }
            }
            if let Some(word) = heredoc_end(&command) {
                for (_, more) in lines.by_ref() {
                    command.push('\n');
                    command.push_str(more);
                    if *more == word {
                        break;
                    }
                }
            }
            steps.push(Step {
                line: fence.line + 1 + n,
                command,
                expected: Vec::new(),
            });
        } else {
            match steps.last_mut() {
                Some(step) => step.expected.push(line.clone()),
                None => panic!(
                    "the console block at line {} has output before its first `$ ` line",
                    fence.line
                ),
            }
        }
    }
    steps
}

/// `cat > f <<'EOF'` → `EOF`: the lines up to it belong to the command.
fn heredoc_end(command: &str) -> Option<String> {
    let (_, rest) = command.split_once("<<")?;
    let word = rest.split_whitespace().next()?;
    let word = word.trim_start_matches('-').trim_matches(['\'', '"']);
    (!word.is_empty()).then(|| word.to_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            // A store left behind by running the quickstart in place is not part of the clone.
            if entry.file_name() != "models" || !from.join("models.yaml").exists() {
                copy_dir(&entry.path(), &target);
            }
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A scratch directory that looks like the root of a fresh clone, as far as the docs need.
fn scratch_clone() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["models.yaml", "models.lock"] {
        std::fs::copy(repo().join(file), dir.path().join(file)).expect("copy");
    }
    for sub in ["examples", "schema"] {
        copy_dir(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

/// Runs the steps in one bash, in `dir`, and returns what each printed.
fn run_steps(steps: &[Step], dir: &Path) -> Vec<String> {
    let binary = assert_cmd::cargo::cargo_bin("modelctl");
    let bin_dir = binary.parent().expect("binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
    );
    let mut script = String::from("exec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        script.push_str(&format!("printf '\\036%d\\n' {i}\n{}\n", step.command));
    }
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("LANG", "C.UTF-8")
        .env("NO_COLOR", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("run bash");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut pieces = text.split('\u{1e}');
    let before = pieces.next().unwrap_or("");
    assert!(
        before.is_empty(),
        "output before the first command: {before}"
    );
    let outputs: Vec<String> = pieces
        .map(|piece| {
            piece
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
                .to_owned()
        })
        .collect();
    assert_eq!(
        outputs.len(),
        steps.len(),
        "the session stopped early:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    outputs
}

fn trimmed_lines(lines: impl Iterator<Item = impl AsRef<str>>) -> Vec<String> {
    let mut out: Vec<String> = lines.map(|l| l.as_ref().trim_end().to_owned()).collect();
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// `pattern` with `[..]` standing for any text matches `line`.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The expected lines (with `[..]` and `...` lines) match the actual ones.
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && lines_match(rest, more)),
    }
}

#[test]
fn console_blocks_print_what_the_docs_say() {
    let mut failures = Vec::new();
    let mut sessions = 0;
    for (doc, text) in documents() {
        let (fences, _) = split_fences(&text);
        for fence in fences.iter().filter(|f| f.lang == "console") {
            let steps = steps(fence);
            assert!(
                !steps.is_empty(),
                "{}:{}: a console block without a `$ ` line",
                doc.display(),
                fence.line
            );
            sessions += 1;
            let dir = scratch_clone();
            let outputs = run_steps(&steps, dir.path());
            for (step, output) in steps.iter().zip(outputs) {
                let expected = trimmed_lines(step.expected.iter());
                let actual = trimmed_lines(output.lines());
                if !lines_match(&expected, &actual) {
                    failures.push(format!(
                        "{}:{}: `{}`\n--- the docs say\n{}\n--- modelctl printed\n{}\n",
                        doc.display(),
                        step.line,
                        step.command,
                        expected.join("\n"),
                        actual.join("\n")
                    ));
                }
            }
        }
    }
    assert!(sessions > 0, "no console block found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Commands and flags

/// What `--help` says: each command's flags (with whether they take a value).
struct Cli {
    global: BTreeMap<String, bool>,
    commands: BTreeMap<String, BTreeMap<String, bool>>,
}

fn help(args: &[&str]) -> String {
    let output = Command::new(assert_cmd::cargo::cargo_bin("modelctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .output()
        .expect("run modelctl");
    assert!(output.status.success(), "modelctl {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The flags of an `Options:` section: `--name` and `-n`, and whether a value follows.
fn options(help: &str) -> BTreeMap<String, bool> {
    let mut flags = BTreeMap::new();
    for line in help.lines().map(str::trim_start) {
        if !line.starts_with('-') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            let word = word.trim_end_matches(',');
            if !word.starts_with('-') {
                break;
            }
            let value = words.get(i + 1).is_some_and(|w| w.starts_with('<'));
            flags.insert(word.to_owned(), value);
        }
    }
    flags
}

fn cli() -> Cli {
    let top = help(&["--help"]);
    let mut commands = BTreeMap::new();
    let mut in_commands = false;
    for line in top.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            if line.starts_with("   ") {
                continue; // the wrapped rest of a description
            }
            let name = line.split_whitespace().next().expect("command name");
            let flags = if name == "help" {
                BTreeMap::new()
            } else {
                options(&help(&[name, "--help"]))
            };
            commands.insert(name.to_owned(), flags);
        }
    }
    assert!(commands.contains_key("apply"), "{top}");
    Cli {
        global: options(&top),
        commands,
    }
}

/// The words after `modelctl` (or `cargo run … --`) up to the end of that shell command.
fn invocations(code: &str) -> Vec<Vec<String>> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let start = if *word == "modelctl" {
            i + 1
        } else if *word == "cargo" && words.get(i + 1) == Some(&"run") {
            match words[i..].iter().position(|w| *w == "--") {
                Some(at) => i + at + 1,
                None => continue,
            }
        } else {
            continue;
        };
        let mut args = Vec::new();
        for word in &words[start..] {
            if ["|", "||", "&&", ";", ">", ">>", "2>&1", "&"].contains(word)
                || word.starts_with('#')
                || word.starts_with('>')
            {
                break;
            }
            let ends = word.ends_with(';');
            args.push(word.trim_end_matches(';').to_owned());
            if ends {
                break;
            }
        }
        found.push(args);
    }
    found
}

/// `[--type` → `--type`, `GLOB…]` → `GLOB`, `--grace=0` → `--grace`.
fn bare(word: &str) -> &str {
    let word = word.trim_start_matches(['[', '(', '`', '"', '\'']);
    let word = word.trim_end_matches([']', ')', '`', '"', '\'', ',', '.', '…', ':']);
    word.split('=').next().unwrap_or(word)
}

fn check_invocation(cli: &Cli, args: &[String]) -> Result<(), String> {
    let mut words = args.iter().map(|w| bare(w)).filter(|w| !w.is_empty());
    let command = loop {
        let Some(word) = words.next() else {
            return Ok(());
        };
        if !word.starts_with('-') {
            break word;
        }
        match cli.global.get(word) {
            Some(true) => {
                words.next();
            }
            Some(false) => {}
            None => return Err(format!("`{word}` is not a flag of modelctl")),
        }
    };
    if command.chars().all(|c| c.is_ascii_uppercase()) {
        return Ok(()); // a placeholder: `modelctl COMMAND --help`
    }
    let Some(flags) = cli.commands.get(command) else {
        return Err(format!("`{command}` is not a modelctl command"));
    };
    for word in words {
        if word.starts_with('-') && word.len() > 1 && !word.starts_with("--help") {
            let is_flag = flags.contains_key(word) || cli.global.contains_key(word);
            let looks_like_flag = word[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if looks_like_flag && !is_flag {
                return Err(format!("`modelctl {command}` has no flag `{word}`"));
            }
        }
    }
    Ok(())
}

/// Flags of other tools that the docs mention on their own, in inline code.
const OTHER_TOOLS_FLAGS: &[&str] = &[
    "--all-targets", // cargo clippy
    "--locked",      // cargo's own meaning, which modelctl's copies
    "--frozen",
    "--offline",
    "--release", // cargo build
    "--shell",   // hyperfine
    "--include", // `hf download --include`
];

#[test]
fn every_command_and_flag_in_the_docs_exists() {
    let cli = cli();
    let all_flags: BTreeSet<&String> = cli
        .commands
        .values()
        .flat_map(|f| f.keys())
        .chain(cli.global.keys())
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (doc, text) in documents() {
        let (fences, prose) = split_fences(&text);
        let (spans, _) = split_code_spans(&prose);
        let mut code: Vec<String> = spans.clone();
        for fence in &fences {
            match fence.lang.as_str() {
                "sh" | "bash" | "shell" => code.extend(fence.lines.iter().cloned()),
                "console" => code.extend(
                    fence
                        .lines
                        .iter()
                        .filter_map(|l| l.strip_prefix("$ ").map(str::to_owned)),
                ),
                _ => {}
            }
        }
        for piece in &code {
            for args in invocations(piece) {
                checked += 1;
                if let Err(e) = check_invocation(&cli, &args) {
                    failures.push(format!("{}: `{piece}`: {e}", doc.display()));
                }
            }
        }
        for span in &spans {
            let Some(first) = span.split_whitespace().next() else {
                continue;
            };
            let flag = bare(first);
            if flag.starts_with("--")
                && !all_flags.contains(&flag.to_owned())
                && !OTHER_TOOLS_FLAGS.contains(&flag)
            {
                failures.push(format!(
                    "{}: `{span}`: no modelctl command has `{flag}`",
                    doc.display()
                ));
            }
        }
    }
    assert!(checked > 20, "only {checked} modelctl invocations found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Links

/// `[text](target)` targets in prose without code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        found.push(target.trim_matches(['<', '>']).to_owned());
        rest = &rest[end..];
    }
    found
}

/// GitHub's anchors for the headings of a Markdown text.
fn anchors(text: &str) -> BTreeSet<String> {
    let (_, prose) = split_fences(text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose.lines() {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#').trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    anchors
}

#[test]
fn links_in_the_docs_resolve_inside_the_repository() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (doc, text) in documents() {
        // Notes that lived beside the repository, never in it (built here so that grepping
        // the repository for them finds nothing).
        for outside in ["..", "/work"].map(|dir| format!("{dir}/{}", "shared")) {
            if text.contains(outside.as_str()) {
                failures.push(format!(
                    "{}: points at `{outside}`, which a clone does not have",
                    doc.display()
                ));
            }
        }
        let (_, prose) = split_fences(&text);
        let (_, prose) = split_code_spans(&prose);
        let dir = doc.parent().unwrap_or(Path::new(""));
        for target in links(&prose) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                dir.join(path)
            };
            let full = repo().join(&file);
            if !full.exists() {
                failures.push(format!(
                    "{}: link `{target}`: `{}` does not exist",
                    doc.display(),
                    file.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor {
                let heads = anchors(&std::fs::read_to_string(&full).expect("read"));
                if !heads.contains(anchor) {
                    failures.push(format!(
                        "{}: link `{target}`: no heading `#{anchor}` in `{}`",
                        doc.display(),
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(checked > 10, "only {checked} relative links found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_matchers_mean_what_the_module_says() {
    assert!(line_matches(
        "Applied in [..] s: 1 downloaded",
        "Applied in 0.0 s: 1 downloaded"
    ));
    assert!(!line_matches("Applied in [..] s", "Applied in 0.0 ms"));
    assert!(line_matches("[..]", ""));
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(lines_match(&lines("a\n...\nd"), &lines("a\nb\nc\nd")));
    assert!(lines_match(&lines("a\n...\nd"), &lines("a\nd")));
    assert!(!lines_match(&lines("a\nd"), &lines("a\nb\nd")));
    assert_eq!(
        invocations("cargo run --release -- plan --offline | less"),
        vec![vec!["plan".to_owned(), "--offline".to_owned()]]
    );
    assert_eq!(
        anchors("# The `plan` command\n## Flags, all\n## Flags, all\n").len(),
        3
    );
    assert!(anchors("## Flags, all\n").contains("flags-all"));
}
