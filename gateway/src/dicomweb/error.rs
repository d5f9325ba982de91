//! The one place DICOMweb errors become HTTP responses: an RFC 9457
//! `application/problem+json` body with a status that says whose fault it is.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum DicomWebError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this token lacks the `{0}` scope")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("request body exceeds the {limit} byte limit")]
    PayloadTooLarge { limit: u64 },
    #[error("request has more than the {limit} parts allowed")]
    TooManyParts { limit: usize },
    #[error("request body was not received within {0:?}")]
    RequestTimeout(std::time::Duration),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl DicomWebError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<rusqlite::Error> for DicomWebError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(e)
    }
}

impl ResponseError for DicomWebError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge { .. } | Self::TooManyParts { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let Self::Internal(detail) = self {
            // The detail may name files or SQL; it goes to the log, not the client.
            tracing::error!(error = %detail, "internal error answering a DICOMweb request");
        }
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if matches!(self, Self::Unauthorized) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dicomweb\""),
            ));
        }
        if matches!(
            self,
            Self::RequestTimeout(_) | Self::PayloadTooLarge { .. } | Self::TooManyParts { .. }
        ) {
            response.insert_header((header::CONNECTION, HeaderValue::from_static("close")));
        }
        response.body(body.to_string())
    }
}
