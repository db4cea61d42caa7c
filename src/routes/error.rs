//! The one error type of the HTTP edge, rendered as RFC 9457 problem details
//! (`application/problem+json`). Bodies are short and never echo request
//! headers; internal errors never leak their cause to the client.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::ingest::IngestError;
use crate::intake::IntakeError;
use crate::limits::retry_seconds;
use crate::reporting::ParamError;
use crate::validation::{Invalid, Violation};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the report is invalid")]
    Invalid(Invalid),
    /// An erasure request body broke a rule; each violation names its field.
    #[error("the erasure request is invalid")]
    InvalidErasure(Invalid),
    /// A retired route; the answer names the one that replaced it.
    #[error("this route was retired and does nothing; use {replacement}")]
    Gone {
        replacement: &'static str,
        /// Path of the replacement, for the `Link` header.
        link: &'static str,
    },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the content type must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("the request body could not be read")]
    BadBody,
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A path or query parameter is malformed or unknown; `field` names it.
    #[error("{}: {}", .0.field, .0.detail)]
    BadParameter(Violation),
    /// A stats query parameter (or the attribute in the path) is unknown or
    /// has an unusable value.
    #[error("{}", .0.detail)]
    InvalidQuery(ParamError),
    /// The stats API requires a token that was missing or wrong.
    #[error("a valid stats token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// A report could not be read from the database.
    #[error("the database is unavailable")]
    Database,
    #[error("too many reports from this source; retry after {retry_after} seconds")]
    RateLimited { retry_after: u32 },
    #[error("this instance sent too many reports today; retry after {retry_after} seconds")]
    InstanceLimited { retry_after: u32 },
    #[error("the request body was not received in time")]
    RequestTimeout,
    /// A source sent more requests to the routes other than intake than
    /// its budget allows.
    #[error("too many requests from this source; retry after {retry_after} seconds")]
    RequestsLimited { retry_after: u32 },
    /// Every slot for reads is taken: the request was not queued.
    #[error("too many requests in progress; retry in a moment")]
    Busy,
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> ApiError {
        match e {
            IntakeError::InstanceLimited { wait } => ApiError::InstanceLimited {
                retry_after: retry_seconds(wait),
            },
            IntakeError::Ingest(e) => ApiError::Ingest(e),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [Violation]>,
}

impl ApiError {
    fn problem_type(&self) -> &'static str {
        match self {
            ApiError::Invalid(_) => "urn:anonstats:problem:invalid-report",
            ApiError::InvalidErasure(_) => "urn:anonstats:problem:invalid-erasure",
            ApiError::Gone { .. } => "urn:anonstats:problem:gone",
            ApiError::PayloadTooLarge { .. } => "urn:anonstats:problem:payload-too-large",
            ApiError::UnsupportedMediaType { .. } => "urn:anonstats:problem:unsupported-media-type",
            ApiError::BadBody => "urn:anonstats:problem:bad-body",
            ApiError::Ingest(IngestError::Overloaded) => "urn:anonstats:problem:overloaded",
            ApiError::Ingest(_) => "urn:anonstats:problem:unavailable",
            ApiError::NotFound => "about:blank",
            ApiError::MethodNotAllowed => "about:blank",
            ApiError::BadParameter(_) => "urn:anonstats:problem:invalid-parameter",
            ApiError::InvalidQuery(_) => "urn:anonstats:problem:invalid-query",
            ApiError::Unauthorized => "urn:anonstats:problem:unauthorized",
            ApiError::Database => "urn:anonstats:problem:unavailable",
            ApiError::RateLimited { .. } => "urn:anonstats:problem:rate-limited",
            ApiError::InstanceLimited { .. } => "urn:anonstats:problem:instance-daily-limit",
            ApiError::RequestTimeout => "urn:anonstats:problem:request-timeout",
            ApiError::RequestsLimited { .. } => "urn:anonstats:problem:rate-limited",
            ApiError::Busy => "urn:anonstats:problem:busy",
        }
    }

    /// Seconds a client should wait before retrying, for 429 and 503 answers.
    fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::RateLimited { retry_after }
            | ApiError::InstanceLimited { retry_after }
            | ApiError::RequestsLimited { retry_after } => Some(*retry_after),
            ApiError::Ingest(IngestError::Overloaded) | ApiError::Busy => Some(1),
            ApiError::Ingest(_) | ApiError::Database => Some(5),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::InvalidErasure(_) | ApiError::BadBody => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Ingest(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Database => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. }
            | ApiError::InstanceLimited { .. }
            | ApiError::RequestsLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let first = match self {
            ApiError::Invalid(Invalid(v)) | ApiError::InvalidErasure(Invalid(v)) => v.first(),
            ApiError::BadParameter(v) => Some(v),
            _ => None,
        };
        let detail = match (self, first) {
            (ApiError::Invalid(_) | ApiError::InvalidErasure(_), Some(v)) if v.field.is_empty() => {
                v.detail.clone()
            }
            (ApiError::Invalid(_) | ApiError::InvalidErasure(_), Some(v)) => {
                format!("{}: {}", v.field, v.detail)
            }
            _ => self.to_string(),
        };
        let body = Problem {
            kind: self.problem_type(),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            field: match self {
                ApiError::InvalidQuery(e) => Some(e.parameter.as_str()),
                _ => first.map(|v| v.field.as_str()),
            },
            rule: first.map(|v| v.rule),
            errors: match self {
                ApiError::Invalid(Invalid(v)) | ApiError::InvalidErasure(Invalid(v)) => Some(v),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let ApiError::Unauthorized = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"anonstats stats\""));
        }
        if let ApiError::Gone { link, .. } = self {
            response.insert_header((header::LINK, format!("<{link}>; rel=\"successor-version\"")));
        }
        if let Some(secs) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.body(serde_json::to_string(&body).expect("problem serialises"))
    }
}
