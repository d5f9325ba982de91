//! Tests of the live table: reload, refusal, watcher.

use std::time::Instant;

use super::*;

fn route(name: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nmodel = \"m@1.0.0\"\nlevel = \"series\"\n")
}

fn accept_all() -> RoutesValidator {
    Arc::new(|_: &RouteTable| Ok(()))
}

fn names(handle: &RoutesHandle) -> Vec<String> {
    handle
        .current()
        .routes()
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

fn count(handle: &RoutesHandle, outcome: &str) -> u64 {
    handle.inner.reloads.with_label_values(&[outcome]).get()
}

#[test]
fn reload_takes_a_changed_file_and_skips_an_unchanged_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, route("first")).unwrap();
    let registry = Registry::new();
    let handle = RoutesHandle::load(Some(path.clone()), accept_all(), &registry).unwrap();
    assert_eq!(names(&handle), vec!["first"]);
    assert_eq!(handle.inner.rules.get(), 1);

    assert_eq!(handle.reload_now().unwrap(), ReloadOutcome::Unchanged);
    assert_eq!(count(&handle, "unchanged"), 1);

    std::fs::write(
        &path,
        route("first") + &route("second") + "enabled = false\n",
    )
    .unwrap();
    assert_eq!(
        handle.reload_now().unwrap(),
        ReloadOutcome::Reloaded { routes: 2 }
    );
    assert_eq!(names(&handle), vec!["first", "second"]);
    assert_eq!(
        handle.inner.rules.get(),
        1,
        "the gauge counts enabled routes"
    );
    assert_eq!(count(&handle, "reloaded"), 1);

    let exposition = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(exposition.contains("gateway_route_reloads_total{outcome=\"reloaded\"} 1"));
    assert!(exposition.contains("gateway_route_rules 1"));
}

#[test]
fn a_broken_file_keeps_the_last_good_table_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, route("good")).unwrap();
    let handle = RoutesHandle::load(Some(path.clone()), accept_all(), &Registry::new()).unwrap();

    std::fs::write(&path, route("good").replace("series", "study")).unwrap();
    let err = handle.reload_now().unwrap_err();
    assert!(
        err.to_string()
            .contains("level `study` must be \"series\" or \"instance\""),
        "{err}"
    );
    assert_eq!(names(&handle), vec!["good"]);
    assert_eq!(count(&handle, "rejected"), 1);

    std::fs::remove_file(&path).unwrap();
    let err = handle.reload_now().unwrap_err();
    assert!(matches!(err, RoutesError::Read { .. }), "{err}");
    assert_eq!(names(&handle), vec!["good"]);
    assert_eq!(count(&handle, "rejected"), 2);
}

#[test]
fn the_validator_guards_load_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, route("known")).unwrap();
    let only_known: RoutesValidator = Arc::new(|table: &RouteTable| {
        table.check(&|_| true, &[])?;
        match table.routes().iter().find(|r| r.name != "known") {
            Some(r) => Err(RoutesError::Invalid(vec![format!(
                "route `{}`: not allowed",
                r.name
            )])),
            None => Ok(()),
        }
    });
    let handle =
        RoutesHandle::load(Some(path.clone()), only_known.clone(), &Registry::new()).unwrap();
    std::fs::write(&path, route("other")).unwrap();
    let err = handle.reload_now().unwrap_err();
    assert!(
        err.to_string().contains("route `other`: not allowed"),
        "{err}"
    );
    assert_eq!(names(&handle), vec!["known"]);

    let refused = RoutesHandle::load(Some(path), only_known, &Registry::new());
    assert!(refused.is_err(), "start-up refuses what reload refuses");
}

#[test]
fn without_a_file_the_embedded_default_is_used() {
    let registry = Registry::new();
    let handle = RoutesHandle::load(None, accept_all(), &registry).unwrap();
    assert_eq!(
        names(&handle),
        vec!["ct-head-hyperdensity", "radiograph-exposure"]
    );
    assert_eq!(handle.reload_now().unwrap(), ReloadOutcome::Unchanged);
    assert_eq!(handle.inner.rules.get(), 2);
    let again = RoutesHandle::load(None, accept_all(), &registry);
    assert!(
        matches!(again, Err(RoutesError::Metrics(_))),
        "one handle per registry"
    );
}

#[test]
fn a_bad_file_at_start_up_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, "[[route]]\nname = \"x\"\n").unwrap();
    let err = RoutesHandle::load(Some(path), accept_all(), &Registry::new())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("missing field"), "{err}");
    let missing = RoutesHandle::load(
        Some(dir.path().join("absent.toml")),
        accept_all(),
        &Registry::new(),
    );
    assert!(matches!(missing, Err(RoutesError::Read { .. })));
}

/// Replaces the file atomically, so a poll never sees it half written.
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// Polls `condition` until it holds or the deadline passes.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test]
async fn the_watcher_picks_up_changes_and_refuses_bad_ones_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, route("before")).unwrap();
    let handle = RoutesHandle::load(Some(path.clone()), accept_all(), &Registry::new()).unwrap();
    let watcher = handle.spawn_watcher(Duration::from_millis(20));

    replace(&path, &route("after"));
    assert!(
        eventually(|| names(&handle) == vec!["after"]).await,
        "watcher did not reload"
    );

    replace(&path, "not toml [");
    assert!(
        eventually(|| count(&handle, "rejected") == 1).await,
        "watcher did not refuse"
    );
    // Further polls of the same bad content are neither logged nor counted
    // again; wait for a later good change to prove the watcher kept polling.
    replace(&path, &route("fixed"));
    assert!(eventually(|| names(&handle) == vec!["fixed"]).await);
    assert_eq!(count(&handle, "rejected"), 1);
    assert_eq!(count(&handle, "reloaded"), 2);
    watcher.abort();
}

#[tokio::test]
async fn the_watcher_ends_at_once_without_a_file() {
    let handle = RoutesHandle::load(None, accept_all(), &Registry::new()).unwrap();
    let watcher = handle.spawn_watcher(Duration::from_millis(10));
    assert!(watcher.await.is_ok());
}
