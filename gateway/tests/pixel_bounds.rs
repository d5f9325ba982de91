//! The pixel pipeline under a counting allocator: what a hostile image
//! costs, measured as the largest single allocation while it is handled.
//!
//! A test binary of its own because the allocator is process-wide and
//! decoders allocate on their own threads (jpeg-decoder uses rayon): the
//! tests here run one at a time ([`SERIAL`]) so each measures only itself.
//! Holds the fuzz target of `image_to_tensor` (see [`FUZZ_CASES`]) and the
//! check that opening a stored file whose Pixel Data declares 1.5 GiB
//! allocates nothing of the sort.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_gateway::models::{DataType, Normalisation, Preprocessing, TensorSpec, Window};
use dicom_gateway::pixels::{MAX_FRAME_BYTES, PixelError, image_to_tensor, open_stored};
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};
use proptest::prelude::*;

/// Cases of the `image_to_tensor` fuzz target: about 15 s in a debug build
/// on the 2-core dev machine.
const FUZZ_CASES: u32 = 15_000;
/// Allocations any image costs regardless of its size (tensor buffers of
/// the 16×16 model input, parser and decoder bookkeeping).
const BASE_ALLOCATION: usize = 1024 * 1024;
/// Per decoded byte the image's attributes declare, the most the pipeline
/// may allocate at once: the f32 frame is 4 bytes a sample, and decoders
/// keep a plane or two beside their output.
const ALLOCATION_PER_DECLARED_BYTE: usize = 16;
const SIDE: u16 = 16;
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// What the lying Pixel Data header declares: 1.5 GiB.
const PIXEL_DATA_LIE: u32 = 0x6000_0000;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every call is forwarded unchanged to the system allocator; the
// wrapper only records sizes in an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    (out, LARGEST.load(Ordering::Relaxed))
}

/// Stored values of the 16×16 slice: a ramp around 40 HU.
fn stored_values() -> Vec<i16> {
    (0..i16::try_from(SIDE * SIDE).unwrap())
        .map(|i| 1000 + i % 100)
        .collect()
}

/// A 16×16 CT slice in `syntax` with `pixel_data`.
fn ct(
    syntax: &str,
    bits: u16,
    signed: bool,
    pixel_data: DataElement<InMemDicomObject>,
) -> FileDicomObject<InMemDicomObject> {
    let mut object = InMemDicomObject::new_empty();
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    for (tag, value) in [
        (tags::ROWS, SIDE),
        (tags::COLUMNS, SIDE),
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::BITS_ALLOCATED, bits),
        (tags::BITS_STORED, bits),
        (tags::HIGH_BIT, bits - 1),
        (tags::PIXEL_REPRESENTATION, u16::from(signed)),
    ] {
        object.put(us(tag, value));
    }
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    object.put(text(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    object.put(text(tags::RESCALE_SLOPE, VR::DS, "1"));
    object.put(text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
    object.put(pixel_data);
    object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(syntax)
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                .media_storage_sop_instance_uid("1.2.3.4"),
        )
        .unwrap()
}

fn native_ct() -> FileDicomObject<InMemDicomObject> {
    let bytes: Vec<u8> = stored_values()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    ct(
        EXPLICIT_VR_LITTLE_ENDIAN,
        16,
        true,
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(bytes)),
    )
}

fn encapsulated(fragments: Vec<Vec<u8>>) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(Vec::<u32>::new(), fragments),
    )
}

/// The slice in RLE Lossless: high bytes then low bytes, literal runs.
fn rle_ct() -> FileDicomObject<InMemDicomObject> {
    let segment = |bytes: Vec<u8>| -> Vec<u8> {
        bytes
            .chunks(128)
            .flat_map(|run| std::iter::once((run.len() - 1) as u8).chain(run.iter().copied()))
            .collect()
    };
    let values = stored_values();
    let high = segment(values.iter().map(|v| v.to_be_bytes()[0]).collect());
    let low = segment(values.iter().map(|v| v.to_be_bytes()[1]).collect());
    let mut fragment = vec![0u8; 64];
    for (i, word) in [2u32, 64, 64 + high.len() as u32].into_iter().enumerate() {
        fragment[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    fragment.extend(high);
    fragment.extend(low);
    ct(RLE_LOSSLESS, 16, true, encapsulated(vec![fragment]))
}

/// The slice as an 8-bit JPEG Baseline.
fn jpeg_ct() -> FileDicomObject<InMemDicomObject> {
    let grey: Vec<u8> = stored_values().iter().map(|v| (v % 256) as u8).collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(
            &grey,
            u32::from(SIDE),
            u32::from(SIDE),
            image::ExtendedColorType::L8,
        )
        .unwrap();
    ct(JPEG_BASELINE, 8, false, encapsulated(vec![jpeg]))
}

static BASES: LazyLock<[FileDicomObject<InMemDicomObject>; 3]> =
    LazyLock::new(|| [native_ct(), rle_ct(), jpeg_ct()]);

fn preprocessing() -> (Preprocessing, TensorSpec) {
    let side = usize::from(SIDE);
    (
        Preprocessing {
            modality_lut: true,
            window: Window::None,
            resize: [side, side],
            normalisation: Normalisation::None,
            channels: 1,
            layout: dicom_gateway::models::Layout::Nchw,
        },
        TensorSpec {
            name: "image".into(),
            shape: vec![1, 1, side, side],
            dtype: DataType::Float32,
        },
    )
}

/// Changes to one of the base objects.
#[derive(Debug, Clone)]
struct Mutation {
    base: usize,
    rows: Option<u16>,
    columns: Option<u16>,
    bits_allocated: Option<u16>,
    samples: Option<u16>,
    /// `Some(None)` removes Number of Frames, `Some(Some(v))` sets it.
    frames: Option<Option<&'static str>>,
    photometric: Option<&'static str>,
    /// Byte edits to the pixel data (the fragment, when encapsulated).
    edits: Vec<(usize, u8)>,
    cut: Option<usize>,
    /// Split the fragment in two at this point.
    split: Option<usize>,
}

/// `Some` in one case of six: most cases keep most attributes, so the
/// fragment mutations reach the decoders.
fn sometimes<T: std::fmt::Debug + Clone>(
    strategy: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(1.0 / 6.0, strategy)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let size =
        proptest::sample::select(vec![0u16, 1, 2, 8, 15, 16, 17, 64, 255, 4096, 8192, 65535]);
    (
        (
            0usize..3,
            sometimes(size.clone()),
            sometimes(size),
            sometimes(proptest::sample::select(vec![0u16, 1, 8, 12, 16, 32])),
            sometimes(proptest::sample::select(vec![0u16, 1, 2, 3, 4])),
        ),
        (
            sometimes(proptest::option::of(proptest::sample::select(vec![
                "0",
                "1",
                "2",
                "100000",
                "-1",
                "x",
                "4294967296",
            ]))),
            sometimes(proptest::sample::select(vec![
                "MONOCHROME1",
                "RGB",
                "YBR_FULL",
                "PALETTE COLOR",
            ])),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            proptest::option::of(0usize..700),
            proptest::option::of(0usize..700),
        ),
    )
        .prop_map(
            |(
                (base, rows, columns, bits_allocated, samples),
                (frames, photometric, edits, cut, split),
            )| {
                Mutation {
                    base,
                    rows,
                    columns,
                    bits_allocated,
                    samples,
                    frames,
                    photometric,
                    edits,
                    cut,
                    split,
                }
            },
        )
}

fn apply(m: &Mutation) -> FileDicomObject<InMemDicomObject> {
    let mut object = BASES[m.base].clone();
    let us = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    for (tag, value) in [
        (tags::ROWS, m.rows),
        (tags::COLUMNS, m.columns),
        (tags::BITS_ALLOCATED, m.bits_allocated),
        (tags::SAMPLES_PER_PIXEL, m.samples),
    ] {
        if let Some(value) = value {
            object.put(us(tag, value));
        }
    }
    match m.frames {
        Some(Some(value)) => {
            object.put(DataElement::new(
                tags::NUMBER_OF_FRAMES,
                VR::IS,
                PrimitiveValue::from(value),
            ));
        }
        Some(None) => {
            object.remove_element(tags::NUMBER_OF_FRAMES);
        }
        None => {}
    }
    if let Some(value) = m.photometric {
        object.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(value),
        ));
    }
    let pixel_data = object.element(tags::PIXEL_DATA).unwrap().clone();
    let edit = |mut bytes: Vec<u8>| {
        for &(at, value) in &m.edits {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = value;
            }
        }
        if let Some(cut) = m.cut {
            bytes.truncate(cut);
        }
        bytes
    };
    let replaced = match pixel_data.value() {
        dicom_core::DicomValue::PixelSequence(sequence) => {
            let fragment = edit(sequence.fragments()[0].clone());
            let fragments = match m.split {
                Some(at) if at < fragment.len() => {
                    vec![fragment[..at].to_vec(), fragment[at..].to_vec()]
                }
                _ => vec![fragment],
            };
            encapsulated(fragments)
        }
        value => DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(edit(value.to_bytes().unwrap().into_owned())),
        ),
    };
    object.put(replaced);
    object
}

/// The frame size the mutated attributes declare, when they make sense
/// and stay under the frame cap (0 otherwise: nothing may be decoded).
fn declared_frame_bytes(object: &FileDicomObject<InMemDicomObject>) -> usize {
    let int = |tag| -> u64 {
        object
            .element(tag)
            .ok()
            .and_then(|e| e.to_int::<u64>().ok())
            .unwrap_or(0)
    };
    let bytes = int(tags::ROWS)
        * int(tags::COLUMNS)
        * int(tags::SAMPLES_PER_PIXEL)
        * int(tags::BITS_ALLOCATED).div_ceil(8);
    if bytes > MAX_FRAME_BYTES {
        0
    } else {
        bytes as usize
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

    /// Mutated attributes and mutated, cut or split fragments of a valid
    /// small CT never make `image_to_tensor` panic, and never make it
    /// allocate by anything but what the (capped) attributes declare.
    #[test]
    fn image_to_tensor_never_panics_or_allocates_past_the_attributes(m in mutation()) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let object = apply(&m);
        let (pre, spec) = preprocessing();
        let (outcome, largest) = largest_allocation(|| {
            catch_unwind(AssertUnwindSafe(|| image_to_tensor(&object, 0, &pre, &spec)))
        });
        prop_assert!(outcome.is_ok(), "image_to_tensor panicked on {m:?}");
        let bound = BASE_ALLOCATION + ALLOCATION_PER_DECLARED_BYTE * declared_frame_bytes(&object);
        prop_assert!(largest <= bound, "allocated {largest} bytes (bound {bound}) on {m:?}");
    }
}

/// The unmutated bases decode: the fuzz target starts from working images.
#[test]
fn the_fuzz_bases_decode() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (pre, spec) = preprocessing();
    for base in BASES.iter() {
        let tensor = image_to_tensor(base, 0, &pre, &spec).unwrap();
        assert_eq!(tensor.shape(), &[1, 1, 16, 16]);
    }
}

/// Writes `object` as a stored file would be, then patches its Pixel Data
/// header (native OW) to declare [`PIXEL_DATA_LIE`] with 1 KiB behind it.
fn stored_with_lying_pixel_data(dir: &std::path::Path) -> std::path::PathBuf {
    let mut object = native_ct();
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(vec![0u8; 4096]),
    ));
    let path = dir.join("lying.dcm");
    object.write_to_file(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let header = [0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
    let at = bytes.windows(8).rposition(|w| w == header).unwrap() + header.len();
    bytes[at..at + 4].copy_from_slice(&PIXEL_DATA_LIE.to_le_bytes());
    bytes.truncate(at + 4 + 1024);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_stored_file_declaring_more_pixel_data_than_it_holds_is_refused_without_allocating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = stored_with_lying_pixel_data(dir.path());
    let (opened, largest) = largest_allocation(|| open_stored(&path));
    match opened {
        Err(PixelError::Unreadable(reason)) => assert!(reason.contains("declares"), "{reason}"),
        other => panic!(
            "expected an unreadable stored instance, got {:?}",
            other.map(drop)
        ),
    }
    assert!(
        largest < BASE_ALLOCATION,
        "largest allocation {largest} bytes"
    );
}

#[test]
fn honest_stored_files_open_native_encapsulated_and_deflated() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (pre, spec) = preprocessing();
    let deflated = {
        let mut object = native_ct();
        object.meta_mut().set_transfer_syntax(
            &dicom_transfer_syntax_registry::entries::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        );
        object
    };
    assert_eq!(
        deflated.meta().transfer_syntax(),
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    );
    for (name, object) in [
        ("native", native_ct()),
        ("rle", rle_ct()),
        ("jpeg", jpeg_ct()),
        ("deflated", deflated),
    ] {
        let path = dir.path().join(format!("{name}.dcm"));
        object.write_to_file(&path).unwrap();
        let stored = open_stored(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tensor = image_to_tensor(&stored, 0, &pre, &spec).unwrap();
        assert_eq!(tensor.shape(), &[1, 1, 16, 16], "{name}");
    }
}
