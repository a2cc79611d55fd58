//! One error body for every failure: `{"error": {"code", "message", "request_id"}}`.
//!
//! Handlers return [`ApiError`]; the request-id layer (`crate::request_id`) runs each request
//! inside a task-local holding its id, so every error body names the request it answers.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    pub(crate) static REQUEST_ID: String;
}

/// The id of the request being answered ("" outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A second factor is still owed for this session.
    #[error(
        "this session needs a TOTP code first: POST /v1/auth/totp (or enrol: POST /v1/me/totp)"
    )]
    MfaRequired,
    /// Not found, or not the caller's to see: the two look the same.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// Too many failed attempts at a secret (a TOTP code): refused until the lock ends.
    #[error("{0}; retry in {1} s")]
    Locked(String, u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `forbidden`, `mfa_required`,
    /// `not_found`, `conflict`, `payload_too_large`, `rate_limited`, `locked`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What failed and what to do, for people.
    pub message: String,
    /// Quote it when reporting a problem; also in the `x-request-id` header.
    pub request_id: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::MfaRequired => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited(_) | ApiError::Locked(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MfaRequired => "mfa_required",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Locked(..) => "locked",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn unauthenticated() -> Self {
        ApiError::Unauthorized(
            "sign in (GET /v1/auth/{provider}/login) or send an API key as `Authorization: Bearer`"
                .into(),
        )
    }

    pub fn role(needed: &str) -> Self {
        ApiError::Forbidden(format!("this needs the {needed} role"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let message = match &self {
            // Details of internal failures go to the log under the request id, not to the caller.
            ApiError::Internal(detail) => {
                tracing::error!(request_id = %request_id, error = %detail, "request failed");
                "internal error; quote the request id when reporting it".to_string()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(request_id = %request_id, error = %detail, "a dependency is unavailable");
                "a server meetbot depends on is unavailable; retry shortly".to_string()
            }
            other => other.to_string(),
        };
        let status = self.status();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code().into(),
                    message,
                    request_id,
                },
            }),
        )
            .into_response();
        if let ApiError::RateLimited(s) | ApiError::Locked(_, s) = self
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"meetbot\""),
            );
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge(0);
        }
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<meetbot_store::StoreError> for ApiError {
    fn from(e: meetbot_store::StoreError) -> Self {
        use meetbot_store::StoreError as S;
        match e {
            S::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            S::Conflict { .. } => {
                ApiError::Conflict("the record changed meanwhile; read it again and retry".into())
            }
            S::UnknownTenant(_) => ApiError::unauthenticated(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<meetbot_store::vault::VaultError> for ApiError {
    fn from(e: meetbot_store::vault::VaultError) -> Self {
        use meetbot_store::vault::VaultError as V;
        match e {
            V::Store(s) => s.into(),
            V::UnknownTenant(_) => ApiError::unauthenticated(),
            V::Keys(k) => ApiError::Unavailable(k.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
