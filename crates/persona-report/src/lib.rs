//! Plots and reports for persona runs, written by hand so that they need nothing at run time.
//!
//! Every run of persona ends with results a person has to look at: a steering sweep's trait
//! score against the coefficient, the roles of the Assistant axis on PC1×PC2, a histogram of
//! projections. This crate turns such numbers into
//!
//! - [`svg`]: standalone SVG strings ([`svg::Chart`] for lines and scatters, [`svg::Histogram`],
//!   [`svg::BarChart`]). They are plain text, diff well, open in any browser and embed in HTML
//!   unchanged — and writing them ourselves keeps the workspace free of plotting crates and
//!   their native font/raster dependencies.
//! - [`html`]: one self-contained HTML page per run ([`html::Report`]) with inline CSS,
//!   inline SVG and model answers side by side ([`html::AnswerGrid`]), so a report can be mailed, archived or opened offline years later and still
//!   show everything it showed on the day.
//!
//! Pages are written with the workspace's atomic writer ([`persona_core::fs`]), so a crash or
//! a full disk never leaves a half-written report that looks complete.
//!
//! All text that reaches SVG or HTML is escaped ([`escape`]): role names, questions and model
//! answers are arbitrary strings and must never break (or inject into) the markup.

pub mod html;
pub mod svg;

/// Escapes `text` for XML and HTML, both in element content and in quoted attribute values.
///
/// Besides `& < > " '` it drops the control characters that XML 1.0 forbids (everything below
/// U+0020 except tab, newline and carriage return, and U+FFFE/U+FFFF): model output can contain
/// them, and a single one makes a whole SVG file unreadable to XML parsers.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_drops_forbidden_controls() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("a\u{0}b\u{7}c\td\ne"), "abc\td\ne");
        assert_eq!(escape("ünïcødé ✓"), "ünïcødé ✓");
    }
}
