//! Shared route state: two replicas (two `RouteStateStore`s on two index
//! databases) sharing one real redis-server.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_gateway::cache::RedisConfig;
use dicom_gateway::models::ModelRepository;
use dicom_gateway::route::{
    Deployment, OperatorRequest, RouteState, RouteStateStore, RouteStateSync, RouteTable,
};
use gateway_e2e::redis::RedisServer;

const ROUTE: &str = "ct-head-hyperdensity";

/// One gateway replica: its own index database, store and sync task.
struct Replica {
    _dir: tempfile::TempDir,
    index: std::path::PathBuf,
    store: Arc<RouteStateStore>,
    sync: RouteStateSync,
}

impl Replica {
    fn start(server: &RedisServer, id: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.sqlite");
        let conn = dicom_gateway::app::schema::open_index(&index).unwrap();
        let store = Arc::new(RouteStateStore::load(conn).unwrap());
        let mut config = RedisConfig::new(server.url());
        config.timeout = Duration::from_millis(500);
        config.replica_id = Some(id.into());
        let sync = RouteStateSync::start(Arc::clone(&store), &config, &prometheus::Registry::new())
            .unwrap();
        Replica {
            _dir: dir,
            index,
            store,
            sync,
        }
    }

    /// Runs an operator action off the runtime, as the admin API must.
    async fn act(
        &self,
        actor: &'static str,
        action: impl FnOnce(&RouteStateStore, Deployment<'_>, OperatorRequest<'_>) + Send + 'static,
    ) {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let routes = RouteTable::embedded_default();
            let models = ModelRepository::open(gateway_e2e::repo_models_dir()).unwrap();
            let deployment = Deployment {
                routes: &routes,
                models: &models,
            };
            let request = OperatorRequest {
                route: ROUTE,
                actor,
                reason: "INC-7 scanner upgrade",
            };
            action(&store, deployment, request);
        })
        .await
        .unwrap();
    }

    fn state(&self) -> RouteState {
        self.store.get(ROUTE)
    }

    /// Audit entries as (actor, action, detail), oldest first.
    fn audit(&self) -> Vec<(String, String, serde_json::Value)> {
        audit_of(&self.index)
    }
}

fn audit_of(index: &Path) -> Vec<(String, String, serde_json::Value)> {
    let conn = rusqlite::Connection::open(index).unwrap();
    let mut stmt = conn
        .prepare("SELECT actor, action, detail FROM audit ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| {
        let detail: String = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&detail).unwrap()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Waits up to `within` for `check` on `replica`; returns how long it took.
async fn until(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn both_connected(a: &Replica, b: &Replica, after: (u64, u64)) {
    for (replica, reconciles) in [(a, after.0), (b, after.1)] {
        let status = replica
            .sync
            .wait_reconciled(reconciles, Duration::from_secs(15))
            .await;
        assert!(
            status.connected,
            "{} did not (re)connect",
            replica.sync.replica_id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_on_one_replica_applies_on_the_other_within_a_second() {
    let server = RedisServer::start();
    let a = Replica::start(&server, "gw-a");
    let b = Replica::start(&server, "gw-b");
    both_connected(&a, &b, (0, 0)).await;

    a.act("alice", |s, d, r| {
        s.flip(d, r, None).unwrap();
    })
    .await;
    let took = until(Duration::from_secs(1), || {
        b.state().forced_fallback.is_some()
    })
    .await;
    assert!(took.is_some(), "B did not flip within a second");
    assert_eq!(b.state(), a.state());

    let (actor, action, detail) = b.audit().pop().expect("B audited the sync");
    assert_eq!(
        (actor.as_str(), action.as_str()),
        ("system:route-sync", "route.sync")
    );
    assert_eq!(detail["origin_replica"], "gw-a");
    assert_eq!(detail["origin_actor"], "alice");
    assert_eq!(detail["origin_action"], "route.flip");
    assert_eq!(detail["route"], ROUTE);
    assert!(
        a.audit()
            .iter()
            .all(|(actor, ..)| actor != "system:route-sync"),
        "A ignores its own message"
    );

    // And back the other way.
    b.act("bob", |s, d, r| {
        s.unflip(d, r).unwrap();
    })
    .await;
    let took = until(Duration::from_secs(1), || {
        a.state().forced_fallback.is_none()
    })
    .await;
    assert!(took.is_some(), "A did not unflip within a second");
    let shared = server.cli(&["HGET", "dgw:v1:route_state", ROUTE]);
    let shared: serde_json::Value = serde_json::from_str(&shared).unwrap();
    assert_eq!(shared["replica"], "gw-b");
    assert_eq!(shared["action"], "route.unflip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_redis_is_down_reaches_every_replica_when_it_returns() {
    let mut server = RedisServer::start();
    let a = Replica::start(&server, "gw-a");
    let b = Replica::start(&server, "gw-b");
    both_connected(&a, &b, (0, 0)).await;
    a.act("alice", |s, d, r| {
        s.flip(d, r, None).unwrap();
    })
    .await;
    assert!(
        until(Duration::from_secs(1), || b
            .state()
            .forced_fallback
            .is_some())
        .await
        .is_some()
    );

    server.kill();
    let down = until(Duration::from_secs(10), || {
        !a.sync.status().connected && !b.sync.status().connected
    })
    .await;
    assert!(
        down.is_some(),
        "the replicas did not notice Redis going away"
    );
    let reconciles = (a.sync.status().reconciles, b.sync.status().reconciles);

    // Changes still apply locally; the other replica keeps its last state.
    a.act("carol", |s, d, r| {
        s.unflip(d, r).unwrap();
    })
    .await;
    assert_eq!(a.state().forced_fallback, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        b.state().forced_fallback.is_some(),
        "B keeps serving its last state"
    );

    // Redis returns empty; the later change (A's unflip) wins everywhere.
    server.restart();
    both_connected(&a, &b, reconciles).await;
    let took = until(Duration::from_secs(2), || {
        b.state().forced_fallback.is_none()
    })
    .await;
    assert!(
        took.is_some(),
        "A's change did not reach B after Redis returned"
    );
    assert_eq!(a.state(), b.state());
    let (actor, _, detail) = b.audit().pop().unwrap();
    assert_eq!(actor, "system:route-sync");
    assert_eq!(
        detail["origin_actor"], "carol",
        "the operator is still named"
    );
    let shared = server.cli(&["HGET", "dgw:v1:route_state", ROUTE]);
    assert!(shared.contains("\"replica\":\"gw-a\""), "{shared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_changes_while_redis_is_down_resolve_to_the_later_one_whole() {
    let mut server = RedisServer::start();
    let a = Replica::start(&server, "gw-a");
    let b = Replica::start(&server, "gw-b");
    both_connected(&a, &b, (0, 0)).await;
    server.kill();
    assert!(
        until(Duration::from_secs(10), || {
            !a.sync.status().connected && !b.sync.status().connected
        })
        .await
        .is_some()
    );
    let reconciles = (a.sync.status().reconciles, b.sync.status().reconciles);

    a.act("alice", |s, d, r| {
        s.set_disabled(d, r, true).unwrap();
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.act("bob", |s, d, r| {
        s.set_draining(d, r, true).unwrap();
    })
    .await;

    server.restart();
    both_connected(&a, &b, reconciles).await;
    let converged = until(Duration::from_secs(2), || a.state() == b.state()).await;
    assert!(
        converged.is_some(),
        "replicas did not converge: {:?} vs {:?}",
        a.state(),
        b.state()
    );
    let state = a.state();
    assert!(state.draining, "bob's later change wins");
    assert!(
        !state.disabled,
        "whole state: alice's earlier disable is replaced"
    );
    let replaced = a.audit().into_iter().any(|(actor, action, detail)| {
        actor == "system:route-sync" && action == "route.sync" && detail["origin_actor"] == "bob"
    });
    assert!(replaced, "A audits the replacement");
}
