//! STOW-RS against the real binary over HTTPS: stored through the same
//! durable path as C-STORE, per-instance failures, and every malformed-body
//! error with its status.

use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::{
    TestGateway, base_config, multipart_related, sha256_file, small_ct, stow_content_type,
};
use serde_json::Value;

const B: &str = "gateway-test-boundary";

fn part10(series: &[SynthInstance]) -> Vec<Vec<u8>> {
    series.iter().map(|i| i.to_part10().unwrap()).collect()
}

async fn post(
    gw: &TestGateway,
    token: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = gw
        .https_client()
        .post(format!("{}{path}", gw.dicomweb_url()))
        .bearer_auth(token)
        .header("content-type", content_type)
        .header("accept", "application/dicom+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

fn sequence_len(body: &Value, tag: &str) -> usize {
    body[tag]["Value"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn stow_series_is_stored_durably_and_indexed() {
    let gw = TestGateway::start("");
    let token = gw.create_token("demo", "read,write", "");
    let series = small_ct(10, 31);
    let files = part10(&series);
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", f.as_slice()))
        .collect();
    let (status, body, _) = post(
        &gw,
        &token,
        "/studies",
        &stow_content_type(B),
        multipart_related(B, &parts),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sequence_len(&body, "00081199"), 10);
    assert_eq!(sequence_len(&body, "00081198"), 0);
    let url = body["00081190"]["Value"][0].as_str().unwrap();
    assert!(
        url.ends_with(&format!(
            "/dicomweb/studies/{}",
            series[0].study_instance_uid
        )),
        "{url}"
    );
    for inst in &series {
        let (path, sha) = gw.indexed(&inst.sop_instance_uid).expect("indexed");
        assert_eq!(sha256_file(&path), sha);
    }
    let (protocol, ae): (String, String) = gw
        .index()
        .query_row(
            "SELECT protocol, calling_ae FROM instances LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(protocol, "stow");
    assert!(ae.starts_with("token:"), "{ae}");
    assert_eq!(
        gw.metric(
            "gateway_ingest_instances_total{modality=\"CT\",protocol=\"stow\",site=\"demo\"}"
        ),
        10.0
    );

    // Posting the same instances again is idempotent.
    let (status, _, _) = post(
        &gw,
        &token,
        "/studies",
        &stow_content_type(B),
        multipart_related(B, &parts),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gw.indexed_count(), 10);
}

#[tokio::test]
async fn instance_of_another_study_fails_alone_with_202() {
    let gw = TestGateway::start("");
    let token = gw.create_token("demo", "write", "");
    let study_a = small_ct(2, 32);
    let mut spec_b = SeriesSpec::ct_head(1, 33);
    spec_b.rows = 64;
    spec_b.columns = 64;
    spec_b.study_instance_uid = Some("2.25.999999999".into());
    let stranger = generate_series(&spec_b);
    let files = part10(&[study_a.clone(), stranger.clone()].concat());
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", f.as_slice()))
        .collect();
    let path = format!("/studies/{}", study_a[0].study_instance_uid);
    let (status, body, headers) = post(
        &gw,
        &token,
        &path,
        &stow_content_type(B),
        multipart_related(B, &parts),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(sequence_len(&body, "00081199"), 2);
    let failed = &body["00081198"]["Value"][0];
    assert_eq!(failed["00081155"]["Value"][0], stranger[0].sop_instance_uid);
    assert_eq!(failed["00081197"]["Value"][0], 0xA900);
    assert!(
        headers["warning"]
            .to_str()
            .unwrap()
            .contains("another study"),
        "{headers:?}"
    );
    assert!(gw.indexed(&stranger[0].sop_instance_uid).is_none());
    assert_eq!(gw.indexed_count(), 2);
}

#[tokio::test]
async fn nothing_stored_is_409_with_failure_reasons() {
    let gw = TestGateway::start("");
    let token = gw.create_token("demo", "write", "");
    let not_dicom = vec![b'x'; 400];
    let mut lying = small_ct(1, 34)[0].to_part10().unwrap();
    // Corrupt the data set after the meta: an element claiming 3.75 GiB.
    let meta_end = 132 + 12 + u32::from_le_bytes(lying[140..144].try_into().unwrap()) as usize;
    lying.truncate(meta_end);
    lying.extend([0x40, 0x00, 0x60, 0xA1, b'U', b'T', 0, 0]);
    lying.extend(0xF000_0000u32.to_le_bytes());
    let parts: Vec<(&str, &[u8])> = vec![
        ("application/dicom", &not_dicom),
        ("application/dicom", &lying),
    ];
    let (status, body, _) = post(
        &gw,
        &token,
        "/studies",
        &stow_content_type(B),
        multipart_related(B, &parts),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let reasons: Vec<u64> = body["00081198"]["Value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["00081197"]["Value"][0].as_u64().unwrap())
        .collect();
    // Not DICOM at all: cannot understand; a declared length past the
    // bytes present: the validator's own code in the same family.
    assert_eq!(reasons, vec![0xC000, 0xC002]);
    assert_eq!(gw.indexed_count(), 0);
    assert_eq!(
        std::fs::read_dir(gw.data_dir().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn malformed_bodies_get_specific_4xx() {
    let gw = TestGateway::start("");
    let token = gw.create_token("demo", "write", "");
    let file = small_ct(1, 35)[0].to_part10().unwrap();
    let one = |ct: &str| multipart_related(B, &[(ct, file.as_slice())]);
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "single application/dicom",
            "application/dicom".into(),
            file.clone(),
            415,
        ),
        (
            "no type parameter",
            format!("multipart/related; boundary={B}"),
            one("application/dicom"),
            415,
        ),
        (
            "dicom+json type",
            format!("multipart/related; type=\"application/dicom+json\"; boundary={B}"),
            one("application/dicom"),
            415,
        ),
        (
            "no boundary",
            "multipart/related; type=\"application/dicom\"".into(),
            one("application/dicom"),
            400,
        ),
        (
            "part of another type",
            stow_content_type(B),
            one("image/png"),
            415,
        ),
        (
            "no parts",
            stow_content_type(B),
            format!("--{B}--\r\n").into_bytes(),
            400,
        ),
        (
            "empty part",
            stow_content_type(B),
            multipart_related(B, &[("application/dicom", b"")]),
            400,
        ),
        (
            "part without content type",
            stow_content_type(B),
            format!("--{B}\r\n\r\n")
                .into_bytes()
                .into_iter()
                .chain(file.clone())
                .chain(format!("\r\n--{B}--\r\n").into_bytes())
                .collect(),
            400,
        ),
        (
            "nested multipart",
            stow_content_type(B),
            multipart_related(
                B,
                &[(
                    "multipart/related; boundary=inner",
                    multipart_related("inner", &[("application/dicom", &file)]).as_slice(),
                )],
            ),
            400,
        ),
        (
            "truncated body",
            stow_content_type(B),
            format!("--{B}\r\nContent-Type: application/dicom\r\n\r\n")
                .into_bytes()
                .into_iter()
                .chain(file[..200].to_vec())
                .collect(),
            400,
        ),
    ];
    for (name, content_type, body, expected) in cases {
        let (status, problem, _) = post(&gw, &token, "/studies", &content_type, body).await;
        assert_eq!(status, expected, "{name}: {problem}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: problem body {problem}"
        );
    }
    // A bad Accept is 406; a malformed study UID in the path is 400.
    let response = gw
        .https_client()
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(&token)
        .header("content-type", stow_content_type(B))
        .header("accept", "application/dicom+xml")
        .body(one("application/dicom"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 406);
    let (status, _, _) = post(
        &gw,
        &token,
        "/studies/1..2",
        &stow_content_type(B),
        one("application/dicom"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        gw.indexed_count(),
        0,
        "nothing from the failed requests is stored"
    );
    // Still healthy.
    let (status, _, _) = post(
        &gw,
        &token,
        "/studies",
        &stow_content_type(B),
        one("application/dicom"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn size_limits_apply_to_declared_and_streamed_bodies() {
    let gw = TestGateway::start_with_config(base_config("").replace(
        "body_timeout = \"20s\"",
        "body_timeout = \"20s\"\nmax_body_size = \"64KiB\"",
    ));
    let token = gw.create_token("demo", "write", "");
    let big = small_ct(1, 36)[0].to_part10().unwrap(); // ~8 KiB of 64x64 pixels
    let parts: Vec<(&str, &[u8])> = (0..12)
        .map(|_| ("application/dicom", big.as_slice()))
        .collect();
    let body = multipart_related(B, &parts);
    assert!(body.len() > 64 * 1024);
    let (status, problem, _) =
        post(&gw, &token, "/studies", &stow_content_type(B), body.clone()).await;
    assert_eq!(status, 413, "{problem}");

    // The same body without a Content-Length (chunked): cut off when it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let response = gw
        .https_client()
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(&token)
        .header("content-type", stow_content_type(B))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }
    assert_eq!(gw.metric("gateway_http_requests_total{method=\"POST\",route=\"/dicomweb/studies\",status=\"413\"}"), 2.0);
}

#[tokio::test]
async fn a_body_that_never_finishes_hits_the_deadline() {
    let gw = TestGateway::start_with_config(
        base_config("").replace("body_timeout = \"20s\"", "body_timeout = \"1s\""),
    );
    let token = gw.create_token("demo", "write", "");
    let file = small_ct(1, 37)[0].to_part10().unwrap();
    let head = format!("--{B}\r\nContent-Type: application/dicom\r\n\r\n")
        .into_bytes()
        .into_iter()
        .chain(file[..1000].to_vec())
        .collect::<Vec<u8>>();
    let stalled = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(
        futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok::<_, std::io::Error>(Vec::new())
        }),
    );
    use futures::StreamExt;
    let started = std::time::Instant::now();
    let response = gw
        .https_client()
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(&token)
        .header("content-type", stow_content_type(B))
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 408);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "not cut off: {:?}",
        started.elapsed()
    );
    assert_eq!(gw.metric("gateway_http_requests_total{method=\"POST\",route=\"/dicomweb/studies\",status=\"408\"}"), 1.0);
    assert_eq!(
        std::fs::read_dir(gw.data_dir().join("tmp"))
            .unwrap()
            .count(),
        0,
        "the partial upload is cleaned up"
    );
}

#[tokio::test]
async fn more_parts_than_allowed_is_413() {
    let gw = TestGateway::start_with_config(base_config("").replace(
        "body_timeout = \"20s\"",
        "body_timeout = \"20s\"\nmax_parts = 2",
    ));
    let token = gw.create_token("demo", "write", "");
    let files = part10(&small_ct(3, 38));
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", f.as_slice()))
        .collect();
    let (status, problem, _) = post(
        &gw,
        &token,
        "/studies",
        &stow_content_type(B),
        multipart_related(B, &parts),
    )
    .await;
    assert_eq!(status, 413, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("2 parts"),
        "{problem}"
    );
}
