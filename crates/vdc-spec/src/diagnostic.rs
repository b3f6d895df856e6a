//! Diagnostics: what went wrong in an app file, where (file, line, column),
//! and how to print it for a person.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// A byte range in the source text.
pub(crate) type Span = Range<usize>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about an app file, positioned at the offending key or value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

/// Why an app file was refused: at least one error, plus any warnings, in
/// file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// Diagnostics collected during validation, still as byte spans.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pending: Vec<Pending>,
}

#[derive(Debug)]
struct Pending {
    severity: Severity,
    at: Span,
    message: String,
    help: Option<String>,
}

// === impl Severity ===

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

// === impl Diagnostic ===

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic the way rustc does: the message, the location,
    /// the source line with a caret under the column, and the help.
    pub fn render(&self, source: &str) -> String {
        let mut out = format!("{}: {}\n", self.severity, self.message);
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        out.push_str(&format!(
            "{gutter}--> {}:{}:{}\n",
            self.file, self.line, self.column
        ));
        if let Some(text) = source_line(source, self.line) {
            let (text, column) = window(text, self.column);
            out.push_str(&format!("{gutter} |\n"));
            out.push_str(&format!("{number} | {text}\n"));
            out.push_str(&format!("{gutter} | {}\n", underline(&text, column)));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("{gutter} = help: {help}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    /// One line: `shop.toml:12:5: error: message; help: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "; help: {help}")?;
        }
        Ok(())
    }
}

/// Line `line` (1-based) of `source`, without its line ending.
fn source_line(source: &str, line: usize) -> Option<&str> {
    let text = source.split('\n').nth(line.checked_sub(1)?)?;
    Some(text.strip_suffix('\r').unwrap_or(text))
}

/// At most this many characters of a source line are shown.
const LINE_WIDTH: usize = 160;
/// Characters shown before the column, when the line is cut.
const BEFORE_COLUMN: usize = 60;
/// Messages and help are cut to this many characters (they may quote
/// what the file holds, which can be huge).
const MESSAGE_WIDTH: usize = 300;

/// The part of `text` to show around `column` (1-based), marked with `…`
/// where it was cut, and the column in that part.
fn window(text: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= LINE_WIDTH {
        return (text.to_owned(), column);
    }
    let at = column.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(BEFORE_COLUMN);
    let end = (start + LINE_WIDTH).min(chars.len());
    let mut shown = String::new();
    let mut column = at - start + 1;
    if start > 0 {
        shown.push('…');
        column += 1;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    (shown, column)
}

/// `text` cut to [`MESSAGE_WIDTH`] characters.
fn cut(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MESSAGE_WIDTH) {
        text.truncate(at);
        text.push('…');
    }
    text
}

/// Carets under the token starting at `column` (1-based, in chars): a quoted
/// string, a bare word or number, or a single character. Tabs before it are
/// kept so the carets line up.
fn underline(text: &str, column: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let start = column.saturating_sub(1).min(chars.len());
    let mut out: String = chars[..start]
        .iter()
        .map(|&c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let rest = &chars[start..];
    let len = match rest.first() {
        // A string cut off by the window is underlined to its end.
        Some(&q @ ('"' | '\'')) => rest[1..]
            .iter()
            .position(|&c| c == q)
            .map_or(rest.len(), |end| end + 2),
        Some(c) if is_word(*c) => rest.iter().take_while(|c| is_word(**c)).count(),
        _ => 1,
    };
    out.push_str(&"^".repeat(len));
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+')
}

// === impl Diagnostics ===

impl Diagnostics {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Every diagnostic rendered with [`Diagnostic::render`], separated by
    /// blank lines.
    pub fn render(&self, source: &str) -> String {
        let rendered: Vec<String> = self.0.iter().map(|d| d.render(source)).collect();
        rendered.join("\n")
    }
}

impl fmt::Display for Diagnostics {
    /// One diagnostic per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

// === impl Sink ===

impl Sink {
    pub(crate) fn error(&mut self, at: Span, message: impl Into<String>) {
        self.push(Severity::Error, at, message.into(), None);
    }

    pub(crate) fn error_help(
        &mut self,
        at: Span,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, at, message.into(), Some(help.into()));
    }

    /// An error whose help is optional (a suggestion that may not exist).
    pub(crate) fn error_maybe_help(
        &mut self,
        at: Span,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.push(Severity::Error, at, message.into(), help);
    }

    pub(crate) fn warning(
        &mut self,
        at: Span,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Warning, at, message.into(), Some(help.into()));
    }

    fn push(&mut self, severity: Severity, at: Span, message: String, help: Option<String>) {
        self.pending.push(Pending {
            severity,
            at,
            message: cut(message),
            help: help.map(cut),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.pending.iter().any(|p| p.severity == Severity::Error)
    }

    /// Turns byte spans into lines and columns, in file order (diagnostics at
    /// the same place keep the order they were found in).
    pub(crate) fn finish(self, source: &str, file: &str) -> Vec<Diagnostic> {
        let index = LineIndex::new(source);
        let mut out: Vec<Diagnostic> = self
            .pending
            .into_iter()
            .map(|p| {
                let (line, column) = index.position(source, p.at.start);
                Diagnostic {
                    severity: p.severity,
                    file: file.to_owned(),
                    line,
                    column,
                    message: p.message,
                    help: p.help,
                }
            })
            .collect();
        out.sort_by_key(|d| (d.line, d.column));
        out
    }
}

// === positions ===

/// Byte offsets of line starts, to turn a byte offset into a line and a
/// column.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(source: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based line and 1-based column in characters. Offsets past the end
    /// land at the end; an offset inside a character counts that character.
    pub(crate) fn position(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(source.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = source.get(start..).map_or(0, |rest| {
            rest.char_indices()
                .take_while(|(i, _)| start + i < offset)
                .count()
        });
        (line, column + 1)
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let src = "a = \"é€\" # x\r\nb = 1\n\nc";
        let index = LineIndex::new(src);
        let at = |needle: &str| {
            let offset = src.find(needle).unwrap_or(usize::MAX);
            index.position(src, offset)
        };
        assert_eq!(at("a"), (1, 1));
        assert_eq!(at("#"), (1, 10));
        assert_eq!(at("b"), (2, 1));
        assert_eq!(at("1"), (2, 5));
        assert_eq!(at("c"), (4, 1));
        // Past the end lands at the end.
        assert_eq!(index.position(src, usize::MAX), (4, 2));
        assert_eq!(LineIndex::new("").position("", 0), (1, 1));
    }

    #[test]
    fn render_keeps_tabs_and_underlines_tokens() {
        let d = Diagnostic {
            severity: Severity::Warning,
            file: "x.toml".to_owned(),
            line: 2,
            column: 8,
            message: "something".to_owned(),
            help: None,
        };
        expect![[r#"
            warning: something
             --> x.toml:2:8
              |
            2 | 	key = "a value" # c
              | 	      ^^^^^^^^^
        "#]]
        .assert_eq(&d.render("first\r\n\tkey = \"a value\" # c\r\n"));
        // A position outside the text renders without a snippet.
        expect![[r#"
            warning: something
             --> x.toml:2:8
        "#]]
        .assert_eq(&d.render(""));
        expect!["x.toml:2:8: warning: something"].assert_eq(&d.to_string());
    }
}
