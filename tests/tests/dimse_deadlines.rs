//! Deadlines: a peer that never negotiates, and one that trickles a message,
//! are cut off, counted, and the gateway keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gateway_e2e::{TestGateway, base_config, dcmtk, raw_association};

fn short_deadlines() -> String {
    base_config("")
        .replace("establish_timeout = \"5s\"", "establish_timeout = \"1s\"")
        .replace("message_timeout = \"20s\"", "message_timeout = \"1s\"")
        .replace("idle_timeout = \"20s\"", "idle_timeout = \"2s\"")
}

/// Reads until the peer closes (or 10 s pass); returns what arrived and when.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return (received, started.elapsed()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn silent_peer_is_dropped_after_the_establish_deadline() {
    let gw = TestGateway::start_with_config(short_deadlines());
    let mut stream = TcpStream::connect(gw.dimse).unwrap();
    let (_, waited) = read_until_closed(&mut stream);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(
        gw.metric(
            "gateway_dimse_associations_total{outcome=\"establish_timeout\",site=\"unknown\"}"
        ),
        1.0
    );
    assert!(
        dcmtk("echoscu")
            .args(gw.dcmtk_args("DEMO-SCU"))
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn trickling_peer_is_aborted_at_the_message_deadline() {
    let gw = TestGateway::start_with_config(short_deadlines());
    let mut stream = raw_association(gw.dimse, "DEMO-SCU");
    let pc_id = 1u8;
    let mut pdu = vec![0x04, 0, 0, 0, 0x01, 0x00]; // P-DATA-TF, 256 bytes announced
    pdu.extend(252u32.to_be_bytes());
    pdu.extend([pc_id, 0x03]);
    stream.write_all(&pdu).unwrap();
    let started = Instant::now();
    let mut aborted = false;
    while started.elapsed() < Duration::from_secs(6) {
        if stream.write_all(&[0u8]).is_err() {
            aborted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
        let mut probe = [0u8; 16];
        if let Ok(n) = stream.read(&mut probe)
            && (n == 0 || probe[0] == 0x07)
        {
            aborted = true;
            break;
        }
    }
    assert!(aborted, "trickling association was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off after {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.metric("gateway_dimse_associations_total{outcome=\"timeout\",site=\"demo\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "timeout not counted:\n{}",
            gw.metrics_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dcmtk("echoscu")
            .args(gw.dcmtk_args("DEMO-SCU"))
            .status()
            .unwrap()
            .success()
    );
}
