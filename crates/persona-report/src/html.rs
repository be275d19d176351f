//! One self-contained HTML page per run.
//!
//! A report must still open in ten years, on a laptop without network, attached to an e-mail:
//! so the page carries everything itself — CSS in a `<style>` element, plots as inline `<svg>`,
//! no scripts, no fonts, no links to anything. Text from the run (trait names, questions, model
//! answers, commands) is escaped everywhere, so no string can break the page.
//!
//! ```
//! use persona_report::html::Report;
//! let mut r = Report::new("persona extract evil");
//! r.code("persona extract evil --layer 20")
//!     .heading(2, "Scores")
//!     .table(&["layer", "mean diff"], vec![vec!["20".into(), "3.25".into()]]);
//! let page = r.to_html();
//! assert!(page.starts_with("<!DOCTYPE html>"));
//! ```

use crate::escape;
use std::fmt::Write;
use std::path::Path;

/// A report under construction: blocks are rendered in the order they are added.
///
/// The methods take `&mut self` and return it, so calls chain and also work inside loops.
#[derive(Clone, Debug, Default)]
pub struct Report {
    title: String,
    body: String,
}

impl Report {
    /// A report whose page title and top heading are `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: title.into(),
            body: String::new(),
        }
    }

    /// A section heading; `level` is clamped to 1..=6 (the title is the only level 1 by
    /// convention, so sections usually start at 2).
    pub fn heading(&mut self, level: u8, text: &str) -> &mut Self {
        let l = level.clamp(1, 6);
        let _ = writeln!(self.body, "<h{l}>{}</h{l}>", escape(text));
        self
    }

    /// A paragraph of plain text. Blank lines split it into several paragraphs.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
            let _ = writeln!(self.body, "<p>{}</p>", escape(para.trim()));
        }
        self
    }

    /// A bulleted list of plain-text items.
    pub fn list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.body.push_str("<ul>\n");
        for item in items {
            let _ = writeln!(self.body, "<li>{}</li>", escape(item.as_ref()));
        }
        self.body.push_str("</ul>\n");
        self
    }

    /// A two-column table of settings or facts (model, hash, seed, layer, …): keys on the
    /// left as row headers, values on the right.
    pub fn key_values<K: AsRef<str>, V: AsRef<str>>(&mut self, pairs: &[(K, V)]) -> &mut Self {
        self.body.push_str("<table class=\"kv\"><tbody>\n");
        for (k, v) in pairs {
            let _ = writeln!(
                self.body,
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                escape(k.as_ref()),
                escape(v.as_ref())
            );
        }
        self.body.push_str("</tbody></table>\n");
        self
    }

    /// A data table. Columns whose cells are all numbers (empty, "-" and "n/a" allowed) are
    /// right-aligned with tabular digits, so magnitudes line up and compare at a glance. Short
    /// rows are padded with empty cells; long ones keep their extra cells.
    pub fn table(&mut self, headers: &[&str], rows: Vec<Vec<String>>) -> &mut Self {
        let n_cols = rows
            .iter()
            .map(|r| r.len())
            .chain([headers.len()])
            .max()
            .unwrap_or(0);
        let numeric: Vec<bool> = (0..n_cols)
            .map(|c| {
                let cells: Vec<&str> = rows
                    .iter()
                    .filter_map(|r| r.get(c).map(|s| s.trim()))
                    .filter(|s| !is_blank_cell(s))
                    .collect();
                !cells.is_empty() && cells.iter().all(|s| is_number(s))
            })
            .collect();
        let class = |c: usize| if numeric[c] { " class=\"num\"" } else { "" };
        self.body.push_str("<div class=\"table-wrap\"><table>\n");
        if !headers.is_empty() {
            self.head(n_cols, |c| headers.get(c).copied().unwrap_or(""), class);
        }
        self.body.push_str("<tbody>\n");
        for row in &rows {
            self.body.push_str("<tr>");
            for c in 0..n_cols {
                let cell = row.get(c).map(String::as_str).unwrap_or("");
                let _ = write!(self.body, "<td{}>{}</td>", class(c), escape(cell));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table></div>\n");
        self
    }

    /// Embeds an SVG document (from [`crate::svg`]) inline. An XML declaration or DOCTYPE in
    /// front of the `<svg>` element is dropped, since neither is allowed inside HTML. The SVG
    /// itself is trusted markup: pass only SVG this crate (or other trusted code) produced.
    pub fn svg(&mut self, svg: &str) -> &mut Self {
        self.figure(svg, "")
    }

    /// Like [`Report::svg`], with a caption under the plot (escaped text).
    pub fn figure(&mut self, svg: &str, caption: &str) -> &mut Self {
        let start = svg.find("<svg").unwrap_or(0);
        self.body.push_str("<figure>\n");
        self.body.push_str(svg[start..].trim());
        self.body.push('\n');
        if !caption.is_empty() {
            let _ = writeln!(self.body, "<figcaption>{}</figcaption>", escape(caption));
        }
        self.body.push_str("</figure>\n");
        self
    }

    /// A table head of `n_cols` column headings, `class` giving each its class attribute.
    fn head<'a>(
        &mut self,
        n_cols: usize,
        heading: impl Fn(usize) -> &'a str,
        class: impl Fn(usize) -> &'static str,
    ) {
        self.body.push_str("<thead><tr>");
        for c in 0..n_cols {
            let _ = write!(
                self.body,
                "<th scope=\"col\"{}>{}</th>",
                class(c),
                escape(heading(c))
            );
        }
        self.body.push_str("</tr></thead>\n");
    }

    /// Model answers side by side (see [`AnswerGrid`]): each row's heading (the prompt) spans
    /// the grid, its answers sit below it in the grid's columns. Wide grids scroll sideways
    /// rather than squeezing answers into slivers.
    pub fn answers(&mut self, grid: &AnswerGrid) -> &mut Self {
        let n_cols = grid
            .rows
            .iter()
            .map(|r| r.cells.len())
            .chain([grid.columns.len()])
            .max()
            .unwrap_or(0)
            .max(1);
        let class = |c: usize| {
            if grid.reference == Some(c) {
                " class=\"reference\""
            } else {
                ""
            }
        };
        let _ = writeln!(
            self.body,
            "<div class=\"table-wrap\"><table class=\"answers\" style=\"min-width: {}em\">",
            n_cols * 14
        );
        if !grid.columns.is_empty() {
            self.head(
                n_cols,
                |c| grid.columns.get(c).map(String::as_str).unwrap_or(""),
                class,
            );
        }
        self.body.push_str("<tbody>\n");
        for row in &grid.rows {
            if !row.heading.is_empty() {
                let _ = writeln!(
                    self.body,
                    "<tr class=\"prompt\"><th scope=\"rowgroup\" colspan=\"{n_cols}\">{}</th></tr>",
                    escape(&row.heading)
                );
            }
            self.body.push_str("<tr>");
            for c in 0..n_cols {
                match row.cells.get(c).and_then(Option::as_ref) {
                    Some(e) => {
                        let _ = write!(self.body, "<td{}>{}</td>", class(c), excerpt_html(e));
                    }
                    None => {
                        let _ = write!(
                            self.body,
                            "<td{}><span class=\"missing\">–</span></td>",
                            class(c)
                        );
                    }
                }
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table></div>\n");
        self
    }

    /// A preformatted block, e.g. the exact command line that produced the run, so the report
    /// says how to reproduce itself.
    pub fn code(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<pre><code>{}</code></pre>", escape(text));
        self
    }

    /// The complete page.
    pub fn to_html(&self) -> String {
        let mut out = String::with_capacity(self.body.len() + STYLE.len() + 512);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        let _ = writeln!(out, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>\n<main>");
        let _ = writeln!(out, "<h1>{}</h1>", escape(&self.title));
        out.push_str(&self.body);
        let _ = writeln!(
            out,
            "<footer>Written by persona-report {}.</footer>\n</main>\n</body>\n</html>",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    /// Writes the page to `path` atomically (see [`persona_core::fs`]).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), persona_core::fs::WriteError> {
        persona_core::fs::write_atomic(path, self.to_html().as_bytes())
    }
}

/// Answers up to this many characters are shown whole; longer ones show their start and open
/// to the whole text.
pub const PREVIEW_CHARS: usize = 280;

/// A piece of model output on a report page, with a short note on it (its scores, its
/// setting). Text is shown as written (line breaks kept), escaped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Excerpt {
    pub text: String,
    pub note: String,
}

/// One prompt's answers across a grid's columns; `None` where the run has no answer there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerRow {
    /// The prompt (or the turn) the answers reply to, shown above them.
    pub heading: String,
    pub cells: Vec<Option<Excerpt>>,
}

/// Answers side by side, one column per setting (steering coefficients, cap settings, …):
/// what a reader needs to see what a vector does, not just that a score moved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerGrid {
    pub columns: Vec<String>,
    /// The column the others are read against (the unsteered answers), shaded.
    pub reference: Option<usize>,
    pub rows: Vec<AnswerRow>,
}

/// The start of `text` for a preview: the first [`PREVIEW_CHARS`] characters, cut back to the
/// last space when there is one in the second half; `None` when the text is short enough.
fn preview(text: &str) -> Option<&str> {
    let (cut, _) = text.char_indices().nth(PREVIEW_CHARS)?;
    let head = &text[..cut];
    Some(match head.rfind(char::is_whitespace) {
        Some(space) if space > cut / 2 => head[..space].trim_end(),
        _ => head,
    })
}

fn excerpt_html(e: &Excerpt) -> String {
    let mut out = String::from("<div class=\"excerpt\">");
    if !e.note.is_empty() {
        let _ = write!(out, "<div class=\"note\">{}</div>", escape(&e.note));
    }
    let text = e.text.trim();
    if text.is_empty() {
        out.push_str("<div class=\"text empty\">(empty answer)</div>");
    } else if let Some(head) = preview(text) {
        let _ = write!(
            out,
            "<details class=\"text\"><summary><span class=\"preview\">{}</span><span class=\"more\">… show all {} characters</span></summary>{}</details>",
            escape(head),
            text.chars().count(),
            escape(text)
        );
    } else {
        let _ = write!(out, "<div class=\"text\">{}</div>", escape(text));
    }
    out.push_str("</div>");
    out
}

fn is_blank_cell(s: &str) -> bool {
    matches!(s, "" | "-" | "—" | "n/a" | "NA")
}

/// A cell that reads as a number: a plain or scientific float, optionally with a trailing `%`
/// or a leading `+` (as in "+3.5" for a change).
fn is_number(s: &str) -> bool {
    let s = s.strip_suffix('%').unwrap_or(s).trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    // Rust's parser also accepts "inf" and "NaN", which are numbers here too.
    !s.is_empty() && s.parse::<f64>().is_ok()
}

/// The page's only style sheet: system fonts, a readable measure, quiet tables, and print rules
/// that keep figures and table rows from being split across pages.
const STYLE: &str = r#"
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #1a1a1a;
  font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.6em; padding-bottom: 0.25em; border-bottom: 2px solid #0072B2; }
h2 { font-size: 1.3em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.15em; }
h3, h4, h5, h6 { font-size: 1.05em; margin: 1.3em 0 0.4em; }
p { margin: 0.5em 0; max-width: 75ch; }
pre { background: #f5f5f5; border: 1px solid #e2e2e2; border-radius: 4px; padding: 10px 12px;
  overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; }
.table-wrap { overflow-x: auto; margin: 0.6em 0 1em; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #999; background: #fafafa; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv { margin: 0.6em 0 1em; }
table.kv th { font-weight: 600; color: #444; white-space: nowrap; }
table.kv td { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; word-break: break-all; }
figure { margin: 1em 0 1.4em; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
table.answers { table-layout: fixed; width: 100%; }
table.answers tbody tr:nth-child(even) { background: none; }
table.answers td { border: 1px solid #e4e4e4; padding: 6px 8px; }
table.answers tr.prompt th { font-weight: 600; background: #eef3f8; border-top: 2px solid #c9d6e3; }
table.answers .reference { background: #f3f8fc; }
.excerpt .note { color: #666; font-size: 0.85em; margin-bottom: 3px; font-variant-numeric: tabular-nums; }
.excerpt .text { white-space: pre-wrap; overflow-wrap: anywhere; }
.excerpt .empty, .answers .missing { color: #999; font-style: italic; }
.excerpt summary { cursor: pointer; }
.excerpt summary .more { color: #0072B2; white-space: nowrap; }
.excerpt details[open] > summary .preview, .excerpt details[open] > summary .more { display: none; }
.excerpt details[open] > summary::after { content: "show less"; color: #0072B2; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; border-top: 1px solid #eee; padding-top: 0.5em; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h1, h2, h3 { break-after: avoid; }
  figure, tr, pre { break-inside: avoid; }
  tbody tr:nth-child(even), thead th, pre { background: none; }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_recognised() {
        for s in ["1", "-2.5", "+3", "1e-3", "45%", "NaN", "inf"] {
            assert!(is_number(s), "{s}");
        }
        for s in ["", "abc", "1.2.3", "12 apples", "%"] {
            assert!(!is_number(s), "{s}");
        }
    }
}
