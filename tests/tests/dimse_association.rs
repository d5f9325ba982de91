//! Association policy against the real binary, with dcmtk's echoscu.

use gateway_e2e::{TestGateway, dcmtk};

fn echo(
    gw: &TestGateway,
    calling_ae: &str,
    called_ae: &str,
    extra: &[&str],
) -> std::process::Output {
    dcmtk("echoscu")
        .args(["-aet", calling_ae, "-aec", called_ae])
        .args(extra)
        .arg(gw.dimse.ip().to_string())
        .arg(gw.dimse.port().to_string())
        .output()
        .expect("run echoscu")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn repeated_echoes_in_one_association_succeed() {
    let gw = TestGateway::start("");
    let out = echo(&gw, "DEMO-SCU", "GATEWAY", &["--repeat", "5", "-v"]);
    assert!(out.status.success(), "{}", text(&out));
    // dcmtk checks MessageIDBeingRespondedTo of every response; five successes.
    assert_eq!(
        text(&out)
            .matches("Received Echo Response (Success)")
            .count(),
        5,
        "{}",
        text(&out)
    );
    assert_eq!(
        gw.metric(
            "gateway_dimse_messages_total{command=\"c_echo\",site=\"demo\",status=\"success\"}"
        ),
        5.0
    );
}

#[test]
fn unknown_calling_ae_is_rejected_1_1_3() {
    let gw = TestGateway::start("");
    let out = echo(&gw, "STRANGER", "GATEWAY", &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("Rejected Permanent") && t.contains("Calling AE Title Not Recognized"),
        "{t}"
    );
    assert_eq!(
        gw.metric(
            "gateway_dimse_associations_total{outcome=\"rejected_calling_ae\",site=\"unknown\"}"
        ),
        1.0
    );
    // Still serving.
    assert!(echo(&gw, "DEMO-SCU", "GATEWAY", &[]).status.success());
}

#[test]
fn wrong_called_ae_is_rejected_1_1_7() {
    let gw = TestGateway::start("");
    let out = echo(&gw, "DEMO-SCU", "NOT-US", &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("Rejected Permanent") && t.contains("Called AE Title Not Recognized"),
        "{t}"
    );
    assert_eq!(
        gw.metric(
            "gateway_dimse_associations_total{outcome=\"rejected_called_ae\",site=\"unknown\"}"
        ),
        1.0
    );
}

#[test]
fn known_ae_from_a_disallowed_address_is_rejected() {
    let gw = TestGateway::start(
        r#"
[[sites]]
name = "remote"
ae_titles = ["REMOTE-CT"]
allowed_peers = ["192.0.2.0/24"]
"#,
    );
    let out = echo(&gw, "REMOTE-CT", "GATEWAY", &[]);
    assert!(!out.status.success());
    // Answered exactly like an unknown AE: a prober learns nothing.
    assert!(
        text(&out).contains("Calling AE Title Not Recognized"),
        "{}",
        text(&out)
    );
    assert_eq!(
        gw.metric(
            "gateway_dimse_associations_total{outcome=\"rejected_address\",site=\"unknown\"}"
        ),
        1.0
    );
}

#[test]
fn unknown_ae_is_accepted_into_default_site_only_when_enabled() {
    let gw = TestGateway::start_with_config(gateway_e2e::base_config("").replace(
        "idle_timeout = \"20s\"",
        "idle_timeout = \"20s\"\naccept_unknown_ae = true\nunknown_ae_site = \"walk-in\"",
    ));
    let out = echo(&gw, "STRANGER", "GATEWAY", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        gw.metric("gateway_dimse_associations_total{outcome=\"accepted\",site=\"walk-in\"}"),
        1.0
    );
}

#[test]
fn over_the_association_limit_is_rejected_2_3_2() {
    let gw = TestGateway::start_with_config(
        gateway_e2e::base_config("").replace("max_associations = 16", "max_associations = 1"),
    );
    // Hold the only slot open with an association that does nothing.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let holder = runtime.block_on(async {
        dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("DEMO-SCU")
            .called_ae_title("GATEWAY")
            .with_abstract_syntax("1.2.840.10008.1.1")
            .establish_async(gw.dimse)
            .await
            .expect("first association")
    });
    let out = echo(&gw, "DEMO-SCU", "GATEWAY", &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("Rejected Transient") && t.contains("Local Limit Exceeded"),
        "{t}"
    );
    assert_eq!(
        gw.metric("gateway_dimse_associations_total{outcome=\"rejected_limit\",site=\"unknown\"}"),
        1.0
    );
    runtime.block_on(async { holder.release().await.expect("release") });
    // The slot is free again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !echo(&gw, "DEMO-SCU", "GATEWAY", &[]).status.success() {
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_cleanly() {
    let mut gw = TestGateway::start("");
    assert!(echo(&gw, "DEMO-SCU", "GATEWAY", &[]).status.success());
    let status = gw.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!gw.data_dir().join("listeners.json").exists());
    assert!(gw.log().contains("gateway stopped"), "{}", gw.log());
}

#[tokio::test]
async fn sigterm_lets_an_open_association_finish_its_work() {
    use dicom_loadtest::scu::{ScuOptions, StoreClient};
    let mut gw = TestGateway::start("");
    let mut spec = dicom_loadtest::synth::SeriesSpec::ct_head(3, 21);
    spec.rows = 64;
    spec.columns = 64;
    let series = dicom_loadtest::synth::generate_series(&spec);
    let options = ScuOptions {
        calling_ae: "DEMO-SCU".into(),
        called_ae: "GATEWAY".into(),
        max_pdu: 16_384,
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
    };
    let mut client = StoreClient::connect(gw.dimse, &options, &["1.2.840.10008.5.1.4.1.1.2"])
        .await
        .unwrap();
    assert_eq!(client.store(&series[0]).await.unwrap().status, 0);

    let pid = nix::unistd::Pid::from_raw(gw.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // No new associations (once the signal has been handled)...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while echo(&gw, "DEMO-SCU", "GATEWAY", &[]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "listener should be closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // ...but the open one still stores, durably.
    for inst in &series[1..] {
        assert_eq!(client.store(inst).await.unwrap().status, 0);
    }
    client.release().await.unwrap();
    let status = gw.terminate_wait();
    assert!(status.success(), "exit status {status}");
    assert_eq!(gw.indexed_count(), 3);
}
