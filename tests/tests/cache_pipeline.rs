//! The result cache through the real binary: a series re-sent under new
//! UIDs (a re-export, a study sent again from another system) is not run
//! through the model again but still gets its SR; with Redis, a Redis that
//! dies mid-run never stops ingest or inference, and the cache works again
//! once Redis is back, by itself.

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_loadtest::synth::{SeriesSpec, SynthInstance, generate_series};
use gateway_e2e::redis::{RedisServer, cache_bypasses, cache_config, cache_requests};
use gateway_e2e::{EXPLICIT_VR_LE, TestGateway, c_store_all, pipeline_config};
use serde_json::Value;

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

fn ct_head(instances: usize, seed: u64) -> Vec<SynthInstance> {
    let mut spec = SeriesSpec::ct_head(instances, seed);
    spec.rows = 128;
    spec.columns = 128;
    spec.hyperdense_lesion = true;
    generate_series(&spec)
}

/// The same images under new study, series and instance UIDs.
fn resent(series: &[SynthInstance], tag: u32) -> Vec<SynthInstance> {
    let study = format!("2.25.{}{}", tag, 1000);
    let series_uid = format!("2.25.{}{}", tag, 2000);
    series
        .iter()
        .enumerate()
        .map(|(i, original)| {
            let mut copy = original.clone();
            let sop = format!("2.25.{}{}{}", tag, 3000, i);
            for (tag, value) in [
                (tags::STUDY_INSTANCE_UID, &study),
                (tags::SERIES_INSTANCE_UID, &series_uid),
                (tags::SOP_INSTANCE_UID, &sop),
            ] {
                copy.dataset.put(DataElement::new(
                    tag,
                    VR::UI,
                    PrimitiveValue::from(value.as_str()),
                ));
            }
            copy.study_instance_uid = study.clone();
            copy.series_instance_uid = series_uid.clone();
            copy.sop_instance_uid = sop;
            copy
        })
        .collect()
}

async fn result_of(gw: &TestGateway, token: &str, series: &[SynthInstance]) -> Value {
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, series).await;
    let results = gw
        .wait_for_results(token, &series[0].study_instance_uid, 1, RESULT_TIMEOUT)
        .await;
    assert_eq!(results[0]["state"], "done", "{results:?}");
    results[0].clone()
}

fn score(result: &Value) -> f64 {
    result["findings"][0]["score"].as_f64().unwrap()
}

#[tokio::test]
async fn a_series_resent_under_new_uids_hits_the_in_process_cache() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let token = gw.create_token("demo", "read", "");
    let original = ct_head(3, 8001);
    let first = result_of(&gw, &token, &original).await;
    assert_eq!(cache_requests(&gw, "memory", "miss"), 3.0);
    let inferred = gw.metric_now(
        "gateway_inference_seconds_count{model=\"ct-hyperdensity\",outcome=\"ok\",route=\"ct-head-hyperdensity\",version=\"2.0.0\"}",
    );

    let again = result_of(&gw, &token, &resent(&original, 8002)).await;
    assert_eq!(cache_requests(&gw, "memory", "hit"), 3.0);
    assert_eq!(
        gw.metric_now(
            "gateway_inference_seconds_count{model=\"ct-hyperdensity\",outcome=\"ok\",route=\"ct-head-hyperdensity\",version=\"2.0.0\"}",
        ),
        inferred,
        "no inference on a hit"
    );
    assert_eq!(score(&again), score(&first));
    assert!(again["result_sop_uid"].is_string(), "an SR all the same");
    assert_ne!(again["result_sop_uid"], first["result_sop_uid"]);
}

#[tokio::test]
async fn redis_dying_mid_run_never_stops_inference_and_the_cache_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let gw = TestGateway::start_with_config(pipeline_config(&cache_config(&redis.url(), "1h")));
    let token = gw.create_token("demo", "read", "");

    let first = ct_head(2, 8101);
    result_of(&gw, &token, &first).await;
    assert_eq!(cache_requests(&gw, "redis", "miss"), 2.0);
    result_of(&gw, &token, &resent(&first, 8102)).await;
    assert_eq!(cache_requests(&gw, "redis", "hit"), 2.0);

    redis.kill();
    let during = ct_head(2, 8103);
    let result = result_of(&gw, &token, &during).await;
    assert_eq!(result["step"], "primary", "inference goes on: {result}");
    assert!(cache_bypasses(&gw) >= 2.0, "bypasses counted");

    redis.restart();
    let after = ct_head(2, 8104);
    result_of(&gw, &token, &after).await;
    let hits = cache_requests(&gw, "redis", "hit");
    result_of(&gw, &token, &resent(&after, 8105)).await;
    assert_eq!(
        cache_requests(&gw, "redis", "hit"),
        hits + 2.0,
        "the cache works again without a restart of the gateway"
    );
}
