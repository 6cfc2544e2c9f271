//! Line diffs of two texts, as `plan`, `update` and the editing commands show them: `-` for
//! a removed line, `+` for an added one, two spaces for context (through `similar`).

/// A line diff: `-` old, `+` new, two spaces for context.
pub fn diff_text(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "-",
            similar::ChangeTag::Insert => "+",
            similar::ChangeTag::Equal => " ",
        };
        out.push_str(sign);
        out.push(' ');
        out.push_str(change.value().trim_end_matches('\n'));
        out.push('\n');
    }
    out
}
