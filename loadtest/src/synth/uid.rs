//! Deterministic UIDs and seeds for synthetic data.
//!
//! UIDs live under the `2.25` root (PS3.5 B.2: a UUID written as one
//! decimal integer), which needs no registered organisation root and keeps
//! every UID at most 44 characters, well inside the 64 allowed.

use rand::Rng;

/// The root under which every synthetic UID is minted.
pub const SYNTH_UID_ROOT: &str = "2.25.";

/// A fresh `2.25.<128-bit decimal>` UID drawn from `rng`.
pub(crate) fn uid_from_rng<R: Rng + ?Sized>(rng: &mut R) -> String {
    let value: u128 = rng.random();
    format!("{SYNTH_UID_ROOT}{value}")
}

/// Whether `uid` follows the UID grammar of PS3.5 9.1: at most 64
/// characters, dot-separated numeric components, no empty component and no
/// leading zero unless the component is exactly `0`.
pub fn is_valid_uid(uid: &str) -> bool {
    if uid.is_empty() || uid.len() > 64 {
        return false;
    }
    uid.split('.').all(|component| {
        !component.is_empty()
            && component.bytes().all(|b| b.is_ascii_digit())
            && (component == "0" || !component.starts_with('0'))
    })
}

/// FNV-1a over `bytes`: a stable hash (unlike `std`'s `DefaultHasher`,
/// whose output may change between Rust releases) used to derive study and
/// patient attributes from their identifiers.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn minted_uids_follow_the_grammar() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..1000 {
            let uid = uid_from_rng(&mut rng);
            assert!(is_valid_uid(&uid), "{uid}");
            assert!(uid.len() <= 44, "{uid}");
        }
    }

    #[test]
    fn grammar_rejects_malformed_uids() {
        assert!(is_valid_uid("1.2.840.10008.1.2"));
        assert!(is_valid_uid("2.25.0"));
        assert!(!is_valid_uid(""));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.02"));
        assert!(!is_valid_uid("1.2."));
        assert!(!is_valid_uid("1.2a"));
        assert!(!is_valid_uid(&format!("1.{}", "2".repeat(63))));
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
