//! Wording for an A-ASSOCIATE-RJ (PS3.8 9.3.4), shared by the SCUs' error
//! messages so a rejection reads the same from egress and the load tool.

use dicom_ul::pdu::{AssociationRJResult, AssociationRJSource};

/// "permanent" or "transient".
pub fn rejection_result_text(result: &AssociationRJResult) -> &'static str {
    match result {
        AssociationRJResult::Permanent => "permanent",
        AssociationRJResult::Transient => "transient",
    }
}

/// Who rejected the association.
pub fn rejection_source_text(source: &AssociationRJSource) -> &'static str {
    match source {
        AssociationRJSource::ServiceUser(_) => "service user",
        AssociationRJSource::ServiceProviderASCE(_) => "service provider (ACSE)",
        AssociationRJSource::ServiceProviderPresentation(_) => "service provider (presentation)",
    }
}
