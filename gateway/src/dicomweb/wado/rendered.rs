//! Retrieve Rendered and Retrieve Thumbnail (PS3.18 10.4.1.1.3, 10.4.1.1.4,
//! 8.3.5): one frame decoded, the modality LUT (rescale) and the VOI
//! window applied (the file's first window, else min-max; or the `window`
//! parameter), 8 bits per sample, as `image/jpeg` (the default, baseline
//! JPEG) or `image/png`.
//!
//! Parameters: `accept` (overrides the Accept header, 8.3.3.1),
//! `viewport=vw,vh` (the image is scaled to fit, keeping its aspect
//! ratio), `window=center,width[,linear|linear-exact|sigmoid]`,
//! `quality=1..100` (JPEG). A thumbnail is at most 128 pixels on its longer
//! side unless a viewport says otherwise, and is never enlarged. The
//! thumbnail of a series (or study) is that of its middle instance (of its
//! first series); the rendered instance of a multi-frame image is its
//! first frame.

use std::io::Cursor;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use dicom_pixeldata::{VoiLutFunction, VoiLutOption, WindowLevel};
use image::DynamicImage;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;

use super::accept::{MediaRange, Offer, Packaging, accept_ranges, negotiate, parse_accept};
use super::frames::parse_frame_list;
use super::transfer_syntax::{IMAGE_JPEG, IMAGE_PNG};
use super::{IndexedInstance, Target, blocking, decode, find_instance, find_instances};
use crate::auth::Scope;
use crate::dicomweb::DicomwebState;
use crate::dicomweb::auth::Authenticated;
use crate::dicomweb::error::DicomWebError;

/// Longer side of a thumbnail without a viewport.
pub const THUMBNAIL_SIZE: u32 = 128;
/// Largest viewport side we render to.
pub const MAX_VIEWPORT: u32 = 4096;
const DEFAULT_JPEG_QUALITY: u8 = 90;

type InstancePath = web::Path<(String, String, String)>;
type FramePath = web::Path<(String, String, String, String)>;

pub async fn instance_rendered(
    auth: Authenticated,
    req: HttpRequest,
    path: InstancePath,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let (study, series, instance) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    render(&auth, &req, &state, target, 1, Purpose::Rendered).await
}

pub async fn frame_rendered(
    auth: Authenticated,
    req: HttpRequest,
    path: FramePath,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let (study, series, instance, frames) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    render(
        &auth,
        &req,
        &state,
        target,
        single_frame(&frames)?,
        Purpose::Rendered,
    )
    .await
}

pub async fn instance_thumbnail(
    auth: Authenticated,
    req: HttpRequest,
    path: InstancePath,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let (study, series, instance) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    render(&auth, &req, &state, target, 1, Purpose::Thumbnail).await
}

pub async fn frame_thumbnail(
    auth: Authenticated,
    req: HttpRequest,
    path: FramePath,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let (study, series, instance, frames) = path.into_inner();
    let target = Target::instance(study, series, instance)?;
    render(
        &auth,
        &req,
        &state,
        target,
        single_frame(&frames)?,
        Purpose::Thumbnail,
    )
    .await
}

pub async fn series_thumbnail(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let (study, series) = path.into_inner();
    let target = Target::series(study, series)?;
    render(&auth, &req, &state, target, 1, Purpose::Thumbnail).await
}

pub async fn study_thumbnail(
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<DicomwebState>,
) -> Result<HttpResponse, DicomWebError> {
    let target = Target::study(path.into_inner())?;
    render(&auth, &req, &state, target, 1, Purpose::Thumbnail).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Rendered,
    Thumbnail,
}

/// The query parameters rendering understands; others are ignored
/// (PS3.18 8.3: unsupported parameters are ignored).
#[derive(Debug, Default, serde::Deserialize)]
struct RenderQuery {
    accept: Option<String>,
    viewport: Option<String>,
    window: Option<String>,
    quality: Option<String>,
}

/// What to produce, from the request.
#[derive(Debug, Clone, PartialEq)]
struct RenderParams {
    png: bool,
    viewport: Option<(u32, u32)>,
    voi: VoiLutOption,
    quality: u8,
}

fn single_frame(list: &str) -> Result<u32, DicomWebError> {
    match parse_frame_list(list)?.as_slice() {
        [frame] => Ok(*frame),
        _ => Err(DicomWebError::BadRequest(
            "a rendered frame resource names exactly one frame".into(),
        )),
    }
}

async fn render(
    auth: &Authenticated,
    req: &HttpRequest,
    state: &DicomwebState,
    target: Target,
    frame: u32,
    purpose: Purpose,
) -> Result<HttpResponse, DicomWebError> {
    let principal = auth.require(Scope::Read)?;
    let query = web::Query::<RenderQuery>::from_query(req.query_string())
        .map_err(|e| DicomWebError::BadRequest(format!("query is malformed: {e}")))?
        .into_inner();
    let ranges = match &query.accept {
        Some(accept) => parse_accept(accept),
        None => accept_ranges(req),
    };
    let params = RenderParams::from_query(&query, &ranges)?;
    let instance = if target.instance.is_some() {
        find_instance(state, principal, &target).await?
    } else {
        representative(find_instances(state, principal, &target).await?)?
    };
    if !decode::can_decode(&instance.transfer_syntax_uid) {
        return Err(decode::DecodeError::Unsupported(instance.transfer_syntax_uid).into());
    }
    let content_type = if params.png { IMAGE_PNG } else { IMAGE_JPEG };
    let permit = decode::permit().await;
    let path = instance.path.clone();
    let encoded = blocking(move || {
        let _permit = permit;
        let image = decode::render_frame(&path, frame - 1, params.voi.clone())?;
        let image = fit(image, params.viewport, purpose);
        encode(&image, &params)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(encoded))
}

/// The middle instance of the first series.
fn representative(instances: Vec<IndexedInstance>) -> Result<IndexedInstance, DicomWebError> {
    let first_series = instances
        .first()
        .map(|i| i.series_instance_uid.clone())
        .ok_or_else(|| DicomWebError::NotFound("no instance to render".into()))?;
    let mut series: Vec<IndexedInstance> = instances
        .into_iter()
        .filter(|i| i.series_instance_uid == first_series)
        .collect();
    let middle = series.len() / 2;
    Ok(series.swap_remove(middle))
}

impl RenderParams {
    fn from_query(query: &RenderQuery, ranges: &[MediaRange]) -> Result<Self, DicomWebError> {
        let offers = [
            Offer {
                media_type: IMAGE_JPEG,
                transfer_syntax: None,
            },
            Offer {
                media_type: IMAGE_PNG,
                transfer_syntax: None,
            },
        ];
        let choice = negotiate(ranges, &offers, Packaging::SINGLE_ONLY).ok_or_else(|| {
            DicomWebError::NotAcceptable(
                "rendered images are available as image/jpeg or image/png".into(),
            )
        })?;
        Ok(Self {
            png: offers[choice.offer].media_type == IMAGE_PNG,
            viewport: query.viewport.as_deref().map(parse_viewport).transpose()?,
            voi: query
                .window
                .as_deref()
                .map(parse_window)
                .transpose()?
                .unwrap_or(VoiLutOption::Default),
            quality: query
                .quality
                .as_deref()
                .map(|q| {
                    q.trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|q| (1..=100).contains(q))
                        .ok_or_else(|| {
                            DicomWebError::BadRequest(
                                "quality must be an integer from 1 to 100".into(),
                            )
                        })
                })
                .transpose()?
                .unwrap_or(DEFAULT_JPEG_QUALITY),
        })
    }
}

/// `vw,vh[,sx,sy,sw,sh]`: the output size; the source region is not supported.
fn parse_viewport(text: &str) -> Result<(u32, u32), DicomWebError> {
    let bad = || {
        DicomWebError::BadRequest(format!(
            "viewport must be `width,height`, each 1 to {MAX_VIEWPORT}"
        ))
    };
    let mut values = text.split(',').map(|v| v.trim().parse::<u32>());
    let width = values.next().and_then(Result::ok).ok_or_else(bad)?;
    let height = values.next().and_then(Result::ok).ok_or_else(bad)?;
    if !(1..=MAX_VIEWPORT).contains(&width) || !(1..=MAX_VIEWPORT).contains(&height) {
        return Err(bad());
    }
    Ok((width, height))
}

/// `center,width[,function]` (PS3.18 8.3.5.1.4).
fn parse_window(text: &str) -> Result<VoiLutOption, DicomWebError> {
    let bad = || {
        DicomWebError::BadRequest(
            "window must be `center,width[,linear|linear-exact|sigmoid]` with width > 0".into(),
        )
    };
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let (center, width, function) = match parts.as_slice() {
        [c, w] => (c, w, VoiLutFunction::Linear),
        [c, w, f] => (
            c,
            w,
            match f.to_ascii_lowercase().as_str() {
                "linear" => VoiLutFunction::Linear,
                "linear-exact" | "linear_exact" => VoiLutFunction::LinearExact,
                "sigmoid" => VoiLutFunction::Sigmoid,
                _ => return Err(bad()),
            },
        ),
        _ => return Err(bad()),
    };
    let center: f64 = center.parse().map_err(|_| bad())?;
    let width: f64 = width.parse().map_err(|_| bad())?;
    if !center.is_finite() || !width.is_finite() || width <= 0.0 {
        return Err(bad());
    }
    Ok(VoiLutOption::CustomWithFunction(
        WindowLevel { center, width },
        function,
    ))
}

/// Scales to fit the viewport (or the thumbnail size), keeping the aspect
/// ratio; thumbnails are never enlarged.
fn fit(image: DynamicImage, viewport: Option<(u32, u32)>, purpose: Purpose) -> DynamicImage {
    let (width, height) = match (viewport, purpose) {
        (Some(v), _) => v,
        (None, Purpose::Thumbnail) => (THUMBNAIL_SIZE, THUMBNAIL_SIZE),
        (None, Purpose::Rendered) => return image,
    };
    let fits = image.width() <= width && image.height() <= height;
    if purpose == Purpose::Thumbnail && fits {
        return image;
    }
    image.resize(width, height, FilterType::Triangle)
}

fn encode(image: &DynamicImage, params: &RenderParams) -> Result<Vec<u8>, DicomWebError> {
    let mut bytes = Vec::new();
    // Baseline JPEG takes 8-bit grey or RGB; PNG takes either as well.
    let image = if image.color().has_color() {
        DynamicImage::ImageRgb8(image.to_rgb8())
    } else {
        DynamicImage::ImageLuma8(image.to_luma8())
    };
    if params.png {
        image
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(DicomWebError::internal)?;
    } else {
        JpegEncoder::new_with_quality(&mut bytes, params.quality)
            .encode_image(&image)
            .map_err(DicomWebError::internal)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: RenderQuery, accept: &str) -> Result<RenderParams, DicomWebError> {
        RenderParams::from_query(&query, &parse_accept(accept))
    }

    #[test]
    fn jpeg_is_the_default_and_png_on_request() {
        assert!(!params(RenderQuery::default(), "*/*").unwrap().png);
        assert!(!params(RenderQuery::default(), "image/*").unwrap().png);
        assert!(params(RenderQuery::default(), "image/png").unwrap().png);
        assert!(matches!(
            params(RenderQuery::default(), "application/dicom"),
            Err(DicomWebError::NotAcceptable(_))
        ));
    }

    #[test]
    fn viewport_window_and_quality_are_checked() {
        assert_eq!(parse_viewport("64,32").unwrap(), (64, 32));
        assert_eq!(parse_viewport("64,32,0,0,10,10").unwrap(), (64, 32));
        for bad in ["", "64", "0,10", "64,x", "100000,10"] {
            assert!(parse_viewport(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_window("40,400").unwrap(),
            VoiLutOption::CustomWithFunction(
                WindowLevel {
                    center: 40.0,
                    width: 400.0
                },
                VoiLutFunction::Linear
            )
        );
        assert!(parse_window("40,400,SIGMOID").is_ok());
        for bad in ["40", "40,0", "40,-1", "a,b", "40,400,cubic", "NaN,1"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        let q = RenderQuery {
            quality: Some("101".into()),
            ..Default::default()
        };
        assert!(params(q, "*/*").is_err());
    }

    #[test]
    fn thumbnails_shrink_but_never_grow() {
        let big = DynamicImage::new_luma8(512, 256);
        let thumb = fit(big.clone(), None, Purpose::Thumbnail);
        assert_eq!((thumb.width(), thumb.height()), (128, 64));
        let small = DynamicImage::new_luma8(64, 64);
        let thumb = fit(small.clone(), None, Purpose::Thumbnail);
        assert_eq!((thumb.width(), thumb.height()), (64, 64));
        let rendered = fit(small, Some((128, 256)), Purpose::Rendered);
        assert_eq!((rendered.width(), rendered.height()), (128, 128));
        assert_eq!(fit(big, None, Purpose::Rendered).width(), 512);
    }

    #[test]
    fn encodes_both_formats() {
        let image = DynamicImage::new_luma16(8, 4);
        let png = encode(
            &image,
            &params(RenderQuery::default(), "image/png").unwrap(),
        )
        .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let jpeg = encode(
            &image,
            &params(RenderQuery::default(), "image/jpeg").unwrap(),
        )
        .unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    }
}
