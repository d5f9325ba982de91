//! End-to-end egress behaviour: queue → worker → real SCP.

use dicom_dictionary_std::tags;

use super::*;
use crate::egress::{DeliveryState, Disposition, ForwardError, send_instance};

fn uid_of(obj: &dicom_object::DefaultDicomObject) -> String {
    obj.element(tags::SOP_INSTANCE_UID)
        .expect("has SOP Instance UID")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_reach_storescp_intact() {
    let out = tempfile::tempdir().unwrap();
    let peer = storescp(free_port(), out.path(), &[]).await;
    let egress = TestEgress::start(destination(peer.port), fast_policy(3)).await;
    let mut ids = Vec::new();
    for n in 0..3u8 {
        let delivery = write_instance(
            egress.data_dir.path(),
            &format!("2.25.{}", 1000 + n as u32),
            n,
        );
        ids.push(egress.handle.enqueue(delivery).await.unwrap());
    }
    for id in &ids {
        let row = egress
            .wait_for(*id, "delivered", |r| r.state == DeliveryState::Delivered)
            .await;
        assert_eq!(row.last_status, Some(0));
        assert_eq!(row.attempts, 1);
    }
    let mut files = received(out.path());
    files.sort_by_key(uid_of);
    assert_eq!(files.len(), 3);
    for (n, file) in files.iter().enumerate() {
        assert_eq!(uid_of(file), format!("2.25.{}", 1000 + n));
        let pixel_data = file.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!(&pixel_data[..], &pixels(n as u8)[..]);
        assert_eq!(
            file.meta().transfer_syntax().trim_end_matches('\0'),
            "1.2.840.10008.1.2.1"
        );
    }
    let delivered = [("destination", "pacs"), ("outcome", "delivered")];
    egress
        .wait_for_metric("gateway_egress_deliveries_total", &delivered, |v| v == 3.0)
        .await;
    assert_eq!(
        egress.metric(
            "gateway_egress_attempt_seconds_count",
            &[("destination", "pacs")]
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_down_is_retried_until_it_comes_up() {
    let port = free_port();
    let egress = TestEgress::start(destination(port), fast_policy(1000)).await;
    let id = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.2000", 7))
        .await
        .unwrap();
    let failing = egress
        .wait_for(id, "two failed attempts", |r| r.attempts >= 2)
        .await;
    assert_eq!(failing.state, DeliveryState::Pending);
    assert!(
        failing
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("connect"),
        "{failing:?}"
    );
    let retry = [("destination", "pacs"), ("outcome", "retry")];
    egress
        .wait_for_metric("gateway_egress_deliveries_total", &retry, |v| v >= 2.0)
        .await;

    let out = tempfile::tempdir().unwrap();
    let _peer = storescp(port, out.path(), &[]).await;
    let row = egress
        .wait_for(id, "delivered", |r| r.state == DeliveryState::Delivered)
        .await;
    assert!(row.attempts >= 3, "{row:?}");
    assert_eq!(received(out.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_association_is_retried_then_dead_lettered() {
    let out = tempfile::tempdir().unwrap();
    let peer = storescp(free_port(), out.path(), &["--refuse"]).await;
    let egress = TestEgress::start(destination(peer.port), fast_policy(3)).await;
    let id = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.3000", 1))
        .await
        .unwrap();
    let row = egress
        .wait_for(id, "dead", |r| r.state == DeliveryState::Dead)
        .await;
    assert_eq!(row.attempts, 3);
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert!(error.contains("rejected"), "{error}");
    let dead = [("destination", "pacs"), ("outcome", "dead")];
    egress
        .wait_for_metric("gateway_egress_deliveries_total", &dead, |v| v == 1.0)
        .await;
    // Both retries were counted before the last attempt began.
    let retry = [("destination", "pacs"), ("outcome", "retry")];
    assert_eq!(
        egress.metric("gateway_egress_deliveries_total", &retry),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_status_is_dead_lettered_at_once_and_can_be_requeued() {
    let out = tempfile::tempdir().unwrap();
    // 0xC000 (cannot understand), then Success for the operator's retry.
    let peer = status_scp(free_port(), "C000,0000", out.path()).await;
    let egress = TestEgress::start(destination(peer.port), fast_policy(5)).await;
    let id = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.4000", 2))
        .await
        .unwrap();
    let row = egress
        .wait_for(id, "dead", |r| r.state == DeliveryState::Dead)
        .await;
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(0xC000));
    let dead_depth = [("destination", "pacs"), ("state", "dead")];
    let started = Instant::now();
    while egress.metric("gateway_egress_queue_depth", &dead_depth) != 1.0 {
        assert!(started.elapsed() < DEADLINE, "dead gauge never reached 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    egress.handle.retry_dead(id, "operator:test").await.unwrap();
    let row = egress
        .wait_for(id, "delivered after requeue", |r| {
            r.state == DeliveryState::Delivered
        })
        .await;
    assert_eq!(row.last_status, Some(0));
    assert_eq!(received(out.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_resources_is_retried_and_warning_counts_as_delivered() {
    let out = tempfile::tempdir().unwrap();
    let peer = status_scp(free_port(), "A700,B000", out.path()).await;
    let egress = TestEgress::start(destination(peer.port), fast_policy(5)).await;
    let id = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.5000", 3))
        .await
        .unwrap();
    let row = egress
        .wait_for(id, "delivered", |r| r.state == DeliveryState::Delivered)
        .await;
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_status, Some(0xB000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0xa900_status_from_send_instance_is_a_dead_letter() {
    let out = tempfile::tempdir().unwrap();
    let peer = status_scp(free_port(), "A900", out.path()).await;
    let data = tempfile::tempdir().unwrap();
    let delivery = write_instance(data.path(), "2.25.6000", 4);
    let err = send_instance(
        &destination(peer.port),
        "GATEWAY",
        &data.path().join(&delivery.path),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ForwardError::Status { status: 0xA900, .. }),
        "{err}"
    );
    assert_eq!(err.disposition(), Disposition::DeadLetter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_is_dead_lettered_without_contacting_the_destination() {
    // No peer at all: a retryable connect error would keep the row pending.
    let egress = TestEgress::start(destination(free_port()), fast_policy(5)).await;
    let delivery = write_instance(egress.data_dir.path(), "2.25.7000", 5);
    std::fs::remove_file(egress.data_dir.path().join(&delivery.path)).unwrap();
    let id = egress.handle.enqueue(delivery).await.unwrap();
    let row = egress
        .wait_for(id, "dead", |r| r.state == DeliveryState::Dead)
        .await;
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.unwrap_or_default().contains("cannot read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_rows_are_delivered_by_a_new_worker_after_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    // Enqueued while no worker runs (as if the gateway stopped right after).
    let queue = DeliveryQueue::open(&db_path(data_dir.path()))
        .await
        .unwrap();
    let id = queue
        .enqueue(write_instance(data_dir.path(), "2.25.8000", 6))
        .await
        .unwrap();
    drop(queue);

    let out = tempfile::tempdir().unwrap();
    let peer = storescp(free_port(), out.path(), &[]).await;
    let egress = TestEgress::start_in(data_dir, destination(peer.port), fast_policy(3)).await;
    egress
        .wait_for(id, "delivered", |r| r.state == DeliveryState::Delivered)
        .await;
    let files = received(out.path());
    assert_eq!(files.iter().map(uid_of).collect::<Vec<_>>(), ["2.25.8000"]);

    // A restarted worker does not send a delivered row again.
    let data_dir = egress.stop().await;
    let egress = TestEgress::start_in(data_dir, destination(peer.port), fast_policy(3)).await;
    let again = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.8000", 6))
        .await
        .unwrap();
    assert_eq!(again, id);
    let marker = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.8001", 8))
        .await
        .unwrap();
    egress
        .wait_for(marker, "delivered", |r| r.state == DeliveryState::Delivered)
        .await;
    assert_eq!(
        received(out.path()).len(),
        2,
        "the delivered row was not resent"
    );
}

#[tokio::test]
async fn enqueue_to_an_unknown_destination_is_refused() {
    let egress = TestEgress::start(destination(free_port()), fast_policy(1)).await;
    let mut delivery = write_instance(egress.data_dir.path(), "2.25.9000", 9);
    delivery.destination = "elsewhere".into();
    let err = egress.handle.enqueue(delivery).await.unwrap_err();
    assert!(err.is_caller_error(), "{err}");
}
