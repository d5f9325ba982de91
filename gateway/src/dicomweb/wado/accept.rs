//! Content negotiation for WADO-RS (PS3.18 8.7.5 to 8.7.8): the Accept
//! header parsed leniently (quoted or bare `type` parameters, the
//! transfer syntax inside or beside `type`), then matched against the
//! representations a resource can take.
//!
//! A transfer-syntax parameter that is absent means the media type's
//! default syntax (PS3.18 8.7.3.4), which a stored instance meets when it is
//! stored in that syntax or in a lossy one (which the standard lets us
//! return as stored); `transfer-syntax=*` accepts any; a named syntax
//! accepts only itself. We never transcode, so a request that only accepts
//! other syntaxes is answered 406.

use actix_web::HttpRequest;
use actix_web::http::header;

use super::transfer_syntax::{
    APPLICATION_DICOM, compressed_frame_media_type, default_syntax_of, is_lossy,
};

/// One media range of an Accept header, names lower-cased, values unquoted.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    pub media_type: String,
    /// Parameters other than `q`, in order.
    pub params: Vec<(String, String)>,
    pub quality: f32,
}

impl MediaRange {
    /// `*/*`: what a request without an Accept header accepts.
    pub fn any() -> Self {
        Self {
            media_type: "*/*".into(),
            params: Vec::new(),
            quality: 1.0,
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A representation a resource can be sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    pub media_type: &'a str,
    /// `None` for media types without a transfer syntax (JSON, rendered).
    pub transfer_syntax: Option<&'a str>,
}

/// Which payload shapes the resource allows (PS3.18 10.4.4: single-part
/// media types only for resources that are one item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packaging {
    pub single_part: bool,
    pub multipart: bool,
}

impl Packaging {
    pub const MULTIPART_ONLY: Self = Self {
        single_part: false,
        multipart: true,
    };
    pub const SINGLE_ONLY: Self = Self {
        single_part: true,
        multipart: false,
    };
    pub const EITHER: Self = Self {
        single_part: true,
        multipart: true,
    };
}

/// The negotiated representation: an index into the offers and the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub offer: usize,
    pub multipart: bool,
}

/// Every media range the request accepts: its Accept header fields, or
/// `*/*` when it has none. Malformed ranges are dropped, so a header with
/// nothing usable accepts nothing (and the answer is 406).
pub fn accept_ranges(req: &HttpRequest) -> Vec<MediaRange> {
    let mut values = req.headers().get_all(header::ACCEPT).peekable();
    if values.peek().is_none() {
        return vec![MediaRange::any()];
    }
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_accept)
        .collect()
}

/// Parses an Accept header value (RFC 9110 12.5.1), skipping malformed ranges.
pub fn parse_accept(value: &str) -> Vec<MediaRange> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter_map(parse_media_range)
        .collect()
}

fn parse_media_range(text: &str) -> Option<MediaRange> {
    let mut pieces = split_outside_quotes(text, ';').into_iter();
    let media_type = pieces.next()?.trim().to_ascii_lowercase();
    let (main, sub) = media_type.split_once('/')?;
    if main.is_empty() || sub.is_empty() || main.contains(char::is_whitespace) {
        return None;
    }
    let mut range = MediaRange {
        media_type,
        params: Vec::new(),
        quality: 1.0,
    };
    for piece in pieces {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let (name, value) = piece.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let value = unquote(value.trim());
        if name == "q" {
            let q: f32 = value.parse().ok()?;
            if !(0.0..=1.0).contains(&q) {
                return None;
            }
            range.quality = q;
        } else {
            range.params.push((name, value));
        }
    }
    Some(range)
}

/// Picks the offer the request accepts best: highest quality, then the
/// earliest offer (offers are listed in our order of preference). For each
/// offer the most specific matching range decides its quality, so
/// `q=0` on a specific range excludes an offer a wildcard would admit.
pub fn negotiate(
    ranges: &[MediaRange],
    offers: &[Offer<'_>],
    packaging: Packaging,
) -> Option<Choice> {
    let requirements: Vec<Requirement<'_>> = ranges.iter().filter_map(Requirement::of).collect();
    let mut best: Option<(f32, Choice)> = None;
    for (index, offer) in offers.iter().enumerate() {
        let decisive = requirements
            .iter()
            .filter(|r| r.admits(offer, packaging))
            .max_by(|a, b| {
                a.specificity()
                    .cmp(&b.specificity())
                    .then(a.quality.total_cmp(&b.quality))
            });
        let Some(requirement) = decisive else {
            continue;
        };
        if requirement.quality <= 0.0 {
            continue;
        }
        let multipart = requirement.multipart.unwrap_or(packaging.multipart);
        let choice = Choice {
            offer: index,
            multipart,
        };
        if best.is_none_or(|(q, _)| requirement.quality > q) {
            best = Some((requirement.quality, choice));
        }
    }
    best.map(|(_, choice)| choice)
}

/// What one media range asks of a part: its media type (maybe with
/// wildcards), its transfer syntax and whether it must be multipart.
#[derive(Debug)]
struct Requirement<'r> {
    part_type: &'r str,
    transfer_syntax: SyntaxRequest<'r>,
    multipart: Option<bool>,
    quality: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyntaxRequest<'r> {
    Unspecified,
    Any,
    Uid(&'r str),
}

impl<'r> SyntaxRequest<'r> {
    fn of(value: Option<&'r str>) -> Self {
        match value.map(str::trim) {
            None => Self::Unspecified,
            Some("*") => Self::Any,
            Some(uid) => Self::Uid(uid),
        }
    }
}

impl<'r> Requirement<'r> {
    fn of(range: &'r MediaRange) -> Option<Self> {
        let quality = range.quality;
        match range.media_type.as_str() {
            "multipart/related" | "multipart/*" => {
                // `type` may carry the transfer syntax inside its quotes
                // (`type="application/dicom;transfer-syntax=..."`), a form
                // some user agents send.
                let type_value = range.param("type").unwrap_or("*/*");
                let mut inner = type_value.split(';');
                let part_type = inner.next().unwrap_or("*/*").trim();
                let inner_syntax = inner.find_map(|p| {
                    let (name, value) = p.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("transfer-syntax")
                        .then(|| value.trim().trim_matches('"'))
                });
                Some(Self {
                    part_type,
                    transfer_syntax: SyntaxRequest::of(
                        range.param("transfer-syntax").or(inner_syntax),
                    ),
                    multipart: Some(true),
                    quality,
                })
            }
            t if t.starts_with("multipart/") => None,
            "*/*" => Some(Self {
                part_type: "*/*",
                transfer_syntax: SyntaxRequest::of(range.param("transfer-syntax")),
                multipart: None,
                quality,
            }),
            t => Some(Self {
                part_type: t,
                transfer_syntax: SyntaxRequest::of(range.param("transfer-syntax")),
                multipart: Some(false),
                quality,
            }),
        }
    }

    fn specificity(&self) -> u8 {
        let type_part = if self.part_type == "*/*" {
            0
        } else if self.part_type.ends_with("/*") {
            1
        } else {
            2
        };
        type_part + u8::from(matches!(self.transfer_syntax, SyntaxRequest::Uid(_)))
    }

    fn admits(&self, offer: &Offer<'_>, packaging: Packaging) -> bool {
        let shape_ok = match self.multipart {
            Some(true) => packaging.multipart,
            Some(false) => packaging.single_part,
            None => packaging.multipart || packaging.single_part,
        };
        shape_ok && self.type_matches(offer.media_type) && self.syntax_matches(offer)
    }

    fn type_matches(&self, media_type: &str) -> bool {
        let pattern = self.part_type.to_ascii_lowercase();
        if pattern == "*/*" {
            return true;
        }
        match pattern.strip_suffix("/*") {
            Some(main) => media_type
                .split_once('/')
                .is_some_and(|(m, _)| m.eq_ignore_ascii_case(main)),
            None => pattern.eq_ignore_ascii_case(media_type),
        }
    }

    fn syntax_matches(&self, offer: &Offer<'_>) -> bool {
        let Some(offered) = offer.transfer_syntax else {
            return true;
        };
        match self.transfer_syntax {
            SyntaxRequest::Any => true,
            SyntaxRequest::Uid(uid) => uid == offered,
            SyntaxRequest::Unspecified if self.part_type.contains('*') => true,
            SyntaxRequest::Unspecified => {
                // The lossy exception applies to media types that carry
                // the compressed form (a Part 10 file, or the syntax's own
                // image type), never to octets meant to be uncompressed.
                let carries = offer.media_type == APPLICATION_DICOM
                    || compressed_frame_media_type(offered) == Some(offer.media_type);
                default_syntax_of(offer.media_type) == Some(offered)
                    || (carries && is_lossy(offered))
            }
        }
    }
}

/// Splits at `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            pieces.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    pieces.push(&text[start..]);
    pieces
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DICOM_ELE: Offer<'static> = Offer {
        media_type: "application/dicom",
        transfer_syntax: Some("1.2.840.10008.1.2.1"),
    };
    const DICOM_IMPLICIT: Offer<'static> = Offer {
        media_type: "application/dicom",
        transfer_syntax: Some("1.2.840.10008.1.2"),
    };
    const DICOM_JPEG_BASELINE: Offer<'static> = Offer {
        media_type: "application/dicom",
        transfer_syntax: Some("1.2.840.10008.1.2.4.50"),
    };

    fn choose(accept: &str, offers: &[Offer<'_>], packaging: Packaging) -> Option<Choice> {
        negotiate(&parse_accept(accept), offers, packaging)
    }

    #[test]
    fn parses_quoted_and_bare_parameters() {
        let ranges = parse_accept(
            r#"multipart/related; type="application/dicom"; transfer-syntax=*, Application/DICOM+json;q=0.5 , bad, image/jpeg;q=2"#,
        );
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges[0].media_type, "multipart/related");
        assert_eq!(ranges[0].param("type"), Some("application/dicom"));
        assert_eq!(ranges[0].param("transfer-syntax"), Some("*"));
        assert_eq!(ranges[1].media_type, "application/dicom+json");
        assert_eq!(ranges[1].quality, 0.5);
        // A comma inside quotes does not split.
        let ranges = parse_accept(r#"multipart/related; type="a/b, c"; q=1"#);
        assert_eq!(ranges.len(), 1);
        assert_eq!(ranges[0].param("type"), Some("a/b, c"));
        let ranges = parse_accept("multipart/related; type=application/dicom");
        assert_eq!(ranges[0].param("type"), Some("application/dicom"));
    }

    #[test]
    fn wildcard_syntax_takes_instances_as_stored() {
        let accept = r#"multipart/related; type="application/dicom"; transfer-syntax=*"#;
        for offer in [DICOM_ELE, DICOM_IMPLICIT, DICOM_JPEG_BASELINE] {
            assert_eq!(
                choose(accept, &[offer], Packaging::MULTIPART_ONLY),
                Some(Choice {
                    offer: 0,
                    multipart: true
                })
            );
        }
        // No Accept header and */* accept anything.
        assert!(
            negotiate(
                &[MediaRange::any()],
                &[DICOM_IMPLICIT],
                Packaging::MULTIPART_ONLY
            )
            .is_some()
        );
        assert!(choose("*/*", &[DICOM_IMPLICIT], Packaging::MULTIPART_ONLY).is_some());
    }

    #[test]
    fn a_named_syntax_must_match_what_is_stored() {
        let accept = r#"multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.70"#;
        assert_eq!(
            choose(accept, &[DICOM_ELE], Packaging::MULTIPART_ONLY),
            None
        );
        let accept =
            r#"multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1"#;
        assert!(choose(accept, &[DICOM_ELE], Packaging::MULTIPART_ONLY).is_some());
        // The form with the syntax inside the quotes.
        let accept = r#"multipart/related; type="application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50""#;
        assert!(choose(accept, &[DICOM_JPEG_BASELINE], Packaging::MULTIPART_ONLY).is_some());
        assert_eq!(
            choose(accept, &[DICOM_ELE], Packaging::MULTIPART_ONLY),
            None
        );
    }

    #[test]
    fn no_syntax_means_the_default_or_a_lossy_original() {
        let accept = r#"multipart/related; type="application/dicom""#;
        assert!(choose(accept, &[DICOM_ELE], Packaging::MULTIPART_ONLY).is_some());
        assert!(choose(accept, &[DICOM_JPEG_BASELINE], Packaging::MULTIPART_ONLY).is_some());
        // Implicit VR would have to be transcoded to the default.
        assert_eq!(
            choose(accept, &[DICOM_IMPLICIT], Packaging::MULTIPART_ONLY),
            None
        );
    }

    #[test]
    fn single_part_only_where_the_resource_allows_it() {
        assert_eq!(
            choose("application/dicom", &[DICOM_ELE], Packaging::EITHER),
            Some(Choice {
                offer: 0,
                multipart: false
            })
        );
        assert_eq!(
            choose("application/dicom", &[DICOM_ELE], Packaging::MULTIPART_ONLY),
            None
        );
        assert_eq!(
            choose("*/*", &[DICOM_ELE], Packaging::EITHER),
            Some(Choice {
                offer: 0,
                multipart: true
            })
        );
        assert_eq!(
            choose("*/*", &[DICOM_ELE], Packaging::SINGLE_ONLY),
            Some(Choice {
                offer: 0,
                multipart: false
            })
        );
    }

    #[test]
    fn quality_and_specificity_decide() {
        let jpeg = Offer {
            media_type: "image/jpeg",
            transfer_syntax: None,
        };
        let png = Offer {
            media_type: "image/png",
            transfer_syntax: None,
        };
        let offers = [jpeg, png];
        assert_eq!(
            choose("image/png", &offers, Packaging::SINGLE_ONLY)
                .unwrap()
                .offer,
            1
        );
        assert_eq!(
            choose("image/*", &offers, Packaging::SINGLE_ONLY)
                .unwrap()
                .offer,
            0
        );
        assert_eq!(
            choose(
                "image/jpeg;q=0.4, image/png;q=0.8",
                &offers,
                Packaging::SINGLE_ONLY
            )
            .unwrap()
            .offer,
            1
        );
        // q=0 on the specific range excludes what the wildcard admits.
        assert_eq!(
            choose("image/jpeg;q=0, */*", &offers, Packaging::SINGLE_ONLY)
                .unwrap()
                .offer,
            1
        );
        assert_eq!(choose("image/gif", &offers, Packaging::SINGLE_ONLY), None);
        assert_eq!(
            choose(
                "text/html, application/json",
                &offers,
                Packaging::SINGLE_ONLY
            ),
            None
        );
        assert_eq!(choose("", &offers, Packaging::SINGLE_ONLY), None);
    }

    #[test]
    fn compressed_frames_by_media_type() {
        let stored = Offer {
            media_type: "image/jpeg",
            transfer_syntax: Some("1.2.840.10008.1.2.4.50"),
        };
        let labelled_octets = Offer {
            media_type: "application/octet-stream",
            transfer_syntax: Some("1.2.840.10008.1.2.4.50"),
        };
        let decoded = Offer {
            media_type: "application/octet-stream",
            transfer_syntax: Some("1.2.840.10008.1.2.1"),
        };
        let offers = [stored, labelled_octets, decoded];
        let pick =
            |accept: &str| choose(accept, &offers, Packaging::MULTIPART_ONLY).map(|c| c.offer);
        assert_eq!(pick(r#"multipart/related; type="image/jpeg""#), Some(0));
        assert_eq!(
            pick(r#"multipart/related; type="application/octet-stream"; transfer-syntax=*"#),
            Some(1)
        );
        assert_eq!(
            pick(r#"multipart/related; type="application/octet-stream""#),
            Some(2)
        );
        assert_eq!(pick(r#"multipart/related; type="image/jls""#), None);
        // JPEG Lossless (4.57) is not image/jpeg's default and not lossy.
        let lossless = [Offer {
            media_type: "image/jpeg",
            transfer_syntax: Some("1.2.840.10008.1.2.4.57"),
        }];
        assert_eq!(
            choose(
                r#"multipart/related; type="image/jpeg""#,
                &lossless,
                Packaging::MULTIPART_ONLY
            ),
            None
        );
        assert_eq!(pick("*/*"), Some(0));
    }
}
