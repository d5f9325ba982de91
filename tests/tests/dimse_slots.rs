//! Association slots against the real binary: connections that never send an
//! A-ASSOCIATE-RQ hold only the small negotiating budget (and one address
//! only its share of it), so they cannot lock a real modality out; every
//! refusal is counted by reason.
//!
//! Every test client connects from loopback. To tell the per-address cap
//! from the global budget, silent sockets bind other 127.0.0.0/8 source
//! addresses (Linux routes the whole block to `lo`); dcmtk connects from
//! 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use gateway_e2e::{TestGateway, base_config, dcmtk, small_ct, write_part10_files};
use tokio::net::{TcpSocket, TcpStream};

const MAX_NEGOTIATING: usize = 8;
const PER_PEER: usize = 4;
/// Far beyond any test's length: silent sockets stay "negotiating" until we drop them.
const ESTABLISH_TIMEOUT: &str = "120s";

fn slots_config(max_associations: usize) -> String {
    base_config("")
        .replace(
            "max_associations = 16",
            &format!(
                "max_associations = {max_associations}\nmax_negotiating = {MAX_NEGOTIATING}\nmax_negotiating_per_peer = {PER_PEER}"
            ),
        )
        .replace(
            "establish_timeout = \"5s\"",
            &format!("establish_timeout = \"{ESTABLISH_TIMEOUT}\""),
        )
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A TCP connection from `source` that never sends a byte.
async fn silent(source: Ipv4Addr, gateway: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    socket.connect(gateway).await.expect("connect")
}

async fn silent_many(source: Ipv4Addr, gateway: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        sockets.push(silent(source, gateway).await);
    }
    sockets
}

/// What a refused connection receives: the "busy" rejection (if the
/// gateway's write got out first), then the end of the stream.
const BUSY: [u8; 10] = [0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2];

/// Waits (up to 5 s) for the gateway to close `stream` without reading
/// from it; returns what it sent first.
async fn closed_by_gateway(stream: &TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::timeout_at(deadline, stream.readable())
            .await
            .expect("refused connection was not closed")
            .unwrap();
        let mut buf = [0u8; 64];
        match stream.try_read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // Reset: we had nothing unread, so this is the close itself.
            Err(_) => return received,
        }
    }
}

/// Open, nothing received: the gateway is still waiting for a request.
fn still_negotiating(stream: &TcpStream) -> bool {
    matches!(stream.try_read(&mut [0u8; 16]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn refused_count(gw: &TestGateway, reason: &str, expected: f64) {
    let name = format!("gateway_dimse_connections_refused_total{{reason=\"{reason}\"}}");
    // `metric` waits for a non-zero value to settle; zero is read once.
    let value = if expected == 0.0 {
        gw.metric_now(&name)
    } else {
        gw.metric(&name)
    };
    assert_eq!(value, expected, "{name}");
}

fn echo(gw: &TestGateway) -> std::process::Output {
    dcmtk("echoscu")
        .args(gw.dcmtk_args("DEMO-SCU"))
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

/// The process still serves: it answers C-ECHO and `/metrics`.
fn assert_alive(gw: &TestGateway) {
    let pid = nix::unistd::Pid::from_raw(gw.pid().expect("started") as i32);
    assert!(
        nix::sys::signal::kill(pid, None).is_ok(),
        "gateway process is gone"
    );
    let out = echo(gw);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        gw.metrics_text()
            .contains("gateway_dimse_connections_refused_total")
    );
}

#[tokio::test]
async fn silent_sockets_do_not_lock_a_modality_out() {
    let gw = TestGateway::start_with_config(slots_config(16));

    // 40 silent sockets from one address: its share (4) is held, the rest
    // are closed at once, unread. (Before the negotiating budget these 40
    // took all 16 association slots and dcmtk below was refused 2,3,2.)
    let one_address = silent_many(loopback(2), gw.dimse, 40).await;
    for stream in &one_address[PER_PEER..] {
        let first = closed_by_gateway(stream).await;
        assert!(first.is_empty() || first == BUSY, "{first:?}");
    }
    refused_count(&gw, "per_peer_cap", 36.0);

    // Three more from a second address: 7 of the 8 negotiating permits held.
    let second_address = silent_many(loopback(3), gw.dimse, 3).await;

    // A real modality still associates, echoes and stores meanwhile.
    let out = echo(&gw);
    assert!(out.status.success(), "{}", text(&out));
    let series = small_ct(3, 41);
    let dir = gw.test_dir().join("slots-series");
    let files = write_part10_files(&dir, &series);
    let out = dcmtk("storescu")
        .args(gw.dcmtk_args("DEMO-SCU"))
        .args(&files)
        .output()
        .expect("run storescu");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gw.indexed_count(), 3);

    // The eighth permit goes to a third address; the ninth connection, from
    // a fourth, finds the budget spent and is closed at once...
    let third = silent(loopback(4), gw.dimse).await;
    let over_budget = silent(loopback(5), gw.dimse).await;
    closed_by_gateway(&over_budget).await;
    // ...and so, while the budget is spent, is a modality.
    let out = echo(&gw);
    assert!(!out.status.success(), "{}", text(&out));
    refused_count(&gw, "negotiating_budget", 2.0);
    refused_count(&gw, "per_peer_cap", 36.0);
    refused_count(&gw, "association_limit", 0.0);

    // All held sockets are still waiting for their request: none was
    // dropped to make room, none got an association slot.
    let held: Vec<&TcpStream> = one_address[..PER_PEER]
        .iter()
        .chain(&second_address)
        .chain([&third])
        .collect();
    assert_eq!(held.len(), MAX_NEGOTIATING);
    assert!(held.iter().all(|s| still_negotiating(s)));
    assert_eq!(gw.metric_now("gateway_dimse_active_associations"), 0.0);

    // Once they go, the budget is free again.
    drop((one_address, second_address, third, over_budget));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !echo(&gw).status.success() {
        assert!(std::time::Instant::now() < deadline, "budget never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_alive(&gw);
}

#[tokio::test]
async fn a_full_association_limit_still_answers_2_3_2_and_counts_it() {
    let gw = TestGateway::start_with_config(slots_config(1));
    // Silent sockets do not take the only slot...
    let silent_ones = silent_many(loopback(2), gw.dimse, PER_PEER).await;
    let holder = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("DEMO-SCU")
        .called_ae_title("GATEWAY")
        .with_abstract_syntax("1.2.840.10008.1.1")
        .establish_async(gw.dimse)
        .await
        .expect("the only association slot is free despite silent sockets");
    // ...an accepted request that finds it taken is answered "busy".
    let out = echo(&gw);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("Rejected Transient") && t.contains("Local Limit Exceeded"),
        "{t}"
    );
    refused_count(&gw, "association_limit", 1.0);
    assert_eq!(
        gw.metric("gateway_dimse_associations_total{outcome=\"rejected_limit\",site=\"unknown\"}"),
        1.0
    );
    refused_count(&gw, "per_peer_cap", 0.0);
    refused_count(&gw, "negotiating_budget", 0.0);
    assert!(silent_ones.iter().all(still_negotiating));

    holder.release().await.expect("release");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !echo(&gw).status.success() {
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(silent_ones);
    assert_alive(&gw);
}
