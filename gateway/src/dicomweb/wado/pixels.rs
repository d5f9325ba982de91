//! Retrieve Frames and Retrieve Bulkdata (PS3.18 10.4.1.1.5, 10.4.1.1.6).
//!
//! Frames of native pixel data are byte ranges of the stored file, sent as
//! `application/octet-stream` (Explicit VR Little Endian bytes). Frames of
//! encapsulated pixel data go as stored, their fragments concatenated, with
//! the compressed media type of Table 8.7.3-5 (`image/jpeg`, `image/jls`,
//! ...), or, when the client asks for uncompressed octets, decoded with
//! dicom-pixeldata. Bulk data is any top-level element of defined length,
//! by tag; Pixel Data's bulk data is all of its frames.

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use dicom_core::Tag;

use super::accept::{Offer, Packaging, accept_ranges, negotiate};
use super::frames::{
    FrameError, check_in_range, encapsulated_frames, frame_count, native_frame, native_frame_bits,
    parse_frame_list, realign_bits,
};
use super::multipart::{ByteRange, Content, MultipartBody, Part, stream_contents};
use super::part10::{self, EXTENDED_OFFSET_TABLE, PIXEL_DATA, Part10Layout, PixelData};
use super::transfer_syntax::{
    APPLICATION_OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN, compressed_frame_media_type,
    native_bulk_data_syntax,
};
use super::{IndexedInstance, Target, blocking, decode, find_instance};
use crate::auth::Scope;
use crate::dicomweb::DicomwebState;
use crate::dicomweb::auth::Authenticated;
use crate::dicomweb::error::DicomWebError;

/// Most bytes we hold in memory for one response (decoded frames, values
/// of deflated files).
const MAX_IN_MEMORY_BYTES: u64 = 512 << 20;

impl From<FrameError> for DicomWebError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::BadList(_) | FrameError::OutOfRange { .. } | FrameError::NotAnImage(_) => {
                Self::BadRequest(e.to_string())
            }
            FrameError::Truncated | FrameError::Unmappable => Self::internal(e),
        }
    }
}

pub async fn frames(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String, String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let (study, series, instance, list) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    let frames = parse_frame_list(&list)?;
    let instance = find_instance(&state, principal, &target).await?;
    let layout = scan(&instance).await?;
    pixel_response(&req, instance, layout, Some(frames)).await
}

pub async fn bulk_data(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String, String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let (study, series, instance, tag) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    let tag = parse_tag(&tag)
        .ok_or_else(|| DicomWebError::BadRequest(format!("`{tag}` is not a tag (8 hex digits)")))?;
    let instance = find_instance(&state, principal, &target).await?;
    let layout = scan(&instance).await?;
    if tag == PIXEL_DATA {
        return pixel_response(&req, instance, layout, None).await;
    }
    let element = *layout
        .element(tag)
        .ok_or_else(|| DicomWebError::NotFound(format!("instance has no bulk data at {tag}")))?;
    let syntax = native_bulk_data_syntax(&layout.transfer_syntax);
    let offer = Offer {
        media_type: APPLICATION_OCTET_STREAM,
        transfer_syntax: Some(syntax),
    };
    let choice = negotiate(&accept_ranges(&req), &[offer], Packaging::EITHER)
        .ok_or_else(|| not_acceptable(&[offer]))?;
    let range = ByteRange {
        offset: element.offset,
        length: element.length,
    };
    let content = if layout.deflated {
        Content::Memory(inflated(&instance, &layout, vec![range]).await?.remove(0))
    } else {
        file_ranges(&instance, vec![range])
    };
    let part = Part {
        content_type: format!("{APPLICATION_OCTET_STREAM}; transfer-syntax={syntax}"),
        content,
    };
    Ok(respond(
        vec![part],
        APPLICATION_OCTET_STREAM,
        choice.multipart,
    ))
}

/// The frames asked for (all of them for `None`) of the instance's Pixel Data.
async fn pixel_response(
    req: &HttpRequest,
    instance: IndexedInstance,
    layout: Part10Layout,
    frames: Option<Vec<u32>>,
) -> Result<HttpResponse, DicomWebError> {
    let pixel_data = layout
        .pixel_data
        .clone()
        .ok_or_else(|| DicomWebError::BadRequest("instance has no pixel data".into()))?;
    let count = frame_count(&layout.geometry);
    let whole_value = frames.is_none();
    let frames = frames.unwrap_or_else(|| (1..=count).collect());
    check_in_range(&frames, count)?;
    let ranges = accept_ranges(req);
    match pixel_data {
        PixelData::Native { offset, length, .. } => {
            let syntax = native_bulk_data_syntax(&layout.transfer_syntax);
            let offer = Offer {
                media_type: APPLICATION_OCTET_STREAM,
                transfer_syntax: Some(syntax),
            };
            let single = whole_value || frames.len() == 1;
            let packaging = if single {
                Packaging::EITHER
            } else {
                Packaging::MULTIPART_ONLY
            };
            let choice =
                negotiate(&ranges, &[offer], packaging).ok_or_else(|| not_acceptable(&[offer]))?;
            let content_type = format!("{APPLICATION_OCTET_STREAM}; transfer-syntax={syntax}");
            let contents = if whole_value {
                let whole = ByteRange { offset, length };
                if layout.deflated {
                    vec![Content::Memory(
                        inflated(&instance, &layout, vec![whole]).await?.remove(0),
                    )]
                } else {
                    vec![file_ranges(&instance, vec![whole])]
                }
            } else {
                native_frames(&instance, &layout, offset, length, &frames).await?
            };
            let parts = contents
                .into_iter()
                .map(|content| Part {
                    content_type: content_type.clone(),
                    content,
                })
                .collect();
            Ok(respond(parts, APPLICATION_OCTET_STREAM, choice.multipart))
        }
        PixelData::Encapsulated {
            basic_offset_table,
            fragments,
        } => {
            let syntax = layout.transfer_syntax.clone();
            let offsets = offset_table(&instance, &layout, &basic_offset_table, count).await?;
            let groups = encapsulated_frames(count, &fragments, &offsets);
            // Our preference: as stored, with its own media type; as stored,
            // labelled as octets; decoded to native octets.
            let mut offers = Vec::new();
            let mut decoded = Vec::new();
            if groups.is_ok()
                && let Some(media_type) = compressed_frame_media_type(&syntax)
            {
                for media_type in [media_type, APPLICATION_OCTET_STREAM] {
                    offers.push(Offer {
                        media_type,
                        transfer_syntax: Some(&syntax),
                    });
                    decoded.push(false);
                }
            }
            if decode::can_decode(&syntax) {
                offers.push(Offer {
                    media_type: APPLICATION_OCTET_STREAM,
                    transfer_syntax: Some(EXPLICIT_VR_LITTLE_ENDIAN),
                });
                decoded.push(true);
            }
            if offers.is_empty() {
                return Err(DicomWebError::NotAcceptable(format!(
                    "frames of this instance (transfer syntax {syntax}) cannot be returned separately"
                )));
            }
            let packaging = if frames.len() == 1 {
                Packaging::EITHER
            } else {
                Packaging::MULTIPART_ONLY
            };
            let choice =
                negotiate(&ranges, &offers, packaging).ok_or_else(|| not_acceptable(&offers))?;
            let offer = offers[choice.offer];
            let content_type = format!(
                "{}; transfer-syntax={}",
                offer.media_type,
                offer.transfer_syntax.unwrap_or_default()
            );
            let contents = if decoded[choice.offer] {
                decoded_frames(&instance, &layout, &frames).await?
            } else {
                let groups = groups?;
                frames
                    .iter()
                    .map(|&f| {
                        let group = groups[(f - 1) as usize].clone();
                        let ranges = fragments[group]
                            .iter()
                            .map(|fragment| ByteRange {
                                offset: fragment.offset,
                                length: fragment.length,
                            })
                            .collect();
                        file_ranges(&instance, ranges)
                    })
                    .collect()
            };
            let parts = contents
                .into_iter()
                .map(|content| Part {
                    content_type: content_type.clone(),
                    content,
                })
                .collect();
            Ok(respond(parts, offer.media_type, choice.multipart))
        }
    }
}

/// Native frames: file ranges where they are byte-aligned in a plain
/// file, otherwise read (and realigned) in memory.
async fn native_frames(
    instance: &IndexedInstance,
    layout: &Part10Layout,
    pixel_offset: u64,
    pixel_length: u64,
    frames: &[u32],
) -> Result<Vec<Content>, DicomWebError> {
    let located = frames
        .iter()
        .map(|&f| native_frame(&layout.geometry, pixel_length, f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            FrameError::Truncated => {
                DicomWebError::internal("stored pixel data is shorter than its frames")
            }
            other => other.into(),
        })?;
    let ranges: Vec<ByteRange> = located
        .iter()
        .map(|f| ByteRange {
            offset: pixel_offset + f.offset,
            length: f.length,
        })
        .collect();
    if !layout.deflated && located.iter().all(|f| f.is_byte_aligned()) {
        return Ok(ranges
            .into_iter()
            .map(|r| file_ranges(instance, vec![r]))
            .collect());
    }
    let values = if layout.deflated {
        inflated(instance, layout, ranges).await?
    } else {
        in_memory(instance, ranges).await?
    };
    Ok(values
        .into_iter()
        .zip(&located)
        .map(|(bytes, f)| {
            if f.is_byte_aligned() {
                Content::Memory(bytes)
            } else {
                Content::Memory(Bytes::from(realign_bits(&bytes, f.bit_shift, f.bits)))
            }
        })
        .collect())
}

/// Frames decoded to native octets, one decode slot at a time.
async fn decoded_frames(
    instance: &IndexedInstance,
    layout: &Part10Layout,
    frames: &[u32],
) -> Result<Vec<Content>, DicomWebError> {
    let frame_bytes = native_frame_bits(&layout.geometry)?.div_ceil(8);
    if frame_bytes.saturating_mul(frames.len() as u64) > MAX_IN_MEMORY_BYTES {
        return Err(DicomWebError::NotAcceptable(format!(
            "decoding {} frame(s) would exceed {MAX_IN_MEMORY_BYTES} bytes; ask for fewer frames or for them as stored",
            frames.len()
        )));
    }
    let permit = decode::permit().await;
    let path = instance.path.clone();
    let frames = frames.to_vec();
    blocking(move || {
        let _permit = permit;
        frames
            .iter()
            .map(|&f| {
                Ok(Content::Memory(Bytes::from(decode::native_frame(
                    &path,
                    f - 1,
                )?)))
            })
            .collect()
    })
    .await
}

/// The Basic Offset Table, or the Extended Offset Table when the basic
/// one is empty (PS3.5 A.4), as offsets from the first fragment's item.
async fn offset_table(
    instance: &IndexedInstance,
    layout: &Part10Layout,
    basic: &[u32],
    count: u32,
) -> Result<Vec<u64>, DicomWebError> {
    if !basic.is_empty() {
        return Ok(basic.iter().map(|&o| u64::from(o)).collect());
    }
    let Some(extended) = layout.element(EXTENDED_OFFSET_TABLE).copied() else {
        return Ok(Vec::new());
    };
    if extended.length != u64::from(count) * 8 || layout.deflated {
        return Ok(Vec::new());
    }
    let path = instance.path.clone();
    let bytes =
        blocking(move || Ok(part10::read_range(&path, extended.offset, extended.length)?)).await?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn file_ranges(instance: &IndexedInstance, ranges: Vec<ByteRange>) -> Content {
    Content::File {
        path: instance.path.clone(),
        ranges,
        expected_size: Some(instance.file_size),
    }
}

async fn in_memory(
    instance: &IndexedInstance,
    ranges: Vec<ByteRange>,
) -> Result<Vec<Bytes>, DicomWebError> {
    check_memory(&ranges)?;
    let path = instance.path.clone();
    blocking(move || {
        ranges
            .iter()
            .map(|r| Ok(Bytes::from(part10::read_range(&path, r.offset, r.length)?)))
            .collect()
    })
    .await
}

async fn inflated(
    instance: &IndexedInstance,
    layout: &Part10Layout,
    ranges: Vec<ByteRange>,
) -> Result<Vec<Bytes>, DicomWebError> {
    check_memory(&ranges)?;
    let path = instance.path.clone();
    let layout = layout.clone();
    blocking(move || {
        ranges
            .iter()
            .map(|r| {
                Ok(Bytes::from(part10::read_inflated(
                    &path, &layout, r.offset, r.length,
                )?))
            })
            .collect()
    })
    .await
}

fn check_memory(ranges: &[ByteRange]) -> Result<(), DicomWebError> {
    let total: u64 = ranges.iter().map(|r| r.length).sum();
    if total > MAX_IN_MEMORY_BYTES {
        return Err(DicomWebError::NotAcceptable(format!(
            "the values asked for ({total} bytes) are too large to serve from this instance's encoding"
        )));
    }
    Ok(())
}

async fn scan(instance: &IndexedInstance) -> Result<Part10Layout, DicomWebError> {
    let path = instance.path.clone();
    blocking(move || Ok(part10::scan(&path)?)).await
}

/// A tag as 8 hex digits (`7FE00010`), the form our BulkDataURIs use.
fn parse_tag(text: &str) -> Option<Tag> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let group = u16::from_str_radix(&text[..4], 16).ok()?;
    let element = u16::from_str_radix(&text[4..], 16).ok()?;
    Some(Tag(group, element))
}

fn not_acceptable(offers: &[Offer<'_>]) -> DicomWebError {
    let available: Vec<String> = offers
        .iter()
        .map(|o| match o.transfer_syntax {
            Some(ts) => format!("{}; transfer-syntax={ts}", o.media_type),
            None => o.media_type.to_string(),
        })
        .collect();
    DicomWebError::NotAcceptable(format!("available as: {}", available.join(", ")))
}

/// A multipart response of `parts`, or the one part on its own.
fn respond(parts: Vec<Part>, part_type: &str, multipart: bool) -> HttpResponse {
    let parts = match <[Part; 1]>::try_from(parts) {
        Ok([part]) if !multipart => {
            let length = part.content.len();
            return HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, part.content_type))
                .body(SizedStream::new(
                    length,
                    stream_contents([part.content].into()),
                ));
        }
        Ok(one) => Vec::from(one),
        Err(parts) => parts,
    };
    let body = MultipartBody::new(parts);
    let content_type = body.content_type(part_type);
    let length = body.content_length();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(SizedStream::new(length, body.into_stream()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_eight_hex_digits() {
        assert_eq!(parse_tag("7FE00010"), Some(PIXEL_DATA));
        assert_eq!(parse_tag("7fe00010"), Some(PIXEL_DATA));
        assert_eq!(parse_tag("00420011"), Some(Tag(0x0042, 0x0011)));
        for bad in [
            "7FE0001",
            "7FE000100",
            "7FE0,0010",
            "+FE00010",
            "zzzzzzzz",
            "",
        ] {
            assert_eq!(parse_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn frame_errors_map_to_statuses() {
        use actix_web::ResponseError;
        let status = |e: FrameError| DicomWebError::from(e).status_code().as_u16();
        assert_eq!(status(FrameError::BadList("x".into())), 400);
        assert_eq!(
            status(FrameError::OutOfRange {
                frame: 2,
                frames: 1
            }),
            400
        );
        assert_eq!(status(FrameError::Unmappable), 500);
    }
}
