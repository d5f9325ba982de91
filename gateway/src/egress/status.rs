//! C-STORE response statuses (PS3.4 B.2.3, PS3.7 C) as egress reads them.

/// Success.
pub const SUCCESS: u16 = 0x0000;

/// Success or a Warning (0xB000 coercion, 0xB007 data set mismatch,
/// 0xB006 elements discarded): the destination stored the instance.
pub fn is_stored(status: u16) -> bool {
    status == SUCCESS || status & 0xF000 == 0xB000
}

/// 0xA7xx, Refused: Out of Resources: the destination may take it later.
pub fn is_out_of_resources(status: u16) -> bool {
    status & 0xFF00 == 0xA700
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
