//! Coded concepts used in the SR content tree: the standard codes (DCM,
//! SCT, UCUM) checked against PS3.16, and the gateway's private scheme.
//!
//! The private coding scheme designator is `99DCMGW` (PS3.16 8.2: private
//! designators start with `99`). It is declared in the Coding Scheme
//! Identification Sequence of every SR we write, and it is used only where
//! no standard code exists:
//!
//! | code value | meaning | used for |
//! |---|---|---|
//! | `AI_ALGORITHM` | AI Algorithm | container: algorithm identification and use |
//! | `DEMO` | Demonstration model | CODE, SCT Yes/No |
//! | `CLINICAL_USE` | Statement of clinical use | TEXT |
//! | `INTENDED_USE` | Intended use | TEXT |
//! | `LIMITATION` | Known limitation | TEXT, one per limitation |
//! | `ROUTE` | Inference route | TEXT: the route name |
//! | `ROUTE_STEP` | Route step | TEXT: `primary`, `fallback`, … |
//! | `STEP_REASON` | Reason for route step | TEXT, optional |
//! | `DECISION` | Finding present at operating point | CODE, SCT Yes/No |
//! | *label* | *label* | a model output label, as the value of DCM 121071 "Finding" |
//!
//! A label is its own code value: a model's output names are the only
//! vocabulary we have for them. Labels longer than 16 characters go into
//! Long Code Value (0008,0119) instead of Code Value (SH), as PS3.3 8.8
//! prescribes.

/// One coded concept: value, scheme designator, meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Code {
    pub value: &'static str,
    pub scheme: &'static str,
    pub meaning: &'static str,
}

const fn dcm(value: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme: "DCM",
        meaning,
    }
}

const fn gateway(value: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme: PRIVATE_SCHEME,
        meaning,
    }
}

/// The gateway's private coding scheme designator.
pub const PRIVATE_SCHEME: &str = "99DCMGW";
/// Coding Scheme Name written for [`PRIVATE_SCHEME`].
pub(crate) const PRIVATE_SCHEME_NAME: &str = "DICOM Inference Gateway codes";

// Document structure, in the spirit of TID 1500 (Measurement Report).
pub(crate) const IMAGING_MEASUREMENT_REPORT: Code = dcm("126000", "Imaging Measurement Report");
pub(crate) const LANGUAGE_OF_CONTENT: Code =
    dcm("121049", "Language of Content Item and Descendants");
pub(crate) const ENGLISH_US: Code = Code {
    value: "en-US",
    scheme: "RFC5646",
    meaning: "English (United States)",
};
pub(crate) const PROCEDURE_REPORTED: Code = dcm("121058", "Procedure reported");
pub(crate) const IMAGING_PROCEDURE: Code = Code {
    value: "363679005",
    scheme: "SCT",
    meaning: "Imaging procedure",
};
pub(crate) const IMAGE_LIBRARY: Code = dcm("111028", "Image Library");
pub(crate) const IMAGE_LIBRARY_GROUP: Code = dcm("126200", "Image Library Group");
pub(crate) const IMAGING_MEASUREMENTS: Code = dcm("126010", "Imaging Measurements");
pub(crate) const MEASUREMENT_GROUP: Code = dcm("125007", "Measurement Group");
pub(crate) const TRACKING_IDENTIFIER: Code = dcm("112039", "Tracking Identifier");
pub(crate) const FINDING: Code = dcm("121071", "Finding");

// Observer context (TID 1002/1004): the gateway is a device observer.
pub(crate) const OBSERVER_TYPE: Code = dcm("121005", "Observer Type");
pub(crate) const DEVICE: Code = dcm("121007", "Device");
pub(crate) const DEVICE_OBSERVER_UID: Code = dcm("121012", "Device Observer UID");
pub(crate) const DEVICE_OBSERVER_NAME: Code = dcm("121013", "Device Observer Name");
pub(crate) const DEVICE_OBSERVER_MANUFACTURER: Code = dcm("121014", "Device Observer Manufacturer");

// Algorithm identification (TID 4019).
pub(crate) const ALGORITHM_NAME: Code = dcm("111001", "Algorithm Name");
pub(crate) const ALGORITHM_VERSION: Code = dcm("111003", "Algorithm Version");
pub(crate) const ALGORITHM_PARAMETERS: Code = dcm("111002", "Algorithm Parameters");

// Per finding.
pub(crate) const SCORE: Code = Code {
    value: "246262008",
    scheme: "SCT",
    meaning: "Score",
};
pub(crate) const THRESHOLD_VALUE: Code = dcm("122411", "Threshold Value");
/// UCUM annotation for a dimensionless model score.
pub(crate) const UNIT_SCORE: Code = Code {
    value: "{score}",
    scheme: "UCUM",
    meaning: "score",
};
pub(crate) const YES: Code = Code {
    value: "373066001",
    scheme: "SCT",
    meaning: "Yes",
};
pub(crate) const NO: Code = Code {
    value: "373067005",
    scheme: "SCT",
    meaning: "No",
};

// Private concepts (see the table above).
pub(crate) const AI_ALGORITHM: Code = gateway("AI_ALGORITHM", "AI Algorithm");
pub(crate) const DEMO: Code = gateway("DEMO", "Demonstration model");
pub(crate) const CLINICAL_USE: Code = gateway("CLINICAL_USE", "Statement of clinical use");
pub(crate) const INTENDED_USE: Code = gateway("INTENDED_USE", "Intended use");
pub(crate) const LIMITATION: Code = gateway("LIMITATION", "Known limitation");
pub(crate) const ROUTE: Code = gateway("ROUTE", "Inference route");
pub(crate) const ROUTE_STEP: Code = gateway("ROUTE_STEP", "Route step");
pub(crate) const STEP_REASON: Code = gateway("STEP_REASON", "Reason for route step");
pub(crate) const DECISION: Code = gateway("DECISION", "Finding present at operating point");

pub(crate) fn yes_no(value: bool) -> Code {
    if value { YES } else { NO }
}
