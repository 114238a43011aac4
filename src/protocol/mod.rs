//! The client-facing surface: which path is which endpoint in which wire protocol, and the
//! shapes that depend only on the protocol (model lists). Routing looks at the path only;
//! query strings (`?beta=true`, `?alt=sse`) never change the route.

pub mod form;
use http::Method;
use serde_json::json;

pub use crate::objects::ObjectKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI Chat Completions (and the OpenAI side endpoints: embeddings, images, ...).
    OpenAi,
    /// OpenAI Responses (`/v1/responses`), Codex CLI's protocol.
    Responses,
    Anthropic,
    Gemini,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Responses => "openai-responses",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
        }
    }
}

impl Endpoint {
    pub fn is_management(&self) -> bool {
        matches!(
            self,
            Endpoint::ManagementReload
                | Endpoint::ManagementConfigGet
                | Endpoint::ManagementConfigPut
                | Endpoint::ManagementLogs
                | Endpoint::ManagementUsage
                | Endpoint::ManagementUsageRecords
                | Endpoint::ManagementKeys
                | Endpoint::ManagementKey { .. }
                | Endpoint::ManagementAudit
                | Endpoint::ManagementProviderReset { .. }
                | Endpoint::ManagementProviders
                | Endpoint::ManagementConfigValidate
                | Endpoint::ManagementOther
        )
    }
}

/// Whether a request asks to become a WebSocket (`Upgrade: websocket`, `GET`).
pub fn is_websocket_upgrade(method: &Method, headers: &http::HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
            })
}

/// The console's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAsset {
    Page,
    Script,
    Style,
    Icon,
}

/// A request the gateway forwards to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// `POST /v1/responses/compact`: passed to providers that speak the Responses API.
    ResponsesCompact,
    Moderations,
    ImagesGenerations,
    AudioSpeech,
    /// The multipart ones: their body is a form with a file, routed by its `model` field.
    AudioTranscriptions,
    AudioTranslations,
    ImagesEdits,
    ImagesVariations,
    Messages,
    MessagesCountTokens,
    GenerateContent,
    StreamGenerateContent,
    CountTokens,
    /// Gemini's embeddings and media (Imagen, Veo): passed to Gemini providers as they are.
    EmbedContent,
    BatchEmbedContents,
    Predict,
    PredictLongRunning,
    /// `POST /v1/files` (a form) and `POST /v1/batches`: they create provider objects.
    FilesCreate,
    BatchesCreate,
    /// A call on a provider object by id, or a list of them: passed to where it lives.
    Object(ObjectKind),
    /// The Responses WebSocket (`GET /v1/responses`, upgraded): frames relayed.
    ResponsesSocket,
}

impl Op {
    pub fn protocol(self) -> Protocol {
        match self {
            Op::Messages | Op::MessagesCountTokens => Protocol::Anthropic,
            Op::GenerateContent
            | Op::StreamGenerateContent
            | Op::CountTokens
            | Op::EmbedContent
            | Op::BatchEmbedContents
            | Op::Predict
            | Op::PredictLongRunning
            | Op::Object(ObjectKind::Operation) => Protocol::Gemini,
            Op::Responses
            | Op::ResponsesCompact
            | Op::ResponsesSocket
            | Op::Object(ObjectKind::Response) => Protocol::Responses,
            _ => Protocol::OpenAi,
        }
    }

    /// Whether the body is a `multipart/form-data` form rather than JSON.
    pub fn takes_form(self) -> bool {
        matches!(
            self,
            Op::AudioTranscriptions
                | Op::AudioTranslations
                | Op::ImagesEdits
                | Op::ImagesVariations
                | Op::FilesCreate
        )
    }

    /// The Gemini action name in `models/{model}:{action}`.
    pub fn gemini_action(self) -> Option<&'static str> {
        match self {
            Op::GenerateContent => Some("generateContent"),
            Op::StreamGenerateContent => Some("streamGenerateContent"),
            Op::CountTokens => Some("countTokens"),
            Op::EmbedContent => Some("embedContent"),
            Op::BatchEmbedContents => Some("batchEmbedContents"),
            Op::Predict => Some("predict"),
            Op::PredictLongRunning => Some("predictLongRunning"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    /// `GET/HEAD /` and `/api/hello`: the connectivity checks clients make before their
    /// first request; answered 200 without auth.
    WarmUp,
    /// `GET /v1/models` (OpenAI shape, or Anthropic's with an `anthropic-version` header).
    ListModels,
    /// `GET /v1beta/models` (Gemini shape).
    GeminiListModels,
    ManagementReload,
    ManagementConfigGet,
    ManagementConfigPut,
    ManagementLogs,
    /// `GET /v0/management/usage`: aggregated usage from the ledger.
    ManagementUsage,
    /// `GET /v0/management/usage/records`: the ledger's raw records.
    ManagementUsageRecords,
    /// `GET` (list) and `POST` (create) `/v0/management/keys`.
    ManagementKeys,
    /// `/v0/management/keys/{name}` (`GET`, `PATCH`, `DELETE`) and `.../rotate` (`POST`).
    ManagementKey {
        name: String,
        rotate: bool,
    },
    /// `GET /v0/management/audit`.
    ManagementAudit,
    /// `POST /v0/management/providers/{name}/reset`.
    ManagementProviderReset {
        provider: String,
    },
    /// `GET /v0/management/providers`: what `/v1/metrics/providers` says, for the console.
    ManagementProviders,
    /// `POST /v0/management/config/validate`: a YAML config checked like `-t`, not applied.
    ManagementConfigValidate,
    ManagementOther,
    /// `GET /console/` and its script and style: the web console, no auth header (the
    /// page asks for the management secret), but only where the management API answers.
    Console(ConsoleAsset),
    /// `GET /v1/responses` with `Upgrade: websocket` (Codex's Responses WebSocket).
    ResponsesWebSocket,
    /// `GET /v1/usage`: the calling key's budgets and spend.
    KeyUsage,
    /// `GET /v1/dashboard/billing/subscription`: the key's USD limit, one-api style.
    BillingSubscription,
    /// `GET /v1/dashboard/billing/usage`: the key's spend in cents over dates.
    BillingUsage,
    /// `GET /v1/metrics/providers`: per-provider, per-target health and statistics.
    ProviderStatus,
    /// A model request to forward. `gemini_model` is the `{model}` of a Gemini path.
    Proxy {
        op: Op,
        gemini_model: Option<String>,
    },
    /// A provider object by id (`GET /v1/files/{id}`, `POST /v1/batches/{id}/cancel`,
    /// `GET /v1beta/models/{m}/operations/{op}`, ...), or a list of them (`id: None`).
    Object {
        kind: ObjectKind,
        id: Option<String>,
    },
    /// A known path with the wrong method.
    WrongMethod {
        allowed: &'static str,
    },
    NotFound,
}

/// A percent-encoded path segment (a key or provider name) as text.
fn path_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Classifies a request by method and path (without the query string).
pub fn classify(method: &Method, path: &str) -> Endpoint {
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let want = |ok: bool, allowed: &'static str, e: Endpoint| {
        if ok {
            e
        } else {
            Endpoint::WrongMethod { allowed }
        }
    };
    let proxy = |op| Endpoint::Proxy {
        op,
        gemini_model: None,
    };
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match path {
        "/health" | "/healthz" => want(get, "GET", Endpoint::Health),
        "/" | "/api/hello" => want(get, "GET", Endpoint::WarmUp),
        "/v1/models" => want(get, "GET", Endpoint::ListModels),
        "/v1beta/models" => want(get, "GET", Endpoint::GeminiListModels),
        "/v1/metrics/providers" => want(get, "GET", Endpoint::ProviderStatus),
        "/v1/chat/completions" => want(post, "POST", proxy(Op::ChatCompletions)),
        "/v1/completions" => want(post, "POST", proxy(Op::Completions)),
        "/v1/embeddings" => want(post, "POST", proxy(Op::Embeddings)),
        "/v1/responses" => want(post, "POST", proxy(Op::Responses)),
        "/v1/responses/compact" => want(post, "POST", proxy(Op::ResponsesCompact)),
        "/v1/moderations" => want(post, "POST", proxy(Op::Moderations)),
        "/v1/images/generations" => want(post, "POST", proxy(Op::ImagesGenerations)),
        "/v1/audio/speech" => want(post, "POST", proxy(Op::AudioSpeech)),
        "/v1/audio/transcriptions" => want(post, "POST", proxy(Op::AudioTranscriptions)),
        "/v1/audio/translations" => want(post, "POST", proxy(Op::AudioTranslations)),
        "/v1/images/edits" => want(post, "POST", proxy(Op::ImagesEdits)),
        "/v1/images/variations" => want(post, "POST", proxy(Op::ImagesVariations)),
        "/v1/messages" => want(post, "POST", proxy(Op::Messages)),
        "/v1/messages/count_tokens" => want(post, "POST", proxy(Op::MessagesCountTokens)),
        "/v0/management/reload" => want(post, "POST", Endpoint::ManagementReload),
        "/v0/management/config" if get => Endpoint::ManagementConfigGet,
        "/v0/management/config" if method == Method::PUT => Endpoint::ManagementConfigPut,
        "/v0/management/config" => Endpoint::WrongMethod {
            allowed: "GET, PUT",
        },
        "/v0/management/logs" => want(get, "GET", Endpoint::ManagementLogs),
        "/v0/management/usage" => want(get, "GET", Endpoint::ManagementUsage),
        "/v0/management/usage/records" => want(get, "GET", Endpoint::ManagementUsageRecords),
        "/v1/usage" => want(get, "GET", Endpoint::KeyUsage),
        "/v1/dashboard/billing/subscription" | "/dashboard/billing/subscription" => {
            want(get, "GET", Endpoint::BillingSubscription)
        }
        "/v1/dashboard/billing/usage" | "/dashboard/billing/usage" => {
            want(get, "GET", Endpoint::BillingUsage)
        }
        "/v0/management/keys" if get || post => Endpoint::ManagementKeys,
        "/v0/management/keys" => Endpoint::WrongMethod {
            allowed: "GET, POST",
        },
        "/v0/management/audit" => want(get, "GET", Endpoint::ManagementAudit),
        "/v0/management/providers" => want(get, "GET", Endpoint::ManagementProviders),
        "/v0/management/config/validate" => want(post, "POST", Endpoint::ManagementConfigValidate),
        "/console" | "/console/index.html" => {
            want(get, "GET", Endpoint::Console(ConsoleAsset::Page))
        }
        "/console/console.js" => want(get, "GET", Endpoint::Console(ConsoleAsset::Script)),
        "/console/console.css" => want(get, "GET", Endpoint::Console(ConsoleAsset::Style)),
        "/console/icon.svg" => want(get, "GET", Endpoint::Console(ConsoleAsset::Icon)),
        p if p.starts_with("/v0/management/keys/") => {
            let rest = &p["/v0/management/keys/".len()..];
            match rest.strip_suffix("/rotate") {
                Some(name) => want(
                    post,
                    "POST",
                    Endpoint::ManagementKey {
                        name: path_segment(name),
                        rotate: true,
                    },
                ),
                None if rest.contains('/') => Endpoint::ManagementOther,
                None if get || method == Method::PATCH || method == Method::DELETE => {
                    Endpoint::ManagementKey {
                        name: path_segment(rest),
                        rotate: false,
                    }
                }
                None => Endpoint::WrongMethod {
                    allowed: "GET, PATCH, DELETE",
                },
            }
        }
        p if p.starts_with("/v0/management/providers/") && p.ends_with("/reset") => {
            let name = &p["/v0/management/providers/".len()..p.len() - "/reset".len()];
            want(
                post,
                "POST",
                Endpoint::ManagementProviderReset {
                    provider: path_segment(name),
                },
            )
        }
        p if p.starts_with("/v0/management/") => Endpoint::ManagementOther,
        "/v1/files" if post => proxy(Op::FilesCreate),
        "/v1/batches" if post => proxy(Op::BatchesCreate),
        "/v1/files" | "/v1/batches" => {
            let kind = if path == "/v1/files" {
                ObjectKind::File
            } else {
                ObjectKind::Batch
            };
            want(get, "GET, POST", Endpoint::Object { kind, id: None })
        }
        p if object_path(p).is_some() => match object_path(p) {
            Some((kind, id, allowed)) => {
                let ok = match allowed {
                    Allowed::Get => get,
                    Allowed::GetDelete => get || method == Method::DELETE,
                    Allowed::Post => post,
                };
                let allowed = match allowed {
                    Allowed::Get => "GET",
                    Allowed::GetDelete => "GET, DELETE",
                    Allowed::Post => "POST",
                };
                want(ok, allowed, Endpoint::Object { kind, id: Some(id) })
            }
            None => Endpoint::NotFound,
        },
        p => match gemini_path(p) {
            Some((model, op)) => want(
                post,
                "POST",
                Endpoint::Proxy {
                    op,
                    gemini_model: Some(model.to_string()),
                },
            ),
            None => Endpoint::NotFound,
        },
    }
}

enum Allowed {
    Get,
    GetDelete,
    Post,
}

/// The provider object a path names, with the methods it takes: files, batches, stored
/// responses and Gemini operations. The id is percent-decoded.
fn object_path(path: &str) -> Option<(ObjectKind, String, Allowed)> {
    let split = |rest: &str| -> (String, String) {
        match rest.split_once('/') {
            Some((id, tail)) => (path_segment(id), tail.to_string()),
            None => (path_segment(rest), String::new()),
        }
    };
    if let Some(rest) = path.strip_prefix("/v1/files/") {
        let (id, tail) = split(rest);
        return match tail.as_str() {
            "" => Some((ObjectKind::File, id, Allowed::GetDelete)),
            "content" => Some((ObjectKind::File, id, Allowed::Get)),
            _ => None,
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/batches/") {
        let (id, tail) = split(rest);
        return match tail.as_str() {
            "" => Some((ObjectKind::Batch, id, Allowed::Get)),
            "cancel" => Some((ObjectKind::Batch, id, Allowed::Post)),
            _ => None,
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/responses/") {
        let (id, tail) = split(rest);
        return match tail.as_str() {
            "" => Some((ObjectKind::Response, id, Allowed::GetDelete)),
            "cancel" => Some((ObjectKind::Response, id, Allowed::Post)),
            "input_items" => Some((ObjectKind::Response, id, Allowed::Get)),
            _ => None,
        };
    }
    // Gemini: GET /v1beta/{name}, the operation's name as the provider gave it
    // (`models/{model}/operations/{id}` for Veo, or `operations/{id}`).
    let name = path
        .strip_prefix("/v1beta/")
        .or_else(|| path.strip_prefix("/v1/"))?;
    let segments: Vec<&str> = name.split('/').collect();
    let is_operation = match segments.as_slice() {
        ["operations", op] => !op.is_empty(),
        ["models", model, "operations", op] => !model.is_empty() && !op.is_empty(),
        _ => false,
    };
    is_operation.then(|| (ObjectKind::Operation, path_segment(name), Allowed::Get))
}

/// `/v1beta/models/{model}:{action}` or `/v1/models/{model}:{action}`.
fn gemini_path(path: &str) -> Option<(&str, Op)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, action) = rest.rsplit_once(':')?;
    let op = match action {
        "generateContent" => Op::GenerateContent,
        "streamGenerateContent" => Op::StreamGenerateContent,
        "countTokens" => Op::CountTokens,
        "embedContent" => Op::EmbedContent,
        "batchEmbedContents" => Op::BatchEmbedContents,
        "predict" => Op::Predict,
        "predictLongRunning" => Op::PredictLongRunning,
        _ => return None,
    };
    (!model.is_empty() && !model.contains('/')).then_some((model, op))
}

/// The protocol a request most likely speaks, for shaping errors on paths that did not
/// classify (or before classification matters).
pub fn guess_protocol(path: &str, headers: &http::HeaderMap) -> Protocol {
    if path.contains("/v1beta/")
        || path.contains(":generateContent")
        || headers.contains_key("x-goog-api-key")
    {
        Protocol::Gemini
    } else if path.contains("/messages")
        || headers.contains_key("anthropic-version")
        || headers.contains_key("x-api-key")
    {
        Protocol::Anthropic
    } else if path.trim_end_matches('/').ends_with("/responses") {
        Protocol::Responses
    } else {
        Protocol::OpenAi
    }
}

/// A hint for an unknown path: the most likely intended endpoint.
pub fn not_found_hint(path: &str) -> String {
    let p = path.trim_end_matches('/');
    let suggestion = if p.contains("/v1/v1/") {
        Some(format!(
            "{} (the base URL already ends in /v1; drop one)",
            p.replacen("/v1/v1/", "/v1/", 1)
        ))
    } else if p.ends_with("/chat/completions") {
        Some("/v1/chat/completions (OpenAI clients: base URL http://HOST:PORT/v1)".to_string())
    } else if p.ends_with("/messages") {
        Some("/v1/messages (Anthropic clients: base URL http://HOST:PORT, without /v1)".to_string())
    } else if p.contains("generateContent") || p.contains("/models/") {
        Some(
            "/v1beta/models/{model}:generateContent (Gemini clients: base URL http://HOST:PORT)"
                .to_string(),
        )
    } else if p.ends_with("/responses") {
        Some("/v1/responses".to_string())
    } else if p.ends_with("/models") {
        Some("/v1/models".to_string())
    } else {
        None
    };
    match suggestion {
        Some(s) => format!("no endpoint at {p}; did you mean {s}?"),
        None => format!(
            "no endpoint at {p}; modelgate serves /v1/chat/completions, /v1/responses, /v1/messages, /v1beta/models/{{model}}:generateContent, /v1/embeddings and GET /v1/models"
        ),
    }
}

/// One entry of a model list.
pub struct ListedModel<'a> {
    pub id: &'a str,
    pub owned_by: &'a str,
}

pub fn openai_model_list(models: &[ListedModel]) -> serde_json::Value {
    json!({
        "object": "list",
        "data": models.iter().map(|m| json!({
            "id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by,
        })).collect::<Vec<_>>(),
    })
}

/// Anthropic's paged list: `limit` (1-1000, default 20), `after_id`, `before_id`.
pub fn anthropic_model_list(models: &[ListedModel], query: Option<&str>) -> serde_json::Value {
    let mut limit = 20usize;
    let (mut after, mut before) = (None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "limit" => limit = v.parse::<usize>().unwrap_or(20).clamp(1, 1000),
            "after_id" => after = Some(v.into_owned()),
            "before_id" => before = Some(v.into_owned()),
            _ => {}
        }
    }
    let position = |id: &Option<String>| {
        id.as_deref()
            .and_then(|id| models.iter().position(|m| m.id == id))
    };
    let (start, end) = match (position(&after), position(&before)) {
        (Some(a), _) => (a + 1, (a + 1 + limit).min(models.len())),
        (None, Some(b)) => (b.saturating_sub(limit), b),
        // A cursor that is gone (a reload removed the model): an empty last page, so a
        // client paging through cannot loop.
        _ if after.is_some() || before.is_some() => (0, 0),
        (None, None) => (0, limit.min(models.len())),
    };
    let page = &models[start.min(end)..end];
    let has_more = if page.is_empty() {
        false
    } else if before.is_some() && after.is_none() {
        start > 0
    } else {
        end < models.len()
    };
    json!({
        "data": page.iter().map(|m| json!({
            "type": "model", "id": m.id, "display_name": m.id, "created_at": "1970-01-01T00:00:00Z",
        })).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": page.first().map(|m| m.id),
        "last_id": page.last().map(|m| m.id),
    })
}

pub fn gemini_model_list(models: &[ListedModel]) -> serde_json::Value {
    json!({
        "models": models.iter().map(|m| json!({
            "name": format!("models/{}", m.id),
            "displayName": m.id,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths_ignoring_trailing_slash() {
        assert_eq!(
            classify(&Method::POST, "/v1/chat/completions/"),
            Endpoint::Proxy {
                op: Op::ChatCompletions,
                gemini_model: None
            }
        );
        assert_eq!(
            classify(
                &Method::POST,
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
            ),
            Endpoint::Proxy {
                op: Op::StreamGenerateContent,
                gemini_model: Some("gemini-2.5-pro".into())
            }
        );
        assert_eq!(
            classify(&Method::POST, "/v1/models/gemini-x:countTokens"),
            Endpoint::Proxy {
                op: Op::CountTokens,
                gemini_model: Some("gemini-x".into())
            }
        );
        assert_eq!(
            classify(&Method::GET, "/v1/chat/completions"),
            Endpoint::WrongMethod { allowed: "POST" }
        );
        assert_eq!(
            classify(&Method::POST, "/v1beta/models/x:explode"),
            Endpoint::NotFound
        );
        assert_eq!(classify(&Method::GET, "/v1/models"), Endpoint::ListModels);
        assert_eq!(classify(&Method::HEAD, "/"), Endpoint::WarmUp);
        assert_eq!(classify(&Method::HEAD, "/api/hello"), Endpoint::WarmUp);
        assert_eq!(classify(&Method::HEAD, "/anything"), Endpoint::NotFound);
        assert_eq!(classify(&Method::GET, "/anything"), Endpoint::NotFound);
    }

    #[test]
    fn anthropic_model_lists_page() {
        let ids = ["a", "b", "c", "d", "e"];
        let models: Vec<ListedModel> = ids
            .iter()
            .map(|id| ListedModel { id, owned_by: "x" })
            .collect();
        let v = anthropic_model_list(&models, Some("limit=2"));
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            (
                v["first_id"].clone(),
                v["last_id"].clone(),
                v["has_more"].clone()
            ),
            (json!("a"), json!("b"), json!(true))
        );
        let v = anthropic_model_list(&models, Some("limit=2&after_id=d"));
        assert_eq!(
            (v["first_id"].clone(), v["has_more"].clone()),
            (json!("e"), json!(false))
        );
        let v = anthropic_model_list(&models, Some("limit=2&before_id=c"));
        assert_eq!(
            (
                v["first_id"].clone(),
                v["last_id"].clone(),
                v["has_more"].clone()
            ),
            (json!("a"), json!("b"), json!(false))
        );
        let v = anthropic_model_list(&models, Some("after_id=gone"));
        assert_eq!(
            (v["data"].as_array().unwrap().len(), v["has_more"].clone()),
            (0, json!(false))
        );
        let v = anthropic_model_list(&models, None);
        assert_eq!(v["data"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn hints_name_the_right_path() {
        assert!(not_found_hint("/chat/completions").contains("/v1/chat/completions"));
        assert!(not_found_hint("/v1/v1/chat/completions").contains("drop one"));
        assert!(not_found_hint("/v2/messages").contains("/v1/messages"));
    }
}
