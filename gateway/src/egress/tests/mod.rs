//! Test harness for egress against real peers: dcmtk's `storescp` and a
//! small pynetdicom SCP (`tests/python/egress_scp.py`) for chosen statuses.

mod delivery;
mod destinations;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::{
    DeliveryQueue, DeliveryRecord, Destination, Egress, EgressHandle, NewDelivery, RetryPolicy,
};

/// Secondary Capture Image Storage.
pub(super) const SC_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.7";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// How long any awaited outcome may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// A peer process, killed when the test ends.
pub(super) struct Peer {
    child: Child,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// dcmtk `storescp` writing what it receives to `out_dir`.
pub(super) async fn storescp(port: u16, out_dir: &Path, extra: &[&str]) -> Peer {
    let child = Command::new("/usr/bin/storescp")
        .env("TCP_NODELAY", "1")
        .args(["-aet", "PACS", "-od"])
        .arg(out_dir)
        .args(extra)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp starts");
    wait_listening(Peer { child, port }).await
}

/// The pynetdicom SCP answering with `statuses` (hex, comma-separated).
pub(super) async fn status_scp(port: u16, statuses: &str, out_dir: &Path) -> Peer {
    let python = std::env::var("GATEWAY_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python").into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/egress_scp.py");
    let child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(statuses)
        .arg(out_dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("python SCP starts (set GATEWAY_TEST_PYTHON)");
    wait_listening(Peer { child, port }).await
}

async fn wait_listening(mut peer: Peer) -> Peer {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", peer.port))
            .await
            .is_ok()
        {
            return peer;
        }
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!("peer exited before listening: {status}");
        }
        assert!(started.elapsed() < DEADLINE, "peer never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn destination(port: u16) -> Destination {
    Destination {
        name: "pacs".into(),
        ae_title: "PACS".into(),
        host: "127.0.0.1".into(),
        port,
        calling_ae_title: None,
        connect_timeout: Duration::from_secs(5),
        dimse_timeout: Duration::from_secs(10),
        max_pdu_length: 16384,
    }
}

/// Tiny backoffs so retries happen within a test.
pub(super) fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_attempts,
    }
}

/// The pixel bytes of the test instance `n`: 256×256 8-bit (larger than
/// one PDU, so the data set streams in several), distinct per n.
pub(super) fn pixels(n: u8) -> Vec<u8> {
    (0..256 * 256u32)
        .map(|i| (i as u8).wrapping_mul(3).wrapping_add(n))
        .collect()
}

/// Writes a small Secondary Capture file under `data_dir` and returns the
/// delivery that names it.
pub(super) fn write_instance(data_dir: &Path, uid: &str, n: u8) -> NewDelivery {
    let mut obj = InMemDicomObject::new_empty();
    let put = |obj: &mut InMemDicomObject, tag, vr, value: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, SC_IMAGE);
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, uid);
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, "2.25.100");
    put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, "2.25.101");
    put(&mut obj, tags::MODALITY, VR::CS, "OT");
    put(&mut obj, tags::PATIENT_ID, VR::LO, "EGRESS-TEST");
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    for (tag, value) in [
        (tags::SAMPLES_PER_PIXEL, 1u16),
        (tags::ROWS, 256),
        (tags::COLUMNS, 256),
        (tags::BITS_ALLOCATED, 8),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels(n)),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_VR_LE)
                .media_storage_sop_class_uid(SC_IMAGE)
                .media_storage_sop_instance_uid(uid),
        )
        .expect("valid meta");
    let relative = format!("results/{uid}.dcm");
    let path = data_dir.join(&relative);
    std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    file.write_to_file(&path).expect("writes");
    NewDelivery {
        destination: "pacs".into(),
        sop_class_uid: SC_IMAGE.into(),
        sop_instance_uid: uid.into(),
        transfer_syntax_uid: EXPLICIT_VR_LE.into(),
        path: relative,
        origin: "result:test".into(),
    }
}

/// A running egress worker over a fresh data directory.
pub(super) struct TestEgress {
    pub data_dir: tempfile::TempDir,
    pub handle: EgressHandle,
    pub registry: prometheus::Registry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl TestEgress {
    pub async fn start(dest: Destination, policy: RetryPolicy) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(data_dir, dest, policy).await
    }

    pub async fn start_in(
        data_dir: tempfile::TempDir,
        dest: Destination,
        policy: RetryPolicy,
    ) -> Self {
        let queue = DeliveryQueue::open(&db_path(data_dir.path()))
            .await
            .expect("queue opens");
        let registry = prometheus::Registry::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle, join) = Egress::spawn(
            queue,
            vec![dest],
            policy,
            data_dir.path().to_path_buf(),
            "GATEWAY".into(),
            &registry,
            async move {
                let _ = stopped.await;
            },
        )
        .expect("metrics register");
        Self {
            data_dir,
            handle,
            registry,
            stop: Some(stop),
            join: Some(join),
        }
    }

    /// Stops the worker and waits for it, keeping the data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            tokio::time::timeout(DEADLINE, join)
                .await
                .expect("worker stops")
                .expect("worker task did not panic");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// Polls the row until `done` holds, failing after the deadline.
    pub async fn wait_for(
        &self,
        id: i64,
        what: &str,
        done: impl Fn(&DeliveryRecord) -> bool,
    ) -> DeliveryRecord {
        let started = Instant::now();
        loop {
            let row = self.handle.get(id).await.expect("queue readable");
            if let Some(row) = row {
                if done(&row) {
                    return row;
                }
                assert!(started.elapsed() < DEADLINE, "{what}: still {row:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a metric until `done` holds. The worker counts an outcome just
    /// after it commits the row, so a test that has seen the row must still
    /// wait a moment for the counter.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        let started = Instant::now();
        loop {
            let value = self.metric(name, labels);
            if done(value) {
                return value;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{name}{labels:?}: still {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of a sample `name{labels…}` in the text exposition.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus::Encoder;
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("encodes");
        let text = String::from_utf8(text).expect("utf-8");
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .filter(|line| {
                labels
                    .iter()
                    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .next()
            .unwrap_or(0.0)
    }
}

impl Drop for TestEgress {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(super) fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("index.sqlite")
}

/// The files a peer wrote to `dir`, read back.
pub(super) fn received(dir: &Path) -> Vec<dicom_object::DefaultDicomObject> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let path = entry.path();
        if path.is_file() {
            out.push(dicom_object::open_file(&path).expect("peer wrote a valid file"));
        }
    }
    out
}
