//! The destinations in force change without a restart (admin reload):
//! added ones deliver, removed ones take nothing new and keep their queued
//! rows, changed ones deliver to their new address.

use super::*;
use crate::egress::{DeliveryState, QueueError};

fn named(name: &str, port: u16) -> Destination {
    Destination {
        name: name.into(),
        ..destination(port)
    }
}

fn names(handle: &EgressHandle) -> Vec<String> {
    handle.destination_names()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_removed_and_changed_destinations_apply_at_once() {
    let out_a = tempfile::tempdir().unwrap();
    let out_b = tempfile::tempdir().unwrap();
    let pacs_b = storescp(free_port(), out_b.path(), &[]).await;
    // "pacs" starts on a port where nobody listens: its row stays pending.
    let nobody = free_port();
    let egress = TestEgress::start(named("pacs", nobody), fast_policy(1000)).await;
    let stuck = write_instance(egress.data_dir.path(), "2.25.3001", 1);
    let stuck = egress.handle.enqueue(stuck).await.unwrap();
    egress
        .wait_for(stuck, "a failed attempt", |r| r.attempts >= 1)
        .await;

    // Added: usable at once.
    let changes = egress
        .handle
        .apply_destinations(vec![named("pacs", nobody), named("pacs-b", pacs_b.port)]);
    assert_eq!(changes.added, vec!["pacs-b".to_string()]);
    assert!(changes.removed.is_empty() && changes.changed.is_empty());
    let mut to_b = write_instance(egress.data_dir.path(), "2.25.3002", 2);
    to_b.destination = "pacs-b".into();
    let to_b = egress.handle.enqueue(to_b).await.unwrap();
    egress
        .wait_for(to_b, "delivered to pacs-b", |r| {
            r.state == DeliveryState::Delivered
        })
        .await;

    // Removed: no new deliveries; the queued one stays and is reported.
    let changes = egress
        .handle
        .apply_destinations(vec![named("pacs-b", pacs_b.port)]);
    assert_eq!(changes.removed, vec!["pacs".to_string()]);
    assert_eq!(names(&egress.handle), vec!["pacs-b".to_string()]);
    let pending = egress
        .handle
        .pending_deliveries(&changes.removed)
        .await
        .unwrap();
    assert_eq!(pending.get("pacs"), Some(&1));
    let refused = egress
        .handle
        .enqueue(write_instance(egress.data_dir.path(), "2.25.3003", 3))
        .await;
    assert!(
        matches!(refused, Err(QueueError::UnknownDestination(ref name)) if name == "pacs"),
        "{refused:?}"
    );
    let row = egress.handle.get(stuck).await.unwrap().unwrap();
    assert_eq!(row.state, DeliveryState::Pending);

    // Back, at a listening address: the row left in the queue goes out.
    let pacs_a = storescp(free_port(), out_a.path(), &[]).await;
    let changes = egress.handle.apply_destinations(vec![
        named("pacs", pacs_a.port),
        named("pacs-b", pacs_b.port),
    ]);
    assert_eq!(changes.added, vec!["pacs".to_string()]);
    egress
        .wait_for(stuck, "delivered once pacs is back", |r| {
            r.state == DeliveryState::Delivered
        })
        .await;

    // Changed: pacs-b moves to pacs's SCP; the next delivery goes there.
    let changes = egress.handle.apply_destinations(vec![
        named("pacs", pacs_a.port),
        named("pacs-b", pacs_a.port),
    ]);
    assert_eq!(changes.changed, vec!["pacs-b".to_string()]);
    let mut moved = write_instance(egress.data_dir.path(), "2.25.3004", 4);
    moved.destination = "pacs-b".into();
    let moved = egress.handle.enqueue(moved).await.unwrap();
    egress
        .wait_for(moved, "delivered to the new address", |r| {
            r.state == DeliveryState::Delivered
        })
        .await;
    assert_eq!(received(out_a.path()).len(), 2, "2.25.3001 and 2.25.3004");
    assert_eq!(received(out_b.path()).len(), 1, "2.25.3002 only");

    // Unchanged: nothing to report.
    let same = egress.handle.apply_destinations(vec![
        named("pacs", pacs_a.port),
        named("pacs-b", pacs_a.port),
    ]);
    assert!(same.is_empty(), "{same:?}");
    drop((pacs_a, pacs_b));
    egress.stop().await;
}
