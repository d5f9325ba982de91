//! Target: the first read of a connection (`negotiation::read_request`)
//! and our decision on it (`Acceptor::negotiate`). Arbitrary bytes and
//! mutated A-ASSOCIATE-RQs end in an answer or a typed error: never a
//! panic, never an allocation sized by a declared length, and a complete
//! PDU is decided on without waiting for more bytes (a reader that kept
//! reading past it would buffer whatever a peer sends until the deadline).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;
use std::time::Duration;

use dicom_gateway::config::{CliOverrides, load_from_str};
use dicom_gateway::dimse::negotiation::{Acceptor, Negotiated, read_request};
use dicom_gateway::sites::SiteRegistry;
use dicom_ul::Pdu;
use dicom_ul::pdu::{
    AssociationRQ, PresentationContextProposed, RequestorRoles, UserIdentity, UserIdentityType,
    UserVariableItem,
};
use proptest::prelude::*;
use proptest::sample::select;
use tokio::io::AsyncWriteExt;

use super::mutate::{apply, mutations};
use super::peak::measure;

const MAX_PDU: u32 = 16_384;
const ARBITRARY_CASES: u32 = 10_000;
const MUTATED_CASES: u32 = 30_000;
/// The request buffer (16 KiB, grown to one max PDU at most) and the parse
/// of one request of at most `MAX_PDU` bytes.
const MAX_ALLOCATION: usize = 4 * MAX_PDU as usize + 64 * 1024;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn sites() -> SiteRegistry {
    let text = r#"
        [[sites]]
        name = "demo"
        ae_titles = ["DEMO-SCU"]
        allowed_peers = ["127.0.0.0/8"]
    "#;
    let config = load_from_str(
        text,
        Vec::<(String, String)>::new(),
        &CliOverrides::default(),
    )
    .expect("config");
    SiteRegistry::from_config(&config)
}

/// What dcmtk's storescu proposes, trimmed: Verification and two storage
/// classes with several transfer syntaxes, role selection and a user identity.
fn association_rq() -> Vec<u8> {
    let ts = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "DEMO-SCU".into(),
        called_ae_title: "GATEWAY".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![
            PresentationContextProposed {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: ts(&["1.2.840.10008.1.2"]),
            },
            PresentationContextProposed {
                id: 3,
                abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
                transfer_syntaxes: ts(&[
                    "1.2.840.10008.1.2.4.50",
                    "1.2.840.10008.1.2.1",
                    "1.2.840.10008.1.2",
                ]),
            },
            PresentationContextProposed {
                id: 5,
                abstract_syntax: "1.2.840.10008.5.1.4.1.2.2.1".into(),
                transfer_syntaxes: ts(&["1.2.840.10008.1.2"]),
            },
        ],
        user_variables: vec![
            UserVariableItem::MaxLength(16_384),
            UserVariableItem::ImplementationClassUID("1.2.276.0.7230010.3.0.3.6.7".into()),
            UserVariableItem::ImplementationVersionName("OFFIS_DCMTK_367".into()),
            UserVariableItem::ScuScpRoleSelectionSubItem(
                "1.2.840.10008.5.1.4.1.1.2".into(),
                RequestorRoles {
                    scu: true,
                    scp: false,
                },
            ),
            UserVariableItem::UserIdentityItem(UserIdentity::new(
                true,
                UserIdentityType::UsernamePassword,
                b"user".to_vec(),
                b"secret".to_vec(),
            )),
        ],
    });
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, &rq).expect("encode A-ASSOCIATE-RQ");
    bytes
}

/// Length of the first PDU if `bytes` hold all of it and it is within our max.
fn complete_pdu(bytes: &[u8]) -> Option<usize> {
    let header: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
    let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    (length <= MAX_PDU && bytes.len() >= 6 + length as usize).then_some(6 + length as usize)
}

static SITES: LazyLock<SiteRegistry> = LazyLock::new(sites);

/// Feeds `bytes`, then decides on what was read. When they hold a complete
/// PDU the far end stays open, so a reader that waited for more would time
/// out; otherwise it closes, so an incomplete PDU ends at once.
fn read_and_negotiate(bytes: &[u8]) -> Result<(), TestCaseError> {
    let complete = complete_pdu(bytes).is_some();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let (mut near, mut far) = tokio::io::duplex(bytes.len() + 1);
    runtime.block_on(async { far.write_all(bytes).await.expect("fill duplex") });
    let far = complete.then_some(far);
    let acceptor = Acceptor {
        sites: &SITES,
        max_pdu_length: MAX_PDU,
    };
    let (outcome, peak) = measure(|| {
        runtime.block_on(async {
            let read =
                tokio::time::timeout(Duration::from_millis(500), read_request(&mut near, MAX_PDU));
            match read.await {
                Err(_) => None,
                Ok(Err(_)) => Some(None),
                Ok(Ok((pdu, _))) => Some(Some(acceptor.negotiate(pdu, PEER))),
            }
        })
    });
    drop(far);
    prop_assert!(peak <= MAX_ALLOCATION, "{peak} bytes allocated at once");
    match outcome {
        None => prop_assert!(!complete, "waited for more bytes after a complete PDU"),
        Some(None) => {}
        Some(Some(negotiated)) => {
            let answer = match negotiated {
                Negotiated::Accepted(accepted) => accepted.answer,
                Negotiated::Refused { answer, .. } => answer,
            };
            let mut encoded = Vec::new();
            prop_assert!(
                dicom_ul::write_pdu(&mut encoded, &answer).is_ok(),
                "{answer:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn the_seed_is_accepted() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = association_rq();
    let (pdu, leftover) = runtime
        .block_on(read_request(&mut &bytes[..], MAX_PDU))
        .unwrap();
    assert!(leftover.is_empty());
    let acceptor = Acceptor {
        sites: &SITES,
        max_pdu_length: MAX_PDU,
    };
    let Negotiated::Accepted(accepted) = acceptor.negotiate(pdu, PEER) else {
        panic!("refused")
    };
    assert_eq!(accepted.contexts.len(), 2);
}

#[test]
fn a_request_over_the_max_pdu_is_refused_on_its_header() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (mut near, mut far) = tokio::io::duplex(64);
    let ((), peak) = measure(|| {
        runtime.block_on(async {
            far.write_all(&[0x01, 0, 0xFF, 0xFF, 0xFF, 0xF0])
                .await
                .unwrap();
            let read =
                tokio::time::timeout(Duration::from_secs(2), read_request(&mut near, MAX_PDU));
            assert!(
                matches!(read.await, Ok(Err(_))),
                "not refused on the header"
            );
        })
    });
    assert!(peak <= MAX_ALLOCATION, "{peak}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ARBITRARY_CASES))]

    #[test]
    fn arbitrary_first_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        read_and_negotiate(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(MUTATED_CASES))]

    #[test]
    fn mutated_association_requests(
        seed in select(vec![association_rq()]),
        mutations in mutations(),
    ) {
        read_and_negotiate(&apply(&seed, &mutations))?;
    }
}
