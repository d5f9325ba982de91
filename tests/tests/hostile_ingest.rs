//! Hostile objects (issue 12) through the real binary, over C-STORE (our
//! SCU, so the command names exactly the transfer syntax and UIDs of the
//! bytes; dcmtk refuses to send some of them) and over STOW-RS (reqwest,
//! HTTPS). For every object of every class each test asserts:
//! - the specific refusal: a C-STORE failure status of the 0xA900 or 0xC000
//!   family; for STOW-RS a 409 whose FailedSOPSequence (0008,1198) names
//!   the instance with a FailureReason (0008,1197) of the same families;
//! - `gateway_ingest_failures_total{site,reason}` up by one under a reason
//!   specific to the class (never the catch-all `unreadable`);
//! - nothing indexed under the object's SOP Instance UID;
//! - the process alive: it is running, a C-ECHO succeeds and an honest
//!   instance then stores;
//! - peak RSS (VmHWM) under the baseline plus [`RSS_HEADROOM`].
//!
//! Failures are collected per object so one run shows every object's
//! outcome, and the test stops early only when the gateway has died.

use std::collections::BTreeMap;

use dicom_dictionary_std::uids::CT_IMAGE_STORAGE as CT;
use dicom_loadtest::scu::StoreClient;
use dicom_loadtest::synth::hostile::{HostileClass, HostileKind, HostileObject, hostile};
use gateway_e2e::{
    TestGateway, base_config, demo_scu_options, multipart_related, scu_options, small_ct,
    stow_content_type,
};
use serde_json::Value;

/// Peak RSS a run of hostile objects may add to the baseline. The ingest
/// path streams P-DATA and STOW parts to disk in 64 KiB chunks and reads
/// headers only, so an honest instance moves the high-water mark by a few
/// MiB (allocator arenas, buffers). Every bug this guards against costs a
/// gigabyte or more: the deflate bomb holds 1.2 GiB while parsing, a
/// declared 0x60000000-byte Pixel Data is 1.5 GiB zero-filled, deep nesting
/// kills the process. 256 MiB is far above noise and far below those.
const RSS_HEADROOM: u64 = 256 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;
const B: &str = "hostile-ingest-boundary";
/// Every specific reason label of the validator (`unreadable`, the
/// catch-all, deliberately not among them): random bytes may break any rule.
const GARBAGE_REASONS: &[&str] = &[
    "length_exceeds_data",
    "crosses_end",
    "element_too_large",
    "truncated",
    "malformed_item",
    "malformed_delimiter",
    "undefined_length_not_allowed",
    "unknown_vr",
    "misaligned_length",
    "tag_out_of_order",
    "duplicate_element",
];

/// The reason labels a refusal of `kind` may be counted under.
fn expected_reasons(kind: HostileKind) -> &'static [&'static str] {
    use HostileKind as K;
    match kind {
        K::DeepNestingExplicitUndefined
        | K::DeepNestingExplicitDefined
        | K::DeepNestingImplicitUndefined
        | K::DeepNestingImplicitDefined => &["too_deep"],
        K::PixelDataTruncated => &["length_exceeds_data", "truncated"],
        K::PixelDataHugeDeclared => &["length_exceeds_data", "truncated", "element_too_large"],
        K::FragmentPastEnd => &["length_exceeds_data", "truncated", "malformed_item"],
        K::FragmentsWithoutDelimiter => &["truncated", "malformed_delimiter", "malformed_item"],
        K::DeflateBomb => &["inflated_too_large", "element_too_large"],
        K::FileMetaInDataSet => &["file_meta_in_data_set"],
        K::ItemLongerThanSequence | K::ElementLongerThanItem => {
            &["length_exceeds_data", "crosses_end", "malformed_item"]
        }
        K::ItemWithoutDelimiter => &["malformed_item", "malformed_delimiter", "truncated"],
        K::SequenceDelimiterOutsideSequence | K::ItemDelimiterOutsideItem => {
            &["malformed_delimiter"]
        }
        K::UndefinedLengthText => &["undefined_length_not_allowed"],
        // An empty data set is well formed; it lacks the UIDs (0xA900).
        K::Empty => &["truncated", "no_sop_uids"],
        K::FewBytes => &["truncated", "length_exceeds_data"],
        K::Garbage => GARBAGE_REASONS,
    }
}

/// 0xA9xx (data set does not match) or 0xCxxx (cannot understand); the
/// bomb may also be refused as too large for the instance limit (0xA7xx),
/// which is what the inflated-size cap counts against.
fn status_is_specific_refusal(kind: HostileKind, status: u16) -> bool {
    status & 0xFF00 == 0xA900
        || status & 0xF000 == 0xC000
        || (kind == HostileKind::DeflateBomb && status & 0xFF00 == 0xA700)
}

/// The demo site's gateway with a 256 MiB instance (and body) limit, so
/// the bomb's 1.2 GiB is over it by far while honest objects are not.
fn start_gateway() -> TestGateway {
    TestGateway::start_with_config(
        base_config("")
            .replace(
                "idle_timeout = \"20s\"",
                "idle_timeout = \"20s\"\nmax_instance_size = \"256MiB\"",
            )
            .replace(
                "body_timeout = \"20s\"",
                "body_timeout = \"20s\"\nmax_body_size = \"256MiB\"",
            ),
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    CStore,
    Stow,
}

/// What the sender got back for one hostile object.
enum Answer {
    /// C-STORE status, or the FailureReason of the STOW part.
    Refused(u16),
    /// Anything else, in words (Success, no response, wrong shape).
    Wrong(String),
}

struct Run {
    gw: TestGateway,
    token: String,
    protocol: Protocol,
    baseline: u64,
    next_seed: u64,
    failures: Vec<String>,
}

impl Run {
    /// Starts a gateway, stores one honest instance and records the baseline.
    async fn start(protocol: Protocol) -> Self {
        let gw = start_gateway();
        let token = gw.create_token("demo", "read,write", "");
        let mut run = Self {
            gw,
            token,
            protocol,
            baseline: 0,
            next_seed: 1200,
            failures: Vec::new(),
        };
        run.store_honest().await.expect("honest instance stores");
        run.baseline = run.gw.peak_rss_bytes();
        eprintln!("{protocol:?}: baseline peak RSS {} MiB", run.baseline / MIB);
        run
    }

    /// Sends every object of `class` and checks each outcome.
    async fn class(mut self, class: HostileClass) {
        for kind in HostileKind::of_class(class) {
            let object = hostile(kind, 77).expect("hostile object builds");
            self.one(&object).await;
            if !self.gw.is_running() {
                break; // `one` has said so; the rest would only repeat it
            }
        }
        assert!(
            self.failures.is_empty(),
            "{:?}, {class:?}:\n{}",
            self.protocol,
            self.failures.join("\n")
        );
    }

    async fn one(&mut self, object: &HostileObject) {
        let kind = object.kind;
        for problem in self.problems_with(object).await {
            self.failures.push(format!("{kind}: {problem}"));
        }
    }

    /// Everything wrong with how the gateway took `object`, in words.
    async fn problems_with(&mut self, object: &HostileObject) -> Vec<String> {
        let kind = object.kind;
        let mut problems = Vec::new();
        let before = failure_counts(&self.gw).expect("metrics before sending");
        let answer = match self.protocol {
            Protocol::CStore => c_store(&self.gw, object).await,
            Protocol::Stow => stow(&self.gw, &self.token, object).await,
        };
        match answer {
            Answer::Refused(status) if status_is_specific_refusal(kind, status) => {}
            Answer::Refused(status) => {
                problems.push(format!("refused with {status:#06x}, not 0xA9xx/0xCxxx"))
            }
            Answer::Wrong(what) => problems.push(what),
        }
        if self.gw.indexed(&object.sop_instance_uid).is_some() {
            problems.push("indexed although it should be refused".into());
        }
        let counted = match counted_reasons(&self.gw, &before) {
            Ok(counted) if self.gw.is_running() => counted,
            Ok(_) | Err(_) => {
                problems.push("the gateway process died".into());
                return problems;
            }
        };
        let expected = expected_reasons(kind);
        if counted.len() != 1 || !expected.contains(&counted[0].as_str()) {
            problems.push(format!(
                "failure counted under {counted:?}, expected one of {expected:?}"
            ));
        }
        if let Err(e) = self.alive().await {
            problems.push(format!("not serving after it: {e}"));
        }
        let peak = self.gw.peak_rss_bytes();
        eprintln!("{:?} {kind}: peak RSS {} MiB", self.protocol, peak / MIB);
        if peak > self.baseline + RSS_HEADROOM {
            problems.push(format!(
                "peak RSS {} MiB over baseline {} MiB + {} MiB",
                peak / MIB,
                self.baseline / MIB,
                RSS_HEADROOM / MIB
            ));
        }
        problems
    }

    /// A C-ECHO succeeds and an honest instance stores, over this protocol.
    async fn alive(&mut self) -> Result<(), String> {
        let mut client = StoreClient::connect(self.gw.dimse, &demo_scu_options(), &[CT])
            .await
            .map_err(|e| format!("associate: {e}"))?;
        let echo = client.echo().await.map_err(|e| format!("C-ECHO: {e}"))?;
        let _ = client.release().await;
        if echo != 0 {
            return Err(format!("C-ECHO status {echo:#06x}"));
        }
        self.store_honest().await
    }

    async fn store_honest(&mut self) -> Result<(), String> {
        self.next_seed += 1;
        let honest = &small_ct(1, self.next_seed)[0];
        match self.protocol {
            Protocol::CStore => {
                let mut client = StoreClient::connect(self.gw.dimse, &demo_scu_options(), &[CT])
                    .await
                    .map_err(|e| format!("associate: {e}"))?;
                let ack = client.store(honest).await;
                let _ = client.release().await;
                let status = ack.map_err(|e| format!("honest C-STORE: {e}"))?.status;
                if status != 0 {
                    return Err(format!("honest C-STORE answered {status:#06x}"));
                }
            }
            Protocol::Stow => {
                let file = honest.to_part10().map_err(|e| e.to_string())?;
                let (status, body) = post_stow(&self.gw, &self.token, &[file.as_slice()])
                    .await
                    .map_err(|e| format!("honest STOW-RS: {e}"))?;
                if status != 200 {
                    return Err(format!("honest STOW-RS answered {status}: {body}"));
                }
            }
        }
        match self.gw.indexed(&honest.sop_instance_uid) {
            Some(_) => Ok(()),
            None => Err("honest instance not indexed".into()),
        }
    }
}

async fn c_store(gw: &TestGateway, object: &HostileObject) -> Answer {
    let options = scu_options("DEMO-SCU", &object.transfer_syntax_uid);
    let mut client = match StoreClient::connect(gw.dimse, &options, &[CT]).await {
        Ok(client) => client,
        Err(e) => return Answer::Wrong(format!("cannot associate: {e}")),
    };
    let accepted = client
        .transfer_syntax_for(CT)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        accepted, object.transfer_syntax_uid,
        "the gateway must accept the object's transfer syntax for the test to mean anything"
    );
    let ack = client
        .store_raw(CT, &object.sop_instance_uid, &object.dataset)
        .await;
    let _ = client.release().await;
    match ack {
        Ok(ack) if ack.is_failure() => Answer::Refused(ack.status),
        Ok(ack) => Answer::Wrong(format!("C-STORE answered {:#06x} (stored)", ack.status)),
        Err(e) => Answer::Wrong(format!("no C-STORE response: {e}")),
    }
}

async fn stow(gw: &TestGateway, token: &str, object: &HostileObject) -> Answer {
    let (status, body) = match post_stow(gw, token, &[object.part10.as_slice()]).await {
        Ok(answer) => answer,
        Err(e) => return Answer::Wrong(format!("no STOW-RS response: {e}")),
    };
    let failed = body["00081198"]["Value"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let stored = body["00081199"]["Value"].as_array().map_or(0, Vec::len);
    let reason = failed
        .first()
        .and_then(|f| f["00081197"]["Value"][0].as_u64());
    let named = failed
        .first()
        .and_then(|f| f["00081155"]["Value"][0].as_str())
        == Some(object.sop_instance_uid.as_str());
    match reason {
        Some(reason) if status == 409 && failed.len() == 1 && stored == 0 && named => {
            Answer::Refused(reason as u16)
        }
        _ => Answer::Wrong(format!("STOW-RS answered {status}: {body}")),
    }
}

/// POSTs `parts` as application/dicom to /studies → (status, JSON body).
async fn post_stow(gw: &TestGateway, token: &str, parts: &[&[u8]]) -> Result<(u16, Value), String> {
    let parts: Vec<(&str, &[u8])> = parts.iter().map(|p| ("application/dicom", *p)).collect();
    let response = gw
        .https_client()
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(token)
        .header("content-type", stow_content_type(B))
        .header("accept", "application/dicom+json")
        .body(multipart_related(B, &parts))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// `gateway_ingest_failures_total` of the demo site, by reason; `Err`
/// when the metrics listener does not answer (the process is dying).
fn failure_counts(gw: &TestGateway) -> Result<BTreeMap<String, f64>, String> {
    use std::io::{Read, Write};
    let mut text = String::new();
    std::net::TcpStream::connect(gw.metrics)
        .and_then(|mut stream| {
            stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            stream.read_to_string(&mut text)
        })
        .map_err(|e| format!("metrics unreachable: {e}"))?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("gateway_ingest_failures_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key.trim() == name).then(|| value.trim().trim_matches('"').to_string())
            })
        };
        if label("site").as_deref() == Some("demo")
            && let (Some(reason), Ok(value)) = (label("reason"), value.trim().parse())
        {
            counts.insert(reason, value);
        }
    }
    Ok(counts)
}

/// The reasons whose count went up since `before`, each by exactly one
/// (more than one reason, or a jump of two, is reported as is). Waits up
/// to 5 s for a count to move.
fn counted_reasons(
    gw: &TestGateway,
    before: &BTreeMap<String, f64>,
) -> Result<Vec<String>, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = failure_counts(gw)?;
        let moved: Vec<String> = now
            .iter()
            .filter(|(reason, value)| **value > before.get(*reason).copied().unwrap_or(0.0))
            .map(|(reason, value)| {
                let delta = value - before.get(reason).copied().unwrap_or(0.0);
                if delta == 1.0 {
                    reason.clone()
                } else {
                    format!("{reason} (+{delta})")
                }
            })
            .collect();
        if !moved.is_empty() || std::time::Instant::now() > deadline {
            return Ok(moved);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

macro_rules! class_tests {
    ($($c_store:ident, $stow:ident => $class:ident;)*) => {$(
        #[tokio::test]
        async fn $c_store() {
            Run::start(Protocol::CStore).await.class(HostileClass::$class).await;
        }

        #[tokio::test]
        async fn $stow() {
            Run::start(Protocol::Stow).await.class(HostileClass::$class).await;
        }
    )*};
}

class_tests! {
    deep_nesting_over_c_store, deep_nesting_over_stow => DeepNesting;
    pixel_data_lengths_over_c_store, pixel_data_lengths_over_stow => PixelData;
    encapsulated_fragments_over_c_store, encapsulated_fragments_over_stow => EncapsulatedPixelData;
    deflate_bomb_over_c_store, deflate_bomb_over_stow => DeflateBomb;
    file_meta_in_data_set_over_c_store, file_meta_in_data_set_over_stow => FileMetaInDataSet;
    malformed_structure_over_c_store, malformed_structure_over_stow => MalformedStructure;
    garbage_over_c_store, garbage_over_stow => Garbage;
}
