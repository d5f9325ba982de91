//! The operator side end to end on the real binary: operator tokens made
//! with the CLI, the admin API over HTTPS, `dicom-gateway routes …` and
//! `audit …`, and what the audit trail says afterwards.

use std::path::Path;
use std::time::Duration;

use gateway_e2e::{
    EXPLICIT_VR_LE, TestGateway, c_store_all, dcmtk, pipeline_config, repo_models_dir, small_ct,
};
use serde_json::{Value, json};

const CT_ROUTE: &str = "ct-head-hyperdensity";

fn route<'a>(routes: &'a Value, name: &str) -> &'a Value {
    routes["routes"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no route {name} in {routes}"))
}

/// The audit entries with `action`, as the admin API lists them.
async fn audit_entries(gw: &TestGateway, token: &str, action: &str) -> Vec<Value> {
    let (status, body) = gw
        .admin_get(Some(token), &format!("/audit?action={action}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dicom-gateway routes flip ROUTE --reason …` as the operator with `token`.
/// The tests of fallback results start from here: flip, then send a series.
pub fn flip_with_cli(gw: &TestGateway, token: &str, route: &str, reason: &str) {
    let out = gw.operator_cli(token, &["routes", "flip", route, "--reason", reason]);
    assert!(
        out.status.success(),
        "routes flip: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn tokens_and_roles_guard_every_action_and_refusals_are_audited() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let viewer = gw.create_admin_token("val", "viewer");
    let operator = gw.create_admin_token("olga", "operator");

    // No token, or one the gateway does not know: 401 with the challenge.
    let response = gw
        .https_client()
        .get(format!("{}/v1/routes", gw.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer"))
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, _) = gw.admin_get(Some("dga_0000_forged"), "/routes").await;
    assert_eq!(status, 401);

    // A viewer reads routes, but cannot flip one: 403, and the attempt is
    // in the audit trail under the viewer's name with the reason given.
    let (status, routes) = gw.admin_get(Some(&viewer), "/routes").await;
    assert_eq!(status, 200, "{routes}");
    assert_eq!(route(&routes, CT_ROUTE)["status"], "active");
    let flip = json!({"reason": "viewer tries to flip"});
    let (status, problem) = gw
        .admin_post(Some(&viewer), &format!("/routes/{CT_ROUTE}/flip"), &flip)
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["required_role"], "operator");
    assert_eq!(problem["title"], "role too low for this action");
    let forbidden = audit_entries(&gw, &operator, "route.flip.forbidden").await;
    assert_eq!(forbidden.len(), 1, "{forbidden:?}");
    assert_eq!(forbidden[0]["actor"], "val");
    assert_eq!(forbidden[0]["detail"]["route"], CT_ROUTE);
    assert_eq!(forbidden[0]["detail"]["reason"], "viewer tries to flip");
    assert_eq!(forbidden[0]["detail"]["role"], "viewer");
    let (_, routes) = gw.admin_get(Some(&viewer), "/routes").await;
    assert_eq!(
        route(&routes, CT_ROUTE)["status"],
        "active",
        "nothing changed"
    );
    // The audit trail itself is for operators.
    let (status, _) = gw.admin_get(Some(&viewer), "/audit").await;
    assert_eq!(status, 403);
    assert_eq!(
        audit_entries(&gw, &operator, "audit.list.forbidden").await[0]["actor"],
        "val"
    );

    // An action without a reason is refused (400), and audited too.
    let path = format!("/routes/{CT_ROUTE}/flip");
    for body in [json!({}), json!({"reason": "   "})] {
        let (status, problem) = gw.admin_post(Some(&operator), &path, &body).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["title"], "reason required");
    }
    let refused = audit_entries(&gw, &operator, "route.flip.refused").await;
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["actor"], "olga");
    assert_eq!(refused[0]["detail"]["problem"], "reason-required");

    // JSON only, routes and actions that exist only.
    let response = gw
        .https_client()
        .post(format!("{}/v1{path}", gw.admin_url()))
        .bearer_auth(&operator)
        .header("content-type", "text/plain")
        .body("reason=because")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (status, problem) = gw
        .admin_post(Some(&operator), "/routes/no-such-route/flip", &flip)
        .await;
    assert_eq!(
        (status, problem["title"].as_str()),
        (404, Some("unknown route"))
    );
    let (status, _) = gw
        .admin_post(
            Some(&operator),
            &format!("/routes/{CT_ROUTE}/explode"),
            &flip,
        )
        .await;
    assert_eq!(status, 404);

    assert_eq!(
        gw.metric(
            r#"gateway_admin_operator_actions_total{action="route.flip",outcome="forbidden"}"#
        ),
        1.0
    );
    assert_eq!(
        gw.metric(r#"gateway_admin_operator_actions_total{action="route.flip",outcome="refused"}"#),
        4.0
    );
}

#[tokio::test]
async fn an_operator_flips_a_route_with_the_cli_and_the_audit_says_who_why_before_and_after() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let alice = gw.create_admin_token("alice", "operator");
    let reason = "false positives on the new scanner";

    flip_with_cli(&gw, &alice, CT_ROUTE, reason);
    let out = gw.operator_cli(&alice, &["routes", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let routes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ct = route(&routes, CT_ROUTE);
    assert_eq!(ct["status"], "forced_fallback", "{ct}");
    assert_eq!(ct["state"]["forced_fallback"]["reason"], reason);
    assert_eq!(route(&routes, "radiograph-exposure")["status"], "active");

    // Without a restart, the next series skips the primary for the
    // route's fallback (the embedded route falls back to 1.0.0).
    let dicomweb = gw.create_token("demo", "read", "");
    let flipped = small_ct(2, 1601);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &flipped).await;
    let results = gw
        .wait_for_results(
            &dicomweb,
            &flipped[0].study_instance_uid,
            1,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(results[0]["step"], "fallback", "{results:?}");
    assert_eq!(results[0]["served_version"], "1.0.0", "{results:?}");
    let why = results[0]["step_reason"].as_str().unwrap();
    assert!(
        why.starts_with("ct-hyperdensity@2.0.0: forced") && why.contains(reason),
        "{why}"
    );
    let table = stdout(&gw.operator_cli(&alice, &["routes", "list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(CT_ROUTE) && l.contains("forced_fallback")),
        "{table}"
    );

    let out = gw.operator_cli(
        &alice,
        &["audit", "list", "--json", "--action", "route.flip"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "alice");
    assert_eq!(entry["detail"]["route"], CT_ROUTE);
    assert_eq!(entry["detail"]["reason"], reason);
    assert_eq!(entry["detail"]["before"]["forced_fallback"], Value::Null);
    assert_eq!(
        entry["detail"]["after"]["forced_fallback"]["reason"],
        reason
    );
    assert!(entry["at"].as_str().unwrap().ends_with('Z'), "UTC: {entry}");

    // Unflip, then a flip for a while only.
    let out = gw.operator_cli(&alice, &["routes", "unflip", CT_ROUTE, "--reason", "fixed"]);
    assert!(
        stdout(&out).contains("now active"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let unflipped = small_ct(2, 1602);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &unflipped).await;
    let results = gw
        .wait_for_results(
            &dicomweb,
            &unflipped[0].study_instance_uid,
            1,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(results[0]["step"], "primary", "{results:?}");
    assert_eq!(results[0]["served_version"], "2.0.0", "{results:?}");
    let out = gw.operator_cli(
        &alice,
        &[
            "routes",
            "flip",
            CT_ROUTE,
            "--reason",
            "maintenance",
            "--until",
            "30m",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gw.operator_cli(&alice, &["routes", "show", CT_ROUTE]);
    assert!(stdout(&out).contains("fallback until"), "{}", stdout(&out));
    let table = stdout(&gw.operator_cli(&alice, &["audit", "list", "--actor", "alice"]));
    for action in ["route.flip", "route.unflip"] {
        assert!(table.contains(action), "{table}");
    }

    // A promote needs an admin; the CLI exits non-zero with the detail.
    let out = gw.operator_cli(
        &alice,
        &[
            "routes",
            "promote",
            CT_ROUTE,
            "--version",
            "1.0.0",
            "--reason",
            "r",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs the admin role"),
        "{}",
        stderr(&out)
    );
}

/// `models/` copied with one version's model file altered after its
/// manifest was written, and routes that name it as the rollback target.
fn corrupt_deployment(dir: &Path) -> (String, String) {
    let models = dir.join("models");
    copy_dir(&repo_models_dir(), &models);
    let file = models.join("ct-hyperdensity/1.0.0/model.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&file, bytes).unwrap();
    let routes = dir.join("routes.toml");
    // The embedded routes already name 1.0.0 as the CT route's rollback_to.
    let text = gateway_e2e_routes();
    assert!(text.contains("rollback_to = \"1.0.0\""));
    std::fs::write(&routes, text).unwrap();
    (models.display().to_string(), routes.display().to_string())
}

fn gateway_e2e_routes() -> String {
    std::fs::read_to_string(repo_models_dir().join("../config/routes.toml")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// [`pipeline_config`] on another model repository and routes file.
fn config_with(models_dir: &str, routes_file: &str) -> String {
    let text = pipeline_config("");
    let repo = repo_models_dir().display().to_string();
    assert!(text.contains(&repo));
    text.replace(&repo, models_dir).replace(
        "[pipeline]\nenabled = true",
        &format!("[pipeline]\nenabled = true\nroutes_file = \"{routes_file}\""),
    )
}

#[tokio::test]
async fn pin_or_rollback_to_a_corrupt_version_is_refused_and_the_current_one_keeps_serving() {
    let deployment = tempfile::tempdir().unwrap();
    let (models, routes) = corrupt_deployment(deployment.path());
    let gw = TestGateway::start_with_config(config_with(&models, &routes));
    let oscar = gw.create_admin_token("oscar", "operator");
    let (_, before) = gw
        .admin_get(Some(&oscar), &format!("/routes/{CT_ROUTE}"))
        .await;
    assert_eq!(before["serving"], "ct-hyperdensity@2.0.0", "{before}");
    assert_eq!(before["rollback_to"], "1.0.0");

    let (status, problem) = gw
        .admin_post(
            Some(&oscar),
            &format!("/routes/{CT_ROUTE}/pin"),
            &json!({"version": "1.0.0", "reason": "2.0.0 misbehaves"}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["title"], "model file check failed");
    assert_eq!(problem["fault"], "deployment");
    assert!(
        problem["detail"].as_str().unwrap().contains("mismatch"),
        "{problem}"
    );

    let out = gw.operator_cli(
        &oscar,
        &[
            "routes",
            "rollback",
            CT_ROUTE,
            "--reason",
            "2.0.0 misbehaves",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("ct-hyperdensity@1.0.0"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("mismatch"), "{}", stderr(&out));

    // Nothing changed: the same version serves, no operator state was set.
    let (_, after) = gw
        .admin_get(Some(&oscar), &format!("/routes/{CT_ROUTE}"))
        .await;
    assert_eq!(after["serving"], "ct-hyperdensity@2.0.0");
    assert_eq!(after["status"], "active");
    assert_eq!(after["state"], before["state"]);
    assert_eq!(after["chain"][0]["file"], "ok");
    for action in ["route.pin.refused", "route.rollback.refused"] {
        let entries = audit_entries(&gw, &oscar, action).await;
        assert_eq!(entries.len(), 1, "{action}");
        assert_eq!(entries[0]["actor"], "oscar");
        assert_eq!(entries[0]["detail"]["reason"], "2.0.0 misbehaves");
    }
    // A series that arrives now still gets the version in service.
    let dicomweb = gw.create_token("demo", "read", "");
    let series = small_ct(4, 7);
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    let results = gw
        .wait_for_results(
            &dicomweb,
            &series[0].study_instance_uid,
            1,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        (results[0]["state"].as_str(), results[0]["version"].as_str()),
        (Some("done"), Some("2.0.0")),
        "{results:?}"
    );
    // The models listing shows why.
    let (_, listing) = gw.admin_get(Some(&oscar), "/models").await;
    let corrupt = listing["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "ct-hyperdensity@1.0.0")
        .unwrap();
    assert_eq!(corrupt["file"], "mismatch", "{corrupt}");
}

#[tokio::test]
async fn a_bad_reload_is_refused_with_every_problem_and_the_running_configuration_stays() {
    let deployment = tempfile::tempdir().unwrap();
    let routes_file = deployment.path().join("routes.toml");
    std::fs::write(&routes_file, gateway_e2e_routes()).unwrap();
    let repo = repo_models_dir().display().to_string();
    let gw = TestGateway::start_with_config(config_with(&repo, &routes_file.display().to_string()));
    let ada = gw.create_admin_token("ada", "admin");
    let olga = gw.create_admin_token("olga", "operator");
    let good = std::fs::read_to_string(gw.config_path()).unwrap();

    let (status, _) = gw.admin_post(Some(&olga), "/reload", &json!({})).await;
    assert_eq!(status, 403, "reload is for admins");
    let (status, body) = gw.admin_post(Some(&ada), "/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["routes"], 2);

    // An invalid configuration file: 422 naming every problem.
    let bad = good
        .replace("max_associations = 16", "max_associations = 0")
        .replace("stable_time = \"300ms\"", "stable_time = \"soon\"");
    std::fs::write(gw.config_path(), &bad).unwrap();
    let (status, problem) = gw.admin_post(Some(&ada), "/reload", &json!({})).await;
    assert_eq!(status, 422, "{problem}");
    let problems = problem["problems"].to_string();
    assert!(problems.contains("dimse.max_associations"), "{problems}");
    assert!(problems.contains("pipeline.stable_time"), "{problems}");
    let out = gw.operator_cli(&ada, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pipeline.stable_time"),
        "{}",
        stderr(&out)
    );

    // A broken routes file (the config itself fine again): refused too.
    std::fs::write(gw.config_path(), &good).unwrap();
    std::fs::write(&routes_file, "[[route]]\nname = \"Bad Name\"\n").unwrap();
    let (status, problem) = gw.admin_post(Some(&ada), "/reload", &json!({})).await;
    assert_eq!(status, 422, "{problem}");

    // The running configuration still serves: the same routes, DIMSE.
    let (status, routes) = gw.admin_get(Some(&olga), "/routes").await;
    assert_eq!(status, 200);
    assert_eq!(routes["routes"].as_array().unwrap().len(), 2, "{routes}");
    route(&routes, CT_ROUTE);
    let echo = dcmtk("echoscu")
        .args(gw.dcmtk_args("DEMO-SCU"))
        .status()
        .unwrap();
    assert!(echo.success());
    let refused = audit_entries(&gw, &olga, "config.reload_refused").await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().all(|e| e["actor"] == "ada"));
    assert_eq!(
        audit_entries(&gw, &olga, "config.reload.forbidden")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn audit_verify_passes_then_names_the_entry_that_was_edited() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let ada = gw.create_admin_token("ada", "operator");
    flip_with_cli(&gw, &ada, CT_ROUTE, "before the audit check");
    let out = gw.operator_cli(&ada, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("audit trail verifies"),
        "{}",
        stdout(&out)
    );

    // Someone with file access edits an entry while the gateway runs.
    let conn = rusqlite::Connection::open(gw.data_dir().join("index.sqlite")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let changed = conn
        .execute(
            "UPDATE audit SET detail = '{\"reason\":\"nothing to see\"}' WHERE seq = 2",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let out = gw.operator_cli(&ada, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("audit entry 2"), "{}", stderr(&out));
    let (status, problem) = gw.admin_get(Some(&ada), "/audit/verify").await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        (problem["seq"].as_i64(), problem["verified"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn operator_actions_reach_a_syslog_receiver() {
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = receiver.local_addr().unwrap();
    let gw = TestGateway::start_with_config(pipeline_config(&format!(
        "[audit]\nsyslog = \"udp://{address}\"\n"
    )));
    let olga = gw.create_admin_token("olga", "operator");
    let (status, _) = gw
        .admin_post(
            Some(&olga),
            &format!("/routes/{CT_ROUTE}/drain"),
            &json!({"reason": "decommissioning"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut buffer = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n = tokio::time::timeout_at(deadline, receiver.recv(&mut buffer))
            .await
            .expect("the drain reaches syslog within 15 s")
            .unwrap();
        let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
        // <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG
        let fields: Vec<&str> = message.splitn(7, ' ').collect();
        assert!(
            fields[0].starts_with('<') && fields[0].ends_with(">1"),
            "{message}"
        );
        assert_eq!(fields[3], "dicom-gateway");
        if fields[5] == "route.drain" {
            assert!(fields[6].starts_with("[audit@32473 seq=\""), "{message}");
            assert!(message.contains("actor=\"olga\"") && message.contains(" hash=\""));
            assert!(message.contains("decommissioning"), "{message}");
            break;
        }
    }
}

#[tokio::test]
async fn without_the_pipeline_route_requests_say_so_and_audit_and_health_still_answer() {
    // The harness's base configuration has the pipeline off.
    let gw = TestGateway::start("");
    let ada = gw.create_admin_token("ada", "admin");
    let (status, problem) = gw.admin_get(Some(&ada), "/routes").await;
    assert_eq!(
        (status, problem["title"].as_str()),
        (409, Some("pipeline disabled"))
    );
    let (status, _) = gw.admin_post(Some(&ada), "/reload", &json!({})).await;
    assert_eq!(status, 409);
    let out = gw.operator_cli(&ada, &["routes", "flip", CT_ROUTE, "--reason", "r"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pipeline.enabled = false"),
        "{}",
        stderr(&out)
    );

    let (status, health) = gw.admin_get(Some(&ada), "/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (health["status"].as_str(), health["pipeline"].as_bool()),
        (Some("ok"), Some(false))
    );
    let refused = audit_entries(&gw, &ada, "route.flip.refused").await;
    assert_eq!(refused[0]["detail"]["problem"], "pipeline-disabled");
    let (status, _) = gw.admin_get(Some(&ada), "/audit/verify").await;
    assert_eq!(status, 200);

    // Bodies are small JSON objects: a large one is refused before it is read.
    let big = json!({ "reason": "x".repeat(100 * 1024) });
    let (status, problem) = gw
        .admin_post(Some(&ada), &format!("/routes/{CT_ROUTE}/flip"), &big)
        .await;
    assert_eq!(
        (status, problem["title"].as_str()),
        (413, Some("request body too large"))
    );
}

#[tokio::test]
async fn a_shadow_version_runs_beside_production_and_is_compared_never_stored_in_the_study() {
    let gw = TestGateway::start_with_config(pipeline_config(""));
    let admin = gw.create_admin_token("ada", "admin");
    let out = gw.operator_cli(
        &admin,
        &[
            "routes",
            "shadow",
            CT_ROUTE,
            "--version",
            "1.0.0",
            "--reason",
            "candidate check",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let dicomweb = gw.create_token("demo", "read", "");
    let series = small_ct(2, 1701);
    let study = &series[0].study_instance_uid;
    c_store_all(gw.dimse, "DEMO-SCU", EXPLICIT_VR_LE, &series).await;
    let results = gw
        .wait_for_results(&dicomweb, study, 2, Duration::from_secs(60))
        .await;
    let production = results
        .iter()
        .find(|r| r["purpose"] == "production")
        .expect("a production job");
    assert_eq!(production["served_version"], "2.0.0", "{results:?}");
    assert!(production["result_sop_uid"].is_string(), "{production}");
    let shadow = results
        .iter()
        .find(|r| r["purpose"] == "shadow")
        .expect("a shadow job");
    assert_eq!(shadow["version"], "1.0.0", "{shadow}");
    assert_eq!(shadow["version_source"], "shadow", "{shadow}");
    assert_eq!(shadow["step"], "shadow", "{shadow}");
    assert!(shadow["findings"].is_array(), "{shadow}");
    assert!(
        shadow["result_sop_uid"].is_null(),
        "no SR for a shadow: {shadow}"
    );

    // The comparison lands once both are done.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let comparison = loop {
        let results = gw
            .wait_for_results(&dicomweb, study, 2, Duration::from_secs(10))
            .await;
        let shadow = results.iter().find(|r| r["purpose"] == "shadow").unwrap();
        if shadow["comparison"].is_array() {
            break shadow["comparison"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{shadow}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(comparison[0]["label"], "hyperdensity", "{comparison}");
    assert!(comparison[0]["agree"].is_boolean(), "{comparison}");

    // Only the production SR is in the study.
    let instances = gw.index().query_row(
        "SELECT COUNT(*) FROM instances WHERE study_instance_uid = ?1 AND modality = 'SR'",
        [study],
        |r| r.get::<_, i64>(0),
    );
    assert_eq!(instances.unwrap(), 1);
}
