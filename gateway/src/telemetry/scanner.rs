//! Scanner labels for per-site metrics, drift keys and the performance
//! report: Manufacturer + ManufacturerModelName from the received header,
//! folded into a bounded set so that peer-supplied text never becomes an
//! unbounded metric label.
//!
//! A label is `<vendor>_<model>`: the vendor from a fixed table of known
//! manufacturers (`other` when unknown, `none` when absent), the model a
//! slug of ManufacturerModelName (`[a-z0-9-]`, at most 32 characters). Each
//! vendor keeps the first [`MODELS_PER_VENDOR`] models it sees; later ones
//! become `<vendor>_other`. The set is therefore at most
//! `(vendors + 1) × (MODELS_PER_VENDOR + 1) + 1` labels. First-seen order is
//! per process, so after a restart a vendor with more models than the cap
//! may fold different ones; below the cap labels are stable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Distinct model labels kept per vendor before the rest fold into `other`.
pub const MODELS_PER_VENDOR: usize = 8;

/// Longest model slug kept; longer names are cut (still deterministic).
const MAX_MODEL_SLUG: usize = 32;

/// Known vendors: (label, lower-case prefixes of Manufacturer that name it).
/// Prefix matching after lower-casing and trimming covers the usual
/// spellings ("SIEMENS", "Siemens Healthineers", "GE MEDICAL SYSTEMS"…).
const VENDORS: &[(&str, &[&str])] = &[
    ("siemens", &["siemens"]),
    (
        "ge",
        &["ge ", "ge_", "gehc", "ge healthcare", "general electric"],
    ),
    ("philips", &["philips"]),
    ("canon", &["canon", "toshiba"]),
    ("fujifilm", &["fujifilm", "fuji"]),
    ("agfa", &["agfa"]),
    ("carestream", &["carestream", "kodak"]),
    ("hologic", &["hologic"]),
    ("samsung", &["samsung"]),
    ("hitachi", &["hitachi"]),
    ("konica", &["konica"]),
    ("shimadzu", &["shimadzu"]),
    ("united-imaging", &["united imaging", "uih", "uimaging"]),
    ("neusoft", &["neusoft"]),
    ("mindray", &["mindray"]),
    ("esaote", &["esaote"]),
    ("planmeca", &["planmeca"]),
    ("varian", &["varian"]),
    ("elekta", &["elekta"]),
];

/// The label of a header without Manufacturer.
pub const SCANNER_NONE: &str = "none";
/// The label of a manufacturer outside [`VENDORS`].
pub const SCANNER_OTHER: &str = "other";

/// Model labels seen so far, per vendor.
type SeenModels = HashMap<&'static str, Vec<Arc<str>>>;

/// Folds Manufacturer + ManufacturerModelName into a bounded label set.
/// Cheap to clone; clones share the first-seen model sets.
#[derive(Clone, Default)]
pub struct ScannerLabels {
    seen: Arc<Mutex<SeenModels>>,
}

impl ScannerLabels {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bounded label for a (Manufacturer, ManufacturerModelName) pair.
    pub fn label(&self, manufacturer: Option<&str>, model_name: Option<&str>) -> Arc<str> {
        let Some(vendor) = vendor_label(manufacturer) else {
            return Arc::from(SCANNER_NONE);
        };
        if vendor == SCANNER_OTHER {
            return Arc::from(SCANNER_OTHER);
        }
        let slug = model_slug(model_name.unwrap_or(""));
        let wanted = if slug.is_empty() {
            format!("{vendor}_unknown")
        } else {
            format!("{vendor}_{slug}")
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let models = seen.entry(vendor).or_default();
        if let Some(found) = models.iter().find(|m| ***m == *wanted) {
            return Arc::clone(found);
        }
        if models.len() < MODELS_PER_VENDOR {
            let label: Arc<str> = Arc::from(wanted);
            models.push(Arc::clone(&label));
            return label;
        }
        Arc::from(format!("{vendor}_other"))
    }
}

/// The vendor part: a known vendor, `other`, or `None` when Manufacturer is
/// absent or blank.
pub fn vendor_label(manufacturer: Option<&str>) -> Option<&'static str> {
    let text = manufacturer?.trim().to_ascii_lowercase();
    if text.is_empty() {
        return None;
    }
    // "GE" alone is common; the prefixes above need a separator after it.
    if text == "ge" {
        return Some("ge");
    }
    let found = VENDORS
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| text.starts_with(p)))
        .map(|(label, _)| *label);
    Some(found.unwrap_or(SCANNER_OTHER))
}

/// Lower-case `[a-z0-9-]`, runs of anything else as one `-`, trimmed and cut
/// to [`MAX_MODEL_SLUG`] characters.
pub fn model_slug(text: &str) -> String {
    slug(text, MAX_MODEL_SLUG)
}

/// `text` as a bounded label value: lower-case `[a-z0-9-]`, each run of
/// anything else one `-`, no `-` at either end, at most `max` characters.
pub fn slug(text: &str, max: usize) -> String {
    let mut slug = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        if slug.len() >= max {
            break;
        }
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_tame(label: &str) -> bool {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    }

    #[test]
    fn known_vendors_fold_their_spellings() {
        let labels = ScannerLabels::new();
        assert_eq!(
            &*labels.label(Some("SIEMENS"), Some("SOMATOM Definition AS+")),
            "siemens_somatom-definition-as"
        );
        assert_eq!(
            &*labels.label(Some("Siemens Healthineers"), Some("SOMATOM Definition AS+")),
            "siemens_somatom-definition-as"
        );
        assert_eq!(
            &*labels.label(Some("GE MEDICAL SYSTEMS"), Some("Revolution CT")),
            "ge_revolution-ct"
        );
        assert_eq!(&*labels.label(Some("GE"), None), "ge_unknown");
        assert_eq!(
            &*labels.label(Some("TOSHIBA"), Some("Aquilion")),
            "canon_aquilion"
        );
        assert_eq!(
            &*labels.label(Some("Gemini Scanners Ltd"), Some("X")),
            "other",
            "a name starting with `ge` is not GE"
        );
        assert_eq!(&*labels.label(None, Some("Aquilion")), "none");
        assert_eq!(&*labels.label(Some("  "), None), "none");
    }

    #[test]
    fn labels_stay_bounded_and_tame_whatever_the_peer_sends() {
        let labels = ScannerLabels::new();
        let mut distinct = std::collections::HashSet::new();
        for i in 0..500 {
            let manufacturer = ["SIEMENS", "Philips", "'; DROP TABLE", "Acme\u{0}", "GE"][i % 5];
            let model = format!("Model {i} \u{e9}\t<script>");
            let label = labels.label(Some(manufacturer), Some(&model));
            assert!(is_tame(&label), "{label}");
            assert!(label.len() <= 16 + 1 + MAX_MODEL_SLUG, "{label}");
            distinct.insert(label.to_string());
        }
        // 3 known vendors × (cap + their `other`) + the unknown vendor bucket.
        assert_eq!(
            distinct.len(),
            3 * (MODELS_PER_VENDOR + 1) + 1,
            "{distinct:?}"
        );
        assert!(distinct.contains("siemens_other"));
    }

    #[test]
    fn first_seen_models_keep_their_labels_after_the_cap() {
        let labels = ScannerLabels::new();
        let first = labels.label(Some("PHILIPS"), Some("Ingenuity CT"));
        for i in 0..MODELS_PER_VENDOR * 2 {
            labels.label(Some("PHILIPS"), Some(&format!("m{i}")));
        }
        assert_eq!(labels.label(Some("Philips"), Some("Ingenuity CT")), first);
        assert_eq!(
            &*labels.label(Some("Philips"), Some("new")),
            "philips_other"
        );
    }

    #[test]
    fn slugs_are_cut_and_trimmed() {
        assert_eq!(model_slug("  --Revolution  EVO!! "), "revolution-evo");
        assert_eq!(model_slug(&"x".repeat(100)).len(), MAX_MODEL_SLUG);
        assert_eq!(model_slug("\u{e9}\u{e8}"), "");
    }
}
