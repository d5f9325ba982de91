//! Sites do not see or change each other through writes: an instance is
//! identified by (site, SOP Instance UID). A STOW-RS or C-STORE of a UID
//! another site holds stores the sender's own copy, is answered exactly
//! like a UID nobody holds, and is then retrievable by the sender, while
//! the other site's object stays byte for byte as it was, whatever the
//! duplicate policy. The realistic case: a study transferred between two
//! hospitals reaches the gateway from both.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::synth::SynthInstance;
use gateway_e2e::{
    EXPLICIT_VR_LE, TestGateway, base_config, c_store_all, multipart_related, sha256_file,
    small_ct, stow_content_type,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SITES: &str = r#"
[[sites]]
name = "north"
ae_titles = ["NORTH-SCU"]
allowed_peers = ["127.0.0.0/8", "::1/128"]

[[sites]]
name = "south"
ae_titles = ["SOUTH-SCU"]
allowed_peers = ["127.0.0.0/8", "::1/128"]
"#;

const BOUNDARY: &str = "site-isolation-boundary";

/// A gateway with sites north and south and the given duplicate policy.
fn start(policy: &str) -> TestGateway {
    let config = base_config(SITES).replace(
        "[store]\n",
        &format!("[store]\nduplicate_policy = \"{policy}\"\n"),
    );
    assert!(config.contains("duplicate_policy"), "policy set");
    TestGateway::start_with_config(config)
}

/// `inst` with another Patient Name: a different object under the same UIDs.
fn altered(inst: &SynthInstance, patient_name: &str) -> SynthInstance {
    let mut copy = inst.clone();
    copy.dataset.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from(patient_name),
    ));
    copy
}

/// The data set as sent (what the stored file ends with).
fn dataset(inst: &SynthInstance) -> Vec<u8> {
    inst.encode_dataset(EXPLICIT_VR_LE).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// STOW-RS of one instance: status, JSON answer, Warning headers.
async fn stow(gw: &TestGateway, token: &str, inst: &SynthInstance) -> (u16, Value, Vec<String>) {
    let file = inst.to_part10().unwrap();
    let response = gw
        .https_client()
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(token)
        .header("content-type", stow_content_type(BOUNDARY))
        .header("accept", "application/dicom+json")
        .body(multipart_related(
            BOUNDARY,
            &[("application/dicom", file.as_slice())],
        ))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        warnings,
    )
}

/// WADO-RS of one instance as `application/dicom`: status and body.
async fn retrieve(gw: &TestGateway, token: &str, url: &str) -> (u16, Vec<u8>) {
    let response = gw
        .https_client()
        .get(url)
        .bearer_auth(token)
        .header("accept", "application/dicom")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn instance_url(gw: &TestGateway, inst: &SynthInstance) -> String {
    format!(
        "{}/studies/{}/series/{}/instances/{}",
        gw.dicomweb_url(),
        inst.study_instance_uid,
        inst.series_instance_uid,
        inst.sop_instance_uid
    )
}

/// The answer with `inst`'s UIDs as placeholders, so the answers about
/// two different instances compare (longest UID first: they may nest).
fn shape(body: &Value, inst: &SynthInstance) -> String {
    body.to_string()
        .replace(&inst.sop_instance_uid, "<sop>")
        .replace(&inst.series_instance_uid, "<series>")
        .replace(&inst.study_instance_uid, "<study>")
}

/// (site, path, sha256) of every copy of a UID, by site.
fn copies(gw: &TestGateway, sop_instance_uid: &str) -> Vec<(String, String, String)> {
    let index = gw.index();
    let mut stmt = index
        .prepare(
            "SELECT site, path, sha256 FROM instances WHERE sop_instance_uid = ?1 ORDER BY site",
        )
        .unwrap();
    stmt.query_map([sop_instance_uid], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn audited(gw: &TestGateway, action: &str) -> Vec<Value> {
    let index = gw.index();
    let mut stmt = index
        .prepare("SELECT detail FROM audit WHERE action = ?1")
        .unwrap();
    stmt.query_map([action], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

fn superseded(gw: &TestGateway) -> usize {
    std::fs::read_dir(gw.data_dir().join("superseded"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// North stores a study; south sends the same UIDs (one identical object,
/// one different) and a UID nobody holds.
async fn stow_of_another_sites_uid(policy: &str, seed: u64) {
    let gw = start(policy);
    let north = gw.create_token("north", "read,write", "");
    let south = gw.create_token("south", "read,write", "");
    let study = small_ct(2, seed);
    let fresh = small_ct(1, seed + 1);

    let mut north_before = Vec::new();
    for inst in &study {
        let (status, body, _) = stow(&gw, &north, inst).await;
        assert_eq!(status, 200, "{body}");
        let (status, bytes) = retrieve(&gw, &north, &instance_url(&gw, inst)).await;
        assert_eq!(status, 200);
        assert!(bytes.ends_with(&dataset(inst)));
        north_before.push(sha256(&bytes));
    }
    let north_files: Vec<String> = study
        .iter()
        .map(|i| sha256_file(&gw.data_dir().join(&copies(&gw, &i.sop_instance_uid)[0].1)))
        .collect();

    let sent = [
        study[0].clone(),
        altered(&study[1], "SOUTH^COPY"),
        fresh[0].clone(),
    ];
    let mut shapes = Vec::new();
    for inst in &sent {
        let (status, body, warnings) = stow(&gw, &south, inst).await;
        assert_eq!(status, 200, "{policy}: {body}");
        assert!(warnings.is_empty(), "{warnings:?}");
        shapes.push(shape(&body, inst));
        // The sender can read what it was told is stored: its own object.
        let url = body["00081199"]["Value"][0]["00081190"]["Value"][0]
            .as_str()
            .expect("RetrieveURL");
        let (status, bytes) = retrieve(&gw, &south, url).await;
        assert_eq!(status, 200, "{policy}: {url}");
        assert!(bytes.ends_with(&dataset(inst)), "{policy}: south's bytes");
    }
    assert_eq!(
        shapes[0], shapes[2],
        "identical copy answers like a fresh UID"
    );
    assert_eq!(
        shapes[1], shapes[2],
        "different object answers like a fresh UID"
    );

    for (i, inst) in study.iter().enumerate() {
        let (status, bytes) = retrieve(&gw, &north, &instance_url(&gw, inst)).await;
        assert_eq!(status, 200);
        assert_eq!(sha256(&bytes), north_before[i], "{policy}: north unchanged");
        let rows = copies(&gw, &inst.sop_instance_uid);
        let sites: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(sites, ["north", "south"], "two copies");
        assert_ne!(rows[0].1, rows[1].1, "in two files");
        assert_eq!(sha256_file(&gw.data_dir().join(&rows[0].1)), north_files[i]);
        assert_eq!(rows[0].2, north_files[i]);
    }
    assert!(audited(&gw, "store.replaced").is_empty(), "{policy}");
    assert!(
        audited(&gw, "store.duplicate_rejected").is_empty(),
        "{policy}"
    );
    assert_eq!(superseded(&gw), 0);

    // Within south's own namespace the duplicate policy applies as before.
    let newer = altered(&study[1], "SOUTH^NEWER");
    let (status, body, _) = stow(&gw, &south, &newer).await;
    let (_, south_now) = retrieve(&gw, &south, &instance_url(&gw, &newer)).await;
    match policy {
        "replace" => {
            assert_eq!(status, 200, "{body}");
            assert_eq!(shape(&body, &newer), shapes[2]);
            assert!(south_now.ends_with(&dataset(&newer)));
            let replaced = audited(&gw, "store.replaced");
            assert_eq!(replaced.len(), 1);
            assert_eq!(replaced[0]["site"], "south");
            assert_eq!(superseded(&gw), 1);
        }
        _ => {
            assert_eq!(status, 409, "{body}");
            assert!(south_now.ends_with(&dataset(&sent[1])), "south's copy kept");
            assert_eq!(audited(&gw, "store.duplicate_rejected").len(), 1);
        }
    }
    let (_, north_now) = retrieve(&gw, &north, &instance_url(&gw, &study[1])).await;
    assert_eq!(
        sha256(&north_now),
        north_before[1],
        "{policy}: north unchanged"
    );
}

#[tokio::test]
async fn stow_of_another_sites_uid_stores_the_senders_copy_under_reject() {
    stow_of_another_sites_uid("reject", 71).await;
}

#[tokio::test]
async fn stow_of_another_sites_uid_never_replaces_it_under_replace() {
    stow_of_another_sites_uid("replace", 73).await;
}

/// The same through C-STORE from two AE titles of two sites, and what a
/// reader of several sites gets: its own site's copy, else the
/// lowest-named site's, once per UID.
#[tokio::test]
async fn c_store_of_another_sites_uid_stores_the_senders_copy() {
    let gw = start("replace");
    let study = small_ct(2, 75);
    c_store_all(gw.dimse, "NORTH-SCU", EXPLICIT_VR_LE, &study).await;
    let north_files: Vec<String> = study
        .iter()
        .map(|i| sha256_file(&gw.data_dir().join(&copies(&gw, &i.sop_instance_uid)[0].1)))
        .collect();
    let south_copy = vec![study[0].clone(), altered(&study[1], "SOUTH^COPY")];
    // Every C-STORE answers Success (0x0000), as for a UID nobody holds.
    c_store_all(gw.dimse, "SOUTH-SCU", EXPLICIT_VR_LE, &south_copy).await;

    for (i, inst) in study.iter().enumerate() {
        let rows = copies(&gw, &inst.sop_instance_uid);
        let sites: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(sites, ["north", "south"]);
        assert_eq!(sha256_file(&gw.data_dir().join(&rows[0].1)), north_files[i]);
    }
    assert!(audited(&gw, "store.replaced").is_empty());
    assert_eq!(superseded(&gw), 0);

    let url = instance_url(&gw, &study[1]);
    for (own, reads, expected) in [
        ("south", "", &south_copy[1]),
        ("north", "", &study[1]),
        ("south", "north", &south_copy[1]),
        ("north", "south", &study[1]),
        // Neither site its own: the lowest-named site's copy.
        ("demo", "north,south", &study[1]),
    ] {
        let token = gw.create_token(own, "read", reads);
        let (status, bytes) = retrieve(&gw, &token, &url).await;
        assert_eq!(status, 200, "{own} reading {reads}");
        assert!(
            bytes.ends_with(&dataset(expected)),
            "{own} reading {reads}: wrong copy"
        );
        // QIDO-RS lists each UID once, like WADO-RS returns it.
        let response = gw
            .https_client()
            .get(format!(
                "{}/studies/{}/series/{}/instances",
                gw.dicomweb_url(),
                study[0].study_instance_uid,
                study[0].series_instance_uid
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let found: Vec<Value> = response.json().await.unwrap();
        assert_eq!(found.len(), 2, "{own} reading {reads}");
    }
    let outsider = gw.create_token("demo", "read", "");
    let (status, _) = retrieve(&gw, &outsider, &url).await;
    assert_eq!(status, 404);
}
