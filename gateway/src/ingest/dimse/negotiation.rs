//! What we accept during association negotiation: Verification, every
//! standard storage SOP class, and the transfer syntaxes we store as received.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use dicom_dictionary_std::uids;
use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

use super::storage_classes::STORAGE_SOP_CLASSES;
use crate::sites::{SiteRegistry, SiteRejection};

/// Transfer syntaxes we accept, in our order of preference. Data sets are
/// stored exactly as received (no transcoding), so every one of these only
/// needs its header to be parseable. Deflated needs the `deflate` feature of
/// dicom-transfer-syntax-registry, which the workspace enables.
pub const TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian (retired)"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)"),
    (
        "1.2.840.10008.1.2.4.57",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    (
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, First-Order Prediction (Process 14, SV1)",
    ),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    (
        "1.2.840.10008.1.2.4.201",
        "High-Throughput JPEG 2000 (Lossless Only)",
    ),
    (
        "1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL (Lossless Only)",
    ),
    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
];

pub fn is_storage_sop_class(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.iter().any(|(u, _)| *u == uid)
}

/// The verdict of [`SiteAccess`], read back after negotiation (dicom-ul only
/// tells us "rejected", not by whom or as which site).
pub type AccessVerdict = Arc<Mutex<Option<Result<String, SiteRejection>>>>;

/// Per-connection access control: knows the peer address, which dicom-ul's
/// own `AccessControl` callers do not pass in.
#[derive(Clone)]
pub struct SiteAccess {
    pub sites: Arc<SiteRegistry>,
    pub peer: IpAddr,
    pub verdict: AccessVerdict,
}

impl AccessControl for SiteAccess {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let verdict = self
            .sites
            .resolve(calling_ae_title, called_ae_title, self.peer);
        let answer = match &verdict {
            Ok(_) => Ok(()),
            Err(SiteRejection::WrongCalledAe) => {
                Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
            }
            // A known AE from a disallowed address is answered like an unknown
            // AE, so a prober learns nothing about which titles exist.
            Err(SiteRejection::UnknownCallingAe | SiteRejection::AddressNotAllowed) => {
                Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
            }
        };
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
        answer
    }
}

/// Association options for one incoming connection.
pub fn server_options(
    ae_title: &str,
    max_pdu_length: u32,
    access: SiteAccess,
) -> ServerAssociationOptions<'static, SiteAccess, dicom_ul::association::server::DefaultNegotiation>
{
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(access)
        .ae_title(ae_title.to_string())
        .max_pdu_length(max_pdu_length)
        .strict(true)
        .with_abstract_syntax(Cow::Borrowed(uids::VERIFICATION));
    for (uid, _) in STORAGE_SOP_CLASSES.iter() {
        options = options.with_abstract_syntax(Cow::Borrowed(*uid));
    }
    for (uid, _) in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(Cow::Borrowed(*uid));
    }
    options
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn every_transfer_syntax_is_known_to_the_registry() {
        for (uid, name) in TRANSFER_SYNTAXES {
            assert!(
                dicom_ul::association::server::is_supported(uid),
                "{name} ({uid}) is not readable by this build"
            );
        }
    }
}
