//! The gateway's own errors: one code per failure (the table in docs/api.md), rendered in the
//! client's protocol so each SDK raises its own exception class.

use bytes::Bytes;
use serde_json::json;

use crate::protocol::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidApiKey,
    KeyExpired,
    KeyDisabled,
    IpNotAllowed,
    ModelNotAllowed,
    ModelNotFound,
    NotFound,
    MethodNotAllowed,
    RequestTooLarge,
    LengthRequired,
    RateLimitExceeded,
    TokenRateLimitExceeded,
    InsufficientQuota,
    KeyExists,
    KeyInConfig,
    KeyNotFound,
    StoreUnavailable,
    LimitsUnavailable,
    NotImplemented,
    /// A WebSocket upgrade this gateway does not take: the client should use HTTP.
    WebSocketUnsupported,
    UpstreamError,
    UpstreamUnavailable,
    UpstreamRequestTimeout,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest => 400,
            InvalidApiKey | KeyExpired | KeyDisabled => 401,
            IpNotAllowed | ModelNotAllowed => 403,
            ModelNotFound | NotFound | KeyNotFound => 404,
            KeyExists | KeyInConfig => 409,
            MethodNotAllowed => 405,
            LengthRequired => 411,
            RequestTooLarge => 413,
            RateLimitExceeded | TokenRateLimitExceeded | InsufficientQuota => 429,
            Internal => 500,
            NotImplemented => 501,
            WebSocketUnsupported => 426,
            UpstreamError => 502,
            UpstreamUnavailable | StoreUnavailable | LimitsUnavailable => 503,
            UpstreamRequestTimeout => 504,
        }
    }

    /// The machine-readable code clients match on.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidApiKey => "invalid_api_key",
            KeyExpired => "key_expired",
            KeyDisabled => "key_disabled",
            IpNotAllowed => "ip_not_allowed",
            ModelNotAllowed => "model_not_allowed",
            ModelNotFound => "model_not_found",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            LengthRequired => "length_required",
            RequestTooLarge => "request_too_large",
            RateLimitExceeded => "rate_limit_exceeded",
            TokenRateLimitExceeded => "token_rate_limit_exceeded",
            InsufficientQuota => "insufficient_quota",
            KeyExists => "key_exists",
            KeyInConfig => "key_in_config",
            KeyNotFound => "key_not_found",
            StoreUnavailable => "store_unavailable",
            LimitsUnavailable => "limits_unavailable",
            NotImplemented => "not_implemented",
            WebSocketUnsupported => "websocket_not_supported",
            UpstreamError => "upstream_error",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamRequestTimeout => "upstream_request_timeout",
            Internal => "internal_error",
        }
    }
}

/// OpenAI's `error.type` for a status.
fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's `error.type` for a status.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        504 => "timeout_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Gemini's (google.rpc) `error.status` for a status.
fn gemini_status(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

/// An error body in `protocol`'s shape (so each SDK raises its own exception class).
pub fn error_body(
    protocol: Protocol,
    status: u16,
    code: &str,
    message: &str,
    param: Option<&str>,
) -> Bytes {
    let v = match protocol {
        // The Responses API reports errors in the Chat Completions shape.
        Protocol::OpenAi | Protocol::Responses => json!({"error": {
            "message": message,
            // OpenAI's own spent-quota error has its own type, which SDKs and tools test.
            "type": if code == "insufficient_quota" { code } else { openai_type(status) },
            "code": code,
            "param": param,
        }}),
        Protocol::Anthropic => json!({"type": "error", "error": {
            "type": anthropic_type(status),
            "message": message,
            "code": code,
        }, "request_id": null}),
        Protocol::Gemini => json!({"error": {
            "code": status,
            "message": message,
            "status": gemini_status(status),
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": code.to_ascii_uppercase(),
                "domain": "modelgate",
            }],
        }}),
    };
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, when there is one (OpenAI's `param`).
    pub param: Option<&'static str>,
    /// Seconds, for 429/503.
    pub retry_after: Option<u64>,
    /// Methods the path accepts, for 405.
    pub allow: Option<&'static str>,
}

impl GatewayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        GatewayError {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            allow: None,
        }
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The error body in `protocol`'s shape.
    pub fn body(&self, protocol: Protocol) -> Bytes {
        error_body(
            protocol,
            self.status(),
            self.code.as_str(),
            &self.message,
            self.param,
        )
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status(),
            self.code.as_str(),
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: Bytes) -> serde_json::Value {
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn shapes_per_protocol() {
        let e = GatewayError::new(ErrorCode::ModelNotFound, "no such model").with_param("model");
        let o = parse(e.body(Protocol::OpenAi));
        assert_eq!(o["error"]["code"], "model_not_found");
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["param"], "model");
        let a = parse(e.body(Protocol::Anthropic));
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "not_found_error");
        let g = parse(e.body(Protocol::Gemini));
        assert_eq!(g["error"]["status"], "NOT_FOUND");
        assert_eq!(g["error"]["code"], 404);
        assert_eq!(g["error"]["details"][0]["reason"], "MODEL_NOT_FOUND");
    }

    #[test]
    fn statuses_follow_the_contract() {
        for (code, status) in [
            (ErrorCode::InvalidApiKey, 401),
            (ErrorCode::IpNotAllowed, 403),
            (ErrorCode::RequestTooLarge, 413),
            (ErrorCode::UpstreamUnavailable, 503),
            (ErrorCode::UpstreamRequestTimeout, 504),
        ] {
            assert_eq!(code.status(), status);
        }
        assert_eq!(
            parse(
                GatewayError::new(ErrorCode::UpstreamRequestTimeout, "t").body(Protocol::Anthropic)
            )["error"]["type"],
            "timeout_error"
        );
    }
}
