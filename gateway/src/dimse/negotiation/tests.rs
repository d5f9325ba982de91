use super::*;

#[test]
fn storage_classes_include_the_modalities_we_serve() {
    for uid in [
        uids::CT_IMAGE_STORAGE,
        uids::MR_IMAGE_STORAGE,
        uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        uids::ENHANCED_CT_IMAGE_STORAGE,
        uids::BASIC_TEXT_SR_STORAGE,
        uids::SEGMENTATION_STORAGE,
    ] {
        assert!(is_storage_sop_class(uid), "{uid}");
    }
    assert!(!is_storage_sop_class(uids::STORAGE_COMMITMENT_PUSH_MODEL));
    assert!(!is_storage_sop_class(uids::VERIFICATION));
    assert!(STORAGE_SOP_CLASSES.len() > 100);
}

fn acceptor_and_request(
    calling_ae: &str,
    contexts: Vec<PresentationContextProposed>,
) -> (SiteRegistry, Pdu) {
    let text = r#"
        [[sites]]
        name = "demo"
        ae_titles = ["DEMO-SCU"]
        allowed_peers = ["10.0.0.0/8"]
        "#;
    let config = crate::config::load_from_str(
        text,
        Vec::<(String, String)>::new(),
        &crate::config::CliOverrides::default(),
    )
    .unwrap();
    let rq = Pdu::AssociationRQ(dicom_ul::pdu::AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling_ae.into(),
        called_ae_title: "GATEWAY".into(),
        application_context_name: DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: contexts,
        user_variables: vec![UserVariableItem::MaxLength(16_384)],
    });
    (SiteRegistry::from_config(&config), rq)
}

fn proposed(
    id: u8,
    abstract_syntax: &str,
    transfer_syntaxes: &[&str],
) -> PresentationContextProposed {
    PresentationContextProposed {
        id,
        abstract_syntax: abstract_syntax.into(),
        transfer_syntaxes: transfer_syntaxes.iter().map(|t| t.to_string()).collect(),
    }
}

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

#[test]
fn accepts_storage_and_verification_in_the_peers_order() {
    let (sites, rq) = acceptor_and_request(
        "DEMO-SCU ",
        vec![
            proposed(1, uids::VERIFICATION, &["1.2.840.10008.1.2"]),
            proposed(
                3,
                "1.2.840.10008.5.1.4.1.1.2\0",
                &["1.2.3.4", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"],
            ),
            proposed(
                5,
                uids::STORAGE_COMMITMENT_PUSH_MODEL,
                &["1.2.840.10008.1.2"],
            ),
            proposed(7, uids::MR_IMAGE_STORAGE, &["1.2.3.4"]),
        ],
    );
    let acceptor = Acceptor {
        sites: &sites,
        max_pdu_length: 65_536,
    };
    let Negotiated::Accepted(accepted) = acceptor.negotiate(rq, PEER) else {
        panic!("refused")
    };
    assert_eq!(accepted.site, "demo");
    assert_eq!(accepted.calling_ae, "DEMO-SCU");
    assert_eq!(accepted.contexts.len(), 2);
    assert_eq!(
        accepted.contexts[&3],
        AcceptedContext {
            abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.4.50".into(),
        }
    );
    let Pdu::AssociationAC(ac) = accepted.answer else {
        panic!("not an A-ASSOCIATE-AC")
    };
    let reasons: Vec<_> = ac
        .presentation_contexts
        .iter()
        .map(|pc| (pc.id, pc.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (1, PresentationContextResultReason::Acceptance),
            (3, PresentationContextResultReason::Acceptance),
            (
                5,
                PresentationContextResultReason::AbstractSyntaxNotSupported
            ),
            (
                7,
                PresentationContextResultReason::TransferSyntaxesNotSupported
            ),
        ]
    );
    assert!(
        ac.user_variables
            .contains(&UserVariableItem::MaxLength(65_536))
    );
    assert!(
        ac.user_variables
            .contains(&UserVariableItem::ImplementationClassUID(
                IMPLEMENTATION_CLASS_UID.into()
            ))
    );
    // The answer encodes.
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, &Pdu::AssociationAC(ac)).unwrap();
}

fn rejection_of(outcome: Negotiated) -> (Pdu, &'static str) {
    match outcome {
        Negotiated::Refused { answer, outcome } => (answer, outcome),
        Negotiated::Accepted(_) => panic!("accepted"),
    }
}

fn service_user_reason(pdu: &Pdu) -> AssociationRJServiceUserReason {
    match pdu {
        Pdu::AssociationRJ(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(reason),
        }) => reason.clone(),
        other => panic!("not a permanent service-user rejection: {other:?}"),
    }
}

#[test]
fn unknown_and_misplaced_callers_get_the_same_rejection() {
    let (sites, rq) = acceptor_and_request("NOBODY", vec![]);
    let acceptor = Acceptor {
        sites: &sites,
        max_pdu_length: 65_536,
    };
    let (unknown, outcome) = rejection_of(acceptor.negotiate(rq, PEER));
    assert_eq!(outcome, "rejected_calling_ae");
    let (_, rq) = acceptor_and_request("DEMO-SCU", vec![]);
    let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 0, 1));
    let (misplaced, outcome) = rejection_of(acceptor.negotiate(rq, elsewhere));
    assert_eq!(outcome, "rejected_address");
    assert_eq!(unknown, misplaced);
    assert_eq!(
        service_user_reason(&unknown),
        AssociationRJServiceUserReason::CallingAETitleNotRecognized
    );
}

#[test]
fn protocol_violations_are_refused() {
    let (sites, rq) = acceptor_and_request("DEMO-SCU", vec![]);
    let acceptor = Acceptor {
        sites: &sites,
        max_pdu_length: 65_536,
    };
    let Pdu::AssociationRQ(mut wrong_context) = rq else {
        unreachable!()
    };
    wrong_context.application_context_name = "1.2.3".into();
    let (answer, outcome) =
        rejection_of(acceptor.negotiate(Pdu::AssociationRQ(wrong_context.clone()), PEER));
    assert_eq!(outcome, FAILED_NEGOTIATION);
    assert_eq!(
        service_user_reason(&answer),
        AssociationRJServiceUserReason::ApplicationContextNameNotSupported
    );
    wrong_context.application_context_name = DICOM_APPLICATION_CONTEXT.into();
    wrong_context.protocol_version = 2;
    let (answer, _) = rejection_of(acceptor.negotiate(Pdu::AssociationRQ(wrong_context), PEER));
    assert_eq!(
        service_user_reason(&answer),
        AssociationRJServiceUserReason::NoReasonGiven
    );
    let (answer, _) = rejection_of(acceptor.negotiate(Pdu::PData { data: vec![] }, PEER));
    assert!(matches!(answer, Pdu::AbortRQ { .. }));
    let (answer, _) = rejection_of(acceptor.negotiate(Pdu::ReleaseRQ, PEER));
    assert_eq!(answer, Pdu::ReleaseRP);
}

#[test]
fn busy_is_transient_2_3_2() {
    let mut bytes = Vec::new();
    dicom_ul::write_pdu(&mut bytes, &busy_rejection()).unwrap();
    // Type 3, length 4, then reserved, result 2, source 3, reason 2.
    assert_eq!(bytes, [0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2]);
}

#[test]
fn every_transfer_syntax_is_known_to_the_registry() {
    for (uid, name) in TRANSFER_SYNTAXES {
        assert!(
            dicom_ul::association::server::is_supported(uid),
            "{name} ({uid}) is not readable by this build"
        );
    }
}
