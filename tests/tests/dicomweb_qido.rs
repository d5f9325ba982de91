//! QIDO-RS against the real binary: studies from two sites stored with our
//! C-STORE SCU, then searched over HTTPS with per-site tokens.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::{TestGateway, base_config, c_store_all};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A second site with its own AE title, next to the harness's `demo`.
const NORTH_SITE: &str = r#"
[[sites]]
name = "north"
ae_titles = ["NORTH-SCU"]
allowed_peers = ["127.0.0.0/8"]
"#;

/// What the tests stored: study A (demo: CT ×3 + MR ×2), study C (demo:
/// CR ×1) and study B (north: CT ×2).
struct Fixture {
    study_a: String,
    study_b: String,
    study_c: String,
    ct_series_a: String,
    ct_a: Vec<SynthInstance>,
}

fn small(mut spec: SeriesSpec, patient: (&str, &str), study_date: &str) -> Vec<SynthInstance> {
    spec.rows = 64;
    spec.columns = 64;
    spec.patient_name = patient.0.into();
    spec.patient_id = patient.1.into();
    let mut instances = generate_series(&spec);
    for inst in &mut instances {
        inst.dataset.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from(study_date),
        ));
    }
    instances
}

async fn load(gw: &TestGateway) -> Fixture {
    let ct_a = small(
        SeriesSpec::ct_head(3, 101),
        ("DOE^JANE", "QIDO-A"),
        "20240115",
    );
    let study_a = ct_a[0].study_instance_uid.clone();
    let mut mr_spec = SeriesSpec::mr_brain(2, 102);
    mr_spec.study_instance_uid = Some(study_a.clone());
    let mr_a = small(mr_spec, ("DOE^JANE", "QIDO-A"), "20240115");
    let cr_c = small(
        SeriesSpec::cr_chest(1, 103),
        ("Doe^John", "QIDO-C"),
        "20231201",
    );
    let ct_b = small(
        SeriesSpec::ct_head(2, 104),
        ("SMITH^ANN", "QIDO-B"),
        "20240301",
    );
    c_store_all(
        gw.dimse,
        "DEMO-SCU",
        EXPLICIT_LE,
        &[ct_a.clone(), mr_a, cr_c.clone()].concat(),
    )
    .await;
    c_store_all(gw.dimse, "NORTH-SCU", EXPLICIT_LE, &ct_b).await;
    Fixture {
        study_a,
        study_b: ct_b[0].study_instance_uid.clone(),
        study_c: cr_c[0].study_instance_uid.clone(),
        ct_series_a: ct_a[0].series_instance_uid.clone(),
        ct_a,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Vec<Value> {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn warnings(&self) -> Vec<String> {
        self.headers
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

async fn get(gw: &TestGateway, token: Option<&str>, path: &str, accept: Option<&str>) -> Answer {
    let mut request = gw
        .https_client()
        .get(format!("{}{path}", gw.dicomweb_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("request");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

/// 200 with DICOM JSON: the result objects.
async fn search(gw: &TestGateway, token: &str, path: &str) -> Vec<Value> {
    let answer = get(gw, Some(token), path, Some("application/dicom+json")).await;
    assert_eq!(
        answer.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["content-type"], "application/dicom+json");
    answer.json()
}

/// The first value of `tag` in a result object.
fn value<'a>(object: &'a Value, tag: &str) -> &'a Value {
    &object[tag]["Value"][0]
}

fn uids(results: &[Value], tag: &str) -> Vec<String> {
    results
        .iter()
        .map(|r| value(r, tag).as_str().unwrap().to_string())
        .collect()
}

/// The series result of `modality`.
fn by_modality<'a>(series: &'a [Value], modality: &str) -> &'a Value {
    series
        .iter()
        .find(|s| value(s, "00080060") == modality)
        .unwrap_or_else(|| panic!("no {modality} series in {series:?}"))
}

/// Owned copies of expected UIDs, to compare with [`study_uids`].
fn ids(expected: &[&String]) -> Vec<String> {
    expected.iter().map(|s| s.to_string()).collect()
}

fn study_uids(results: &[Value]) -> Vec<String> {
    uids(results, "0020000D")
}

#[tokio::test]
async fn studies_series_and_instances_with_counts() {
    let gw = TestGateway::start(NORTH_SITE);
    let fx = load(&gw).await;
    let token = gw.create_token("demo", "read", "*");
    let base = gw.dicomweb_url();

    let studies = search(&gw, &token, "/studies").await;
    assert_eq!(
        study_uids(&studies),
        ids(&[&fx.study_c, &fx.study_a, &fx.study_b]),
        "ordered by study date"
    );
    let a = &studies[1];
    assert_eq!(
        a["00100010"],
        serde_json::json!({"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]})
    );
    assert_eq!(value(a, "00100020"), "QIDO-A");
    assert_eq!(value(a, "00080020"), "20240115");
    assert_eq!(a["00080061"]["Value"], serde_json::json!(["CT", "MR"]));
    assert_eq!(a["00201206"], serde_json::json!({"vr": "IS", "Value": [2]}));
    assert_eq!(a["00201208"], serde_json::json!({"vr": "IS", "Value": [5]}));
    assert_eq!(
        value(a, "00081190"),
        &format!("{base}/studies/{}", fx.study_a)
    );
    assert_eq!(value(a, "00080005"), "ISO_IR 192");
    assert_eq!(value(a, "00080056"), "ONLINE");
    for required in [
        "00080030", "00080050", "00080090", "00100030", "00100040", "00200010",
    ] {
        assert!(
            a.get(required).is_some(),
            "study attribute {required} missing"
        );
    }

    let series = search(&gw, &token, &format!("/studies/{}/series", fx.study_a)).await;
    assert_eq!(series.len(), 2);
    let numbers: Vec<i64> = series
        .iter()
        .map(|s| value(s, "00200011").as_i64().unwrap())
        .collect();
    assert!(
        numbers[0] < numbers[1],
        "ordered by SeriesNumber: {numbers:?}"
    );
    let ct = by_modality(&series, "CT");
    let mr = by_modality(&series, "MR");
    assert_eq!(value(ct, "00201209"), 3);
    assert_eq!(value(mr, "00201209"), 2);
    assert_eq!(
        value(ct, "00081190"),
        &format!("{base}/studies/{}/series/{}", fx.study_a, fx.ct_series_a)
    );
    assert!(
        ct.get("00100010").is_none(),
        "patient attributes belong to /series only"
    );

    let path = format!(
        "/studies/{}/series/{}/instances",
        fx.study_a, fx.ct_series_a
    );
    let instances = search(&gw, &token, &path).await;
    let numbers: Vec<i64> = instances
        .iter()
        .map(|i| value(i, "00200013").as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let first = &instances[0];
    assert_eq!(value(first, "00080016"), "1.2.840.10008.5.1.4.1.1.2");
    assert_eq!(
        first["00280010"],
        serde_json::json!({"vr": "US", "Value": [64]})
    );
    assert_eq!(value(first, "00280011"), 64);
    assert_eq!(value(first, "00280100"), 16);
    let sop = &fx.ct_a[0].sop_instance_uid;
    assert_eq!(value(first, "00080018"), sop);
    assert_eq!(
        value(first, "00081190"),
        &format!(
            "{base}/studies/{}/series/{}/instances/{sop}",
            fx.study_a, fx.ct_series_a
        )
    );

    let mr = search(
        &gw,
        &token,
        &format!("/studies/{}/instances?Modality=MR", fx.study_a),
    )
    .await;
    assert_eq!(mr.len(), 2);
    assert_eq!(
        value(&mr[0], "00201209"),
        2,
        "series attributes on study instances"
    );

    let all_series = search(&gw, &token, "/series?PatientID=QIDO-A").await;
    assert_eq!(all_series.len(), 2);
    assert_eq!(
        value(&all_series[0], "00201208"),
        5,
        "study attributes on /series"
    );

    let one = search(&gw, &token, &format!("/instances?SOPInstanceUID={sop}")).await;
    assert_eq!(one.len(), 1);
    assert_eq!(value(&one[0], "00100020"), "QIDO-A");
}

#[tokio::test]
async fn names_dates_and_uid_lists() {
    let gw = TestGateway::start(NORTH_SITE);
    let fx = load(&gw).await;
    let token = gw.create_token("demo", "read", "*");

    // Person Names ignore case, with or without wildcards.
    let found = search(&gw, &token, "/studies?PatientName=doe*").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_c, &fx.study_a]));
    let found = search(&gw, &token, "/studies?PatientName=doe%5Ejane").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_a]));
    let found = search(&gw, &token, "/studies?00100010=*%5EANN").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_b]));
    // Other strings do not (LO is case-sensitive in C-FIND).
    let answer = get(&gw, Some(&token), "/studies?PatientID=qido-a", None).await;
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());

    let found = search(&gw, &token, "/studies?StudyDate=20240101-20241231").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_a, &fx.study_b]));
    let found = search(&gw, &token, "/studies?StudyDate=-20231231").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_c]));
    let found = search(&gw, &token, "/studies?StudyDate=20240201-").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_b]));

    let list = format!("/studies?StudyInstanceUID={},{}", fx.study_b, fx.study_c);
    assert_eq!(
        study_uids(&search(&gw, &token, &list).await),
        ids(&[&fx.study_c, &fx.study_b])
    );
    let list = format!(
        "/studies?StudyInstanceUID={}%5C{}&StudyInstanceUID={}",
        fx.study_a, fx.study_b, fx.study_c
    );
    assert_eq!(search(&gw, &token, &list).await.len(), 3);

    let found = search(&gw, &token, "/studies?ModalitiesInStudy=MR").await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_a]));
    let found = search(
        &gw,
        &token,
        "/studies?ModalitiesInStudy=CR&PatientName=DOE*",
    )
    .await;
    assert_eq!(study_uids(&found), ids(&[&fx.study_c]));

    // Fuzzy matching is accepted, performed literally, and said so.
    let answer = get(
        &gw,
        Some(&token),
        "/studies?fuzzymatching=true&PatientID=QIDO-B",
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .warnings()
            .iter()
            .any(|w| w.contains("fuzzymatching"))
    );
}

#[tokio::test]
async fn paging_and_the_server_cap() {
    let config = base_config(NORTH_SITE).replace(
        "[dicomweb]\n",
        "[dicomweb]\nqido_default_limit = 2\nqido_max_limit = 3\n",
    );
    let gw = TestGateway::start_with_config(config);
    let fx = load(&gw).await;
    let token = gw.create_token("demo", "read", "*");

    // No limit: the default page, and a warning that more remain.
    let answer = get(&gw, Some(&token), "/studies", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(study_uids(&answer.json()), ids(&[&fx.study_c, &fx.study_a]));
    let warnings = answer.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("299 ") && w.contains("There are 1 additional results")),
        "{warnings:?}"
    );

    // The client's own page: stable, and no warning.
    let answer = get(&gw, Some(&token), "/studies?limit=1&offset=1", None).await;
    assert_eq!(study_uids(&answer.json()), ids(&[&fx.study_a]));
    assert!(answer.warnings().is_empty());
    let answer = get(&gw, Some(&token), "/studies?limit=2&offset=2", None).await;
    assert_eq!(study_uids(&answer.json()), ids(&[&fx.study_b]));

    // A limit over the cap is capped; the warning counts what is left.
    let answer = get(&gw, Some(&token), "/instances?limit=100", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json().len(), 3);
    assert!(
        answer
            .warnings()
            .iter()
            .any(|w| w.contains("There are 5 additional results")),
        "{:?}",
        answer.warnings()
    );
    let answer = get(&gw, Some(&token), "/instances?limit=100&offset=6", None).await;
    assert_eq!(answer.json().len(), 2);
    assert!(answer.warnings().is_empty());

    let answer = get(&gw, Some(&token), "/studies?offset=3", None).await;
    assert_eq!(answer.status, 204);
}

#[tokio::test]
async fn includefield_all_and_stored_attributes() {
    let gw = TestGateway::start(NORTH_SITE);
    let fx = load(&gw).await;
    let token = gw.create_token("demo", "read", "");

    let plain = search(&gw, &token, "/studies").await;
    assert!(
        plain[0].get("00081030").is_none(),
        "StudyDescription only on request"
    );
    let all = search(&gw, &token, "/studies?includefield=all").await;
    let a = &all[1];
    assert!(value(a, "00081030").as_str().is_some(), "{a}");
    assert!(
        a.get("00080060").is_none(),
        "series attributes stay out of study results"
    );
    let described = search(&gw, &token, "/studies?includefield=StudyDescription").await;
    assert!(described[1].get("00081030").is_some());

    // KVP is not indexed: read from each series' stored header; MR has none.
    let path = format!(
        "/studies/{}/series?includefield=00180060&includefield=ProtocolName",
        fx.study_a
    );
    let series = search(&gw, &token, &path).await;
    let (ct, mr) = (by_modality(&series, "CT"), by_modality(&series, "MR"));
    assert_eq!(ct["00180060"]["vr"], "DS");
    assert_eq!(value(ct, "00180060").as_f64(), Some(120.0), "{ct}");
    assert_eq!(mr["00180060"], serde_json::json!({"vr": "DS"}));
    assert_eq!(value(ct, "00181030"), "HEAD ROUTINE");
    assert_eq!(value(mr, "00181030"), "BRAIN ROUTINE");

    let path = format!(
        "/studies/{}/series/{}/instances?includefield=SliceThickness,KVP",
        fx.study_a, fx.ct_series_a
    );
    let instances = search(&gw, &token, &path).await;
    assert_eq!(instances.len(), 3);
    for instance in &instances {
        assert_eq!(
            value(instance, "00180050").as_f64(),
            Some(5.0),
            "{instance}"
        );
        assert_eq!(value(instance, "00180060").as_f64(), Some(120.0));
    }
}

#[tokio::test]
async fn bad_requests_tokens_and_media_types() {
    let gw = TestGateway::start(NORTH_SITE);
    let token = gw.create_token("demo", "read", "");

    for (query, expected) in [
        ("PatientNam=DOE", "PatientNam"),
        ("StudyDate=2024", "StudyDate"),
        ("StudyDate=20241231-20240101", "ends before it starts"),
        ("limit=ten", "limit"),
        ("Modality=CT", "series-level"),
        ("includefield=NoSuchKeyword", "NoSuchKeyword"),
        ("PatientID=A&PatientID=B", "only once"),
    ] {
        let answer = get(&gw, Some(&token), &format!("/studies?{query}"), None).await;
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        let problem: Value = serde_json::from_slice(&answer.body).unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{query}: {detail}");
    }
    let answer = get(&gw, Some(&token), "/studies/not-a-uid/series", None).await;
    assert_eq!(answer.status, 400);

    let answer = get(
        &gw,
        Some(&token),
        "/studies",
        Some("multipart/related; type=\"application/dicom+xml\""),
    )
    .await;
    assert_eq!(answer.status, 406);
    let answer = get(&gw, Some(&token), "/series", Some("application/json")).await;
    assert_eq!(answer.status, 204, "nothing stored yet");
    let answer = get(&gw, None, "/studies", None).await;
    assert_eq!(answer.status, 401);
    let answer = get(&gw, Some("dgw_00000000_nonsense"), "/instances", None).await;
    assert_eq!(answer.status, 401);

    let fx = load(&gw).await;
    let answer = get(&gw, Some(&token), "/studies", Some("application/json")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(study_uids(&answer.json()), ids(&[&fx.study_c, &fx.study_a]));
}

#[tokio::test]
async fn another_sites_study_answers_like_a_missing_one() {
    let gw = TestGateway::start(NORTH_SITE);
    let fx = load(&gw).await;
    let demo = gw.create_token("demo", "read", "");
    let north = gw.create_token("north", "read", "");
    let everyone = gw.create_token("demo", "read", "*");

    let seen = search(&gw, &demo, "/studies").await;
    assert_eq!(study_uids(&seen), ids(&[&fx.study_c, &fx.study_a]));
    let seen = search(&gw, &north, "/studies").await;
    assert_eq!(study_uids(&seen), ids(&[&fx.study_b]));
    assert_eq!(value(&seen[0], "00201208"), 2);

    let hidden = get(
        &gw,
        Some(&demo),
        &format!("/studies/{}/series", fx.study_b),
        None,
    )
    .await;
    let missing = get(&gw, Some(&demo), "/studies/1.2.3.999999/series", None).await;
    assert_eq!(hidden.status, 204);
    assert_eq!(
        (hidden.status, hidden.body.clone(), hidden.warnings()),
        (missing.status, missing.body.clone(), missing.warnings())
    );
    for path in [
        format!("/studies?StudyInstanceUID={}", fx.study_b),
        format!("/studies/{}/instances", fx.study_b),
        "/instances?PatientID=QIDO-B".to_string(),
        "/series?ModalitiesInStudy=CT&PatientName=SMITH*".to_string(),
    ] {
        assert_eq!(
            get(&gw, Some(&demo), &path, None).await.status,
            204,
            "{path}"
        );
    }
    // Counts never include what the caller may not see.
    let all_instances = get(&gw, Some(&demo), "/instances", None).await.json();
    assert_eq!(all_instances.len(), 6);

    let series = search(&gw, &everyone, &format!("/studies/{}/series", fx.study_b)).await;
    assert_eq!(series.len(), 1);
    assert_eq!(search(&gw, &everyone, "/studies").await.len(), 3);
}
