//! The SCU against a small in-process SCP built on dicom-ul's server side,
//! so framing, message IDs and status handling are tested without dcmtk.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::ServerAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use tokio::net::TcpListener;

use super::*;
use crate::synth::{SeriesSpec, generate_series};

const SCP_AE: &str = "FAKE-SCP";
/// Small, so a 64x64 CT slice needs several fragments.
const SCP_MAX_PDU: u32 = 4096;

/// How the fake SCP answers C-STORE requests.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Answer with a MessageIDBeingRespondedTo that was never sent.
    WrongMessageId,
    /// Read requests but never answer C-STOREs.
    Silent,
}

/// What the fake SCP saw for one request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    command_field: u16,
    message_id: u16,
    sop_instance_uid: Option<String>,
    dataset_len: usize,
    /// Largest PDV payload seen for this message (P-DATA size check).
    largest_fragment: usize,
}

struct FakeScp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeScp {
    async fn start(answer: Answer) -> FakeScp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move { serve(socket, answer, log).await });
            }
        });
        FakeScp { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

async fn serve(socket: tokio::net::TcpStream, answer: Answer, log: Arc<Mutex<Vec<Seen>>>) {
    let options = ServerAssociationOptions::new()
        .accept_called_ae_title()
        .ae_title(SCP_AE)
        .with_abstract_syntax(uids::CT_IMAGE_STORAGE)
        .with_abstract_syntax(uids::VERIFICATION)
        .with_transfer_syntax(uids::IMPLICIT_VR_LITTLE_ENDIAN)
        .with_transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .max_pdu_length(SCP_MAX_PDU);
    let Ok(mut association) = options.establish_async(socket).await else {
        return;
    };
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    loop {
        let (mut command, mut dataset) = (Vec::new(), Vec::new());
        let (mut largest, mut context_id) = (0, 0);
        let mut command_done = false;
        let mut expects_data = false;
        // Read until the command (and its data set, if announced) is complete.
        loop {
            match association.receive().await {
                Ok(Pdu::PData { data }) => {
                    for pdv in data {
                        largest = largest.max(pdv.data.len());
                        context_id = pdv.presentation_context_id;
                        match pdv.value_type {
                            PDataValueType::Command => {
                                command.extend(pdv.data);
                                if pdv.is_last {
                                    command_done = true;
                                    let obj =
                                        InMemDicomObject::read_dataset_with_ts(&command[..], &ts)
                                            .expect("valid command");
                                    let set_type = obj
                                        .get(tags::COMMAND_DATA_SET_TYPE)
                                        .and_then(|e| e.to_int::<u16>().ok());
                                    expects_data = set_type != Some(0x0101);
                                }
                            }
                            PDataValueType::Data => {
                                dataset.extend(pdv.data);
                                if pdv.is_last {
                                    expects_data = false;
                                }
                            }
                        }
                    }
                    if command_done && !expects_data {
                        break;
                    }
                }
                Ok(Pdu::ReleaseRQ) => {
                    let _ = association.send(&Pdu::ReleaseRP).await;
                    return;
                }
                _ => return,
            }
        }
        let obj = InMemDicomObject::read_dataset_with_ts(&command[..], &ts).expect("valid command");
        let int = |tag| {
            obj.get(tag)
                .and_then(|e| e.to_int::<u16>().ok())
                .unwrap_or(0)
        };
        let command_field = int(tags::COMMAND_FIELD);
        let message_id = int(tags::MESSAGE_ID);
        let sop_instance_uid = obj
            .get(tags::AFFECTED_SOP_INSTANCE_UID)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches('\0').to_string());
        log.lock().expect("not poisoned").push(Seen {
            command_field,
            message_id,
            sop_instance_uid,
            dataset_len: dataset.len(),
            largest_fragment: largest,
        });
        let (response_field, status, responding_to) = match (command_field, answer) {
            (0x0030, _) => (0x8030, 0x0000, message_id),
            (_, Answer::Status(status)) => (0x8001, status, message_id),
            (_, Answer::WrongMessageId) => (0x8001, 0x0000, message_id.wrapping_add(100)),
            (_, Answer::Silent) => continue,
        };
        let response = InMemDicomObject::command_from_element_iter([
            DataElement::new(
                tags::COMMAND_FIELD,
                VR::US,
                dicom_value!(U16, response_field),
            ),
            DataElement::new(
                tags::MESSAGE_ID_BEING_RESPONDED_TO,
                VR::US,
                dicom_value!(U16, responding_to),
            ),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                dicom_value!(U16, 0x0101),
            ),
            DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, status)),
            DataElement::new(tags::ERROR_COMMENT, VR::LO, PrimitiveValue::from("fake")),
        ]);
        let mut bytes = Vec::new();
        response
            .write_dataset_with_ts(&mut bytes, &ts)
            .expect("encodes");
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        };
        if association.send(&pdu).await.is_err() {
            return;
        }
    }
}

fn options(called_ae: &str) -> ScuOptions {
    ScuOptions {
        calling_ae: "TEST-SCU".to_string(),
        called_ae: called_ae.to_string(),
        max_pdu: 16384,
        transfer_syntax: uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
    }
}

fn small_ct(instances: usize) -> Vec<crate::synth::SynthInstance> {
    generate_series(&SeriesSpec {
        rows: 64,
        columns: 64,
        ..SeriesSpec::ct_head(instances, 1)
    })
}

#[tokio::test]
async fn stores_echoes_and_releases() {
    let scp = FakeScp::start(Answer::Status(0x0000)).await;
    let mut client = StoreClient::connect(scp.addr, &options(SCP_AE), &[uids::CT_IMAGE_STORAGE])
        .await
        .expect("associates");
    assert_eq!(client.peer_max_pdu(), SCP_MAX_PDU);
    assert_eq!(
        client.transfer_syntax_for(uids::CT_IMAGE_STORAGE),
        Some(uids::IMPLICIT_VR_LITTLE_ENDIAN)
    );
    assert_eq!(client.echo().await.expect("echo"), 0x0000);
    let series = small_ct(3);
    for inst in &series {
        let ack = client.store(inst).await.expect("store");
        assert!(ack.is_success(), "{ack:?}");
        assert_eq!(ack.error_comment.as_deref(), Some("fake"));
    }
    client.release().await.expect("releases");

    let seen = scp.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].command_field, 0x0030);
    let ids: Vec<u16> = seen.iter().map(|s| s.message_id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    for (seen, inst) in seen[1..].iter().zip(&series) {
        assert_eq!(seen.command_field, 0x0001);
        assert_eq!(
            seen.sop_instance_uid.as_deref(),
            Some(inst.sop_instance_uid.as_str())
        );
        let expected = inst
            .encode_dataset(uids::IMPLICIT_VR_LITTLE_ENDIAN)
            .expect("encodes");
        assert_eq!(seen.dataset_len, expected.len());
        assert!(
            seen.largest_fragment <= SCP_MAX_PDU as usize - 6,
            "{seen:?}"
        );
    }
}

#[tokio::test]
async fn failure_statuses_are_reported_not_raised() {
    let scp = FakeScp::start(Answer::Status(0xA700)).await;
    let mut client = StoreClient::connect(scp.addr, &options(SCP_AE), &[uids::CT_IMAGE_STORAGE])
        .await
        .expect("associates");
    let ack = client.store(&small_ct(1)[0]).await.expect("answered");
    assert_eq!(ack.status, 0xA700);
    assert!(ack.is_failure());
    client.release().await.expect("releases");
}

#[tokio::test]
async fn mismatched_message_id_is_a_protocol_error() {
    let scp = FakeScp::start(Answer::WrongMessageId).await;
    let mut client = StoreClient::connect(scp.addr, &options(SCP_AE), &[uids::CT_IMAGE_STORAGE])
        .await
        .expect("associates");
    let error = client.store(&small_ct(1)[0]).await.expect_err("mismatch");
    assert!(matches!(error, ScuError::Protocol { .. }), "{error}");
    // The association is no longer trusted.
    assert!(matches!(client.echo().await, Err(ScuError::Unusable)));
    client.release().await.expect("aborts quietly");
}

#[tokio::test]
async fn unanswered_store_times_out() {
    let scp = FakeScp::start(Answer::Silent).await;
    let mut client = StoreClient::connect(scp.addr, &options(SCP_AE), &[uids::CT_IMAGE_STORAGE])
        .await
        .expect("associates");
    client.set_timeout(Duration::from_millis(200));
    let error = client.store(&small_ct(1)[0]).await.expect_err("no answer");
    assert!(matches!(error, ScuError::Timeout { .. }), "{error}");
    assert!(error.is_retryable());
    assert!(matches!(client.echo().await, Err(ScuError::Unusable)));
    client.release().await.expect("aborts");
}

#[tokio::test]
async fn rejection_is_visible() {
    let scp = FakeScp::start(Answer::Status(0)).await;
    let error = StoreClient::connect(scp.addr, &options("WRONG-AE"), &[uids::CT_IMAGE_STORAGE])
        .await
        .expect_err("rejected");
    match error {
        ScuError::Rejected { reason, .. } => assert_eq!(
            reason,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized
            )
        ),
        other => panic!("expected rejection, got {other}"),
    }
}

#[tokio::test]
async fn unaccepted_sop_class_is_refused_locally() {
    let scp = FakeScp::start(Answer::Status(0)).await;
    let mut client = StoreClient::connect(
        scp.addr,
        &options(SCP_AE),
        &[uids::CT_IMAGE_STORAGE, uids::MR_IMAGE_STORAGE],
    )
    .await
    .expect("associates");
    let error = client
        .store_raw(uids::MR_IMAGE_STORAGE, "2.25.1", &[])
        .await
        .expect_err("not accepted");
    assert!(matches!(error, ScuError::NoPresentationContext { .. }));
    // Nothing was sent, so the association is still fine.
    assert_eq!(client.echo().await.expect("echo"), 0);
    client.release().await.expect("releases");
}

#[test]
fn long_ae_titles_are_refused() {
    assert!(validate_ae_title("calling", "SEVENTEEN-CHARS-X").is_err());
    assert!(validate_ae_title("calling", "   ").is_err());
    assert!(validate_ae_title("calling", "DEMO-SCU").is_ok());
}
