//! Route state: the pure step, and the store against a real index database
//! and a copy of the demo model repository.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::models::ModelRepository;
use crate::route::{Deployment, OperatorRequest, RouteCommand, RouteStateStore, RouteTable};

const ROUTE: &str = "ct-head-hyperdensity";

fn version(text: &str) -> Version {
    text.parse().unwrap()
}

fn v1() -> Version {
    version("1.0.0")
}

fn v2() -> Version {
    version("2.0.0")
}

/// The embedded routes: `ct-head-hyperdensity` runs ct-hyperdensity@2.0.0.
fn route() -> Route {
    RouteTable::embedded_default()
        .routes()
        .iter()
        .find(|r| r.name == ROUTE)
        .cloned()
        .unwrap()
}

/// A temp folder with a copy of the demo models (so tests may corrupt or
/// delete them) and an index database.
struct Fixture {
    dir: tempfile::TempDir,
    routes: RouteTable,
    models: ModelRepository,
    store: RouteStateStore,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        for model in ["ct-hyperdensity", "dx-exposure"] {
            copy_tree(&demo.join(model), &dir.path().join("models").join(model));
        }
        let models = ModelRepository::open(dir.path().join("models")).unwrap();
        let store = RouteStateStore::load(open_index(dir.path())).unwrap();
        Fixture {
            dir,
            routes: RouteTable::embedded_default(),
            models,
            store,
        }
    }

    fn deployment(&self) -> Deployment<'_> {
        Deployment {
            routes: &self.routes,
            models: &self.models,
        }
    }

    fn model_file(&self, version: &str) -> PathBuf {
        self.dir
            .path()
            .join("models/ct-hyperdensity")
            .join(version)
            .join("model.onnx")
    }

    fn corrupt(&self, version: &str) {
        let path = self.model_file(version);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x01;
        std::fs::write(path, bytes).unwrap();
    }

    fn rescan_models(&mut self) {
        self.models = ModelRepository::open(self.dir.path().join("models")).unwrap();
    }

    fn execute(&self, command: RouteCommand) -> Result<RouteState, StateError> {
        self.store
            .execute(self.deployment(), request("rad-ops"), command, |_| Ok(()))
    }

    fn serving(&self, study_uid: &str) -> EffectiveStep {
        effective_model(&route(), &self.store.get(ROUTE), study_uid, now())
    }

    fn audit(&self) -> Vec<(String, String, serde_json::Value)> {
        let conn = open_index(self.dir.path());
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
}

fn open_index(dir: &Path) -> rusqlite::Connection {
    crate::app::schema::open_index(&dir.join("index.sqlite")).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn request(actor: &str) -> OperatorRequest<'_> {
    OperatorRequest {
        route: ROUTE,
        actor,
        reason: "INC-42 false positives on the new scanner",
    }
}

fn now() -> i64 {
    crate::time::unix_millis()
}

#[test]
fn default_state_serves_the_configured_version() {
    let step = effective_model(&route(), &RouteState::default(), "1.2.3", 0);
    assert_eq!(step.model.to_string(), "ct-hyperdensity@2.0.0");
    assert_eq!(step.source, VersionSource::Config);
    assert_eq!(step.forced_fallback_reason, None);
    assert!(step.accepts_new_work);
    assert_eq!(step.shadow, None);
}

#[test]
fn each_operation_changes_the_effective_step() {
    let f = Fixture::new();
    let uid = "1.2.826.0.1.3680043.8.498.1";

    f.store
        .flip(f.deployment(), request("rad-ops"), None)
        .unwrap();
    let reason = f.serving(uid).forced_fallback_reason;
    assert_eq!(reason.as_deref(), Some(request("x").reason));
    f.store.unflip(f.deployment(), request("rad-ops")).unwrap();
    assert_eq!(f.serving(uid).forced_fallback_reason, None);

    f.store
        .promote(f.deployment(), request("rad-ops"), v1(), |_| Ok(()))
        .unwrap();
    assert_eq!(f.serving(uid).model.version, v1());
    assert_eq!(f.serving(uid).source, VersionSource::Promoted);
    f.store
        .rollback(f.deployment(), request("rad-ops"), |_| Ok(()))
        .unwrap();
    assert_eq!(f.serving(uid).model.version, v2());
    // With no promote to undo, rollback goes to the route's `rollback_to`
    // (1.0.0 in the embedded routes), and no further.
    f.store
        .rollback(f.deployment(), request("rad-ops"), |_| Ok(()))
        .unwrap();
    assert_eq!(f.serving(uid).model.version, v1());
    let again = f
        .store
        .rollback(f.deployment(), request("rad-ops"), |_| Ok(()));
    assert!(matches!(again, Err(StateError::NoPreviousVersion(_))));
    f.store
        .promote(f.deployment(), request("rad-ops"), v2(), |_| Ok(()))
        .unwrap();

    f.store
        .pin(f.deployment(), request("rad-ops"), v1(), |_| Ok(()))
        .unwrap();
    assert_eq!(f.serving(uid).model.version, v1());
    assert_eq!(f.serving(uid).source, VersionSource::Pinned);
    f.store.unpin(f.deployment(), request("rad-ops")).unwrap();
    assert_eq!(f.serving(uid).model.version, v2());

    f.store
        .set_disabled(f.deployment(), request("rad-ops"), true)
        .unwrap();
    assert!(!f.serving(uid).accepts_new_work);
    f.store
        .set_disabled(f.deployment(), request("rad-ops"), false)
        .unwrap();
    f.store
        .set_draining(f.deployment(), request("rad-ops"), true)
        .unwrap();
    assert!(!f.serving(uid).accepts_new_work);
    f.store
        .set_draining(f.deployment(), request("rad-ops"), false)
        .unwrap();
    assert!(f.serving(uid).accepts_new_work);

    f.execute(RouteCommand::SetCanary {
        version: v1(),
        percent: 100,
    })
    .unwrap();
    assert_eq!(f.serving(uid).source, VersionSource::Canary);
    f.execute(RouteCommand::ClearCanary).unwrap();
    f.execute(RouteCommand::SetShadow(v1())).unwrap();
    assert_eq!(
        f.serving(uid).shadow.unwrap().to_string(),
        "ct-hyperdensity@1.0.0"
    );
    f.execute(RouteCommand::ClearShadow).unwrap();
    // Everything is undone; the last promote (back to 2.0.0) is
    // remembered with the version it replaced.
    let rolled_back = Promotion {
        current: v2(),
        previous: Some(v1()),
    };
    assert_eq!(
        f.store.get(ROUTE),
        RouteState {
            promotion: Some(rolled_back),
            ..RouteState::default()
        }
    );
}

#[test]
fn state_survives_reopening_the_database() {
    let f = Fixture::new();
    f.store
        .promote(f.deployment(), request("rad-ops"), v1(), |_| Ok(()))
        .unwrap();
    f.store
        .flip(f.deployment(), request("rad-ops"), Some(now() + 3_600_000))
        .unwrap();
    let before = f.store.get(ROUTE);

    let reopened = RouteStateStore::load(open_index(f.dir.path())).unwrap();
    assert_eq!(reopened.get(ROUTE), before);
    assert_eq!(
        reopened.get(ROUTE).promotion,
        Some(Promotion {
            current: v1(),
            previous: Some(v2())
        })
    );
}

#[test]
fn rollback_to_a_missing_version_is_refused_and_nothing_changes() {
    let mut f = Fixture::new();
    f.store
        .promote(f.deployment(), request("rad-ops"), v1(), |_| Ok(()))
        .unwrap();
    std::fs::remove_dir_all(f.dir.path().join("models/ct-hyperdensity/2.0.0")).unwrap();
    f.rescan_models();
    let before = f.store.get(ROUTE);
    let entries = f.audit().len();

    let refused = f
        .store
        .rollback(f.deployment(), request("rad-ops"), |_| Ok(()))
        .unwrap_err();
    assert!(matches!(refused, StateError::UnknownVersion(ref m) if m.version == v2()));
    assert_eq!(refused.fault(), StateFault::Operator);
    assert_eq!(f.store.get(ROUTE), before);
    assert_eq!(f.serving("1.2.3").model.version, v1());
    let reopened = RouteStateStore::load(open_index(f.dir.path())).unwrap();
    assert_eq!(reopened.get(ROUTE), before);
    assert_eq!(f.audit().len(), entries);
}

#[test]
fn a_version_whose_file_fails_its_hash_is_refused() {
    let f = Fixture::new();
    f.store
        .promote(f.deployment(), request("rad-ops"), v1(), |_| Ok(()))
        .unwrap();
    f.corrupt("2.0.0");

    let rollback = f
        .store
        .rollback(f.deployment(), request("rad-ops"), |_| Ok(()))
        .unwrap_err();
    assert!(
        matches!(rollback, StateError::ModelFile { ref status, .. } if status == "mismatch"),
        "{rollback}"
    );
    assert_eq!(rollback.fault(), StateFault::Deployment);
    let pin = f
        .store
        .pin(f.deployment(), request("rad-ops"), v2(), |_| Ok(()));
    assert!(matches!(pin, Err(StateError::ModelFile { .. })));
    assert_eq!(f.serving("1.2.3").model.version, v1());
    assert_eq!(f.store.get(ROUTE).pinned, None);
}

#[test]
fn a_failed_ready_check_moves_no_traffic() {
    let f = Fixture::new();
    let mut checked = None;
    let refused = f
        .store
        .promote(f.deployment(), request("rad-ops"), v1(), |model| {
            checked = Some(model.to_string());
            Err("engine did not load".into())
        })
        .unwrap_err();
    assert_eq!(checked.as_deref(), Some("ct-hyperdensity@1.0.0"));
    assert!(matches!(refused, StateError::NotReady { .. }));
    assert_eq!(f.store.get(ROUTE), RouteState::default());
    assert!(f.audit().is_empty());
}

#[test]
fn requests_without_reason_or_for_unknown_routes_are_refused() {
    let f = Fixture::new();
    let blank = OperatorRequest {
        reason: "  ",
        ..request("rad-ops")
    };
    let refused = f.store.flip(f.deployment(), blank, None).unwrap_err();
    assert!(matches!(refused, StateError::MissingReason));
    let unknown = OperatorRequest {
        route: "no-such-route",
        ..request("rad-ops")
    };
    let refused = f.store.flip(f.deployment(), unknown, None).unwrap_err();
    assert!(matches!(refused, StateError::UnknownRoute(_)));
    let past = f
        .store
        .flip(f.deployment(), request("rad-ops"), Some(now() - 1));
    assert!(matches!(past, Err(StateError::UntilInPast { .. })));
    let percent = f.execute(RouteCommand::SetCanary {
        version: v1(),
        percent: 101,
    });
    assert!(matches!(percent, Err(StateError::InvalidPercent(101))));
    assert!(f.audit().is_empty());
    assert!(f.store.snapshot().is_empty());
}

#[test]
fn an_expired_forced_fallback_is_no_longer_forced() {
    let state = RouteState {
        forced_fallback: Some(ForcedFallback {
            until_ms: Some(1_000),
            reason: "maintenance".into(),
        }),
        ..RouteState::default()
    };
    let at = |now_ms| effective_model(&route(), &state, "1.2.3", now_ms);
    assert_eq!(
        at(999).forced_fallback_reason.as_deref(),
        Some("maintenance")
    );
    assert_eq!(at(1_000).forced_fallback_reason, None);
}

#[test]
fn canary_split_is_deterministic_and_close_to_its_percent() {
    let state = RouteState {
        canary: Some(Canary {
            version: v1(),
            percent: 20,
        }),
        ..RouteState::default()
    };
    let route = route();
    let uids: Vec<String> = (0..10_000)
        .map(|i| format!("1.2.826.0.1.3680043.8.498.{i}"))
        .collect();
    let on_canary =
        |uid: &String| effective_model(&route, &state, uid, 0).source == VersionSource::Canary;
    let first: Vec<bool> = uids.iter().map(on_canary).collect();
    let second: Vec<bool> = uids.iter().map(on_canary).collect();
    assert_eq!(first, second);
    let share = first.iter().filter(|c| **c).count();
    assert!((1_700..=2_300).contains(&share), "{share} of 10000");
}

#[test]
fn every_operation_is_audited_once_and_the_chain_verifies() {
    let f = Fixture::new();
    let commands = [
        RouteCommand::Flip { until_ms: None },
        RouteCommand::Unflip,
        RouteCommand::Pin(v1()),
        RouteCommand::Unpin,
        RouteCommand::Promote(v1()),
        RouteCommand::Rollback,
        RouteCommand::Disable,
        RouteCommand::Enable,
        RouteCommand::Drain,
        RouteCommand::Undrain,
    ];
    for command in &commands {
        f.execute(command.clone()).unwrap();
    }
    let trail = f.audit();
    assert_eq!(trail.len(), commands.len());
    for ((actor, action, detail), command) in trail.iter().zip(&commands) {
        assert_eq!(actor, "rad-ops");
        assert_eq!(action, command.action());
        assert_eq!(detail["route"], ROUTE);
        assert_eq!(detail["reason"], request("x").reason);
        assert!(detail["before"].is_object() && detail["after"].is_object());
        assert_ne!(detail["before"], detail["after"], "{action}");
    }
    let (_, _, promote) = &trail[4];
    assert_eq!(promote["before"]["promotion"], serde_json::Value::Null);
    assert_eq!(promote["after"]["promotion"]["current"], "1.0.0");
    assert_eq!(promote["after"]["promotion"]["previous"], "2.0.0");
    let conn = open_index(f.dir.path());
    assert_eq!(
        crate::audit::verify(&conn).unwrap(),
        Ok(commands.len() as u64)
    );
}

fn arbitrary_state() -> impl Strategy<Value = RouteState> {
    let version = (0u64..3, 0u64..3).prop_map(|(major, minor)| Version {
        major,
        minor,
        patch: 0,
    });
    (
        proptest::option::of(proptest::option::of(0i64..2_000)),
        proptest::option::of(version.clone()),
        proptest::option::of((version.clone(), proptest::option::of(version.clone()))),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((version.clone(), 0u8..=100)),
        proptest::option::of(version),
    )
        .prop_map(
            |(flip, pinned, promotion, disabled, draining, canary, shadow)| RouteState {
                forced_fallback: flip.map(|until_ms| ForcedFallback {
                    until_ms,
                    reason: "r".into(),
                }),
                pinned,
                promotion: promotion.map(|(current, previous)| Promotion { current, previous }),
                disabled,
                draining,
                canary: canary.map(|(version, percent)| Canary { version, percent }),
                shadow: shadow.map(|version| Shadow { version }),
            },
        )
}

proptest! {
    #[test]
    fn effective_step_follows_the_precedence_rules(
        state in arbitrary_state(),
        uid in "[0-9.]{1,64}",
        now_ms in 0i64..2_000,
    ) {
        let route = route();
        let step = effective_model(&route, &state, &uid, now_ms);
        prop_assert_eq!(&step, &effective_model(&route, &state, &uid, now_ms));
        prop_assert_eq!(&step.model.name, &route.model.name);
        let in_canary = state.canary.is_some_and(|c| canary_bucket(&uid) < c.percent);
        let expected = match (state.pinned, state.promotion) {
            (Some(pinned), _) => pinned,
            (None, _) if in_canary => state.canary.unwrap().version,
            (None, Some(promotion)) => promotion.current,
            (None, None) => route.model.version,
        };
        prop_assert_eq!(step.model.version, expected);
        prop_assert_eq!(step.accepts_new_work, !state.disabled && !state.draining);
        let forced = state
            .forced_fallback
            .as_ref()
            .is_some_and(|f| f.until_ms.is_none_or(|until| now_ms < until));
        prop_assert_eq!(step.forced_fallback_reason.is_some(), forced);
        prop_assert!(step.shadow.is_none_or(|s| s.version != step.model.version));
        let json = serde_json::to_string(&state).unwrap();
        prop_assert_eq!(serde_json::from_str::<RouteState>(&json).unwrap(), state);
    }
}
