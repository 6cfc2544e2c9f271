//! Problems found in a user's file, and their rendering as rustc-style diagnostics.
//!
//! Validation of `models.yaml` (and reading of `models.lock`) collects every problem of a file
//! instead of stopping at the first, so a user fixes them all in one round. Each problem has a
//! code, a one-line message, the location of the offending value and, where the user can act,
//! a `help:` line. Rendering goes through miette's graphical handler, which prints
//! `file:line:column`, the source line with the value underlined, and the help.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
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
            let report = Located {
                problem,
                source: &source,
            };
            if handler.render_report(&mut out, &report).is_err() {
                out.push_str(&format!("error: {}\n", problem.message));
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

/// A problem paired with its file, in the shape miette renders.
struct Located<'a> {
    problem: &'a Problem,
    source: &'a NamedSource<Arc<String>>,
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
        self.problem
            .at
            .map(|_| self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let at = self.problem.at?;
        let span = SourceSpan::new(at.offset.into(), at.len.max(1));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".to_owned()),
            span,
        ))))
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

    #[test]
    fn closest_finds_typos_and_ignores_strangers() {
        let keys = ["sha256", "md5", "size"];
        assert_eq!(closest("sha265", keys), Some("sha256"));
        assert_eq!(closest("sise", keys), Some("size"));
        assert_eq!(closest("checksum", keys), None);
    }
}
