//! Problems found in a user's file, and their rendering as rustc-style diagnostics.
//!
//! Validation of `models.yaml` (and reading of `models.lock`) collects every problem of a file
//! instead of stopping at the first, so a user fixes them all in one round. Each problem has a
//! code, a one-line message, the location of the offending value and, where the user can act,
//! a `help:` line. Rendering goes through miette's graphical handler, which prints
//! `file:line:column`, the source line with the value underlined, and the help. The handler
//! is only ever given lines it can draw: around a problem on a very long line (a generated or
//! hostile file; miette panics past column 65,535) it quotes a window of the line instead.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, NamedSource, SourceCode, SourceSpan, SpanContents,
};
use serde_saphyr::Location;

/// One thing wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A stable identifier (`manifest::unknown-key`), for documentation and tests.
    pub code: &'static str,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// Where: byte offset and length in the file, with line and column for sorting.
    pub at: Option<At>,
    /// How to fix it.
    pub help: Option<String>,
}

/// A position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    pub line: u64,
    pub column: u64,
    pub offset: usize,
    pub len: usize,
}

impl At {
    /// The position of a YAML node, if the parser knew it.
    pub fn of(location: &Location) -> Option<Self> {
        if location.line() == 0 {
            return None;
        }
        let span = location.span();
        let offset = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len().unwrap_or(0)).unwrap_or(0);
        Some(Self {
            line: location.line(),
            column: location.column(),
            offset,
            len,
        })
    }
}

impl At {
    /// The position of a 1-based line and column in `text`, when the parser gave no offset.
    pub fn from_line_column(text: &str, line: u64, column: u64) -> Option<Self> {
        let line_start: usize = text
            .split_inclusive('\n')
            .take(usize::try_from(line).ok()?.checked_sub(1)?)
            .map(str::len)
            .sum();
        let line_text = text.get(line_start..)?.lines().next().unwrap_or("");
        let col = usize::try_from(column).ok()?.saturating_sub(1);
        let offset = line_start
            + line_text
                .char_indices()
                .nth(col)
                .map_or(line_text.len(), |(i, _)| i);
        Some(Self {
            line,
            column,
            offset: offset.min(text.len()),
            len: 1,
        })
    }
}

/// All problems of one file, with the text they point into.
#[derive(Debug, Clone)]
pub struct FileProblems {
    /// The file as the user should see it (`models.yaml`, or a path).
    pub name: String,
    pub text: Arc<String>,
    pub problems: Vec<Problem>,
}

impl FileProblems {
    /// Renders every problem, then a summary line, as the terminal shows them.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let source = NamedSource::new(self.name.clone(), self.text.clone());
        let mut out = String::new();
        for problem in &self.problems {
            let shown = Problem {
                message: capped(&problem.message),
                help: problem.help.as_deref().map(capped),
                ..problem.clone()
            };
            let snippet = problem
                .at
                .map(|at| Snippet::around(&source, &self.name, &self.text, at));
            let report = Located {
                problem: &shown,
                snippet: snippet.as_ref(),
            };
            if handler.render_report(&mut out, &report).is_err() {
                out.push_str(&format!("error: {}\n", shown.message));
            }
            out.push('\n');
        }
        let n = self.problems.len();
        out.push_str(&format!(
            "error: `{}` has {n} problem{}; nothing was changed\n",
            self.name,
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for FileProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` has {} problem(s)", self.name, self.problems.len())
    }
}

impl std::error::Error for FileProblems {}

/// Longest message or help handed to the renderer, in characters: one quoting a hostile
/// file's megabyte-long value says enough in its first few hundred.
const MAX_MESSAGE_CHARS: usize = 400;

fn capped(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Longest source line quoted whole, in characters; a longer one is quoted as a window.
const MAX_QUOTED_LINE: usize = 240;
/// Most lines one problem's span may cover before only its first line is quoted.
const MAX_QUOTED_SPAN_LINES: usize = 20;
/// Characters of a long line quoted around the problem.
const WINDOW_CHARS: usize = 120;
/// Characters of the window before the start of the problem.
const WINDOW_LEAD: usize = 40;

/// What the renderer quotes for one problem: the file itself, or, when the lines around the
/// problem are too long to show (or to render at all), a window cut out of them.
enum Snippet<'a> {
    Whole {
        source: &'a NamedSource<Arc<String>>,
        span: SourceSpan,
    },
    Window(Window),
}

/// The lines around a problem, each long one cut to [`WINDOW_CHARS`] with `…` where it was
/// cut; the span is re-based into this text, and line numbers and the problem's column are
/// those of the file.
struct Window {
    name: String,
    text: String,
    span: SourceSpan,
    /// The 0-based line of the file the window's first line is.
    first_line: usize,
    /// The 0-based line of the window the span starts on.
    span_line: usize,
    /// The 0-based column of the span's start in the file.
    column: usize,
}

impl<'a> Snippet<'a> {
    fn around(source: &'a NamedSource<Arc<String>>, name: &str, text: &str, at: At) -> Self {
        let start = floor_char(text, at.offset);
        let end = floor_char(text, at.offset.saturating_add(at.len.max(1))).max(start);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let region_start = match line_start.checked_sub(1) {
            Some(newline) => text[..newline].rfind('\n').map_or(0, |i| i + 1),
            None => 0,
        };
        let end_line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
        let region_end = match text.get(end_line_end + 1..) {
            Some(rest) => rest.find('\n').map_or(text.len(), |i| end_line_end + 1 + i),
            None => text.len(),
        };
        let region = &text[region_start..region_end];
        let too_long = region
            .split('\n')
            .any(|line| line.chars().nth(MAX_QUOTED_LINE).is_some());
        let too_tall = text[start..end].matches('\n').count() > MAX_QUOTED_SPAN_LINES;
        if !too_long && !too_tall {
            return Snippet::Whole {
                source,
                span: SourceSpan::new(at.offset.into(), at.len.max(1)),
            };
        }
        Snippet::Window(Window::cut(name, text, at, start, end, line_start))
    }

    fn span(&self) -> SourceSpan {
        match self {
            Snippet::Whole { span, .. } => *span,
            Snippet::Window(w) => w.span,
        }
    }
}

impl Window {
    /// The span's first line with the lines before and after it, each at most a window wide;
    /// a span reaching past its first line (or past the window) is cut there.
    fn cut(name: &str, text: &str, at: At, start: usize, end: usize, line_start: usize) -> Self {
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[line_start..line_end].trim_end_matches('\r');
        let span_start = start - line_start;
        let span_end = (end.min(line_end) - line_start)
            .min(line.len())
            .max(span_start);

        let mut out = String::new();
        let mut first_line = usize::try_from(at.line.saturating_sub(1)).unwrap_or(0);
        let mut span_line = 0;
        if line_start > 0 {
            let before_end = line_start - 1;
            let before_start = text[..before_end].rfind('\n').map_or(0, |i| i + 1);
            out.push_str(&head(text[before_start..before_end].trim_end_matches('\r')));
            out.push('\n');
            first_line = first_line.saturating_sub(1);
            span_line = 1;
        }
        let (shown, from, to) = around(line, span_start, span_end);
        let span = SourceSpan::new((out.len() + from).into(), (to - from).max(1));
        out.push_str(&shown);
        if let Some(rest) = text.get(line_end + 1..) {
            let after = rest.split('\n').next().unwrap_or("");
            if !after.is_empty() || rest.len() > after.len() {
                out.push('\n');
                out.push_str(&head(after.trim_end_matches('\r')));
            }
        }
        Self {
            name: name.to_owned(),
            text: out,
            span,
            first_line,
            span_line,
            column: usize::try_from(at.column.saturating_sub(1)).unwrap_or(0),
        }
    }
}

/// The largest char boundary of `text` at or before `offset`.
fn floor_char(text: &str, offset: usize) -> usize {
    text.floor_char_boundary(offset.min(text.len()))
}

/// The first [`WINDOW_CHARS`] characters of a context line.
fn head(line: &str) -> String {
    match line.char_indices().nth(WINDOW_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// A window of `line` around the byte range `from..to`: the shown text, and the range's
/// bytes within it (cut to the window).
fn around(line: &str, from: usize, to: usize) -> (String, usize, usize) {
    if line.chars().nth(MAX_QUOTED_LINE).is_none() {
        return (line.to_owned(), from, to);
    }
    let lead_start = line[..from]
        .char_indices()
        .rev()
        .nth(WINDOW_LEAD - 1)
        .map_or(0, |(i, _)| i);
    let window_end = line[lead_start..]
        .char_indices()
        .nth(WINDOW_CHARS)
        .map_or(line.len(), |(i, _)| lead_start + i);
    // Near the end of the line, the window takes more of what comes before.
    let window_start = if window_end == line.len() {
        line.char_indices()
            .rev()
            .nth(WINDOW_CHARS - 1)
            .map_or(0, |(i, _)| i)
            .min(lead_start)
    } else {
        lead_start
    };
    let prefix = if window_start > 0 { "…" } else { "" };
    let suffix = if window_end < line.len() { "…" } else { "" };
    let shown = format!("{prefix}{}{suffix}", &line[window_start..window_end]);
    let rebase = |at: usize| prefix.len() + at.clamp(window_start, window_end) - window_start;
    (shown, rebase(from), rebase(to))
}

impl SourceCode for Snippet<'_> {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        match self {
            Snippet::Whole { source, .. } => {
                source.read_span(span, context_lines_before, context_lines_after)
            }
            Snippet::Window(w) => {
                let inner =
                    w.text
                        .as_str()
                        .read_span(span, context_lines_before, context_lines_after)?;
                // The column is the file's on the problem's own line, not the window's.
                let column = if context_lines_before == 0 && inner.line() == w.span_line {
                    w.column
                } else {
                    inner.column()
                };
                Ok(Box::new(MietteSpanContents::new_named(
                    w.name.clone(),
                    inner.data(),
                    *inner.span(),
                    inner.line() + w.first_line,
                    column,
                    inner.line_count() + w.first_line,
                )))
            }
        }
    }
}

/// A problem paired with what to quote, in the shape miette renders.
struct Located<'a> {
    problem: &'a Problem,
    snippet: Option<&'a Snippet<'a>>,
}

impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.fmt(f)
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for Located<'_> {}

impl Diagnostic for Located<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.problem.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.snippet.map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.snippet?.span();
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".to_owned()),
            span,
        ))))
    }
}

/// An error's message followed by its `help` on a line of its own (`help: …`), for the places
/// that report a typed error as text (the executor's per-model errors, a plan's reasons).
pub fn with_help(error: &dyn miette::Diagnostic) -> String {
    match error.help() {
        Some(help) => format!("{error}\nhelp: {help}"),
        None => error.to_string(),
    }
}

/// The closest candidate to `input`, if one is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_problem(text: &str, offset: usize, len: usize, line: u64, column: u64) -> String {
        FileProblems {
            name: "models.yaml".to_owned(),
            text: Arc::new(text.to_owned()),
            problems: vec![Problem {
                code: "manifest::unknown_key",
                message: "unknown key `bogus`".to_owned(),
                at: Some(At {
                    line,
                    column,
                    offset,
                    len,
                }),
                help: None,
            }],
        }
        .render(false)
    }

    #[test]
    fn a_problem_on_a_very_long_line_is_quoted_from_a_window_of_it() {
        let line = format!("a: {{ d: {}, bogus: 1 }}", "x".repeat(70_000));
        let text = format!("version: 1\n{line}\nnext: 1\n");
        let offset = text.find("bogus").expect("bogus");
        let column = line.find("bogus").expect("bogus") as u64 + 1;
        let out = one_problem(&text, offset, 5, 2, column);
        assert!(out.contains(&format!("[models.yaml:2:{column}]")), "{out}");
        assert!(out.contains(" 1 │ version: 1"), "{out}");
        assert!(out.contains(" 2 │ …xxx"), "{out}");
        assert!(out.contains(", bogus: 1 }"), "{out}");
        assert!(out.contains(" 3 │ next: 1"), "{out}");
        assert!(out.lines().all(|l| l.chars().count() < 200), "{out}");
        let underline = out.lines().find(|l| l.contains('┬')).expect("underline");
        let quoted = out.lines().find(|l| l.contains("bogus: 1")).expect("line");
        let at = |l: &str, c: char| l.chars().position(|x| x == c);
        assert_eq!(
            at(underline, '─'),
            quoted.find("bogus").map(|b| quoted[..b].chars().count()),
            "the underline is under `bogus`:\n{out}"
        );
    }

    #[test]
    fn a_long_span_and_long_neighbours_are_cut_too() {
        let long = "y".repeat(100_000);
        let text = format!("{long}\nkey: {long}\n{long}");
        let offset = text.find("key").expect("key") + 5;
        let out = one_problem(&text, offset, long.len(), 2, 6);
        assert!(out.contains("[models.yaml:2:6]"), "{out}");
        assert!(out.lines().all(|l| l.chars().count() < 200), "{out}");
        assert_eq!(out.matches('…').count(), 3, "{out}");
        // Offsets past the end or inside a character are no reason to fail either.
        let text = format!("é{long}");
        let out = one_problem(&text, 1, 10, 1, 1);
        assert!(out.contains("models.yaml:1:1"), "{out}");
        let out = one_problem(&text, text.len() + 10, 10, 1, 1);
        assert!(out.contains("unknown key"), "{out}");
    }

    #[test]
    fn a_message_quoting_a_huge_value_is_cut() {
        let huge = format!("unknown type `{}`", "t".repeat(1 << 20));
        let out = FileProblems {
            name: "models.yaml".to_owned(),
            text: Arc::new(String::new()),
            problems: vec![Problem {
                code: "manifest::unknown_type",
                message: huge.clone(),
                at: None,
                help: Some(huge),
            }],
        }
        .render(false);
        assert!(out.len() < 4 * MAX_MESSAGE_CHARS, "{} bytes", out.len());
        assert!(out.contains('…'), "{out}");
    }

    #[test]
    fn closest_finds_typos_and_ignores_strangers() {
        let keys = ["sha256", "md5", "size"];
        assert_eq!(closest("sha265", keys), Some("sha256"));
        assert_eq!(closest("sise", keys), Some("size"));
        assert_eq!(closest("checksum", keys), None);
    }
}
