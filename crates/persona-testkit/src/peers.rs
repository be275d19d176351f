//! Test support for the real Python peers: the test venv (llama-cpp-python with its OpenAI-
//! compatible server, safetensors, numpy, gguf) made by `scripts/setup_test_peers.sh`, the
//! default model, and a llama-cpp-python server child process that dies with the test.
//! Tests that need the venv fail (never skip) when it is missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The model the peers run by default (here too, so peer tests import one module).
pub use crate::default_model_path;

/// The test venv: `$PERSONA_TEST_PEERS_VENV`, else
/// `${PERSONA_HOME:-$HOME/.cache/persona}/test-peers-venv` (as the setup script picks it).
pub fn venv_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PERSONA_TEST_PEERS_VENV").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = match std::env::var_os("PERSONA_HOME").filter(|p| !p.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/persona")
        }
    };
    home.join("test-peers-venv")
}

/// The venv's python, checked once to import everything the peer tests use.
pub fn python() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let venv = venv_dir();
            let py = venv.join("bin/python");
            let hint = format!(
                "run `bash scripts/setup_test_peers.sh` (it creates {}; or point \
                 PERSONA_TEST_PEERS_VENV at a venv with llama-cpp-python[server] 0.3.36, \
                 safetensors, numpy and gguf)",
                venv.display()
            );
            assert!(
                py.exists(),
                "no test peer venv at {}: {hint}",
                venv.display()
            );
            let out = Command::new(&py)
                .args([
                    "-c",
                    "import llama_cpp, llama_cpp.server.app, uvicorn, safetensors, numpy, gguf",
                ])
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", py.display()));
            assert!(
                out.status.success(),
                "the test peer venv {} is incomplete: {}\n{hint}",
                venv.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            py
        })
        .clone()
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// `GET path` on 127.0.0.1:port; the status code, or None when nothing answers.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `python -m llama_cpp.server` on a free port, killed when dropped (also on panic).
pub struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LlamaServer {
    /// Starts the server on `model` and waits until `/v1/models` answers.
    pub fn start(model: &Path) -> LlamaServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("a log file");
        let port = free_port();
        let child = Command::new(python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--n_ctx",
                "2048",
                "--n_threads",
                "1",
                "--n_threads_batch",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start llama_cpp.server: {e}"));
        let mut server = LlamaServer {
            child,
            port,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().expect("child status") {
                panic!(
                    "llama_cpp.server exited ({status}) before answering:\n{}",
                    server.log_text()
                );
            }
            if http_get_status(port, "/v1/models") == Some(200) {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                panic!(
                    "llama_cpp.server did not answer /v1/models on port {port} within 120 s:\n{}",
                    server.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// What the server printed so far (for failure messages).
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
