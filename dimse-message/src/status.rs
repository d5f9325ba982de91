//! DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3) and the status classes
//! the SCUs act on. Which store error becomes which status is the SCP's
//! decision (`gateway/src/dimse/status.rs`); the codes are shared.

/// Success.
pub const SUCCESS: u16 = 0x0000;
/// General failure: a different object with this SOP Instance UID exists
/// (PS3.7 C.5.8, "Duplicate SOP Instance").
pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
/// General failure: the SOP Instance UID in the command is not a valid UID.
pub const INVALID_OBJECT_INSTANCE: u16 = 0x0117;
/// General failure: the command's SOP class is not the presentation context's.
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// General failure: a DIMSE command the peer does not perform.
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Storage: refused, out of resources (the start of the A7xx family).
pub const REFUSED_OUT_OF_RESOURCES: u16 = 0xA700;
/// Storage: error, data set does not match SOP class.
pub const ERROR_DATA_SET_MISMATCH: u16 = 0xA900;
/// Storage: error, cannot understand (the start of the Cxxx family).
pub const ERROR_CANNOT_UNDERSTAND: u16 = 0xC000;

/// Success or a Warning (0xB000 coercion, 0xB007 data set mismatch,
/// 0xB006 elements discarded): the peer stored the instance.
pub fn is_stored(status: u16) -> bool {
    status == SUCCESS || status & 0xF000 == 0xB000
}

/// 0xA7xx, Refused: Out of Resources: the peer may take it later.
pub fn is_out_of_resources(status: u16) -> bool {
    status & 0xFF00 == 0xA700
}

/// A bounded label for a status (a metric label): `success`, `warning`
/// (0x0001 and 0xBxxx) or `failure`.
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
    fn warnings_count_as_stored() {
        assert!(is_stored(0x0000));
        assert!(is_stored(0xB000));
        assert!(is_stored(0xB007));
        assert!(!is_stored(0xA900));
        assert!(!is_stored(0xC000));
        assert!(is_out_of_resources(0xA702));
        assert!(!is_out_of_resources(0xA900));
    }
}
