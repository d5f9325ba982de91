//! Queue behaviour against a real SQLite file, as the gateway opens it.

use super::*;

pub(crate) fn delivery(destination: &str, uid: &str) -> NewDelivery {
    NewDelivery {
        destination: destination.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.22".into(),
        sop_instance_uid: uid.into(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        path: format!("results/{uid}.dcm"),
        origin: "result:job-1".into(),
    }
}

async fn open_temp() -> (tempfile::TempDir, DeliveryQueue) {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = DeliveryQueue::open(&dir.path().join("index.sqlite"))
        .await
        .expect("opens");
    (dir, queue)
}

#[tokio::test]
async fn enqueue_is_idempotent_and_never_resets_a_delivered_row() {
    let (dir, queue) = open_temp().await;
    let first = queue.enqueue(delivery("pacs", "2.25.1")).await.unwrap();
    let again = queue.enqueue(delivery("pacs", "2.25.1")).await.unwrap();
    assert_eq!(first, again);
    let other = queue.enqueue(delivery("archive", "2.25.1")).await.unwrap();
    assert_ne!(first, other, "another destination is another delivery");
    let another_copy = NewDelivery {
        path: "instances/00/another-site.dcm".into(),
        ..delivery("pacs", "2.25.1")
    };
    assert_ne!(
        queue.enqueue(another_copy).await.unwrap(),
        first,
        "another site's copy of the UID is another delivery"
    );

    queue.mark_delivered(first, 0).await.unwrap();
    assert_eq!(
        queue.enqueue(delivery("pacs", "2.25.1")).await.unwrap(),
        first
    );
    let row = queue.get(first).await.unwrap().expect("row exists");
    assert_eq!(row.state, DeliveryState::Delivered);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(0));

    let conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
    let detail: String = conn
        .query_row(
            "SELECT detail FROM audit WHERE action = 'egress.delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.contains("2.25.1"), "{detail}");
}

#[tokio::test]
async fn due_respects_next_attempt_and_state() {
    let (_dir, queue) = open_temp().await;
    let a = queue.enqueue(delivery("pacs", "2.25.1")).await.unwrap();
    let b = queue.enqueue(delivery("pacs", "2.25.2")).await.unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    queue
        .mark_retry(a, later, Some(0xA700), "out of resources")
        .await
        .unwrap();
    let due = queue.due(SystemTime::now(), 10).await.unwrap();
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b]);
    let due_later = queue.due_for("pacs", later, 10).await.unwrap();
    assert_eq!(due_later.len(), 2);
    assert!(queue.due_for("other", later, 10).await.unwrap().is_empty());

    let retried = queue.get(a).await.unwrap().unwrap();
    assert_eq!(retried.attempts, 1);
    assert_eq!(retried.last_status, Some(0xA700));
    assert_eq!(retried.last_error.as_deref(), Some("out of resources"));
}

#[tokio::test]
async fn dead_letters_are_listed_counted_audited_and_requeued() {
    let (dir, queue) = open_temp().await;
    let a = queue.enqueue(delivery("pacs", "2.25.1")).await.unwrap();
    queue.enqueue(delivery("pacs", "2.25.2")).await.unwrap();
    queue
        .mark_dead(a, Some(0xC000), "cannot understand")
        .await
        .unwrap();

    let dead = queue
        .list(DeliveryFilter {
            state: Some(DeliveryState::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, a);
    let json = serde_json::to_value(&dead[0]).unwrap();
    assert_eq!(json["state"], "dead");

    let mut counts = queue.counts().await.unwrap();
    counts.sort_by_key(|(d, s, _)| (d.clone(), s.as_str()));
    assert_eq!(
        counts,
        vec![
            ("pacs".to_string(), DeliveryState::Dead, 1),
            ("pacs".to_string(), DeliveryState::Pending, 1)
        ]
    );

    assert!(matches!(
        queue.retry_dead(a + 1, "op").await,
        Err(QueueError::NotDead(_))
    ));
    let requeued = queue.retry_dead(a, "operator:alice").await.unwrap();
    assert_eq!(requeued.state, DeliveryState::Pending);
    assert_eq!(requeued.attempts, 0);
    assert_eq!(queue.due(SystemTime::now(), 10).await.unwrap().len(), 2);

    let conn = crate::app::schema::open_index(&dir.path().join("index.sqlite")).unwrap();
    let actions: Vec<String> = conn
        .prepare("SELECT action FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actions, vec!["egress.dead_lettered", "egress.requeued"]);
    assert_eq!(crate::audit::verify(&conn).unwrap(), Ok(2));
}

#[tokio::test]
async fn paths_outside_the_data_directory_are_refused() {
    let (_dir, queue) = open_temp().await;
    for bad in ["/etc/passwd", "../x.dcm", "results/../../x", ""] {
        let mut d = delivery("pacs", "2.25.9");
        d.path = bad.into();
        let err = queue.enqueue(d).await.unwrap_err();
        assert!(matches!(err, QueueError::InvalidPath(_)), "{bad}: {err}");
        assert!(err.is_caller_error());
    }
}
