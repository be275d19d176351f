//! The one way persona writes a result file: atomically, so that a reader — or the next run
//! after a crash, a kill or a full disk — finds either the old file or the complete new one,
//! never half of one.
//!
//! The bytes go to a hidden temporary file in the same folder (a rename is only atomic within
//! one file system), which is flushed to disk and then renamed over the path. On any error, and
//! when an [`AtomicFile`] is dropped without [`AtomicFile::commit`], the temporary file is
//! removed and the path left untouched. (A process killed outright cannot remove it: what it
//! leaves is a hidden `.NAME.PID-N.part` file beside the path, never a half-written `NAME`.)
//!
//! Files are created with the usual permissions (0o666 less the umask), like any file a program
//! writes — not the owner-only 0o600 of temporary-file crates. The folder must exist: creating
//! folders is the caller's decision.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically (see the [module](self) documentation).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), WriteError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes).map_err(|e| file.error(e))?;
    file.commit()
}

/// A file written in pieces (large outputs streamed out) that appears at its path only when
/// [`commit`](AtomicFile::commit)ted. Writes are buffered. Dropped without a commit, the
/// temporary file is removed and the path left as it was.
pub struct AtomicFile {
    /// `None` once committed.
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts the file that will replace `path`: a new temporary file beside it.
    pub fn create(path: impl AsRef<Path>) -> Result<AtomicFile, WriteError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = path.as_ref();
        let fail = |source| WriteError {
            path: path.to_path_buf(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path (it has no file name)",
            ))
        })?;
        // Caught now rather than by the rename, after what may be gigabytes of writing.
        if path.is_dir() {
            return Err(fail(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a folder",
            )));
        }
        let dir = folder_of(path);
        loop {
            // Process id + counter: two writers (threads or processes) never share a temporary
            // file; one left by a killed process with a reused id is stepped over.
            let tmp = dir.join(format!(
                ".{}.{}-{}.part",
                name.to_string_lossy(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file: Some(BufWriter::new(file)),
                        tmp,
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fail(e)),
            }
        }
    }

    /// The path the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `source` as an error writing this file: a write error, named with the path.
    pub fn error(&self, source: io::Error) -> WriteError {
        WriteError {
            path: self.path.clone(),
            source,
        }
    }

    /// Flushes the bytes to disk and moves the file into place; on an error the temporary file
    /// is removed and the path left as it was.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let file = self.file.take().expect("an AtomicFile is committed once");
        let result = (|| {
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&self.tmp, &self.path)
        })();
        match result {
            Ok(()) => {
                // Best effort: makes the rename itself durable where the file system allows.
                #[cfg(unix)]
                if let Ok(dir) = File::open(folder_of(&self.path)) {
                    let _ = dir.sync_all();
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.tmp);
                Err(self.error(e))
            }
        }
    }

    fn inner(&mut self) -> &mut BufWriter<File> {
        self.file
            .as_mut()
            .expect("an AtomicFile is usable until committed")
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

/// For formats that write a header and come back to it (GGUF).
impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner().seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            drop(file);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A file that could not be written, and why.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
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
        let e = write_atomic(&path, b"x").unwrap_err();
        assert!(!path.exists());
        assert!(!dir.path().join("missing").exists());
        assert_eq!(e.path, path);
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("x.svg"), "{e}");
        assert!(write_atomic(dir.path().join(".."), b"x").is_err());
    }

    #[test]
    fn replaces_leaves_no_part_file_and_names_a_path_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traits/gloomy.toml");
        std::fs::create_dir(dir.path().join("traits")).unwrap();
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["gloomy.toml".to_string()]);
        let e = write_atomic(dir.path().join("traits/gloomy.toml/x"), b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gloomy.toml"), "{e}");

        let e = write_atomic(dir.path().join("traits"), b"x").unwrap_err();
        assert!(e.to_string().contains("traits"), "{e}");
        assert!(dir.path().join("traits").is_dir());
        assert_eq!(names_in(&dir.path().join("traits")), ["gloomy.toml"]);
    }

    #[test]
    fn an_uncommitted_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("top.jsonl");
        write_atomic(&path, b"old").unwrap();
        let mut w = AtomicFile::create(&path).unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A serializer that fails halfway, as a full disk or a bad value would.
    fn half_then_fail(w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[7u8; 100_000])?;
        Err(io::Error::other("the serializer gave up"))
    }

    #[test]
    fn a_write_that_fails_midway_leaves_the_old_file_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.safetensors");
        let mut w = AtomicFile::create(&fresh).unwrap();
        let e = half_then_fail(&mut w).map_err(|e| w.error(e)).unwrap_err();
        assert_eq!(e.path, fresh);
        drop(w);
        assert!(names_in(dir.path()).is_empty());

        let old = dir.path().join("old.gguf");
        write_atomic(&old, b"old").unwrap();
        let mut w = AtomicFile::create(&old).unwrap();
        assert!(half_then_fail(&mut w).is_err());
        drop(w);
        assert_eq!(std::fs::read(&old).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["old.gguf"]);
    }

    #[test]
    fn streams_seeks_and_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cv.gguf");
        let mut w = AtomicFile::create(&path).unwrap();
        assert_eq!(w.path(), path);
        w.write_all(b"HEAD----").unwrap();
        for _ in 0..1000 {
            w.write_all(b"0123456789").unwrap();
        }
        // Nothing at the path yet, only the hidden temporary file.
        assert!(!path.exists());
        let names = names_in(dir.path());
        assert_eq!(names.len(), 1);
        assert!(
            names[0].starts_with(".cv.gguf.") && names[0].ends_with(".part"),
            "{names:?}"
        );
        assert_eq!(w.stream_position().unwrap(), 10_008);
        w.seek(SeekFrom::Start(4)).unwrap();
        w.write_all(b"1234").unwrap();
        w.commit().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 10_008);
        assert_eq!(&bytes[..10], b"HEAD123401");
        assert_eq!(names_in(dir.path()), ["cv.gguf"]);
    }

    #[test]
    fn two_writers_of_one_path_do_not_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let mut a = AtomicFile::create(&path).unwrap();
        let mut b = AtomicFile::create(&path).unwrap();
        a.write_all(b"a").unwrap();
        b.write_all(b"b").unwrap();
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
        assert_eq!(names_in(dir.path()), ["run.json"]);
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_folder() {
        assert_eq!(folder_of(Path::new("x.json")), Path::new("."));
        assert_eq!(folder_of(Path::new("runs/x.json")), Path::new("runs"));
    }

    #[test]
    fn an_io_error_made_from_it_keeps_the_kind_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/report.html");
        let e: io::Error = write_atomic(&path, b"x").unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("report.html"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn files_get_the_usual_permissions_not_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let atomic = dir.path().join("atomic");
        write_atomic(&atomic, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }
}
