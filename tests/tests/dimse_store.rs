//! C-STORE into the real binary: dcmtk's storescu and our own SCU, then the
//! files on disk and the index rows are checked.

use std::collections::HashSet;

use dicom_loadtest::scu::StoreClient;
use dicom_loadtest::synth::{SeriesSpec, SynthInstance};
use gateway_e2e::{
    TestGateway, dcmtk, demo_scu_options, sha256_file, small_ct, write_part10_files,
};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

fn storescu(
    gw: &TestGateway,
    extra: &[&str],
    files: &[std::path::PathBuf],
) -> std::process::Output {
    dcmtk("storescu")
        .args(extra)
        .args(gw.dcmtk_args("DEMO-SCU"))
        .args(files)
        .output()
        .expect("run storescu")
}

/// Every instance is in the index, its file exists and hashes to the indexed SHA-256.
fn assert_stored(gw: &TestGateway, instances: &[SynthInstance]) {
    for inst in instances {
        let (path, sha) = gw
            .indexed(&inst.sop_instance_uid)
            .unwrap_or_else(|| panic!("{} not indexed", inst.sop_instance_uid));
        assert!(path.exists(), "{} missing", path.display());
        assert_eq!(sha256_file(&path), sha, "hash of {}", path.display());
        let obj = dicom_object::open_file(&path).expect("stored file parses");
        assert_eq!(
            obj.meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0'),
            inst.sop_instance_uid
        );
    }
}

#[test]
fn storescu_series_lands_on_disk_and_in_the_index() {
    let gw = TestGateway::start("");
    let series = small_ct(20, 1);
    let dir = tempfile::tempdir().unwrap();
    let files = write_part10_files(dir.path(), &series);
    let out = storescu(&gw, &[], &files);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(gw.indexed_count(), 20);
    assert_stored(&gw, &series);

    // The index holds the attributes routing and QIDO need, and the provenance.
    let (modality, body_part, site, ae, protocol): (String, String, String, String, String) = gw
        .index()
        .query_row(
            "SELECT modality, body_part_examined, site, calling_ae, protocol FROM instances LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (
            modality.as_str(),
            body_part.as_str(),
            site.as_str(),
            ae.as_str(),
            protocol.as_str()
        ),
        ("CT", "HEAD", "demo", "DEMO-SCU", "dimse")
    );
    assert_eq!(
        gw.metric(
            "gateway_ingest_instances_total{modality=\"CT\",protocol=\"dimse\",site=\"demo\"}"
        ),
        20.0
    );

    // No patient data in the log.
    let log = gw.log();
    let spec = SeriesSpec::ct_head(1, 1);
    assert!(
        !log.contains(&spec.patient_name) && !log.contains(&spec.patient_id),
        "PHI in log:\n{log}"
    );
}

#[test]
fn transfer_syntaxes_are_stored_as_received() {
    let gw = TestGateway::start("");
    let series = small_ct(6, 2);
    let dir = tempfile::tempdir().unwrap();
    let files = write_part10_files(dir.path(), &series);
    // Implicit LE, explicit BE and deflated: dcmconv writes the file in that
    // syntax and storescu sends it as it is.
    let syntaxes = [
        ("+ti", "-xi", "1.2.840.10008.1.2"),
        ("+tb", "-xb", "1.2.840.10008.1.2.2"),
        ("+td", "-xd", "1.2.840.10008.1.2.1.99"),
    ];
    for (i, (conv, propose, ts)) in syntaxes.into_iter().enumerate() {
        let converted = dir.path().join(format!("conv{i}.dcm"));
        let out = dcmtk("dcmconv")
            .arg(conv)
            .arg(&files[i])
            .arg(&converted)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dcmconv {conv}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = storescu(&gw, &[propose], std::slice::from_ref(&converted));
        assert!(
            out.status.success(),
            "{conv}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored_ts: String = gw
            .index()
            .query_row(
                "SELECT transfer_syntax_uid FROM instances WHERE sop_instance_uid = ?1",
                [&series[i].sop_instance_uid],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored_ts, ts, "{conv}");
        let (path, _) = gw.indexed(&series[i].sop_instance_uid).unwrap();
        assert_eq!(
            dicom_object::open_file(&path)
                .unwrap()
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0'),
            ts
        );
    }
    // Compressed encodings made by dcmtk itself, sent in their own syntax.
    let tools = [
        ("dcmcjpeg", "-xs", "1.2.840.10008.1.2.4.70"),
        ("dcmcrle", "-xr", "1.2.840.10008.1.2.5"),
        ("dcmcjpls", "-xt", "1.2.840.10008.1.2.4.80"),
    ];
    for (k, (tool, propose, ts)) in tools.into_iter().enumerate() {
        let inst = &series[3 + k];
        let compressed = dir.path().join(format!("{tool}.dcm"));
        let out = dcmtk(tool)
            .arg(&files[3 + k])
            .arg(&compressed)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = storescu(&gw, &[propose], std::slice::from_ref(&compressed));
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored_ts: String = gw
            .index()
            .query_row(
                "SELECT transfer_syntax_uid FROM instances WHERE sop_instance_uid = ?1",
                [&inst.sop_instance_uid],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored_ts, ts, "{tool}");
        // Stored as received: the file's data set is byte-identical to what dcmtk sent.
        let (path, _) = gw.indexed(&inst.sop_instance_uid).unwrap();
        let pixel_fragments = |path: &std::path::Path| {
            let obj = dicom_object::open_file(path).unwrap();
            let value = obj
                .element(dicom_dictionary_std::tags::PIXEL_DATA)
                .unwrap()
                .value()
                .clone();
            value.fragments().expect("encapsulated pixel data").to_vec()
        };
        assert_eq!(
            pixel_fragments(&path),
            pixel_fragments(&compressed),
            "{tool}: compressed pixel data altered"
        );
    }
}

#[tokio::test]
async fn identical_resend_is_idempotent() {
    let gw = TestGateway::start("");
    let series = small_ct(3, 3);
    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    for inst in &series {
        assert_eq!(client.store(inst).await.unwrap().status, 0x0000);
    }
    let (_, first_hash) = gw.indexed(&series[0].sop_instance_uid).unwrap();
    for inst in &series {
        assert_eq!(
            client.store(inst).await.unwrap().status,
            0x0000,
            "re-send must succeed"
        );
    }
    client.release().await.unwrap();
    assert_eq!(gw.indexed_count(), 3);
    assert_eq!(
        gw.indexed(&series[0].sop_instance_uid).unwrap().1,
        first_hash
    );
    assert_eq!(
        gw.metric(
            "gateway_ingest_instances_total{modality=\"CT\",protocol=\"dimse\",site=\"demo\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn different_object_with_same_uid_is_rejected_and_audited() {
    let gw = TestGateway::start("");
    let original = &small_ct(1, 4)[0];
    let mut impostor = small_ct(1, 5)[0].clone();
    // Same UIDs, different pixels.
    let mut spec = SeriesSpec::ct_head(1, 5);
    spec.rows = 64;
    spec.columns = 64;
    impostor.dataset = rewrite_uids(&impostor.dataset, original);
    impostor.sop_instance_uid = original.sop_instance_uid.clone();
    impostor.study_instance_uid = original.study_instance_uid.clone();
    impostor.series_instance_uid = original.series_instance_uid.clone();
    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    assert_eq!(client.store(original).await.unwrap().status, 0x0000);
    let (path, hash) = gw.indexed(&original.sop_instance_uid).unwrap();
    assert_eq!(client.store(&impostor).await.unwrap().status, 0x0111);
    client.release().await.unwrap();
    assert_eq!(
        gw.indexed(&original.sop_instance_uid).unwrap().1,
        hash,
        "stored object unchanged"
    );
    assert_eq!(sha256_file(&path), hash);
    let action: String = gw
        .index()
        .query_row(
            "SELECT action FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(action, "store.duplicate_rejected");
}

#[tokio::test]
async fn replace_policy_keeps_the_old_file_and_audits() {
    let gw = TestGateway::start_with_config(gateway_e2e::base_config("").replace(
        "min_free_space = \"1MiB\"",
        "min_free_space = \"1MiB\"\nduplicate_policy = \"replace\"",
    ));
    let original = &small_ct(1, 6)[0];
    let mut replacement = small_ct(1, 7)[0].clone();
    replacement.dataset = rewrite_uids(&replacement.dataset, original);
    replacement.sop_instance_uid = original.sop_instance_uid.clone();
    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    assert_eq!(client.store(original).await.unwrap().status, 0x0000);
    let (_, old_hash) = gw.indexed(&original.sop_instance_uid).unwrap();
    assert_eq!(client.store(&replacement).await.unwrap().status, 0x0000);
    client.release().await.unwrap();
    let (path, new_hash) = gw.indexed(&original.sop_instance_uid).unwrap();
    assert_ne!(old_hash, new_hash);
    assert_eq!(sha256_file(&path), new_hash);
    let superseded: Vec<_> = std::fs::read_dir(gw.data_dir().join("superseded"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(superseded.len(), 1);
    assert_eq!(
        sha256_file(&superseded[0].path()),
        old_hash,
        "old object kept"
    );
    let action: String = gw
        .index()
        .query_row(
            "SELECT action FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(action, "store.replaced");
}

fn rewrite_uids(
    dataset: &dicom_object::InMemDicomObject,
    like: &SynthInstance,
) -> dicom_object::InMemDicomObject {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dataset.clone();
    for (tag, value) in [
        (tags::SOP_INSTANCE_UID, &like.sop_instance_uid),
        (tags::STUDY_INSTANCE_UID, &like.study_instance_uid),
        (tags::SERIES_INSTANCE_UID, &like.series_instance_uid),
    ] {
        obj.put(DataElement::new(
            tag,
            VR::UI,
            PrimitiveValue::from(value.as_str()),
        ));
    }
    obj
}

#[tokio::test]
async fn command_dataset_mismatch_gets_a900_and_nothing_is_stored() {
    let gw = TestGateway::start("");
    let inst = &small_ct(1, 8)[0];
    let bytes = inst.encode_dataset(EXPLICIT_LE).unwrap();
    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    let ack = client.store_raw(CT, "1.2.3.4.5.6.7", &bytes).await.unwrap();
    assert_eq!(ack.status, 0xA900);
    // Garbage that does not parse: 0xC000 family.
    let ack = client
        .store_raw(CT, "1.2.3.4.5.6.8", &[0xFF; 300])
        .await
        .unwrap();
    assert_eq!(ack.status & 0xF000, 0xC000, "status {:#06x}", ack.status);
    // An element that claims 3.75 GiB in a tiny data set: refused fast, without allocating it.
    let mut lying = vec![0x40, 0x00, 0x60, 0xA1, b'U', b'T', 0, 0];
    lying.extend(0xF000_0000u32.to_le_bytes());
    lying.extend([b'x'; 64]);
    let started = std::time::Instant::now();
    let ack = client.store_raw(CT, "1.2.3.4.5.6.9", &lying).await.unwrap();
    assert_eq!(ack.status & 0xF000, 0xC000, "status {:#06x}", ack.status);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // An invalid UID in the command never reaches a path: 0x0117.
    let ack = client
        .store_raw(CT, "../../etc/passwd", &bytes)
        .await
        .unwrap();
    assert_eq!(ack.status, 0x0117);
    // The association is still good.
    assert_eq!(client.store(inst).await.unwrap().status, 0x0000);
    client.release().await.unwrap();
    assert_eq!(gw.indexed_count(), 1);
    let leftovers = std::fs::read_dir(gw.data_dir().join("tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "refused receives leave no temp files");
    assert_eq!(
        gw.metric("gateway_ingest_failures_total{reason=\"mismatch\",site=\"demo\"}"),
        1.0
    );
}

#[tokio::test]
async fn low_disk_space_and_oversized_instances_are_refused_a7xx() {
    let gw = TestGateway::start_with_config(
        gateway_e2e::base_config("")
            .replace("min_free_space = \"1MiB\"", "min_free_space = \"1PiB\""),
    );
    let inst = &small_ct(1, 9)[0];
    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    assert_eq!(client.store(inst).await.unwrap().status, 0xA700);
    client.release().await.unwrap();
    assert_eq!(gw.indexed_count(), 0);

    let gw = TestGateway::start_with_config(gateway_e2e::base_config("").replace(
        "idle_timeout = \"20s\"",
        "idle_timeout = \"20s\"\nmax_instance_size = \"2KiB\"",
    ));
    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    assert_eq!(client.store(inst).await.unwrap().status, 0xA701);
    assert_eq!(client.echo().await.unwrap(), 0x0000, "association survives");
    client.release().await.unwrap();
    assert_eq!(gw.indexed_count(), 0);
}

#[tokio::test]
async fn oversized_pdu_aborts_the_association_and_the_gateway_keeps_serving() {
    let gw = TestGateway::start("");
    let mut stream = gateway_e2e::raw_association(gw.dimse, "DEMO-SCU");
    // A P-DATA-TF header announcing 16 MiB, far above the 64 KiB we offered.
    use std::io::{Read, Write};
    stream.write_all(&[0x04, 0, 0x01, 0, 0, 0]).unwrap();
    let _ = stream.write_all(&[0u8; 1024]);
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut reply = [0u8; 10];
    let n = stream.read(&mut reply).unwrap_or(0);
    assert!(
        n == 0 || reply[0] == 0x07,
        "expected A-ABORT or close, got {:?}",
        &reply[..n]
    );
    drop(stream);
    assert!(
        gw.log().contains("exceeds the negotiated maximum"),
        "{}",
        gw.log()
    );

    let mut client = StoreClient::connect(gw.dimse, &demo_scu_options(), &[CT])
        .await
        .unwrap();
    assert_eq!(client.echo().await.unwrap(), 0x0000);
    client.release().await.unwrap();
}

#[tokio::test]
async fn eight_parallel_associations_store_everything() {
    let gw = TestGateway::start("");
    let series = small_ct(80, 10);
    let mut tasks = Vec::new();
    for chunk in series.chunks(10) {
        let chunk = chunk.to_vec();
        let addr = gw.dimse;
        tasks.push(tokio::spawn(async move {
            let mut client = StoreClient::connect(addr, &demo_scu_options(), &[CT])
                .await
                .unwrap();
            for inst in &chunk {
                assert_eq!(client.store(inst).await.unwrap().status, 0x0000);
            }
            client.release().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(gw.indexed_count(), 80);
    assert_stored(&gw, &series);
    assert!(gw.metric("gateway_store_batch_instances_count") >= 1.0);
}

#[tokio::test]
async fn kill_9_during_load_loses_nothing_acknowledged() {
    let mut gw = TestGateway::start("");
    let series = small_ct(400, 11);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for chunk in series.chunks(100) {
        let chunk = chunk.to_vec();
        let addr = gw.dimse;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut client) = StoreClient::connect(addr, &demo_scu_options(), &[CT]).await
            else {
                return;
            };
            for inst in &chunk {
                match client.store(inst).await {
                    Ok(ack) if ack.status == 0x0000 => {
                        acked.lock().unwrap().push(inst.sop_instance_uid.clone())
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let the load run, then pull the plug mid-stream.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().unwrap().len() < 60 {
        assert!(std::time::Instant::now() < deadline, "load never got going");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    gw.kill_hard();
    for task in tasks {
        let _ = task.await;
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(
        acked.len() < series.len(),
        "the kill should interrupt the load"
    );

    gw.restart();
    let by_uid: std::collections::HashMap<_, _> = series
        .iter()
        .map(|i| (i.sop_instance_uid.clone(), i.clone()))
        .collect();
    let acked_instances: Vec<SynthInstance> = acked.iter().map(|u| by_uid[u].clone()).collect();
    assert_stored(&gw, &acked_instances);
    // Nothing half-written survives: every indexed file is complete and no temp files remain.
    let rows: Vec<(String, String)> = {
        let index = gw.index();
        let mut stmt = index.prepare("SELECT path, sha256 FROM instances").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for (path, sha) in rows {
        assert_eq!(sha256_file(&gw.data_dir().join(path)), sha);
    }
    assert_eq!(
        std::fs::read_dir(gw.data_dir().join("tmp"))
            .unwrap()
            .count(),
        0
    );
    eprintln!(
        "acknowledged before kill: {}; indexed after restart: {}",
        acked.len(),
        gw.indexed_count()
    );
}
