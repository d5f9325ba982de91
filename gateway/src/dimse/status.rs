//! DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3) and the one place where
//! store errors become statuses.

use crate::store::StoreError;
use crate::store::validate::Violation;

// The standard codes and the status classes are the shared message layer's
// (`dimse_message::status`); the sub-codes below are this SCP's own choices.
pub use dimse_message::status::{
    DUPLICATE_SOP_INSTANCE, ERROR_CANNOT_UNDERSTAND, ERROR_DATA_SET_MISMATCH,
    INVALID_OBJECT_INSTANCE, REFUSED_OUT_OF_RESOURCES, SOP_CLASS_NOT_SUPPORTED, SUCCESS,
    UNRECOGNIZED_OPERATION, status_class,
};

/// Storage: refused, out of resources: the instance exceeds the size limit.
/// (A700–A7FF are all "out of resources"; this code tells the two apart.)
pub const REFUSED_INSTANCE_TOO_LARGE: u16 = 0xA701;
// The rest of the C000–CFFF "cannot understand" family tells the
// validator's classes apart (PS3.4 B.2.3 leaves the codes to the SCP).
/// Cannot understand: sequences nested deeper than `store.max_nesting_depth`.
pub const ERROR_NESTING_TOO_DEEP: u16 = 0xC001;
/// Cannot understand: a declared length runs past the bytes present (Pixel
/// Data and fragments included), or the data set is cut short.
pub const ERROR_LENGTH_EXCEEDS_DATA: u16 = 0xC002;
/// Cannot understand: (0002,xxxx) file meta elements inside the data set.
pub const ERROR_FILE_META_IN_DATA_SET: u16 = 0xC003;
/// Cannot understand: malformed encoding (items, delimiters, undefined
/// lengths, value representations, tag order, repeated elements).
pub const ERROR_MALFORMED_ENCODING: u16 = 0xC004;

/// The C-STORE status for a store error.
pub fn store_error_status(error: &StoreError) -> u16 {
    match error {
        StoreError::LowDiskSpace { .. }
        | StoreError::Write(_)
        | StoreError::Index(_)
        | StoreError::Commit(_)
        | StoreError::ShuttingDown => REFUSED_OUT_OF_RESOURCES,
        StoreError::TooLarge { .. } => REFUSED_INSTANCE_TOO_LARGE,
        StoreError::Unreadable(_) | StoreError::NoSopUids => ERROR_CANNOT_UNDERSTAND,
        StoreError::Invalid(violation) => violation_status(violation),
        StoreError::Mismatch(_) => ERROR_DATA_SET_MISMATCH,
        StoreError::DuplicateConflict => DUPLICATE_SOP_INSTANCE,
    }
}

/// The status for a data set the validator refused.
fn violation_status(violation: &Violation) -> u16 {
    match violation {
        Violation::TooDeep { .. } => ERROR_NESTING_TOO_DEEP,
        Violation::LengthExceedsData { .. }
        | Violation::CrossesEnd { .. }
        | Violation::Truncated { .. } => ERROR_LENGTH_EXCEEDS_DATA,
        Violation::ElementTooLarge { .. } | Violation::InflatedTooLarge { .. } => {
            REFUSED_INSTANCE_TOO_LARGE
        }
        Violation::FileMetaInDataSet { .. } => ERROR_FILE_META_IN_DATA_SET,
        Violation::MalformedItem { .. }
        | Violation::MalformedDelimiter { .. }
        | Violation::UndefinedLengthNotAllowed { .. }
        | Violation::UnknownVr { .. }
        | Violation::MisalignedLength { .. }
        | Violation::OutOfOrder { .. }
        | Violation::DuplicateElement { .. } => ERROR_MALFORMED_ENCODING,
        Violation::Unreadable { .. } => ERROR_CANNOT_UNDERSTAND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_their_families() {
        let low = StoreError::LowDiskSpace {
            available: 1,
            required: 2,
        };
        assert_eq!(store_error_status(&low) & 0xFF00, 0xA700);
        assert_eq!(
            store_error_status(&StoreError::Write(std::io::Error::other("x"))),
            0xA700
        );
        assert_eq!(
            store_error_status(&StoreError::TooLarge { limit: 1 }) & 0xFF00,
            0xA700
        );
        assert_eq!(
            store_error_status(&StoreError::Unreadable("x".into())) & 0xF000,
            0xC000
        );
        let invalid = |v: Violation| store_error_status(&StoreError::Invalid(v));
        let tag = dicom_core::Tag(0x0040, 0xA730);
        assert_eq!(
            invalid(Violation::TooDeep { tag, max_depth: 64 }),
            ERROR_NESTING_TOO_DEEP
        );
        assert_eq!(
            invalid(Violation::LengthExceedsData {
                tag,
                declared: 10,
                left: 2
            }),
            ERROR_LENGTH_EXCEEDS_DATA
        );
        assert_eq!(
            invalid(Violation::FileMetaInDataSet { tag }),
            ERROR_FILE_META_IN_DATA_SET
        );
        assert_eq!(
            invalid(Violation::DuplicateElement { tag }),
            ERROR_MALFORMED_ENCODING
        );
        assert_eq!(
            invalid(Violation::InflatedTooLarge { limit: 1 }),
            REFUSED_INSTANCE_TOO_LARGE
        );
        assert_eq!(status_class(SUCCESS), "success");
        assert_eq!(status_class(0xB000), "warning");
        assert_eq!(status_class(ERROR_DATA_SET_MISMATCH), "failure");
    }
}
