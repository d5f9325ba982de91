//! DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3) and the one place where
//! store errors become statuses.

use crate::store::StoreError;
use crate::store::validate::Violation;

pub const SUCCESS: u16 = 0x0000;
/// General failure: a different object with this SOP Instance UID exists
/// (PS3.7 C.5.8, "Duplicate SOP Instance"). Used by the `reject` duplicate policy.
pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
/// General failure: the SOP Instance UID in the command is not a valid UID.
pub const INVALID_OBJECT_INSTANCE: u16 = 0x0117;
/// General failure: the command's SOP class is not the presentation context's.
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// General failure: a DIMSE command we do not perform.
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Storage: refused, out of resources (low disk space, write error).
pub const REFUSED_OUT_OF_RESOURCES: u16 = 0xA700;
/// Storage: refused, out of resources: the instance exceeds the size limit.
/// (A700–A7FF are all "out of resources"; this code tells the two apart.)
pub const REFUSED_INSTANCE_TOO_LARGE: u16 = 0xA701;
/// Storage: error, data set does not match SOP class (here: the command's
/// SOP Class/Instance UID differ from the data set's, or a required UID is missing).
pub const ERROR_DATA_SET_MISMATCH: u16 = 0xA900;
/// Storage: error, cannot understand (the data set does not parse).
pub const ERROR_CANNOT_UNDERSTAND: u16 = 0xC000;
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

/// A bounded label for a status: `success`, `warning` or `failure`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        SUCCESS => "success",
        0x0001 | 0xB000..=0xBFFF => "warning",
        _ => "failure",
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
