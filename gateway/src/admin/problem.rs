//! The one place admin API errors become HTTP responses: RFC 9457
//! `application/problem+json` with a specific `title`, a `detail` that says
//! what to change, and for refused route actions whose fault it is.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::roles::Role;
use crate::audit::ChainBreak;
use crate::route::{StateError, StateFault};

/// Problem types are tag URIs (RFC 4151): stable names, not pages to fetch.
const TYPE_PREFIX: &str = "tag:dicom-gateway,2026:admin/";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a valid operator token is required (Authorization: Bearer …)")]
    Unauthorized,
    #[error("`{action}` needs the {required} role; this token is {held}")]
    Forbidden {
        action: &'static str,
        required: Role,
        held: Role,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body exceeds the {limit} byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    /// The inference pipeline is off in this gateway's configuration, so
    /// there are no routes or models to act on.
    #[error(
        "the inference pipeline is disabled in this gateway's configuration (pipeline.enabled = false)"
    )]
    PipelineDisabled,
    /// A route action the route state refused; nothing changed.
    #[error("{0}")]
    Refused(StateError),
    /// A reload refused; the running configuration stays.
    #[error("the new configuration was refused; the running one stays ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    ReloadRefused(Vec<String>),
    #[error("the audit trail does not verify: {0}")]
    ChainBroken(ChainBreak, u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl AdminError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    /// A short, stable name: the end of the problem type URI.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::BadRequest(_) => "bad-request",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::NotFound(_) => "not-found",
            Self::PipelineDisabled => "pipeline-disabled",
            Self::Refused(e) => refused_slug(e),
            Self::ReloadRefused(_) => "reload-refused",
            Self::ChainBroken(..) => "audit-chain-broken",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The problem's `title`: what kind of problem, the same every time.
    pub fn title(&self) -> &'static str {
        match self {
            Self::Unauthorized => "operator token required",
            Self::Forbidden { .. } => "role too low for this action",
            Self::BadRequest(_) => "bad request",
            Self::UnsupportedMediaType(_) => "JSON required",
            Self::PayloadTooLarge { .. } => "request body too large",
            Self::NotFound(_) => "not found",
            Self::PipelineDisabled => "pipeline disabled",
            Self::Refused(e) => refused_title(e),
            Self::ReloadRefused(_) => "configuration refused",
            Self::ChainBroken(..) => "audit chain broken",
            Self::Unavailable(_) => "temporarily unavailable",
            Self::Internal(_) => "internal error",
        }
    }
}

impl From<StateError> for AdminError {
    fn from(e: StateError) -> Self {
        match e {
            // Only the database's own troubles are worth retrying.
            StateError::Database(ref db) if is_busy(db) => Self::Unavailable(e.to_string()),
            StateError::Database(_) | StateError::Corrupt { .. } | StateError::MissingActor => {
                Self::Internal(e.to_string())
            }
            e => Self::Refused(e),
        }
    }
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> Self {
        if is_busy(&e) {
            Self::Unavailable(format!("the index database is busy: {e}"))
        } else {
            Self::internal(e)
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn refused_slug(e: &StateError) -> &'static str {
    match e {
        StateError::MissingReason => "reason-required",
        StateError::UnknownRoute(_) => "unknown-route",
        StateError::UnknownVersion(_) => "unknown-version",
        StateError::ModelFile { .. } => "model-file-check-failed",
        StateError::NotReady { .. } => "model-not-ready",
        StateError::NoPreviousVersion(_) => "no-previous-version",
        StateError::AlreadyServing { .. } => "already-serving",
        StateError::InvalidPercent(_) => "invalid-percent",
        StateError::UntilInPast { .. } => "until-in-the-past",
        StateError::MissingActor | StateError::Database(_) | StateError::Corrupt { .. } => {
            "internal"
        }
    }
}

fn refused_title(e: &StateError) -> &'static str {
    match e {
        StateError::MissingReason => "reason required",
        StateError::UnknownRoute(_) => "unknown route",
        StateError::UnknownVersion(_) => "unknown model version",
        StateError::ModelFile { .. } => "model file check failed",
        StateError::NotReady { .. } => "model not ready",
        StateError::NoPreviousVersion(_) => "nothing to roll back to",
        StateError::AlreadyServing { .. } => "version already serving",
        StateError::InvalidPercent(_) => "invalid canary percent",
        StateError::UntilInPast { .. } => "until is in the past",
        StateError::MissingActor | StateError::Database(_) | StateError::Corrupt { .. } => {
            "internal error"
        }
    }
}

/// Status of a refused route action: the request's own fault is 400 when
/// its values are invalid, 404 when it names what does not exist, 409 when
/// it conflicts with the route's state or the deployment (a file that
/// fails its hash, a model that does not come up).
fn refused_status(e: &StateError) -> StatusCode {
    match e {
        StateError::MissingReason
        | StateError::InvalidPercent(_)
        | StateError::UntilInPast { .. } => StatusCode::BAD_REQUEST,
        StateError::UnknownRoute(_) | StateError::UnknownVersion(_) => StatusCode::NOT_FOUND,
        _ => match e.fault() {
            StateFault::Operator | StateFault::Deployment => StatusCode::CONFLICT,
            StateFault::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PipelineDisabled => StatusCode::CONFLICT,
            Self::Refused(e) => refused_status(e),
            Self::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ChainBroken(..) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let Self::Internal(detail) = self {
            // May name files or SQL: for the log, not the client.
            tracing::error!(error = %detail, "internal error answering an admin request");
        }
        let mut body = json!({
            "type": format!("{TYPE_PREFIX}{}", self.slug()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        match self {
            Self::Refused(e) => body["fault"] = json!(e.fault().as_str()),
            Self::Forbidden {
                action,
                required,
                held,
            } => {
                body["action"] = json!(action);
                body["required_role"] = json!(required);
                body["role"] = json!(held);
            }
            Self::ReloadRefused(problems) => body["problems"] = json!(problems),
            Self::ChainBroken(chain_break, verified) => {
                body["seq"] = json!(chain_break.seq);
                body["reason"] = json!(chain_break.reason);
                body["verified"] = json!(verified);
            }
            _ => {}
        }
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if matches!(self, Self::Unauthorized) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dicom-gateway-admin\""),
            ));
        }
        response.body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelId;

    fn model() -> ModelId {
        ModelId {
            name: "ct".into(),
            version: "1.0.0".parse().unwrap(),
        }
    }

    fn status_of(e: StateError) -> StatusCode {
        AdminError::from(e).status_code()
    }

    #[test]
    fn state_errors_map_by_fault() {
        assert_eq!(
            status_of(StateError::MissingReason),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(StateError::InvalidPercent(101)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(StateError::UntilInPast { until_ms: 1 }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(StateError::UnknownRoute("r".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(StateError::UnknownVersion(model())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(StateError::NoPreviousVersion("r".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(StateError::AlreadyServing {
                route: "r".into(),
                version: "1.0.0".parse().unwrap()
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(StateError::ModelFile {
                model: model(),
                status: "mismatch".into()
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(StateError::NotReady {
                model: model(),
                why: "engine".into()
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(StateError::Database(rusqlite::Error::InvalidQuery)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert_eq!(
            status_of(StateError::Database(busy)),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    fn body(e: &AdminError) -> serde_json::Value {
        let response = e.error_response();
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let bytes = actix_web::body::to_bytes(response.into_body());
        let bytes = futures::executor::block_on(bytes).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_refused_deployment_says_why_and_whose_fault() {
        let e = AdminError::from(StateError::ModelFile {
            model: model(),
            status: "mismatch".into(),
        });
        let b = body(&e);
        assert_eq!(b["title"], "model file check failed");
        assert_eq!(b["fault"], "deployment");
        assert_eq!(b["status"], 409);
        assert!(b["detail"].as_str().unwrap().contains("ct@1.0.0"), "{b}");
        assert!(
            b["type"]
                .as_str()
                .unwrap()
                .ends_with("/model-file-check-failed")
        );
    }

    #[test]
    fn unauthorized_carries_the_challenge_and_forbidden_names_the_roles() {
        let response = AdminError::Unauthorized.error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        let b = body(&AdminError::Forbidden {
            action: "route.flip",
            required: Role::Operator,
            held: Role::Viewer,
        });
        assert_eq!(
            (b["required_role"].as_str(), b["role"].as_str()),
            (Some("operator"), Some("viewer"))
        );
        assert_eq!(b["status"], 403);
    }

    #[test]
    fn reload_refusal_lists_every_problem_and_chain_break_names_the_entry() {
        let b = body(&AdminError::ReloadRefused(vec!["a".into(), "b".into()]));
        assert_eq!(b["status"], 422);
        assert_eq!(b["problems"], json!(["a", "b"]));
        let b = body(&AdminError::ChainBroken(
            ChainBreak {
                seq: 5,
                reason: "modified".into(),
            },
            4,
        ));
        assert_eq!(
            (b["status"].as_u64(), b["seq"].as_i64()),
            (Some(409), Some(5))
        );
        assert!(b["detail"].as_str().unwrap().contains("entry 5"));
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let b = body(&AdminError::internal("SELECT secret FROM /var/lib"));
        assert_eq!(b["detail"], "internal error");
    }
}
