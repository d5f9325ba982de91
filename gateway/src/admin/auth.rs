//! Operator authentication for the admin API: the `Authorization: Bearer`
//! header only (never a cookie, so a browser cannot be tricked into acting
//! for an operator), looked up by hash on every request so that a new or
//! revoked token counts at once.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::problem::AdminError;
use super::roles::Operation;
use super::tokens::{Operator, lookup};
use super::{AdminState, Outcome};

/// An authenticated operator; extracting it is what protects a handler.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Operator);

impl Authenticated {
    /// Passes when the token's role allows `operation`; otherwise the
    /// attempt is audited (with `detail`) and counted, and the answer is 403.
    pub async fn require(
        &self,
        state: &AdminState,
        operation: Operation,
        detail: impl FnOnce() -> serde_json::Value,
    ) -> Result<&Operator, AdminError> {
        let operator = &self.0;
        if operator.role.allows(operation) {
            return Ok(operator);
        }
        let mut detail = detail();
        if let Some(object) = detail.as_object_mut() {
            object.insert("role".into(), operator.role.as_str().into());
            object.insert(
                "required_role".into(),
                operation.required_role().as_str().into(),
            );
        }
        state
            .record_attempt(operator, operation, Outcome::Forbidden, detail)
            .await;
        Err(AdminError::Forbidden {
            action: operation.action(),
            required: operation.required_role(),
            held: operator.role,
        })
    }
}

impl FromRequest for Authenticated {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AdminState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| AdminError::internal("admin state missing"))?;
            let token = token.ok_or(AdminError::Unauthorized)?;
            let found = state.index.run(move |conn| lookup(conn, &token)).await?;
            match found {
                Some(operator) => {
                    // The request span names who asked (never the token).
                    tracing::Span::current().record("actor", operator.name.as_str());
                    Ok(Authenticated(operator))
                }
                None => {
                    tracing::warn!("admin request with an unknown or revoked token");
                    Err(AdminError::Unauthorized)
                }
            }
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_the_bearer_header_counts() {
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer dga_x_y"))
            .to_http_request();
        assert_eq!(bearer_token(&req).as_deref(), Some("dga_x_y"));
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer   dga_x_y "))
            .to_http_request();
        assert_eq!(bearer_token(&req).as_deref(), Some("dga_x_y"));
        for value in ["Basic YWxpY2U6eA==", "Bearer ", "dga_x_y"] {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            assert_eq!(bearer_token(&req), None, "{value}");
        }
        let req = TestRequest::default()
            .insert_header((header::COOKIE, "token=dga_x_y"))
            .to_http_request();
        assert_eq!(bearer_token(&req), None, "a cookie is never a credential");
    }
}
