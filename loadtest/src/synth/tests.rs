//! Properties the end-to-end tests rely on: determinism, valid UIDs,
//! correct pixel sizes and data sets that parse back as what they claim.

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::*;

fn all_presets(instances: usize, seed: u64) -> Vec<SeriesSpec> {
    SynthModality::ALL
        .iter()
        .map(|&m| SeriesSpec::for_modality(m, instances, seed))
        .collect()
}

/// A small CT keeps tests fast while exercising the same code paths.
fn small_ct(instances: usize, seed: u64) -> SeriesSpec {
    SeriesSpec {
        rows: 64,
        columns: 64,
        ..SeriesSpec::ct_head(instances, seed)
    }
}

fn encoded(spec: &SeriesSpec) -> Vec<Vec<u8>> {
    generate_series(spec)
        .iter()
        .map(|i| {
            i.encode_dataset(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .expect("encodes")
        })
        .collect()
}

fn str_of(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .expect("present")
        .to_str()
        .expect("text")
        .trim_end_matches(['\0', ' '])
        .to_string()
}

#[test]
fn same_seed_gives_same_bytes() {
    let spec = small_ct(4, 42);
    assert_eq!(encoded(&spec), encoded(&spec));
}

#[test]
fn different_seed_gives_different_bytes_and_uids() {
    let a = generate_series(&small_ct(2, 1));
    let b = generate_series(&small_ct(2, 2));
    assert_ne!(a[0].sop_instance_uid, b[0].sop_instance_uid);
    assert_ne!(a[0].series_instance_uid, b[0].series_instance_uid);
    assert_ne!(a[0].study_instance_uid, b[0].study_instance_uid);
    assert_ne!(encoded(&small_ct(2, 1)), encoded(&small_ct(2, 2)));
}

#[test]
fn same_seed_different_modality_gives_different_uids() {
    let ct = generate_series(&SeriesSpec {
        rows: 32,
        columns: 32,
        ..SeriesSpec::ct_head(1, 5)
    });
    let mr = generate_series(&SeriesSpec {
        rows: 32,
        columns: 32,
        ..SeriesSpec::mr_brain(1, 5)
    });
    assert_ne!(ct[0].study_instance_uid, mr[0].study_instance_uid);
    assert_ne!(ct[0].sop_instance_uid, mr[0].sop_instance_uid);
}

#[test]
fn every_uid_is_valid_and_unique() {
    let mut seen = std::collections::HashSet::new();
    for spec in all_presets(3, 9) {
        let spec = SeriesSpec {
            rows: 32,
            columns: 32,
            ..spec
        };
        for inst in generate_series(&spec) {
            let uids_of_instance = [
                &inst.sop_instance_uid,
                &inst.series_instance_uid,
                &inst.study_instance_uid,
            ];
            for uid in uids_of_instance {
                assert!(is_valid_uid(uid), "{uid}");
                assert!(uid.starts_with(SYNTH_UID_ROOT));
            }
            if spec.modality == SynthModality::Ct || spec.modality == SynthModality::Mr {
                let for_uid = str_of(&inst.dataset, tags::FRAME_OF_REFERENCE_UID);
                assert!(is_valid_uid(&for_uid), "{for_uid}");
            }
            assert!(
                seen.insert(inst.sop_instance_uid.clone()),
                "duplicate SOP instance UID"
            );
        }
    }
}

#[test]
fn pixel_data_is_rows_times_columns_times_two() {
    for spec in all_presets(1, 3) {
        let inst = &generate_series(&spec)[0];
        let pixels = inst
            .dataset
            .element(tags::PIXEL_DATA)
            .expect("pixel data")
            .to_bytes()
            .expect("bytes");
        assert_eq!(
            pixels.len(),
            usize::from(spec.rows) * usize::from(spec.columns) * 2,
            "{}",
            spec.modality
        );
    }
}

#[test]
fn ct_preset_is_512_square_with_hounsfield_rescale() {
    let spec = SeriesSpec::ct_head(1, 1);
    assert_eq!((spec.rows, spec.columns), (512, 512));
    let inst = &generate_series(&spec)[0];
    assert_eq!(str_of(&inst.dataset, tags::RESCALE_INTERCEPT), "-1024");
    assert_eq!(str_of(&inst.dataset, tags::PIXEL_REPRESENTATION), "1");
    assert_eq!(str_of(&inst.dataset, tags::BODY_PART_EXAMINED), "HEAD");
    assert_eq!(
        str_of(&inst.dataset, tags::SPECIFIC_CHARACTER_SET),
        "ISO_IR 100"
    );
}

#[test]
fn datasets_round_trip_in_both_little_endian_syntaxes() {
    for spec in all_presets(1, 11) {
        let spec = SeriesSpec {
            rows: 48,
            columns: 40,
            ..spec
        };
        let inst = &generate_series(&spec)[0];
        for ts_uid in [
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        ] {
            let bytes = inst.encode_dataset(ts_uid).expect("encodes");
            let ts = TransferSyntaxRegistry.get(ts_uid).expect("known ts");
            let parsed = InMemDicomObject::read_dataset_with_ts(&bytes[..], ts).expect("parses");
            assert_eq!(
                str_of(&parsed, tags::SOP_CLASS_UID),
                spec.modality.sop_class_uid()
            );
            assert_eq!(
                str_of(&parsed, tags::SOP_INSTANCE_UID),
                inst.sop_instance_uid
            );
            assert_eq!(str_of(&parsed, tags::MODALITY), spec.modality.code());
            assert_eq!(str_of(&parsed, tags::ROWS), "48");
            let pixels = parsed
                .element(tags::PIXEL_DATA)
                .expect("pixels")
                .to_bytes()
                .expect("bytes");
            assert_eq!(pixels.len(), 48 * 40 * 2);
        }
    }
}

#[test]
fn part10_file_parses_with_matching_meta() {
    let inst = &generate_series(&SeriesSpec {
        rows: 32,
        columns: 32,
        ..SeriesSpec::dx_chest(1, 4)
    })[0];
    let file = inst.to_part10().expect("part 10");
    assert_eq!(&file[128..132], b"DICM");
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(&file[..])
        .expect("parses");
    assert_eq!(
        obj.meta().media_storage_sop_class_uid(),
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION
    );
    assert_eq!(
        obj.meta().media_storage_sop_instance_uid(),
        inst.sop_instance_uid
    );
    assert_eq!(
        obj.meta().transfer_syntax(),
        uids::EXPLICIT_VR_LITTLE_ENDIAN
    );
    assert_eq!(
        str_of(&obj, tags::PRESENTATION_INTENT_TYPE),
        "FOR PRESENTATION"
    );
}

#[test]
fn unsupported_transfer_syntaxes_are_refused() {
    let inst = &generate_series(&small_ct(1, 1))[0];
    assert!(matches!(
        inst.encode_dataset("1.2.3.4"),
        Err(SynthError::UnknownTransferSyntax(_))
    ));
    assert!(matches!(
        inst.encode_dataset(uids::JPEG_BASELINE8_BIT),
        Err(SynthError::UnsupportedTransferSyntax(_))
    ));
}

#[test]
fn slices_are_numbered_and_stacked() {
    let series = generate_series(&small_ct(3, 8));
    let z: Vec<f64> = series
        .iter()
        .map(|i| {
            str_of(&i.dataset, tags::SLICE_LOCATION)
                .parse()
                .expect("number")
        })
        .collect();
    assert!(z[0] < z[1] && z[1] < z[2], "{z:?}");
    let numbers: Vec<String> = series
        .iter()
        .map(|i| str_of(&i.dataset, tags::INSTANCE_NUMBER))
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    assert!(
        series
            .iter()
            .all(|i| i.series_instance_uid == series[0].series_instance_uid)
    );
}

#[test]
fn explicit_study_uid_is_shared_with_consistent_study_attributes() {
    let study = "2.25.1234567890".to_string();
    let ct = SeriesSpec {
        study_instance_uid: Some(study.clone()),
        ..small_ct(1, 1)
    };
    let other = SeriesSpec {
        study_instance_uid: Some(study.clone()),
        ..small_ct(1, 2)
    };
    let a = &generate_series(&ct)[0];
    let b = &generate_series(&other)[0];
    assert_eq!(a.study_instance_uid, study);
    assert_eq!(b.study_instance_uid, study);
    assert_ne!(a.series_instance_uid, b.series_instance_uid);
    for tag in [tags::ACCESSION_NUMBER, tags::STUDY_DATE, tags::STUDY_ID] {
        assert_eq!(str_of(&a.dataset, tag), str_of(&b.dataset, tag));
    }
    assert_eq!(ct.resolved_study_instance_uid(), study);
    let derived = small_ct(1, 1);
    assert_eq!(
        derived.resolved_study_instance_uid(),
        generate_series(&derived)[0].study_instance_uid
    );
}

#[test]
fn ct_series_has_a_blob_on_some_slices() {
    let spec = small_ct(40, 6);
    let slices = hyperdense_slices(&spec);
    assert!(!slices.is_empty() && slices.end <= 40, "{slices:?}");
    assert!(hyperdense_slices(&SeriesSpec::mr_brain(40, 6)).is_empty());
}

#[test]
fn modality_names_parse() {
    assert_eq!("CT".parse::<SynthModality>(), Ok(SynthModality::Ct));
    assert_eq!("dx".parse::<SynthModality>(), Ok(SynthModality::Dx));
    assert!("us".parse::<SynthModality>().is_err());
}

#[test]
fn transcoding_between_little_endian_syntaxes_preserves_the_data_set() {
    let inst = &generate_series(&small_ct(1, 2))[0];
    let implicit = inst
        .encode_dataset(uids::IMPLICIT_VR_LITTLE_ENDIAN)
        .expect("encodes");
    let explicit = transcode_dataset(
        &implicit,
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
    )
    .expect("transcodes");
    let ts = TransferSyntaxRegistry
        .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .expect("known ts");
    let parsed = InMemDicomObject::read_dataset_with_ts(&explicit[..], ts).expect("parses");
    assert_eq!(
        str_of(&parsed, tags::SOP_INSTANCE_UID),
        inst.sop_instance_uid
    );
    let original = inst
        .dataset
        .element(tags::PIXEL_DATA)
        .expect("pixels")
        .to_bytes()
        .expect("bytes");
    let copied = parsed
        .element(tags::PIXEL_DATA)
        .expect("pixels")
        .to_bytes()
        .expect("bytes");
    assert_eq!(original, copied);
}
