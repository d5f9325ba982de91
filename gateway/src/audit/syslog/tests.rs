use super::*;
use crate::audit::{AuditEntry, AuditRecord, append_to};

fn record(action: &str, detail: serde_json::Value) -> AuditRecord {
    AuditRecord {
        seq: 7,
        at: "2026-11-21T20:31:02.123456Z".into(),
        actor: "alice".into(),
        action: action.into(),
        detail,
        prev_hash: "a".repeat(64),
        hash: "b".repeat(64),
    }
}

fn origin() -> Origin {
    Origin {
        hostname: "gw1".into(),
        procid: "42".into(),
        facility: Facility::AUDIT,
    }
}

/// The parts of an RFC 5424 message this exporter writes.
#[derive(Debug)]
struct Parsed {
    priority: u16,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    params: Vec<(String, String)>,
    message: String,
}

fn parse(text: &str) -> Parsed {
    let rest = text.strip_prefix('<').expect("PRI");
    let (priority, rest) = rest.split_once(">1 ").expect("version 1");
    let mut fields = rest.splitn(6, ' ');
    let mut next = || fields.next().expect("header field").to_string();
    let (timestamp, hostname, app, procid, msgid, rest) =
        (next(), next(), next(), next(), next(), next());
    let body = rest.strip_prefix(&format!("[{SD_ID}")).expect("our SD-ID");
    // Walk the params, honouring backslash escapes, up to the closing `]`.
    let mut params = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        match chars.next().expect("unterminated SD") {
            ']' => break,
            ' ' => {
                let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'));
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated value") {
                        '\\' => value.push(chars.next().expect("escaped char")),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                params.push((name, value));
            }
            c => panic!("unexpected {c:?} in SD"),
        }
    }
    let message: String = chars.collect();
    Parsed {
        priority: priority.parse().unwrap(),
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        params,
        message: message
            .strip_prefix(" \u{feff}")
            .expect("SP and BOM before MSG")
            .to_string(),
    }
}

fn param<'a>(parsed: &'a Parsed, name: &str) -> &'a str {
    parsed
        .params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {parsed:?}"))
}

#[test]
fn message_is_rfc5424_with_seq_and_hash() {
    let detail = serde_json::json!({"route": "r", "reason": "say \"hi\" ] \\ é"});
    let text = format_message(&record("route.flip", detail.clone()), &origin());
    let parsed = parse(&text);
    assert_eq!(parsed.priority, 13 * 8 + 5, "log audit, notice");
    assert_eq!(parsed.timestamp, "2026-11-21T20:31:02.123456Z");
    assert_eq!(
        (
            parsed.hostname.as_str(),
            parsed.app.as_str(),
            parsed.procid.as_str()
        ),
        ("gw1", APP_NAME, "42")
    );
    assert_eq!(parsed.msgid, "route.flip");
    assert_eq!(param(&parsed, "seq"), "7");
    assert_eq!(param(&parsed, "hash"), "b".repeat(64));
    assert_eq!(param(&parsed, "actor"), "alice");
    let sent: serde_json::Value = serde_json::from_str(&parsed.message).unwrap();
    assert_eq!(sent, detail);
}

#[test]
fn refusals_are_warnings_and_odd_header_values_are_cleaned() {
    let mut odd = record("route.flip.forbidden", serde_json::json!({}));
    odd.actor = "eve\"]".into();
    let text = format_message(&odd, &origin());
    let parsed = parse(&text);
    assert_eq!(parsed.priority, 13 * 8 + 4);
    assert_eq!(param(&parsed, "actor"), "eve\"]");

    let long = record(&format!("x y{}", "z".repeat(40)), serde_json::json!({}));
    let parsed = parse(&format_message(&long, &origin()));
    assert_eq!(parsed.msgid.len(), 32);
    assert!(parsed.msgid.starts_with("x_y"));
}

#[test]
fn long_details_are_cut_and_flagged() {
    let big = serde_json::json!({ "text": "é".repeat(10_000) });
    let text = format_message(&record("job.done", big), &origin());
    assert!(text.len() <= MAX_MESSAGE, "{}", text.len());
    assert_eq!(param(&parse(&text), "truncated"), "true");
}

#[test]
fn config_parsing() {
    let udp = SyslogConfig::parse("udp://127.0.0.1:514", Facility::AUDIT).unwrap();
    assert_eq!(
        (udp.transport, udp.address.as_str()),
        (Transport::Udp, "127.0.0.1:514")
    );
    let tcp = SyslogConfig::parse("tcp://siem.example:6514", Facility::AUTHPRIV).unwrap();
    assert_eq!(tcp.transport, Transport::Tcp);
    for bad in [
        "127.0.0.1:514",
        "udp://:514",
        "udp://host",
        "http://h:1",
        "udp://h:0",
    ] {
        assert!(SyslogConfig::parse(bad, Facility::AUDIT).is_err(), "{bad}");
    }
    assert_eq!(Facility::parse("authpriv").unwrap().code(), 10);
    assert_eq!(Facility::parse("local3").unwrap().code(), 19);
    assert!(Facility::parse("local8").is_err());
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "alice".into(),
        action: action.into(),
        detail: serde_json::json!({ "route": "ct" }),
    }
}

async fn receive(receiver: &tokio::net::UdpSocket) -> Parsed {
    let mut buffer = vec![0u8; MAX_MESSAGE + 100];
    let n = tokio::time::timeout(Duration::from_secs(10), receiver.recv(&mut buffer))
        .await
        .expect("a syslog message within 10 s")
        .unwrap();
    parse(std::str::from_utf8(&buffer[..n]).unwrap())
}

/// A real UDP receiver gets each entry once; after a restart of the
/// exporter only what is new is sent (the cursor is persisted).
#[tokio::test]
async fn exporter_sends_each_entry_over_udp_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.sqlite");
    append_to(&index, &entry("route.flip")).unwrap();
    append_to(&index, &entry("route.unflip")).unwrap();
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = SyslogConfig::parse(
        &format!("udp://{}", receiver.local_addr().unwrap()),
        Facility::AUDIT,
    )
    .unwrap();

    let (stop, stop_rx) = watch::channel(false);
    let task = spawn(config.clone(), index.clone(), stop_rx);
    let first = receive(&receiver).await;
    let second = receive(&receiver).await;
    assert_eq!(
        (first.msgid.as_str(), param(&first, "seq")),
        ("route.flip", "1")
    );
    assert_eq!(param(&second, "seq"), "2");
    stop.send(true).unwrap();
    task.await.unwrap();

    append_to(&index, &entry("route.pin")).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = spawn(config, index, stop_rx);
    let third = receive(&receiver).await;
    assert_eq!(
        (third.msgid.as_str(), param(&third, "seq")),
        ("route.pin", "3")
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
