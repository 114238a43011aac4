//! Codex's Responses WebSocket transport (`GET /v1/responses` with `Upgrade: websocket`).
//! The route is chosen at the upgrade, from `?model=NAME` or an `x-modelgate-model`
//! header. This gateway does not relay WebSocket frames: it answers 426 at once, saying
//! why, so a client falls back to `POST /v1/responses` (streamed over HTTP, which every
//! provider kind serves) instead of retrying the upgrade.

use pingora::proxy::Session;

use crate::auth::{query_param, ClientKey};
use crate::config::Config;
use crate::errors::{ErrorCode, GatewayError};
use crate::upstream::ProviderKind;

/// The answer to an upgrade of an authenticated key.
pub fn refusal(session: &Session, config: &Config, key: &ClientKey) -> GatewayError {
    let req = session.req_header();
    let model = query_param(req.uri.query(), "model")
        .map(|m| m.to_string())
        .or_else(|| {
            req.headers
                .get("x-modelgate-model")
                .and_then(|v| v.to_str().ok())
                .map(|m| m.trim().to_string())
        })
        .filter(|m| !m.is_empty());
    let unsupported = |why: String| GatewayError::new(ErrorCode::WebSocketUnsupported, why);
    let Some(model) = model else {
        return unsupported("the Responses WebSocket needs the model at the upgrade (?model=NAME or an x-modelgate-model header); use POST /v1/responses, which takes it in the body".into());
    };
    let Some(resolved) = config.models.resolve(&model) else {
        let shown: String = model.chars().take(200).collect();
        let msg = format!("the model {shown:?} does not exist on this gateway; GET /v1/models lists the models your key may use");
        return GatewayError::new(ErrorCode::ModelNotFound, msg).with_param("model");
    };
    if !key.allows_model(&[&model, &resolved.route.name]) {
        let msg = format!("the API key {:?} may not use the model {model:?}", key.name);
        return GatewayError::new(ErrorCode::ModelNotAllowed, msg).with_param("model");
    }
    let openai = resolved
        .route
        .targets
        .iter()
        .any(|t| t.provider.kind == ProviderKind::OpenAi);
    if openai {
        unsupported(format!("this gateway does not relay the Responses WebSocket (model {model:?}); use POST /v1/responses with \"stream\": true, which serves the same model"))
    } else {
        unsupported(format!("the providers of the model {model:?} do not take the Responses WebSocket; use POST /v1/responses with \"stream\": true, which serves it translated"))
    }
}
