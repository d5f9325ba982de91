//! Structure-blind mutations of a seed, biased towards the lies peers tell:
//! lengths planted over length fields (either byte order), bytes flipped,
//! cut, inserted, repeated or removed.

use proptest::prelude::*;
use proptest::sample::select;

/// Lengths worth planting: off-by-ones around headers, "undefined", and
/// megabytes to gigabytes (far above any bound the targets assert).
pub const HOSTILE_LENGTHS: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    0xFF,
    0xFFFF,
    0x1_0000,
    1 << 20,
    16 << 20,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFF0,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];

#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBits {
        at: usize,
        mask: u8,
    },
    PlantLength {
        at: usize,
        value: u32,
        big_endian: bool,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Repeat {
        from: usize,
        len: usize,
        to: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let length = prop_oneof![3 => select(HOSTILE_LENGTHS), 1 => any::<u32>()];
    prop_oneof![
        3 => (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::FlipBits { at, mask }),
        4 => (any::<usize>(), length, any::<bool>())
            .prop_map(|(at, value, big_endian)| Mutation::PlantLength { at, value, big_endian }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1..64usize, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Repeat { from, len, to }),
        1 => (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

/// One to five mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..=5)
}

/// `seed` with `mutations` applied; positions wrap around its length.
pub fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        let len = bytes.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % len };
        match m {
            Mutation::FlipBits { at, mask } => {
                if len > 0 {
                    bytes[pos(*at)] ^= mask;
                }
            }
            Mutation::PlantLength {
                at,
                value,
                big_endian,
            } => {
                if len >= 4 {
                    let at = at % (len - 3);
                    let encoded = if *big_endian {
                        value.to_be_bytes()
                    } else {
                        value.to_le_bytes()
                    };
                    bytes[at..at + 4].copy_from_slice(&encoded);
                }
            }
            Mutation::Truncate { at } => bytes.truncate(pos(*at)),
            Mutation::Insert {
                at,
                bytes: inserted,
            } => {
                let at = pos(*at);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Repeat { from, len: n, to } => {
                let from = pos(*from);
                let end = (from + n).min(len);
                let piece = bytes[from..end].to_vec();
                let to = pos(*to);
                bytes.splice(to..to, piece);
            }
            Mutation::Delete { at, len: n } => {
                let at = pos(*at);
                let end = (at + n).min(len);
                bytes.drain(at..end);
            }
        }
    }
    bytes
}
