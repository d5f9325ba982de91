//! What WADO-RS needs to know about a transfer syntax: the media type its
//! pixel data travels as (PS3.18 Table 8.7.3-5), whether it is lossy, and
//! the default transfer syntax of each DICOM media type (PS3.18 8.7.3.4).

/// Explicit VR Little Endian: the default transfer syntax of DICOMweb.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
pub const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
pub const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

pub const APPLICATION_DICOM: &str = "application/dicom";
pub const APPLICATION_DICOM_JSON: &str = "application/dicom+json";
pub const APPLICATION_OCTET_STREAM: &str = "application/octet-stream";
pub const IMAGE_JPEG: &str = "image/jpeg";
pub const IMAGE_PNG: &str = "image/png";

/// The transfer syntax that describes native pixel bytes read from a file
/// of syntax `uid`: the little-endian ones all hold the same bytes as
/// Explicit VR Little Endian would.
pub fn native_bulk_data_syntax(uid: &str) -> &'static str {
    if uid == EXPLICIT_VR_BIG_ENDIAN {
        EXPLICIT_VR_BIG_ENDIAN
    } else {
        EXPLICIT_VR_LITTLE_ENDIAN
    }
}

/// The media type of one frame of encapsulated pixel data in syntax `uid`
/// (PS3.18 Table 8.7.3-5), or `None` when frames of it cannot be returned
/// on their own (video, unknown syntaxes).
pub fn compressed_frame_media_type(uid: &str) -> Option<&'static str> {
    Some(match uid {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => IMAGE_JPEG,
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            "image/jxl"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => return None,
    })
}

/// Syntaxes whose pixel data may have lost information. PS3.18 8.7.3.4
/// lets an origin server return these as stored even where the default
/// (uncompressed) syntax was asked for, since decompressing them would not
/// give the original back.
pub fn is_lossy(uid: &str) -> bool {
    matches!(
        uid,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.203"
            | "1.2.840.10008.1.2.4.111"
            | "1.2.840.10008.1.2.4.112"
    ) || uid.starts_with("1.2.840.10008.1.2.4.10")
}

/// The transfer syntax a media type means when the request names none
/// (PS3.18 8.7.3.4 and the defaults of Tables 8.7.3-2, -4 and -5).
pub fn default_syntax_of(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        APPLICATION_DICOM | APPLICATION_OCTET_STREAM => EXPLICIT_VR_LITTLE_ENDIAN,
        IMAGE_JPEG => "1.2.840.10008.1.2.4.70",
        "image/jls" => "1.2.840.10008.1.2.4.80",
        "image/jp2" => "1.2.840.10008.1.2.4.90",
        "image/jpx" => "1.2.840.10008.1.2.4.92",
        "image/jphc" => "1.2.840.10008.1.2.4.201",
        "image/jxl" => "1.2.840.10008.1.2.4.110",
        "image/dicom-rle" => "1.2.840.10008.1.2.5",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_syntaxes_map_to_their_media_types() {
        assert_eq!(
            compressed_frame_media_type("1.2.840.10008.1.2.4.50"),
            Some(IMAGE_JPEG)
        );
        assert_eq!(
            compressed_frame_media_type("1.2.840.10008.1.2.4.80"),
            Some("image/jls")
        );
        assert_eq!(
            compressed_frame_media_type("1.2.840.10008.1.2.5"),
            Some("image/dicom-rle")
        );
        assert_eq!(compressed_frame_media_type(EXPLICIT_VR_LITTLE_ENDIAN), None);
        // MPEG-4 video: no per-frame representation.
        assert_eq!(compressed_frame_media_type("1.2.840.10008.1.2.4.102"), None);
    }

    #[test]
    fn lossy_and_defaults() {
        assert!(is_lossy("1.2.840.10008.1.2.4.50"));
        assert!(is_lossy("1.2.840.10008.1.2.4.102"));
        assert!(!is_lossy("1.2.840.10008.1.2.4.70"));
        assert!(!is_lossy(EXPLICIT_VR_LITTLE_ENDIAN));
        assert_eq!(
            default_syntax_of(APPLICATION_DICOM),
            Some(EXPLICIT_VR_LITTLE_ENDIAN)
        );
        assert_eq!(
            default_syntax_of(IMAGE_JPEG),
            Some("1.2.840.10008.1.2.4.70")
        );
        assert_eq!(
            native_bulk_data_syntax(IMPLICIT_VR_LITTLE_ENDIAN),
            EXPLICIT_VR_LITTLE_ENDIAN
        );
    }
}
