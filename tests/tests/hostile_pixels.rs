//! Hostile pixel data through the real binary: stored objects whose pixel
//! data lies about its size must cost their inference job, never the
//! gateway's memory or its life.
//!
//! Each test first runs a good series (so the model is loaded and the
//! pixel path has run once) and reads the gateway's peak RSS (`VmHWM`) as
//! its baseline; then it sends the hostile series, checks that the job
//! failed once and for good with `bad_image`, that the process still
//! answers C-ECHO and still serves a good series, and that the peak RSS
//! grew by less than [`RSS_HEADROOM_KIB`].

use std::time::Duration;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::scu::StoreClient;
use dicom_loadtest::synth::SynthInstance;
use dicom_object::FileMetaTableBuilder;
use gateway_e2e::{
    EXPLICIT_VR_LE, TestGateway, c_store_all, dcmtk, pipeline_config, scu_options, small_ct,
};
use serde_json::Value;

const RESULT_TIMEOUT: Duration = Duration::from_secs(90);
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const ROUTE: &str = "ct-head-hyperdensity";
/// What the lying SOF declares: 8192 × 8192 in a 64 × 64 image.
const SOF_LIE: u16 = 8192;
/// What the lying Pixel Data header declares: 1.5 GiB, with 1 KiB present.
const PIXEL_DATA_LIE: u32 = 0x6000_0000;
/// Growth of the peak RSS allowed across the hostile series. Measured on
/// the 2-core dev machine (debug build): a good 6-slice 64×64 series leaves
/// the gateway at 56–58 MiB peak, and the hostile series, refused before
/// any decode, adds 1–3 MiB. The same tests against the binary before
/// the fix peaked at 1599 MiB (Pixel Data lie, zero-filled by the parser)
/// and 591 MiB (SOF lie, 8192×8192 decoded on each of three attempts);
/// 96 MiB leaves room for allocator noise and fails both.
const RSS_HEADROOM_KIB: u64 = 96 * 1024;
/// Slices per series: enough that the bad one sits among good ones.
const SLICES: usize = 6;
/// Which slice of the hostile series lies.
const BAD_SLICE: usize = 2;

#[tokio::test]
async fn a_jpeg_whose_frame_header_lies_about_its_size_fails_its_job_once_and_costs_no_memory() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let baseline = good_series_baseline(&gw, 1201).await;

    // Every slice is a real 64×64 JPEG Baseline; one says 8192×8192 in its SOF.
    let mut hostile: Vec<SynthInstance> = small_ct(SLICES, 1202)
        .iter()
        .map(|instance| with_jpeg_pixels(instance, jpeg_of(instance)))
        .collect();
    let mut lying = jpeg_of(&hostile[BAD_SLICE]);
    patch_sof_size(&mut lying, SOF_LIE, SOF_LIE);
    hostile[BAD_SLICE] = with_jpeg_pixels(&hostile[BAD_SLICE], lying);
    store_in_syntax(&gw, &hostile, JPEG_BASELINE).await;

    let failed = hostile_job(&gw, &hostile[0].study_instance_uid, baseline).await;
    assert_failed_once(&gw, &failed);
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("jpeg frame header"), "{failed}");
    assert!(error.contains(&format!("{SOF_LIE}")), "{failed}");
    assert_alive_and_bounded(&gw, baseline, 1203).await;
}

#[tokio::test]
async fn pixel_data_declared_longer_than_the_file_fails_its_job_once_and_costs_no_memory() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let baseline = good_series_baseline(&gw, 1301).await;

    // Native pixel data whose header claims 1.5 GiB with 1 KiB behind it.
    let series = small_ct(SLICES, 1302);
    let options = scu_options("DEMO-SCU", EXPLICIT_VR_LE);
    let mut client = StoreClient::connect(gw.dimse, &options, &[CT_IMAGE_STORAGE])
        .await
        .expect("associate");
    let mut refused = false;
    for (i, instance) in series.iter().enumerate() {
        let mut bytes = instance.encode_dataset(EXPLICIT_VR_LE).expect("encode");
        if i == BAD_SLICE {
            lie_about_pixel_data_length(&mut bytes);
        }
        let ack = client
            .store_raw(CT_IMAGE_STORAGE, &instance.sop_instance_uid, &bytes)
            .await
            .expect("C-STORE");
        if i == BAD_SLICE && ack.status != 0x0000 {
            // An acceptance path that checks Pixel Data lengths refuses it
            // outright (0xA9xx / 0xC0xx), which is as good: it never gets
            // to a job.
            assert!(
                matches!(ack.status >> 8, 0xA9 | 0xC0),
                "status {:#06x}",
                ack.status
            );
            refused = true;
        } else {
            assert_eq!(ack.status, 0x0000, "C-STORE status {:#06x}", ack.status);
        }
    }
    client.release().await.expect("release");

    if !refused {
        let failed = hostile_job(&gw, &series[0].study_instance_uid, baseline).await;
        assert_failed_once(&gw, &failed);
        let error = failed["error"].as_str().unwrap_or_default();
        assert!(error.contains("declares"), "{failed}");
    }
    assert_alive_and_bounded(&gw, baseline, 1303).await;
}

/// Sends a good native series, waits for its result, and returns the peak
/// RSS (KiB) the gateway has reached by then.
async fn good_series_baseline(gw: &TestGateway, seed: u64) -> u64 {
    let token = gw.create_token("demo", "read", "");
    let good = small_ct(SLICES, seed);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &good).await;
    let results = gw
        .wait_for_results(&token, &good[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["state"], "done", "{results:?}");
    let baseline = peak_rss_kib(gw);
    eprintln!("peak RSS after a good series: {} MiB", baseline / 1024);
    baseline
}

/// The study's one job once it has finished, with the peak RSS printed
/// first (so a failing run still reports what the hostile series cost).
async fn hostile_job(gw: &TestGateway, study: &str, baseline_kib: u64) -> Value {
    let token = gw.create_token("demo", "read", "");
    let results = gw.wait_for_results(&token, study, 1, RESULT_TIMEOUT).await;
    let peak = peak_rss_kib(gw);
    eprintln!(
        "peak RSS after the hostile series: {} MiB (baseline {} MiB)",
        peak / 1024,
        baseline_kib / 1024
    );
    assert_eq!(results.len(), 1, "{results:?}");
    results[0].clone()
}

/// Failed with `bad_image`, on its first attempt, and counted as failed,
/// never as a retry.
fn assert_failed_once(gw: &TestGateway, job: &Value) {
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error_kind"], "bad_image", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(job["result_sop_uid"].is_null(), "{job}");
    assert_eq!(
        gw.metric(&format!(
            "gateway_pipeline_jobs_total{{outcome=\"failed\",route=\"{ROUTE}\"}}"
        )),
        1.0
    );
    assert_eq!(
        gw.metric_now(&format!(
            "gateway_pipeline_jobs_total{{outcome=\"retry\",route=\"{ROUTE}\"}}"
        )),
        0.0
    );
    let bad_image_errors: f64 = gw
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("gateway_site_errors_total{") && l.contains("kind=\"bad_image\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(bad_image_errors, 1.0);
}

/// The process answers C-ECHO, a good series after the hostile one still
/// gets its result, and the peak RSS stayed within the headroom.
async fn assert_alive_and_bounded(gw: &TestGateway, baseline_kib: u64, seed: u64) {
    let echo = dcmtk("echoscu")
        .args(gw.dcmtk_args("DEMO-SCU"))
        .output()
        .expect("run echoscu");
    assert!(
        echo.status.success(),
        "C-ECHO after the hostile series failed"
    );

    let token = gw.create_token("demo", "read", "");
    let good = small_ct(SLICES, seed);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &good).await;
    let results = gw
        .wait_for_results(&token, &good[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["state"], "done", "{results:?}");

    let peak = peak_rss_kib(gw);
    eprintln!(
        "peak RSS at the end: {} MiB, baseline {} MiB, growth {} KiB",
        peak / 1024,
        baseline_kib / 1024,
        peak.saturating_sub(baseline_kib)
    );
    assert!(
        peak <= baseline_kib + RSS_HEADROOM_KIB,
        "peak RSS grew from {baseline_kib} KiB to {peak} KiB (limit +{RSS_HEADROOM_KIB} KiB)"
    );
}

/// `VmHWM` of the gateway process, in KiB.
fn peak_rss_kib(gw: &TestGateway) -> u64 {
    let pid = gw.pid().expect("gateway running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| {
            let kib = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
            kib.trim().parse().ok()
        })
        .expect("VmHWM in /proc/<pid>/status")
}

/// A real 64×64 8-bit JPEG Baseline of the slice (its HU under a brain window).
fn jpeg_of(instance: &SynthInstance) -> Vec<u8> {
    let rows = int(instance, tags::ROWS) as u32;
    let columns = int(instance, tags::COLUMNS) as u32;
    let grey: Vec<u8> = match instance.dataset.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(dicom_core::DicomValue::Primitive(value)) => value
            .to_bytes()
            .chunks_exact(2)
            .map(|w| {
                let hu = f32::from(i16::from_le_bytes([w[0], w[1]])) - 1024.0;
                ((hu - 0.0) / 80.0 * 255.0).clamp(0.0, 255.0) as u8
            })
            .collect(),
        // Already encapsulated: any grey ramp will do.
        _ => (0..rows * columns).map(|i| (i % 256) as u8).collect(),
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&grey, columns, rows, image::ExtendedColorType::L8)
        .expect("encode JPEG");
    out
}

/// Rewrites the height and width of the first SOF0..SOF3 marker segment.
fn patch_sof_size(jpeg: &mut [u8], height: u16, width: u16) {
    let mut at = 2; // after SOI
    while at + 4 <= jpeg.len() {
        assert_eq!(jpeg[at], 0xFF, "marker expected at {at}");
        let marker = jpeg[at + 1];
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if (0xC0..=0xC3).contains(&marker) {
            jpeg[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
            jpeg[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
            return;
        }
        at += 2 + length;
    }
    panic!("no SOF in the encoded JPEG");
}

/// `instance` with 8-bit JPEG Baseline pixel data in one fragment.
fn with_jpeg_pixels(instance: &SynthInstance, jpeg: Vec<u8>) -> SynthInstance {
    let mut out = instance.clone();
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    for (tag, value) in [
        (tags::BITS_ALLOCATED, 8),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        out.dataset.put(us(tag, value));
    }
    out.dataset.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(vec![], vec![jpeg]),
    ));
    out
}

/// Sends `instances` over one association whose CT context is `syntax`,
/// encoded in that syntax.
async fn store_in_syntax(gw: &TestGateway, instances: &[SynthInstance], syntax: &str) {
    let options = scu_options("DEMO-SCU", syntax);
    let mut client = StoreClient::connect(gw.dimse, &options, &[CT_IMAGE_STORAGE])
        .await
        .expect("associate");
    assert_eq!(client.transfer_syntax_for(CT_IMAGE_STORAGE), Some(syntax));
    for instance in instances {
        let bytes = dataset_in_syntax(instance, syntax);
        let ack = client
            .store_raw(CT_IMAGE_STORAGE, &instance.sop_instance_uid, &bytes)
            .await
            .expect("C-STORE");
        assert_eq!(ack.status, 0x0000, "C-STORE status {:#06x}", ack.status);
    }
    client.release().await.expect("release");
}

fn dataset_in_syntax(instance: &SynthInstance, syntax: &str) -> Vec<u8> {
    let file = instance
        .dataset
        .clone()
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(syntax)
                .media_storage_sop_class_uid(instance.sop_class_uid.as_str())
                .media_storage_sop_instance_uid(instance.sop_instance_uid.as_str()),
        )
        .expect("file meta");
    let mut bytes = Vec::new();
    file.write_dataset(&mut bytes).expect("encode data set");
    bytes
}

/// Patches the (last) Pixel Data header of an explicit VR LE data set to
/// declare [`PIXEL_DATA_LIE`] bytes and cuts its value to 1 KiB.
fn lie_about_pixel_data_length(bytes: &mut Vec<u8>) {
    let header = [0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
    let at = bytes
        .windows(header.len())
        .rposition(|w| w == header)
        .expect("Pixel Data header");
    let value = at + header.len() + 4;
    bytes[at + header.len()..value].copy_from_slice(&PIXEL_DATA_LIE.to_le_bytes());
    bytes.truncate(value + 1024);
}

fn int(instance: &SynthInstance, tag: dicom_core::Tag) -> u64 {
    instance
        .dataset
        .get(tag)
        .and_then(|e| e.to_int::<u64>().ok())
        .expect("integer attribute")
}
