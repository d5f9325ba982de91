//! STOW-RS bodies of every awkward shape through the real binary (issue 12,
//! STOW robustness): parts shorter than a DICOM header, cut inside the file
//! meta, empty, of another media type; a hundred and fifty failures in one
//! request; a boundary that never appears or never closes. Each request
//! gets a response (never a dropped connection), each bad part its
//! FailedSOPSequence entry or the whole request a 400 with a problem body,
//! honest parts beside them are stored, and the process stays alive with
//! its peak RSS bounded.

use dicom_loadtest::synth::hostile::{HostileKind, hostile};
use gateway_e2e::{TestGateway, multipart_related, small_ct, stow_content_type};
use serde_json::Value;

const B: &str = "stow-multipart-boundary";
/// See `hostile_ingest.rs`: honest traffic moves the high-water mark by a
/// few MiB; buffering a body or a part whole would cost far more.
const RSS_HEADROOM: u64 = 256 * 1024 * 1024;
/// Most `Warning` headers a response may carry however many parts fail:
/// HTTP/1.1 clients (Python's http.client) refuse more than 100 header
/// lines, and HTTP/2 clients cap the header block.
const MAX_WARNING_HEADERS: usize = 10;

/// (Content-Type, bytes) of each part of a request.
type Parts<'a> = Vec<(&'a str, &'a [u8])>;

struct Answer {
    status: u16,
    content_type: String,
    warnings: usize,
    body: Value,
}

async fn post(gw: &TestGateway, token: &str, body: Vec<u8>) -> Answer {
    try_post(gw, token, body)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// POSTs `body` to /studies; `Err` says why no response came back.
async fn try_post(gw: &TestGateway, token: &str, body: Vec<u8>) -> Result<Answer, String> {
    let response = gw
        .https_client()
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(token)
        .header("content-type", stow_content_type(B))
        .header("accept", "application/dicom+json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no response ({e:?}); gateway running: {}", gw.is_running()))?;
    let status = response.status().as_u16();
    let header = |name| response.headers().get_all(name);
    let content_type = header("content-type")
        .iter()
        .next()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let warnings = header("warning").iter().count();
    let text = response
        .text()
        .await
        .map_err(|e| format!("response body cut off: {e:?}"))?;
    Ok(Answer {
        status,
        content_type,
        warnings,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}

fn entries(body: &Value, tag: &str) -> Vec<Value> {
    body[tag]["Value"].as_array().cloned().unwrap_or_default()
}

/// A gateway, a write token and the peak RSS after one honest STOW.
async fn start() -> (TestGateway, String, u64) {
    let gw = TestGateway::start("");
    let token = gw.create_token("demo", "read,write", "");
    let honest = small_ct(1, 500)[0].to_part10().unwrap();
    let answer = post(
        &gw,
        &token,
        multipart_related(B, &[("application/dicom", &honest)]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let baseline = gw.peak_rss_bytes();
    (gw, token, baseline)
}

/// Still serving (an honest STOW stores) and the peak RSS bounded.
async fn assert_healthy(gw: &TestGateway, token: &str, baseline: u64, seed: u64) {
    assert!(gw.is_running(), "the gateway process died");
    let honest = &small_ct(1, seed)[0];
    let file = honest.to_part10().unwrap();
    let answer = post(
        gw,
        token,
        multipart_related(B, &[("application/dicom", &file)]),
    )
    .await;
    assert_eq!(answer.status, 200, "honest STOW after: {}", answer.body);
    assert!(gw.indexed(&honest.sop_instance_uid).is_some());
    let peak = gw.peak_rss_bytes();
    assert!(
        peak <= baseline + RSS_HEADROOM,
        "peak RSS {} MiB over baseline {} MiB + 256 MiB",
        peak >> 20,
        baseline >> 20
    );
}

/// A 400 with an RFC 9457 body that says what was wrong.
fn check_problem(answer: &Answer) -> Result<(), String> {
    let detail = answer.body["detail"].as_str().unwrap_or("");
    if answer.status != 400
        || !answer.content_type.starts_with("application/problem+json")
        || detail.is_empty()
    {
        return Err(format!(
            "{} {} (expected 400 with a problem+json detail): {}",
            answer.status, answer.content_type, answer.body
        ));
    }
    Ok(())
}

/// `bad` parts then one honest part: either a 400 with a problem body, or
/// every bad part failed (with a FailureReason) and the honest one stored.
async fn bad_parts_then_honest(
    gw: &TestGateway,
    token: &str,
    bad: &[(&str, &[u8])],
    seed: u64,
) -> Result<(), String> {
    let honest = &small_ct(1, seed)[0];
    let file = honest.to_part10().unwrap();
    let mut parts = bad.to_vec();
    parts.push(("application/dicom", &file));
    let answer = try_post(gw, token, multipart_related(B, &parts)).await?;
    if answer.status == 400 {
        return check_problem(&answer);
    }
    let failed = entries(&answer.body, "00081198");
    let stored = entries(&answer.body, "00081199");
    let specific = |entry: &Value| {
        let reason = entry["00081197"]["Value"][0].as_u64().unwrap_or(0);
        reason & 0xFF00 == 0xA900 || reason & 0xF000 == 0xC000
    };
    if answer.status != 202
        || failed.len() != bad.len()
        || !failed.iter().all(specific)
        || stored.len() != 1
    {
        return Err(format!("answered {}: {}", answer.status, answer.body));
    }
    match gw.indexed(&honest.sop_instance_uid) {
        Some(_) => Ok(()),
        None => Err("the honest part is not indexed".into()),
    }
}

#[tokio::test]
async fn parts_shorter_than_a_dicom_header_fail_alone() {
    let (gw, token, baseline) = start().await;
    let cut = small_ct(1, 501)[0].to_part10().unwrap();
    // Preamble, DICM and 48 bytes of the file meta group.
    let cut_in_meta = &cut[..180];
    let few: &[u8] = b"DIC\x00\x01";
    let shapes: [(&str, Parts); 4] = [
        ("a few bytes", vec![("application/dicom", few)]),
        (
            "cut inside the file meta",
            vec![("application/dicom", cut_in_meta)],
        ),
        ("empty", vec![("application/dicom", b"")]),
        (
            "all three",
            vec![
                ("application/dicom", few),
                ("application/dicom", cut_in_meta),
                ("application/dicom", b""),
            ],
        ),
    ];
    let mut problems = Vec::new();
    for (seed, (what, bad)) in (510..).zip(shapes) {
        if let Err(e) = bad_parts_then_honest(&gw, &token, &bad, seed).await {
            problems.push(format!("{what}: {e}"));
        }
        assert!(gw.is_running(), "{what}: the gateway process died");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_healthy(&gw, &token, baseline, 520).await;
}

#[tokio::test]
async fn a_part_of_another_media_type_fails_or_the_request_is_415() {
    let (gw, token, baseline) = start().await;
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let honest = &small_ct(1, 530)[0];
    let file = honest.to_part10().unwrap();
    let body = multipart_related(B, &[("image/png", png), ("application/dicom", &file)]);
    let answer = post(&gw, &token, body).await;
    if answer.status == 415 {
        assert!(
            answer.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("image/png")),
            "{}",
            answer.body
        );
    } else {
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(entries(&answer.body, "00081198").len(), 1);
        assert!(gw.indexed(&honest.sop_instance_uid).is_some());
    }
    assert_healthy(&gw, &token, baseline, 531).await;
}

#[tokio::test]
async fn many_failures_are_in_the_body_with_few_warning_headers() {
    const PARTS: usize = 150;
    let (gw, token, baseline) = start().await;
    let files: Vec<Vec<u8>> = (0..PARTS as u64)
        .map(|seed| hostile(HostileKind::FewBytes, 600 + seed).unwrap().part10)
        .collect();
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| ("application/dicom", f.as_slice()))
        .collect();
    let body = multipart_related(B, &parts);

    let mut problems = Vec::new();
    // reqwest (HTTP/2 by ALPN).
    match try_post(&gw, &token, body.clone()).await {
        Ok(answer) => {
            let failed = entries(&answer.body, "00081198").len();
            if answer.status != 409 || failed != PARTS || answer.warnings > MAX_WARNING_HEADERS {
                problems.push(format!(
                    "reqwest: {} with {failed} failures in the body and {} Warning headers",
                    answer.status, answer.warnings
                ));
            }
        }
        Err(e) => problems.push(format!("reqwest: {e}")),
    }

    // Python requests (HTTP/1.1, http.client's 100-header limit).
    let report = python_post(&gw, &token, &body);
    let readable = report["error"].is_null()
        && report["status"] == 409
        && report["failed"] == PARTS
        && report["warning_headers"]
            .as_u64()
            .is_some_and(|n| n <= MAX_WARNING_HEADERS as u64);
    if !readable {
        problems.push(format!("Python requests: {report}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_healthy(&gw, &token, baseline, 540).await;
}

/// `tests/python/stow_post.py`: what Python `requests` reads of the answer.
fn python_post(gw: &TestGateway, token: &str, body: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, body).unwrap();
    let python = std::env::var("GATEWAY_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python").into());
    let out = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/stow_post.py"))
        .arg(format!("{}/studies", gw.dicomweb_url()))
        .arg(token)
        .arg(gw.ca_cert())
        .arg(stow_content_type(B))
        .arg(&body_file)
        .env("REQUESTS_CA_BUNDLE", gw.ca_cert())
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

#[tokio::test]
async fn a_boundary_that_never_appears_or_never_closes_is_400() {
    let (gw, token, baseline) = start().await;
    let file = small_ct(1, 550)[0].to_part10().unwrap();
    // A megabyte of DICOM with no boundary line anywhere: once with its
    // line breaks, once with none (the multipart reader's 64 KiB line
    // buffer overflows first, which must not read as "body too large").
    let no_boundary: Vec<u8> = file.iter().copied().cycle().take(1024 * 1024).collect();
    let no_line_break: Vec<u8> = no_boundary
        .iter()
        .map(|b| if *b == b'\n' { b' ' } else { *b })
        .collect();
    // One complete part, then the body ends without the closing boundary.
    let mut unclosed = format!("--{B}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    unclosed.extend_from_slice(&file);
    unclosed.extend_from_slice(b"\r\n");
    let mut problems = Vec::new();
    for (what, body) in [
        ("boundary never appears", no_boundary),
        ("boundary never appears, no line break", no_line_break),
        ("closing boundary missing", unclosed),
    ] {
        let checked = match try_post(&gw, &token, body).await {
            Ok(answer) => check_problem(&answer),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            problems.push(format!("{what}: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_healthy(&gw, &token, baseline, 551).await;
}
