//! DICOM UID grammar (PS3.5 9.1), checked before a UID touches a path or the index.

/// Longest UID PS3.5 allows.
pub const MAX_UID_LENGTH: usize = 64;

/// Why a string is not a valid UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("uid is empty")]
    Empty,
    #[error("uid is longer than 64 characters")]
    TooLong,
    #[error("uid has a character other than digits and '.'")]
    BadCharacter,
    #[error("uid has an empty component")]
    EmptyComponent,
    #[error("uid component has a leading zero")]
    LeadingZero,
}

/// Trims the trailing NUL or space padding that UI values carry on the wire.
pub fn trim_uid(value: &str) -> &str {
    value.trim_end_matches(['\0', ' ']).trim_start_matches(' ')
}

/// Checks `uid` (already trimmed) against the UID grammar: components of
/// digits separated by single dots, no leading zero unless the component is
/// `0`, at most 64 characters.
pub fn validate_uid(uid: &str) -> Result<(), UidError> {
    if uid.is_empty() {
        return Err(UidError::Empty);
    }
    if uid.len() > MAX_UID_LENGTH {
        return Err(UidError::TooLong);
    }
    for component in uid.split('.') {
        if component.is_empty() {
            return Err(UidError::EmptyComponent);
        }
        if !component.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UidError::BadCharacter);
        }
        if component.len() > 1 && component.starts_with('0') {
            return Err(UidError::LeadingZero);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_uids() {
        for uid in [
            "1.2.840.10008.5.1.4.1.1.2",
            "2.25.0",
            "1.2.3.0.4",
            "2.25.339892983457845",
        ] {
            assert_eq!(validate_uid(uid), Ok(()), "{uid}");
        }
    }

    #[test]
    fn rejects_bad_uids() {
        assert_eq!(validate_uid(""), Err(UidError::Empty));
        assert_eq!(validate_uid("1..2"), Err(UidError::EmptyComponent));
        assert_eq!(validate_uid("1.2."), Err(UidError::EmptyComponent));
        assert_eq!(validate_uid("1.02"), Err(UidError::LeadingZero));
        assert_eq!(
            validate_uid("../../etc/passwd"),
            Err(UidError::EmptyComponent)
        );
        assert_eq!(validate_uid("1.2/3"), Err(UidError::BadCharacter));
        assert_eq!(validate_uid("1.2.a"), Err(UidError::BadCharacter));
        assert_eq!(validate_uid(&"1.".repeat(40)), Err(UidError::TooLong));
    }

    #[test]
    fn trims_wire_padding() {
        assert_eq!(trim_uid("1.2.3\0"), "1.2.3");
        assert_eq!(trim_uid("1.2.3 "), "1.2.3");
    }
}
