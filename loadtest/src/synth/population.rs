//! Many patients rather than one: identities for runs that spread series
//! over several studies, so searches by name, ID and date have something
//! to tell apart (the QIDO benchmark needs a realistic index, not one
//! patient with ten thousand images).

/// Family names; their first three letters are distinct, so a `ABC*`
/// wildcard search matches one name's patients.
const FAMILY_NAMES: [&str; 26] = [
    "ANDERSON", "BAKER", "CARTER", "DIAZ", "EVANS", "FISHER", "GARCIA", "HUGHES", "IBRAHIM",
    "JONES", "KIM", "LOPEZ", "MARTIN", "NGUYEN", "OKAFOR", "PATEL", "QUINN", "ROSSI", "SMITH",
    "TANAKA", "USMAN", "VOGEL", "WONG", "XU", "YILMAZ", "ZHANG",
];
const GIVEN_NAMES: [&str; 8] = [
    "ALEX", "BEA", "CHRIS", "DANA", "ELI", "FERN", "GABE", "HANA",
];

/// The `index`-th synthetic patient of a run: an ID under `id_prefix` and a
/// PN value `FAMILY^GIVEN`. Distinct for the first 208 indices by name and
/// for every index by ID; deterministic.
pub fn synthetic_patient(id_prefix: &str, index: usize) -> (String, String) {
    let family = FAMILY_NAMES[index % FAMILY_NAMES.len()];
    let given = GIVEN_NAMES[(index / FAMILY_NAMES.len()) % GIVEN_NAMES.len()];
    (
        format!("{id_prefix}-{index:05}"),
        format!("{family}^{given}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patients_are_distinct_and_deterministic() {
        let patients: Vec<_> = (0..208).map(|i| synthetic_patient("P", i)).collect();
        let mut names: Vec<_> = patients.iter().map(|(_, name)| name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 208);
        assert_eq!(
            synthetic_patient("P", 3),
            ("P-00003".into(), "DIAZ^ALEX".into())
        );
        assert_eq!(synthetic_patient("P", 27).1, "BAKER^BEA");
        let mut prefixes: Vec<String> = FAMILY_NAMES
            .iter()
            .map(|name| name.chars().take(3).collect())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), FAMILY_NAMES.len());
    }
}
