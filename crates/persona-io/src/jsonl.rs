//! Append-only JSONL logs (rollouts, judgements): read back after a crash.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::IoError;

/// One line of a JSONL file as text: the line ending dropped, a UTF-8 byte order mark at the
/// start of the file skipped (editors on Windows write one), invalid UTF-8 refused with
/// where it is.
pub fn line_text(mut bytes: Vec<u8>, line: usize) -> Result<String, String> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if line == 1 && bytes.starts_with("\u{feff}".as_bytes()) {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (at byte {} of the line); save the file as UTF-8",
            e.utf8_error().valid_up_to() + 1
        )
    })
}

/// Every record of the log at `path` (none if it does not exist). A torn last line — a crash
/// mid-write — is cut off the file, so later appends start on a clean line; a bad line
/// anywhere else is an error naming it, and only that line need go.
pub fn read_log<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, IoError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(path).map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut start = 0;
    for (i, raw) in lines.iter().enumerate() {
        let parsed = line_text(raw.to_vec(), i + 1)
            .and_then(|text| serde_json::from_str::<T>(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(start as u64))
                    .map_err(|e| IoError::Write {
                        path: path.to_path_buf(),
                        message: format!("cannot cut off a torn last line ({e})"),
                    })?;
            }
            Err(reason) => {
                return Err(IoError::CacheLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason,
                })
            }
        }
        start += raw.len();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Row {
        id: u32,
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_corrupt_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("answers.jsonl");
        std::fs::write(&p, "{\"id\": 1}\n{\"id\": 2}\n{\"id\"").unwrap();
        let rows: Vec<Row> = read_log(&p).unwrap();
        assert_eq!(rows, [Row { id: 1 }, Row { id: 2 }]);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"id\": 1}\n{\"id\": 2}\n"
        );
        std::fs::write(&p, "{\"id\": 1}\n{\"id\": \"x\"}\n{\"id\": 3}\n").unwrap();
        let e = read_log::<Row>(&p).unwrap_err().to_string();
        assert!(
            e.contains("answers.jsonl, line 2")
                && e.contains("cache")
                && e.contains("delete that line")
                && !e.contains("vector file"),
            "{e}"
        );
        let mut bytes = b"{\"id\": 1}\n{\"id\": 2".to_vec();
        bytes.extend_from_slice(&[0xff, b'}', b'\n', b'{', b'}', b'\n']);
        std::fs::write(&p, bytes).unwrap();
        let e = read_log::<Row>(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
    }
}
