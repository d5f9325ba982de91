//! End-to-end harness: starts the real `dicom-gateway` binary on free ports
//! in a temp directory and drives it with real DICOM peers (dcmtk tools and
//! our own SCU from `dicom-loadtest`).
//!
//! ```no_run
//! # use gateway_e2e::*;
//! let gw = TestGateway::start("");
//! let out = dcmtk("echoscu").args(gw.dcmtk_args("DEMO-SCU")).output().unwrap();
//! assert!(out.status.success());
//! ```

#![forbid(unsafe_code)]

pub mod memory;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod peers;

/// The gateway config every test starts from: loopback, free ports, the demo
/// site, short timeouts so failure paths finish quickly. `extra` is appended.
pub fn base_config(extra: &str) -> String {
    format!(
        r#"
[gateway]
ae_title = "GATEWAY"
shutdown_grace = "10s"

[dimse]
listen = "127.0.0.1:0"
max_pdu_length = 65536
max_associations = 16
establish_timeout = "5s"
message_timeout = "20s"
idle_timeout = "20s"

[dicomweb]
listen = "127.0.0.1:0"
cert = "{{TEST_DIR}}/certs/server.pem"
key = "{{TEST_DIR}}/certs/server.key"
body_timeout = "20s"

[store]
min_free_space = "1MiB"

[metrics]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[logging]
level = "info"

[pipeline]
enabled = false
models_dir = "{models}"
stable_time = "300ms"
retry_delay = "200ms"

[[sites]]
name = "demo"
ae_titles = ["DEMO-SCU"]
allowed_peers = ["127.0.0.0/8", "::1/128"]

{extra}
"#,
        models = repo_models_dir().display()
    )
}

/// [`base_config`] with the inference pipeline on (embedded routes, the
/// repository's demo models, a 300 ms series stable time).
pub fn pipeline_config(extra: &str) -> String {
    base_config(extra).replace("[pipeline]\nenabled = false", "[pipeline]\nenabled = true")
}

/// The repository's `models/` folder (demo models).
pub fn repo_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A running gateway process in its own temp directory.
pub struct TestGateway {
    child: Option<Child>,
    /// Holds the data directory; deleted on drop.
    dir: tempfile::TempDir,
    config_text: String,
    pub dimse: SocketAddr,
    pub metrics: SocketAddr,
    /// DICOMweb listener, when enabled.
    pub http: Option<SocketAddr>,
    /// Admin API listener, when enabled.
    pub admin: Option<SocketAddr>,
}

impl TestGateway {
    /// Starts a gateway on `base_config(extra)`.
    pub fn start(extra: &str) -> Self {
        Self::start_with_config(base_config(extra))
    }

    /// Starts a gateway on exactly `config_text` (data dir and ports are
    /// always set by the harness).
    pub fn start_with_config(config_text: String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut gw = Self {
            child: None,
            dir,
            config_text,
            dimse: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
            admin: None,
        };
        gw.spawn();
        gw
    }

    fn spawn(&mut self) {
        let config_path = self.dir.path().join("gateway.toml");
        let text = self
            .config_text
            .replace("{TEST_DIR}", &self.dir.path().display().to_string());
        std::fs::write(&config_path, text).expect("write config");
        let listeners = self.data_dir().join("listeners.json");
        let _ = std::fs::remove_file(&listeners);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .expect("log file");
        let child = Command::new(gateway_binary())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dicom-gateway");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&listeners)
                && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
            {
                self.dimse = value["dimse"].as_str().unwrap().parse().unwrap();
                self.metrics = value["metrics"].as_str().unwrap().parse().unwrap();
                self.http = value["http"].as_str().map(|a| a.parse().unwrap());
                self.admin = value["admin"].as_str().map(|a| a.parse().unwrap());
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "gateway exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The configuration file the gateway was started with (rewrite it to
    /// test a reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The temp directory holding the data directory, certificates and log.
    pub fn test_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_ref().expect("gateway running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        self.terminate_wait()
    }

    /// Waits (up to 30 s) for a gateway that was told to stop to exit.
    pub fn terminate_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("gateway running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the gateway again on the same data directory and config.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop the gateway before restarting it"
        );
        self.spawn();
    }

    /// A read-only connection to the index.
    pub fn index(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data_dir().join("index.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open index")
    }

    pub fn indexed_count(&self) -> i64 {
        self.index()
            .query_row("SELECT COUNT(*) FROM instances", [], |r| r.get(0))
            .unwrap()
    }

    /// (path, sha256) recorded for a SOP Instance UID.
    pub fn indexed(&self, sop_instance_uid: &str) -> Option<(PathBuf, String)> {
        self.index()
            .query_row(
                "SELECT path, sha256 FROM instances WHERE sop_instance_uid = ?1",
                [sop_instance_uid],
                |r| Ok((self.data_dir().join(r.get::<_, String>(0)?), r.get(1)?)),
            )
            .ok()
    }

    /// `GET /metrics` over plain HTTP/1.0.
    pub fn metrics_text(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.metrics).expect("connect metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    /// The value of one metric sample line (exact label set), or 0.
    ///
    /// Metrics are updated just after the event a test observes (a peer
    /// sees its rejection or its closed socket before the counter moves),
    /// so this waits, up to 5 s, for a non-zero value that holds still
    /// across two reads.
    /// One reading of a metric (0 when absent), for polling loops.
    pub fn metric_now(&self, name_and_labels: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let read = || {
            self.metrics_text()
                .lines()
                .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = read();
            if (now != 0.0 && now == last) || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// Arguments for dcmtk tools: `-aet AE -aec GATEWAY 127.0.0.1 PORT`.
    pub fn dcmtk_args(&self, calling_ae: &str) -> Vec<String> {
        vec![
            "-aet".into(),
            calling_ae.into(),
            "-aec".into(),
            "GATEWAY".into(),
            self.dimse.ip().to_string(),
            self.dimse.port().to_string(),
        ]
    }

    /// The development CA the gateway created for its HTTPS listener.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("certs").join("ca.pem")
    }

    /// `https://localhost:PORT/dicomweb`.
    pub fn dicomweb_url(&self) -> String {
        let http = self.http.expect("DICOMweb enabled");
        format!("https://localhost:{}/dicomweb", http.port())
    }

    /// `https://localhost:PORT`.
    pub fn http_base(&self) -> String {
        format!(
            "https://localhost:{}",
            self.http.expect("DICOMweb enabled").port()
        )
    }

    /// Creates a token with the real CLI (`tokens create`) on this gateway's
    /// data directory and returns it.
    pub fn create_token(&self, site: &str, scope: &str, read_sites: &str) -> String {
        let out = Command::new(gateway_binary())
            .args([
                "tokens",
                "create",
                "--site",
                site,
                "--scope",
                scope,
                "--read-sites",
                read_sites,
            ])
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .expect("run tokens create");
        assert!(
            out.status.success(),
            "tokens create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// An HTTPS client (rustls) that trusts this gateway's development CA.
    pub fn https_client(&self) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pem = std::fs::read(self.ca_cert()).expect("read CA");
        let ca = reqwest::Certificate::from_pem(&pem).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .expect("https client")
    }

    /// `GET /api/v1/studies/{study}/results` until at least `jobs` results
    /// are listed and none is still queued or running; panics after `timeout`.
    pub async fn wait_for_results(
        &self,
        token: &str,
        study: &str,
        jobs: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let client = self.https_client();
        let url = format!("{}/api/v1/studies/{study}/results", self.http_base());
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            let response = client.get(&url).bearer_auth(token).send().await;
            if let Ok(response) = response
                && response.status().is_success()
            {
                let body: serde_json::Value = response.json().await.expect("results JSON");
                let results = body["results"].as_array().cloned().unwrap_or_default();
                let finished = results
                    .iter()
                    .all(|r| matches!(r["state"].as_str(), Some("done" | "failed")));
                if results.len() >= jobs && finished {
                    return results;
                }
                last = body.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no {jobs} finished results for the study in {timeout:?}; last answer: {last}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
    }
}

/// The gateway binary next to this test executable (`target/<profile>/`),
/// or `$DICOM_GATEWAY_BIN`.
pub fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DICOM_GATEWAY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join("dicom-gateway");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p dicom-gateway), as scripts/test.sh does",
        bin.display()
    );
    bin
}

/// A dcmtk tool from Debian's package (pip's pynetdicom installs scripts of
/// the same names, so the path is explicit), with Nagle off.
pub fn dcmtk(tool: &str) -> Command {
    let mut command = Command::new(Path::new("/usr/bin").join(tool));
    command.env("TCP_NODELAY", "1");
    command
}

pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read file")))
}

/// Writes `instances` as Part 10 files into `dir`, returning their paths.
pub fn write_part10_files(
    dir: &Path,
    instances: &[dicom_loadtest::synth::SynthInstance],
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let path = dir.join(format!("{i:05}.dcm"));
            std::fs::write(&path, inst.to_part10().expect("encode part 10")).unwrap();
            path
        })
        .collect()
}

/// Negotiates a Verification association by hand over a plain `TcpStream`
/// and returns the socket, so a test can then send bytes no well-behaved SCU
/// would (oversized PDUs, trickled messages). Presentation context ID is 1.
pub fn raw_association(addr: SocketAddr, calling_ae: &str) -> std::net::TcpStream {
    use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};
    use std::io::Write;
    let rq = dicom_ul::Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling_ae.into(),
        called_ae_title: "GATEWAY".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: "1.2.840.10008.1.1".into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16_384)],
    });
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, &rq).expect("encode A-ASSOCIATE-RQ");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut buffer = bytes::BytesMut::new();
    let pdu = dicom_ul::association::read_pdu_from_wire(&mut stream, &mut buffer, 65_536, false)
        .expect("association answer");
    assert!(
        matches!(pdu, dicom_ul::Pdu::AssociationAC(_)),
        "expected A-ASSOCIATE-AC, got {pdu:?}"
    );
    assert!(buffer.is_empty());
    stream
}

/// A `multipart/related` body with the given (content type, bytes) parts.
pub fn multipart_related(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The STOW-RS content type for `boundary`.
pub fn stow_content_type(boundary: &str) -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={boundary}")
}

/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// A small (64×64) synthetic CT head series: fast to generate and send.
pub fn small_ct(instances: usize, seed: u64) -> Vec<dicom_loadtest::synth::SynthInstance> {
    let mut spec = dicom_loadtest::synth::SeriesSpec::ct_head(instances, seed);
    spec.rows = 64;
    spec.columns = 64;
    dicom_loadtest::synth::generate_series(&spec)
}

/// SCU options for `calling_ae` → `GATEWAY` proposing `transfer_syntax`.
pub fn scu_options(calling_ae: &str, transfer_syntax: &str) -> dicom_loadtest::scu::ScuOptions {
    dicom_loadtest::scu::ScuOptions {
        calling_ae: calling_ae.into(),
        called_ae: "GATEWAY".into(),
        max_pdu: 16_384,
        transfer_syntax: transfer_syntax.into(),
    }
}

/// The demo site's SCU, explicit VR little endian.
pub fn demo_scu_options() -> dicom_loadtest::scu::ScuOptions {
    scu_options("DEMO-SCU", EXPLICIT_VR_LE)
}

/// Sends `instances` over one association with our SCU; every one must succeed.
pub async fn c_store_all(
    addr: SocketAddr,
    calling_ae: &str,
    transfer_syntax: &str,
    instances: &[dicom_loadtest::synth::SynthInstance],
) {
    let mut classes: Vec<&str> = instances.iter().map(|i| i.sop_class_uid.as_str()).collect();
    classes.sort();
    classes.dedup();
    let options = scu_options(calling_ae, transfer_syntax);
    let mut client = dicom_loadtest::scu::StoreClient::connect(addr, &options, &classes)
        .await
        .expect("associate");
    for inst in instances {
        let ack = client.store(inst).await.expect("C-STORE");
        assert_eq!(ack.status, 0x0000, "C-STORE status {:#06x}", ack.status);
    }
    client.release().await.expect("release");
}

/// The admin API, the way an operator reaches it: tokens made with the
/// real CLI, requests over HTTPS, and the `dicom-gateway` operator commands.
impl TestGateway {
    /// `https://localhost:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        let admin = self.admin.expect("admin API enabled");
        format!("https://localhost:{}", admin.port())
    }

    /// Creates an operator token with `admin-tokens create` and returns it.
    pub fn create_admin_token(&self, name: &str, role: &str) -> String {
        let out = Command::new(gateway_binary())
            .args(["admin-tokens", "create", "--name", name, "--role", role])
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("DICOM_GATEWAY_CONFIG")
            .output()
            .expect("run admin-tokens create");
        assert!(
            out.status.success(),
            "admin-tokens create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `dicom-gateway ARGS…` as an operator with `token`, pointed at this
    /// gateway's admin API and development CA through the environment.
    pub fn operator_cli(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(gateway_binary())
            .args(args)
            .env("DICOM_GATEWAY_ADMIN_URL", self.admin_url())
            .env("DICOM_GATEWAY_ADMIN_CA", self.ca_cert())
            .env("DICOM_GATEWAY_ADMIN_TOKEN", token)
            .env_remove("DICOM_GATEWAY_CONFIG")
            .output()
            .expect("run dicom-gateway")
    }

    /// `GET {admin}/v1{path}` → (status, JSON body or Null).
    pub async fn admin_get(&self, token: Option<&str>, path: &str) -> (u16, serde_json::Value) {
        let mut request = self
            .https_client()
            .get(format!("{}/v1{path}", self.admin_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        admin_answer(request).await
    }

    /// `POST {admin}/v1{path}` with a JSON body → (status, JSON body).
    pub async fn admin_post(
        &self,
        token: Option<&str>,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .https_client()
            .post(format!("{}/v1{path}", self.admin_url()))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        admin_answer(request).await
    }
}

async fn admin_answer(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.expect("admin API reachable");
    let status = response.status().as_u16();
    let text = response.text().await.expect("admin API body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}
