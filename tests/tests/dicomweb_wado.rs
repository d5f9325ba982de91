//! WADO-RS against the real binary: instances stored by C-STORE come back
//! byte-identical (study, series, instance), with metadata whose bulk data
//! references resolve, frames cut from native and compressed pixel data,
//! rendered JPEG/PNG, and the negotiation, not-found and site rules.

use std::collections::HashMap;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::synth::SynthInstance;
use gateway_e2e::{TestGateway, c_store_all, dcmtk, sha256_file, small_ct, write_part10_files};
use sha2::{Digest, Sha256};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";
const DICOM_ANY_SYNTAX: &str = r#"multipart/related; type="application/dicom"; transfer-syntax=*"#;
const OCTETS: &str = r#"multipart/related; type="application/octet-stream""#;

struct Wado {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Wado {
    fn new(gw: &TestGateway, token: String) -> Self {
        Self {
            client: gw.https_client(),
            base: gw.dicomweb_url(),
            token,
        }
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> reqwest::Response {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.client.get(url).bearer_auth(&self.token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request.send().await.expect("request")
    }

    /// GET, asserting 200; returns Content-Type and body.
    async fn ok(&self, path: &str, accept: Option<&str>) -> (String, Vec<u8>) {
        let response = self.get(path, accept).await;
        let status = response.status();
        let content_type = header(&response, "content-type");
        let announced = response.content_length();
        let body = response.bytes().await.expect("body").to_vec();
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        if let Some(length) = announced {
            assert_eq!(length, body.len() as u64, "{path}: Content-Length");
        }
        (content_type, body)
    }
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn series_path(inst: &SynthInstance) -> String {
    format!(
        "/studies/{}/series/{}",
        inst.study_instance_uid, inst.series_instance_uid
    )
}

fn instance_path(inst: &SynthInstance) -> String {
    format!("{}/instances/{}", series_path(inst), inst.sop_instance_uid)
}

/// The parts of a multipart body: (part headers, content).
fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(
        content_type.starts_with("multipart/related"),
        "not multipart: {content_type}"
    );
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let starts: Vec<usize> = (0..body.len().saturating_sub(delimiter.len() - 1))
        .filter(|&i| body[i..].starts_with(&delimiter) && (i == 0 || body[..i].ends_with(b"\r\n")))
        .collect();
    assert!(starts.len() >= 2, "no parts");
    let closing = *starts.last().unwrap();
    assert!(
        body[closing + delimiter.len()..].starts_with(b"--"),
        "no closing delimiter"
    );
    starts
        .windows(2)
        .map(|w| {
            let part = &body[w[0] + delimiter.len()..w[1] - 2];
            let part = part.strip_prefix(b"\r\n").expect("CRLF after delimiter");
            let split = part
                .windows(4)
                .position(|x| x == b"\r\n\r\n")
                .expect("part headers");
            (
                String::from_utf8(part[..split].to_vec()).unwrap(),
                part[split + 4..].to_vec(),
            )
        })
        .collect()
}

fn part_content_type(headers: &str) -> &str {
    headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim())
        .expect("part Content-Type")
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

fn jpeg_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "not a JPEG");
    let be = |i: usize| u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
    let mut i = 2;
    loop {
        assert_eq!(bytes[i], 0xFF, "JPEG marker expected at {i}");
        let marker = bytes[i + 1];
        // SOF0 (baseline) is what PS3.18 8.7.4 requires.
        if marker == 0xC0 {
            return (be(i + 7), be(i + 5));
        }
        assert!(
            !(0xC1..=0xCF).contains(&marker) || matches!(marker, 0xC4 | 0xC8 | 0xCC),
            "not a baseline JPEG (SOF {marker:02X})"
        );
        i += 2 + be(i + 2) as usize;
    }
}

fn stored_pixel_bytes(inst: &SynthInstance) -> Vec<u8> {
    inst.dataset
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec()
}

/// Every part is one stored file, byte for byte; returns their SOP Instance UIDs.
fn assert_parts_are_stored_files(gw: &TestGateway, parts: &[(String, Vec<u8>)]) -> Vec<String> {
    let index = gw.index();
    parts
        .iter()
        .map(|(headers, bytes)| {
            assert_eq!(
                part_content_type(headers),
                format!("application/dicom; transfer-syntax={EXPLICIT_LE}")
            );
            let sha = hex::encode(Sha256::digest(bytes));
            let (uid, path): (String, String) = index
                .query_row(
                    "SELECT sop_instance_uid, path FROM instances WHERE sha256 = ?1",
                    [&sha],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("part hashes to an indexed instance");
            let stored = std::fs::read(gw.data_dir().join(path)).unwrap();
            assert!(stored == *bytes, "part differs from the stored file");
            uid
        })
        .collect()
}

#[tokio::test]
async fn stored_series_comes_back_byte_identical_at_every_level() {
    let gw = TestGateway::start("");
    let series = small_ct(5, 11);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_LE, &series).await;
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));

    let (content_type, body) = wado
        .ok(&series_path(&series[0]), Some(DICOM_ANY_SYNTAX))
        .await;
    assert!(
        content_type.contains(r#"type="application/dicom""#),
        "{content_type}"
    );
    let parts = multipart(&content_type, &body);
    assert_eq!(parts.len(), 5);
    let mut uids = assert_parts_are_stored_files(&gw, &parts);
    uids.sort();
    let mut expected: Vec<String> = series.iter().map(|i| i.sop_instance_uid.clone()).collect();
    expected.sort();
    assert_eq!(uids, expected);
    for inst in &series {
        let (path, sha) = gw.indexed(&inst.sop_instance_uid).unwrap();
        assert_eq!(sha256_file(&path), sha);
    }

    // Study level, with no Accept header and with */*.
    let study = format!("/studies/{}", series[0].study_instance_uid);
    for accept in [None, Some("*/*")] {
        let (content_type, body) = wado.ok(&study, accept).await;
        let parts = multipart(&content_type, &body);
        assert_eq!(assert_parts_are_stored_files(&gw, &parts).len(), 5);
    }

    // Instance level: multipart, or the bare file when asked for.
    let (content_type, body) = wado
        .ok(&instance_path(&series[2]), Some(DICOM_ANY_SYNTAX))
        .await;
    let parts = multipart(&content_type, &body);
    assert_eq!(
        assert_parts_are_stored_files(&gw, &parts),
        vec![series[2].sop_instance_uid.clone()]
    );
    let (content_type, body) = wado
        .ok(&instance_path(&series[2]), Some("application/dicom"))
        .await;
    assert_eq!(
        content_type,
        format!("application/dicom; transfer-syntax={EXPLICIT_LE}")
    );
    let (path, _) = gw.indexed(&series[2].sop_instance_uid).unwrap();
    assert!(std::fs::read(path).unwrap() == body);
    // Without a syntax, the default (Explicit VR Little Endian) is what is stored.
    let (content_type, body) = wado
        .ok(
            &series_path(&series[0]),
            Some(r#"multipart/related; type="application/dicom""#),
        )
        .await;
    assert_eq!(
        assert_parts_are_stored_files(&gw, &multipart(&content_type, &body)).len(),
        5
    );
}

#[tokio::test]
async fn metadata_names_the_instances_and_its_bulk_data_resolves() {
    let gw = TestGateway::start("");
    let series = small_ct(3, 12);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_LE, &series).await;
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));

    let (content_type, body) = wado
        .ok(&format!("{}/metadata", series_path(&series[0])), None)
        .await;
    assert_eq!(content_type, "application/dicom+json");
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON array");
    assert_eq!(objects.len(), 3);
    let by_uid: HashMap<String, &serde_json::Value> = objects
        .iter()
        .map(|o| (o["00080018"]["Value"][0].as_str().unwrap().to_string(), o))
        .collect();
    for inst in &series {
        let object = by_uid[&inst.sop_instance_uid];
        assert_eq!(
            object["0020000D"]["Value"][0],
            inst.study_instance_uid.as_str()
        );
        assert_eq!(
            object["0020000E"]["Value"][0],
            inst.series_instance_uid.as_str()
        );
        assert_eq!(object["00080016"]["Value"][0], CT);
        assert_eq!(object["00280010"]["Value"][0], 64);
        assert!(
            object.get("00020010").is_none(),
            "file meta leaked into metadata"
        );
        let pixel = &object["7FE00010"];
        assert!(pixel.get("InlineBinary").is_none());
        let uri = pixel["BulkDataURI"]
            .as_str()
            .expect("Pixel Data BulkDataURI");
        assert!(uri.starts_with("https://"), "{uri}");
        let (content_type, body) = wado.ok(uri, Some(OCTETS)).await;
        let parts = multipart(&content_type, &body);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            part_content_type(&parts[0].0),
            format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}")
        );
        assert!(
            parts[0].1 == stored_pixel_bytes(inst),
            "bulk data differs from the pixels sent"
        );
        // And as a single part.
        let (content_type, body) = wado.ok(uri, Some("application/octet-stream")).await;
        assert!(content_type.starts_with("application/octet-stream"));
        assert!(body == stored_pixel_bytes(inst));
    }

    // Study and instance levels.
    let (_, body) = wado
        .ok(
            &format!("/studies/{}/metadata", series[0].study_instance_uid),
            Some("application/dicom+json"),
        )
        .await;
    assert_eq!(
        serde_json::from_slice::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .len(),
        3
    );
    let (_, body) = wado
        .ok(
            &format!("{}/metadata", instance_path(&series[1])),
            Some("application/json"),
        )
        .await;
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0]["00080018"]["Value"][0],
        series[1].sop_instance_uid.as_str()
    );
}

#[tokio::test]
async fn frames_of_native_pixel_data_are_the_pixel_bytes() {
    let gw = TestGateway::start("");
    let mut series = small_ct(2, 13);
    // Make the second instance a three-frame image with distinct frames.
    let frame: Vec<u8> = stored_pixel_bytes(&series[1]);
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|k| frame.iter().map(|b| b.wrapping_add(k * 17)).collect())
        .collect();
    let words: Vec<u16> = frames
        .concat()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let multi = &mut series[1];
    multi.dataset.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("3"),
    ));
    multi.dataset.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(words.into()),
    ));
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_LE, &series).await;
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));
    let base = instance_path(&series[1]);

    let (content_type, body) = wado.ok(&format!("{base}/frames/3,1"), Some(OCTETS)).await;
    let parts = multipart(&content_type, &body);
    assert_eq!(parts.len(), 2);
    assert!(parts[0].1 == frames[2], "frame 3");
    assert!(parts[1].1 == frames[0], "frame 1");
    assert_eq!(
        part_content_type(&parts[0].0),
        format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}")
    );
    // All frames with transfer-syntax=*, and one frame as a single part.
    let (content_type, body) = wado
        .ok(
            &format!("{base}/frames/1,2,3"),
            Some(r#"multipart/related; type="application/octet-stream"; transfer-syntax=*"#),
        )
        .await;
    let parts = multipart(&content_type, &body);
    assert!(parts.iter().map(|p| &p.1).eq(frames.iter()));
    let (_, body) = wado
        .ok(
            &format!("{base}/frames/2"),
            Some("application/octet-stream"),
        )
        .await;
    assert!(body == frames[1]);
    // A single-frame instance has frame 1.
    let (content_type, body) = wado
        .ok(&format!("{}/frames/1", instance_path(&series[0])), None)
        .await;
    assert!(multipart(&content_type, &body)[0].1 == stored_pixel_bytes(&series[0]));

    for bad in ["4", "0", "1,x", "2,4"] {
        let response = wado
            .get(&format!("{base}/frames/{bad}"), Some(OCTETS))
            .await;
        assert_eq!(response.status(), 400, "frames/{bad}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }
    // Compressed media types cannot be had from native pixel data.
    let response = wado
        .get(
            &format!("{base}/frames/1"),
            Some(r#"multipart/related; type="image/jpeg""#),
        )
        .await;
    assert_eq!(response.status(), 406);
}

#[tokio::test]
async fn rendered_and_thumbnail_images_have_the_right_size() {
    let gw = TestGateway::start("");
    let series = small_ct(3, 14);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_LE, &series).await;
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));
    let base = instance_path(&series[1]);

    let (content_type, body) = wado.ok(&format!("{base}/rendered"), None).await;
    assert_eq!(content_type, "image/jpeg", "JPEG is the default");
    assert_eq!(jpeg_size(&body), (64, 64));
    let (content_type, body) = wado
        .ok(&format!("{base}/rendered"), Some("image/png"))
        .await;
    assert_eq!(content_type, "image/png");
    assert_eq!(png_size(&body), (64, 64));
    let (_, body) = wado
        .ok(
            &format!("{base}/frames/1/rendered?viewport=128,96&window=40,80"),
            Some("image/png"),
        )
        .await;
    assert_eq!(png_size(&body), (96, 96));
    let (content_type, _) = wado
        .ok(&format!("{base}/rendered?accept=image/png"), None)
        .await;
    assert_eq!(content_type, "image/png");

    let (_, body) = wado.ok(&format!("{base}/thumbnail"), None).await;
    assert_eq!(jpeg_size(&body), (64, 64), "thumbnails are not enlarged");
    let (_, body) = wado
        .ok(
            &format!("{base}/thumbnail?viewport=32,32"),
            Some("image/png"),
        )
        .await;
    assert_eq!(png_size(&body), (32, 32));
    let (_, body) = wado
        .ok(
            &format!("{}/thumbnail", series_path(&series[0])),
            Some("image/*"),
        )
        .await;
    assert_eq!(jpeg_size(&body), (64, 64));

    for (path, accept) in [
        (format!("{base}/rendered"), "image/gif"),
        (format!("{base}/rendered"), DICOM_ANY_SYNTAX),
        (format!("{base}/thumbnail"), "text/html"),
    ] {
        assert_eq!(
            wado.get(&path, Some(accept)).await.status(),
            406,
            "{accept}"
        );
    }
    for bad in ["viewport=0,10", "window=40,0", "quality=500"] {
        let response = wado.get(&format!("{base}/rendered?{bad}"), None).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let response = wado.get(&format!("{base}/frames/2/rendered"), None).await;
    assert_eq!(response.status(), 400, "frame out of range");
}

#[tokio::test]
async fn compressed_frames_go_as_stored_or_decoded() {
    let gw = TestGateway::start("");
    let series = small_ct(2, 15);
    let dir = tempfile::tempdir().unwrap();
    let files = write_part10_files(dir.path(), &series);
    for (k, (tool, propose, ts)) in [
        ("dcmcjpeg", "-xs", JPEG_LOSSLESS_SV1),
        ("dcmcjpls", "-xt", JPEG_LS),
    ]
    .into_iter()
    .enumerate()
    {
        let compressed = dir.path().join(format!("{tool}.dcm"));
        let out = dcmtk(tool)
            .arg(&files[k])
            .arg(&compressed)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = dcmtk("storescu")
            .arg(propose)
            .args(gw.dcmtk_args("DEMO-SCU"))
            .arg(&compressed)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "storescu: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (path, _) = gw.indexed(&series[k].sop_instance_uid).unwrap();
        assert_eq!(
            dicom_object::open_file(&path)
                .unwrap()
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0'),
            ts
        );
    }
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));
    let stored_fragments = |inst: &SynthInstance| -> Vec<u8> {
        let (path, _) = gw.indexed(&inst.sop_instance_uid).unwrap();
        let obj = dicom_object::open_file(path).unwrap();
        let value = obj.element(tags::PIXEL_DATA).unwrap().value().clone();
        value.fragments().expect("encapsulated").concat()
    };

    // JPEG Lossless: as stored with its media type, or decoded to octets.
    let jpeg = instance_path(&series[0]);
    for accept in [Some(r#"multipart/related; type="image/jpeg""#), None] {
        let (content_type, body) = wado.ok(&format!("{jpeg}/frames/1"), accept).await;
        assert!(
            content_type.contains(r#"type="image/jpeg""#),
            "{content_type}"
        );
        let parts = multipart(&content_type, &body);
        assert_eq!(
            part_content_type(&parts[0].0),
            format!("image/jpeg; transfer-syntax={JPEG_LOSSLESS_SV1}")
        );
        assert_eq!(&parts[0].1[..2], &[0xFF, 0xD8]);
        assert!(
            parts[0].1 == stored_fragments(&series[0]),
            "fragments altered"
        );
    }
    let (content_type, body) = wado.ok(&format!("{jpeg}/frames/1"), Some(OCTETS)).await;
    let parts = multipart(&content_type, &body);
    assert_eq!(
        part_content_type(&parts[0].0),
        format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}")
    );
    assert!(
        parts[0].1 == stored_pixel_bytes(&series[0]),
        "lossless decode differs from the original"
    );
    let (_, body) = wado
        .ok(&format!("{jpeg}/rendered"), Some("image/png"))
        .await;
    assert_eq!(png_size(&body), (64, 64));
    // The stored file, as stored.
    let (content_type, body) = wado.ok(&jpeg, Some(DICOM_ANY_SYNTAX)).await;
    let parts = multipart(&content_type, &body);
    assert_eq!(
        part_content_type(&parts[0].0),
        format!("application/dicom; transfer-syntax={JPEG_LOSSLESS_SV1}")
    );
    // Asking for it in another syntax is not met: we never transcode.
    let response = wado
        .get(
            &jpeg,
            Some(&format!(
                r#"multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}"#
            )),
        )
        .await;
    assert_eq!(response.status(), 406);

    // JPEG-LS: frames as stored; no decoder here, so rendering is a clear 406.
    let jls = instance_path(&series[1]);
    let (content_type, body) = wado.ok(&format!("{jls}/frames/1"), None).await;
    let parts = multipart(&content_type, &body);
    assert_eq!(
        part_content_type(&parts[0].0),
        format!("image/jls; transfer-syntax={JPEG_LS}")
    );
    assert!(parts[0].1 == stored_fragments(&series[1]));
    let response = wado.get(&format!("{jls}/rendered"), None).await;
    assert_eq!(response.status(), 406);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains(JPEG_LS),
        "{problem}"
    );
    let response = wado.get(&format!("{jls}/frames/1"), Some(OCTETS)).await;
    assert_eq!(response.status(), 406);
    // The gateway is still serving.
    wado.ok(&format!("{jpeg}/thumbnail"), None).await;
}

#[tokio::test]
async fn native_syntaxes_convert_to_explicit_le_on_request() {
    let gw = TestGateway::start("");
    let series = small_ct(2, 16);
    c_store_all(gw.dimse, "DEMO-SCU", IMPLICIT_LE, &series).await;
    let (path, _) = gw.indexed(&series[0].sop_instance_uid).unwrap();
    assert_eq!(
        dicom_object::open_file(&path)
            .unwrap()
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0'),
        IMPLICIT_LE
    );
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));
    let series_url = series_path(&series[0]);

    // As stored: with the wildcard, by its own UID, or with no preference.
    for accept in [
        Some(DICOM_ANY_SYNTAX.to_string()),
        Some(format!(
            r#"multipart/related; type="application/dicom"; transfer-syntax={IMPLICIT_LE}"#
        )),
        None,
    ] {
        let (content_type, body) = wado.ok(&series_url, accept.as_deref()).await;
        let parts = multipart(&content_type, &body);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            part_content_type(&parts[0].0),
            format!("application/dicom; transfer-syntax={IMPLICIT_LE}")
        );
    }
    // PS3.18 8.7.3.4: no syntax named means Explicit VR Little Endian; an
    // implicit VR instance is converted (same pixel values, new encoding).
    for accept in [
        r#"multipart/related; type="application/dicom""#.to_string(),
        format!(r#"multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}"#),
    ] {
        let response = wado.get(&series_url, Some(&accept)).await;
        assert_eq!(response.status(), 200, "{accept}");
        let content_type = header(&response, "content-type");
        let body = response.bytes().await.unwrap().to_vec();
        let parts = multipart(&content_type, &body);
        assert_eq!(parts.len(), 2, "{accept}");
        for (headers, bytes) in &parts {
            assert_eq!(
                part_content_type(headers),
                format!("application/dicom; transfer-syntax={EXPLICIT_LE}")
            );
            let object = dicom_object::from_reader(&bytes[128..]).expect("converted part parses");
            assert_eq!(
                object.meta().transfer_syntax().trim_end_matches('\0'),
                EXPLICIT_LE
            );
            let uid = object
                .element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string();
            let original = series
                .iter()
                .find(|i| i.sop_instance_uid == uid)
                .expect("known instance");
            assert_eq!(
                object
                    .element(tags::PIXEL_DATA)
                    .unwrap()
                    .to_bytes()
                    .unwrap(),
                original
                    .dataset
                    .element(tags::PIXEL_DATA)
                    .unwrap()
                    .to_bytes()
                    .unwrap(),
                "pixel values unchanged by the conversion"
            );
        }
    }
    // The copies go when the server drops the finished response stream,
    // which may be just after the client has read the last byte.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_dir(gw.data_dir().join("tmp"))
        .unwrap()
        .count()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "converted copies are removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A series is multipart only; other media types are not offered.
    for accept in ["application/dicom", "text/html"] {
        let response = wado.get(&series_url, Some(accept)).await;
        assert_eq!(response.status(), 406, "{accept}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }
    // A preference list is honoured: the acceptable alternative wins.
    let accept = format!(
        r#"multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}, multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5"#
    );
    wado.ok(&series_url, Some(&accept)).await;
    // Metadata is JSON only.
    let response = wado
        .get(&format!("{series_url}/metadata"), Some("application/dicom"))
        .await;
    assert_eq!(response.status(), 406);
}

#[tokio::test]
async fn unknown_malformed_and_unauthenticated_requests() {
    let gw = TestGateway::start("");
    let series = small_ct(1, 17);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_LE, &series).await;
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));
    let inst = &series[0];
    let unknown = "1.2.3.999";
    for path in [
        format!("/studies/{unknown}"),
        format!("/studies/{unknown}/metadata"),
        format!("/studies/{}/series/{unknown}", inst.study_instance_uid),
        format!("{}/instances/{unknown}", series_path(inst)),
        format!("{}/instances/{unknown}/frames/1", series_path(inst)),
        format!("{}/instances/{unknown}/rendered", series_path(inst)),
        format!(
            "/studies/{unknown}/series/{}/instances/{}",
            inst.series_instance_uid, inst.sop_instance_uid
        ),
        format!("{}/bulkdata/00420011", instance_path(inst)),
    ] {
        let response = wado.get(&path, None).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }
    for path in [
        "/studies/1.2.abc".to_string(),
        format!("/studies/{}/series/1..2", inst.study_instance_uid),
        format!("{}/instances/01.2/metadata", series_path(inst)),
        format!("{}/bulkdata/7FE0", instance_path(inst)),
    ] {
        assert_eq!(wado.get(&path, None).await.status(), 400, "{path}");
    }
    let anonymous = gw
        .https_client()
        .get(format!("{}{}", gw.dicomweb_url(), instance_path(inst)))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let write_only = Wado::new(&gw, gw.create_token("demo", "write", ""));
    assert_eq!(
        write_only.get(&instance_path(inst), None).await.status(),
        403
    );
}

#[tokio::test]
async fn another_sites_study_answers_like_a_missing_one() {
    let gw = TestGateway::start(
        r#"
[[sites]]
name = "north"
ae_titles = ["NORTH-SCU"]
allowed_peers = ["127.0.0.0/8"]
"#,
    );
    let series = small_ct(1, 18);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_LE, &series).await; // as DEMO-SCU: site "demo"
    let inst = &series[0];
    let own = Wado::new(&gw, gw.create_token("demo", "read", ""));
    let north = Wado::new(&gw, gw.create_token("north", "read", ""));
    let north_reading_demo = Wado::new(&gw, gw.create_token("north", "read", "demo"));

    let paths = [
        format!("/studies/{}", inst.study_instance_uid),
        series_path(inst),
        instance_path(inst),
        format!("{}/metadata", instance_path(inst)),
        format!("{}/frames/1", instance_path(inst)),
        format!("{}/bulkdata/7FE00010", instance_path(inst)),
        format!("{}/rendered", instance_path(inst)),
        format!("{}/thumbnail", series_path(inst)),
    ];
    for path in &paths {
        own.ok(path, None).await;
        north_reading_demo.ok(path, None).await;
        let hidden = north.get(path, None).await;
        assert_eq!(hidden.status(), 404, "{path}");
        let hidden: serde_json::Value = hidden.json().await.unwrap();
        // Exactly what a study that does not exist gets.
        let missing_path = path.replace(&inst.study_instance_uid, "1.2.3.999");
        let missing: serde_json::Value = north.get(&missing_path, None).await.json().await.unwrap();
        assert_eq!(hidden, missing, "{path}");
    }
}

#[tokio::test]
async fn deflated_and_big_endian_instances_are_served_from_their_own_encoding() {
    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
    const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
    let gw = TestGateway::start("");
    let series = small_ct(2, 19);
    let dir = tempfile::tempdir().unwrap();
    let files = write_part10_files(dir.path(), &series);
    for (k, (conv, propose)) in [("+td", "-xd"), ("+tb", "-xb")].into_iter().enumerate() {
        let converted = dir.path().join(format!("conv{k}.dcm"));
        let out = dcmtk("dcmconv")
            .arg(conv)
            .arg(&files[k])
            .arg(&converted)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dcmconv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = dcmtk("storescu")
            .arg(propose)
            .args(gw.dcmtk_args("DEMO-SCU"))
            .arg(&converted)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "storescu: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wado = Wado::new(&gw, gw.create_token("demo", "read", ""));

    // Deflated: the file as stored; metadata and frames from the inflated data set.
    let deflated = instance_path(&series[0]);
    let (content_type, body) = wado.ok(&deflated, Some(DICOM_ANY_SYNTAX)).await;
    let parts = multipart(&content_type, &body);
    assert_eq!(
        part_content_type(&parts[0].0),
        format!("application/dicom; transfer-syntax={DEFLATED}")
    );
    let (path, _) = gw.indexed(&series[0].sop_instance_uid).unwrap();
    assert!(std::fs::read(path).unwrap() == parts[0].1);
    let (_, body) = wado.ok(&format!("{deflated}/metadata"), None).await;
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    let uri = objects[0]["7FE00010"]["BulkDataURI"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, pixels) = wado.ok(&uri, Some("application/octet-stream")).await;
    assert!(pixels == stored_pixel_bytes(&series[0]));
    let (content_type, body) = wado.ok(&format!("{deflated}/frames/1"), Some(OCTETS)).await;
    assert!(multipart(&content_type, &body)[0].1 == stored_pixel_bytes(&series[0]));
    let (_, body) = wado
        .ok(&format!("{deflated}/rendered"), Some("image/png"))
        .await;
    assert_eq!(png_size(&body), (64, 64));

    // Big endian: native bytes as stored, labelled with their own syntax;
    // they are not Explicit VR Little Endian, so that is not acceptable.
    let big = instance_path(&series[1]);
    let (content_type, body) = wado
        .ok(
            &format!("{big}/frames/1"),
            Some(r#"multipart/related; type="application/octet-stream"; transfer-syntax=*"#),
        )
        .await;
    let parts = multipart(&content_type, &body);
    assert_eq!(
        part_content_type(&parts[0].0),
        format!("application/octet-stream; transfer-syntax={BIG_ENDIAN}")
    );
    let swapped: Vec<u8> = stored_pixel_bytes(&series[1])
        .chunks_exact(2)
        .flat_map(|c| [c[1], c[0]])
        .collect();
    assert!(parts[0].1 == swapped, "big endian pixel words");
    assert_eq!(
        wado.get(&format!("{big}/frames/1"), Some(OCTETS))
            .await
            .status(),
        406
    );
    let (_, body) = wado.ok(&format!("{big}/rendered"), None).await;
    assert_eq!(jpeg_size(&body), (64, 64));
}
