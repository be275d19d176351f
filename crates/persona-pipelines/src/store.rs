//! Where a pipeline's artifacts and caches go. A pipeline never opens a file itself: it hands
//! named artifacts (`steer.json`, `steer.svg`, `roles/pirate.safetensors`) and appends cache
//! records (`answers_cache.jsonl`) to a [`RunStore`]. [`DirStore`] writes them atomically under
//! a run folder and holds the folder's lock; [`MemoryStore`] keeps them in memory for tests, the
//! server and the Python package. Names are relative, `/`-separated paths.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use persona_core::fs::{write_atomic, AtomicFile, WriteError};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the run folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line} is not a readable record ({reason}): delete that line (the rest of the cache is kept) and rerun")]
    CorruptCache {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "{path} is not the result file `{writer}` writes ({reason}); rerun `{rerun}` to rewrite it"
    )]
    Unreadable {
        path: PathBuf,
        reason: String,
        /// The command that writes the file.
        writer: String,
        /// The command line that rewrites it.
        rerun: String,
    },
    #[error("the run folder {dir} is in use by process {pid} ({command}): wait for it to finish, or give this run another folder")]
    Busy {
        dir: PathBuf,
        pid: u32,
        command: String,
    },
    #[error("artifact name `{0}` must be a relative path inside the run folder")]
    BadName(String),
}

impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> StoreError {
        StoreError::Write {
            path: e.path,
            source: e.source,
        }
    }
}

/// Named artifacts and append-only caches of one run.
pub trait RunStore: Sync {
    /// The folder results name as their output folder (empty for a store in memory).
    fn dir(&self) -> PathBuf;
    /// The path results name for artifact `name`: a file under the run folder, or the name
    /// itself for a store in memory.
    fn path(&self, name: &str) -> PathBuf;
    /// Writes an artifact whole; a crash leaves the old one or the new one.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, StoreError>;
    /// An artifact, or `None` when there is none.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The complete, non-empty lines of a cache log with their 1-based line numbers. A torn
    /// last line (a run killed mid-write) is dropped, so later appends start on a clean line.
    fn cache_lines(&self, name: &str) -> Result<Vec<(usize, String)>, StoreError>;
    /// Appends lines to a cache log, each on its own line, flushed before returning.
    fn append_lines(&self, name: &str, lines: &[String]) -> Result<(), StoreError>;
    /// A streaming writer for an artifact too large to build in memory (a filtered dataset);
    /// nothing is visible under `name` until it is committed.
    fn create(&self, name: &str) -> Result<Box<dyn ArtifactWriter + '_>, StoreError>;
}

/// An artifact being written; [`ArtifactWriter::commit`] makes it appear whole.
pub trait ArtifactWriter: Write {
    fn commit(self: Box<Self>) -> Result<PathBuf, StoreError>;
}

impl ArtifactWriter for AtomicFile {
    fn commit(self: Box<Self>) -> Result<PathBuf, StoreError> {
        let path = self.path().to_path_buf();
        AtomicFile::commit(*self)?;
        Ok(path)
    }
}

struct MemoryWriter<'a> {
    store: &'a MemoryStore,
    name: String,
    bytes: Vec<u8>,
}

impl Write for MemoryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ArtifactWriter for MemoryWriter<'_> {
    fn commit(self: Box<Self>) -> Result<PathBuf, StoreError> {
        self.store.put(&self.name, &self.bytes)
    }
}

/// The records of cache `name`, parsed; a bad line is an error naming it.
pub fn read_records<T: DeserializeOwned>(
    store: &dyn RunStore,
    name: &str,
) -> Result<Vec<T>, StoreError> {
    store
        .cache_lines(name)?
        .iter()
        .map(|(line, text)| {
            serde_json::from_str(text).map_err(|e| StoreError::CorruptCache {
                path: store.path(name),
                line: *line,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Appends records to cache `name`, one JSON line each.
pub fn append_records<T: Serialize>(
    store: &dyn RunStore,
    name: &str,
    records: &[T],
) -> Result<(), StoreError> {
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("cache records serialize"))
        .collect();
    store.append_lines(name, &lines)
}

/// Writes a result as pretty JSON.
pub fn put_json<T: Serialize>(
    store: &dyn RunStore,
    name: &str,
    value: &T,
) -> Result<PathBuf, StoreError> {
    let json = serde_json::to_string_pretty(value).expect("results serialize");
    store.put(name, json.as_bytes())
}

/// Writes one JSON line per row.
pub fn put_jsonl<T: Serialize>(
    store: &dyn RunStore,
    name: &str,
    rows: impl IntoIterator<Item = T>,
) -> Result<PathBuf, StoreError> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(&row).expect("result rows serialize"));
        text.push('\n');
    }
    store.put(name, text.as_bytes())
}

/// Writes a CSV table: a header and rows of cells.
pub fn put_csv(
    store: &dyn RunStore,
    name: &str,
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<PathBuf, StoreError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| StoreError::Write {
        path: store.path(name),
        source: std::io::Error::other(e.to_string()),
    };
    w.write_record(header).map_err(err)?;
    for row in rows {
        w.write_record(&row).map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| StoreError::Write {
        path: store.path(name),
        source: e.into_error(),
    })?;
    store.put(name, &bytes)
}

/// Reads a JSON result back through the type that wrote it; `None` when it is not there.
/// `command` names what rewrites the file, for the error when it does not parse.
pub fn get_json<T: DeserializeOwned>(
    store: &dyn RunStore,
    name: &str,
    command: &str,
) -> Result<Option<T>, StoreError> {
    store
        .get(name)?
        .map(|bytes| parse_result(&bytes, &store.path(name), command, command))
        .transpose()
}

/// A result file's bytes as the type that wrote them; a file that does not parse is an error
/// naming it, the command that writes it (`writer`) and the command line that rewrites it.
pub fn parse_result<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    writer: &str,
    rerun: &str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
        writer: writer.to_string(),
        rerun: rerun.to_string(),
    })
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let p = Path::new(name);
    let inside = !name.is_empty()
        && !name.starts_with('/')
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_string()))
    }
}

/// A run folder on disk. Opening it takes `.persona.lock` there (naming this process), so a
/// second run on the same folder is refused instead of redoing and interleaving the work; a
/// lock left by a process that no longer runs is taken over.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    lock: PathBuf,
}

const LOCK_FILE: &str = ".persona.lock";

impl DirStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::CreateDir {
            path: root.clone(),
            source: e,
        })?;
        let lock = root.join(LOCK_FILE);
        let command: Vec<String> = std::env::args().collect();
        let mine = format!("{}\n{}\n", std::process::id(), command.join(" "));
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(mut f) => {
                    f.write_all(mine.as_bytes())
                        .map_err(|e| StoreError::Write {
                            path: lock.clone(),
                            source: e,
                        })?;
                    return Ok(DirStore { root, lock });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&lock).unwrap_or_default();
                    let mut lines = text.lines();
                    let pid = lines.next().and_then(|p| p.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if process_alive(pid) => {
                            return Err(StoreError::Busy {
                                dir: root,
                                pid,
                                command: lines.next().unwrap_or("persona").to_string(),
                            })
                        }
                        // Stale: its process is gone (killed) or the file is unreadable.
                        _ => {
                            let _ = std::fs::remove_file(&lock);
                        }
                    }
                }
                Err(e) => {
                    return Err(StoreError::Write {
                        path: lock,
                        source: e,
                    })
                }
            }
        }
        Err(StoreError::Write {
            path: lock,
            source: std::io::Error::other("another process keeps re-taking the lock"),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| StoreError::CreateDir {
            path: parent.to_path_buf(),
            source: e,
        }),
        None => Ok(()),
    }
}

fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

impl Drop for DirStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

impl RunStore for DirStore {
    fn dir(&self) -> PathBuf {
        self.root.clone()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.file(name)?;
        create_parent(&path)?;
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.file(name)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Read { path, source: e }),
        }
    }

    fn cache_lines(&self, name: &str) -> Result<Vec<(usize, String)>, StoreError> {
        let Some(bytes) = self.get(name)? else {
            return Ok(Vec::new());
        };
        let path = self.path(name);
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(complete as u64))
                .map_err(|e| StoreError::Write {
                    path: path.clone(),
                    source: e,
                })?;
        }
        split_lines(&bytes[..complete], &path)
    }

    fn append_lines(&self, name: &str, lines: &[String]) -> Result<(), StoreError> {
        let path = self.file(name)?;
        create_parent(&path)?;
        let mut text = String::new();
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.flush()))
            .map_err(|e| StoreError::Write { path, source: e })
    }

    fn create(&self, name: &str) -> Result<Box<dyn ArtifactWriter + '_>, StoreError> {
        let path = self.file(name)?;
        create_parent(&path)?;
        Ok(Box::new(AtomicFile::create(&path)?))
    }
}

/// The non-empty lines of a cache as text, each with its 1-based line number; a line that is
/// not UTF-8 is a corrupt line, named.
fn split_lines(bytes: &[u8], path: &Path) -> Result<Vec<(usize, String)>, StoreError> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            persona_io::line_text(l.to_vec(), i + 1)
                .map(|text| (i + 1, text))
                .map_err(|reason| StoreError::CorruptCache {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason,
                })
        })
        .collect()
}

/// Artifacts and caches in memory: what a front end that returns results (the server, the
/// Python package, tests) hands a pipeline.
#[derive(Debug, Default)]
pub struct MemoryStore {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The names held, in order.
    pub fn names(&self) -> Vec<String> {
        self.files
            .lock()
            .expect("store lock")
            .keys()
            .cloned()
            .collect()
    }
}

impl RunStore for MemoryStore {
    fn dir(&self) -> PathBuf {
        PathBuf::new()
    }
    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(name)
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        self.files
            .lock()
            .expect("store lock")
            .insert(name.to_string(), bytes.to_vec());
        Ok(self.path(name))
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name(name)?;
        Ok(self.files.lock().expect("store lock").get(name).cloned())
    }

    fn cache_lines(&self, name: &str) -> Result<Vec<(usize, String)>, StoreError> {
        let Some(bytes) = self.get(name)? else {
            return Ok(Vec::new());
        };
        split_lines(&bytes, &self.path(name))
    }

    fn append_lines(&self, name: &str, lines: &[String]) -> Result<(), StoreError> {
        check_name(name)?;
        let mut files = self.files.lock().expect("store lock");
        let file = files.entry(name.to_string()).or_default();
        for line in lines {
            file.extend_from_slice(line.as_bytes());
            file.push(b'\n');
        }
        Ok(())
    }

    fn create(&self, name: &str) -> Result<Box<dyn ArtifactWriter + '_>, StoreError> {
        check_name(name)?;
        Ok(Box::new(MemoryWriter {
            store: self,
            name: name.to_string(),
            bytes: Vec::new(),
        }))
    }
}

/// A store seen through a sub-folder: `Scoped::new(store, "steer")` puts `steer.json` at
/// `steer/steer.json`.
pub struct Scoped<'a> {
    inner: &'a dyn RunStore,
    prefix: String,
}

impl<'a> Scoped<'a> {
    pub fn new(inner: &'a dyn RunStore, prefix: &str) -> Self {
        Scoped {
            inner,
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }
}

impl RunStore for Scoped<'_> {
    fn dir(&self) -> PathBuf {
        self.inner.path(&self.prefix)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.inner.path(&self.name(name))
    }
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        self.inner.put(&self.name(name), bytes)
    }
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name(name)?;
        self.inner.get(&self.name(name))
    }
    fn cache_lines(&self, name: &str) -> Result<Vec<(usize, String)>, StoreError> {
        check_name(name)?;
        self.inner.cache_lines(&self.name(name))
    }
    fn append_lines(&self, name: &str, lines: &[String]) -> Result<(), StoreError> {
        check_name(name)?;
        self.inner.append_lines(&self.name(name), lines)
    }
    fn create(&self, name: &str) -> Result<Box<dyn ArtifactWriter + '_>, StoreError> {
        check_name(name)?;
        self.inner.create(&self.name(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Rec {
        k: String,
        v: u32,
    }

    fn roundtrip(store: &dyn RunStore) {
        let recs = vec![
            Rec {
                k: "a".into(),
                v: 1,
            },
            Rec {
                k: "b".into(),
                v: 2,
            },
        ];
        append_records(store, "c/cache.jsonl", &recs[..1]).unwrap();
        append_records(store, "c/cache.jsonl", &recs[1..]).unwrap();
        assert_eq!(read_records::<Rec>(store, "c/cache.jsonl").unwrap(), recs);
        put_json(store, "r.json", &recs[0]).unwrap();
        assert_eq!(
            get_json::<Rec>(store, "r.json", "x").unwrap(),
            Some(Rec {
                k: "a".into(),
                v: 1
            })
        );
        assert_eq!(get_json::<Rec>(store, "none.json", "x").unwrap(), None);
        store.put("bad.json", b"{\"k\": 1}").unwrap();
        let e = get_json::<Rec>(store, "bad.json", "persona steer T")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.json") && e.contains("persona steer T"),
            "{e}"
        );
        put_csv(
            store,
            "t.csv",
            &["name", "x"],
            [vec!["a, \"quoted\"".to_string(), "1".to_string()]],
        )
        .unwrap();
        assert_eq!(
            store.get("t.csv").unwrap().unwrap(),
            b"name,x\n\"a, \"\"quoted\"\"\",1\n"
        );
        for bad in ["../x", "/etc/passwd", ""] {
            assert!(store.put(bad, b"x").is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_and_dir_stores_keep_the_same_records() {
        roundtrip(&MemoryStore::new());
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path().join("run")).unwrap();
        roundtrip(&store);
        roundtrip(&Scoped::new(&store, "sub"));
        assert!(dir.path().join("run/sub/c/cache.jsonl").exists());
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let path = dir.path().join("cache.jsonl");
        std::fs::write(&path, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\"").unwrap();
        assert_eq!(read_records::<Rec>(&store, "cache.jsonl").unwrap().len(), 1);
        append_records(
            &store,
            "cache.jsonl",
            &[Rec {
                k: "c".into(),
                v: 3,
            }],
        )
        .unwrap();
        assert_eq!(read_records::<Rec>(&store, "cache.jsonl").unwrap().len(), 2);
        std::fs::write(
            &path,
            "{\"k\":\"a\",\"v\":1}\ngarbage\n{\"k\":\"b\",\"v\":2}\n",
        )
        .unwrap();
        let e = read_records::<Rec>(&store, "cache.jsonl")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("delete that line"),
            "{e}"
        );
        // Blank lines count: the bad line is named by its place in the file.
        std::fs::write(&path, "{\"k\":\"a\",\"v\":1}\n\ngarbage\n").unwrap();
        let e = read_records::<Rec>(&store, "cache.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn a_second_store_on_a_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirStore::open(dir.path()).unwrap();
        let e = DirStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&std::process::id().to_string()) && e.contains("in use"),
            "{e}"
        );
        drop(first);
        let _again = DirStore::open(dir.path()).unwrap();
        // A lock left by a process that is gone is taken over.
        drop(_again);
        std::fs::write(dir.path().join(LOCK_FILE), "999999999\npersona steer\n").unwrap();
        DirStore::open(dir.path()).unwrap();
    }
}
