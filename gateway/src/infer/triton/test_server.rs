//! Test harness: the KServe v2 server of `tests/python/kserve_onnx_server.py`
//! (kserve's own gRPC servicer, ONNX Runtime underneath) serving the demo
//! models, started once per test binary on a free port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// The slow and the never-ready models the shared server adds.
pub const SLOW_MODEL: &str = "slow-dx-exposure-1.0.0";
pub const NOT_READY_MODEL: &str = "not-ready-dx-exposure-1.0.0";
/// How long the slow model sleeps before answering.
pub const SLOW_SECONDS: f32 = 3.0;

/// A running server; dropping it stops it. The server also exits when its
/// standard input closes, so one left in a `static` ends with the tests.
pub struct KserveServer {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
}

impl KserveServer {
    /// Starts a server and waits for its `LISTENING <port>` line.
    pub fn start(extra_args: &[&str]) -> KserveServer {
        let script = repo_root().join("tests/python/kserve_onnx_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's first line");
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("the KServe server did not start (first line {line:?}); run scripts/test.sh, which installs kserve in .venv")
            });
        KserveServer {
            child,
            _stdin: stdin,
            port,
        }
    }

    /// The server every test in this binary shares: the demo models, plus
    /// [`SLOW_MODEL`] and [`NOT_READY_MODEL`].
    pub fn shared() -> &'static KserveServer {
        static SHARED: OnceLock<KserveServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let slow = format!("dx-exposure-1.0.0={SLOW_SECONDS}");
            KserveServer::start(&["--slow", &slow, "--not-ready", "dx-exposure-1.0.0"])
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server now (for the server-down tests).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KserveServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `GATEWAY_TEST_PYTHON` (set by scripts/test.sh), else the project's
/// `.venv`; never skips, so a missing server fails the test and says why.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("GATEWAY_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "GATEWAY_TEST_PYTHON is not set and {} is missing: run scripts/test.sh, which installs \
         kserve and onnxruntime there",
        venv.display()
    );
    venv
}

/// A copy of the demo repository in which every version is served by the
/// test server: its manifest gains `[triton] model = "<name>-<version>"`
/// (`served_as` may rename it) and version 1; the model files are copied
/// too, so their hashes are still checked.
pub fn triton_repository(
    served_as: impl Fn(&str) -> String,
) -> (tempfile::TempDir, crate::models::ModelRepository) {
    let demo = crate::infer::conformance::demo_repository();
    let root = tempfile::tempdir().expect("temp dir");
    for entry in demo.entries() {
        let manifest = entry.manifest();
        let dir = root
            .path()
            .join(&manifest.name)
            .join(manifest.version.to_string());
        std::fs::create_dir_all(&dir).expect("version folder");
        std::fs::copy(entry.model_path(), dir.join(&manifest.model_file)).expect("model file");
        let text = std::fs::read_to_string(entry.dir().join(crate::models::MANIFEST_FILE))
            .expect("manifest");
        let served = served_as(&format!("{}-{}", manifest.name, manifest.version));
        let text = format!("{text}\n[triton]\nmodel = \"{served}\"\nversion = \"1\"\n");
        std::fs::write(dir.join(crate::models::MANIFEST_FILE), text).expect("manifest");
    }
    let repo = crate::models::ModelRepository::open(root.path()).expect("repository");
    assert!(repo.invalid().is_empty(), "{:#?}", repo.invalid());
    (root, repo)
}
