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
//! - [`write_atomic`]: so a crash or a full disk never leaves a half-written report that looks
//!   complete.
//!
//! All text that reaches SVG or HTML is escaped ([`escape`]): role names, questions and model
//! answers are arbitrary strings and must never break (or inject into) the markup.

pub mod html;
pub mod svg;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one
/// (see [`AtomicWriter`]).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = AtomicWriter::create(path.as_ref())?;
    w.write_all(bytes)?;
    w.commit()
}

/// A file written in pieces (large outputs streamed out) that appears at its path only when
/// complete: the bytes go to a hidden temporary file in the same folder (a rename is only
/// atomic within one file system), [`AtomicWriter::commit`] flushes it to disk and renames it
/// over the path. Dropped without a commit, or on a failed commit, the temporary file is
/// removed and the path left untouched. The folder must exist: creating folders is the
/// caller's decision.
pub struct AtomicWriter {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl AtomicWriter {
    pub fn create(path: &Path) -> std::io::Result<AtomicWriter> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a file path: {}", path.display()),
            )
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Process id + counter: two writers (threads or processes) never share a temporary
        // file.
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&tmp)?;
        Ok(AtomicWriter {
            file: Some(std::io::BufWriter::new(file)),
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Flushes the bytes to disk and moves the file into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("a writer commits once");
        let result = (|| {
            let f = file.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&self.tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.html")]);
    }

    #[test]
    fn write_atomic_fails_cleanly_when_the_folder_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.svg");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(!path.exists());
        assert!(write_atomic(dir.path().join(".."), b"x").is_err());
    }

    #[test]
    fn an_uncommitted_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("top.jsonl");
        write_atomic(&path, b"old").unwrap();
        let mut w = AtomicWriter::create(&path).unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
