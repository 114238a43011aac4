//! Where calls on provider objects go (files, batches, stored responses, Gemini
//! operations). A create goes to the openai-kind provider its model names (or the only
//! one); a call on an id goes to the provider and credential that created the object, and
//! only for the key that did (any other key gets the 404 an unknown id gets); a list goes
//! to one provider and shows the key only its own objects (`ListFilter`).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::admission::{self, Admitted, Refused};
use super::ctx::{RequestCtx, RouteState};
use super::failover::{self, Candidate, Failover};
use crate::auth::ClientKey;
use crate::errors::{ErrorCode, GatewayError};
use crate::objects::{capture, ObjectKind};
use crate::protocol::{self, Op, Protocol};
use crate::routing::{ModelRoute, Resolved, Target};
use crate::runtime::State;
use crate::upstream::{Provider, ProviderKind};

/// Most of a list body held to filter it (a page of 10,000 files is about 3 MB).
const MAX_LIST_BYTES: usize = 32 * 1024 * 1024;

/// `POST /v1/files` and `POST /v1/batches`.
pub async fn admit_create(
    session: &mut Session,
    ctx: &mut RequestCtx,
    state: &State,
    op: Op,
) -> Result<Admitted, Refused> {
    let key = caller(ctx)?;
    let body = admission::read_body(session, ctx, op).await?;
    let what = if op == Op::FilesCreate {
        "a multipart/form-data form with 'file' and 'purpose'"
    } else {
        "a JSON object with 'input_file_id', 'endpoint' and 'completion_window'"
    };
    if body.is_empty() {
        let msg = format!("the request has no body; the OpenAI API expects {what}");
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).into());
    }
    let req = session.req_header();
    let path = canonical(req.uri.path());
    let query = admission::upstream_query(req.uri.query(), &["key", "model", "provider"]);
    if op == Op::FilesCreate {
        let content_type = header(session, http::header::CONTENT_TYPE.as_str()).unwrap_or_default();
        let form = protocol::form::peek(&content_type, &body)
            .await
            .map_err(|msg| GatewayError::new(ErrorCode::InvalidRequest, msg))?;
        let named = named_model(session).or(form.model.clone());
        let asked = query_param(session, "provider");
        let (provider, resolved) = choose_provider(ctx, &key, named.as_deref(), asked)?;
        let batch = form.purpose.as_deref() == Some("batch");
        // A batch file's lines get one provider's model names, so it goes to that one:
        // the model's weighted pick, without failing over to a provider they do not fit.
        let (provider, resolved) = match resolved {
            Some(r) if batch => {
                let picked = r
                    .route
                    .pick_first()
                    .and_then(|i| r.route.targets.get(i))
                    .filter(|t| t.provider.kind == ProviderKind::OpenAi)
                    .map(|t| t.provider.clone());
                (picked.unwrap_or(provider), None)
            }
            other => (provider, other),
        };
        // The provider's files API has no `model` field: the routing field is cut out.
        let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
        if let Some(part) = form.model_part.clone() {
            edits.push((part, Vec::new()));
        }
        // A batch's requests run at the provider as written: their models are checked
        // against the key's scope and given the provider's names.
        if let Some(span) = form.file_span.clone().filter(|_| batch) {
            let lines = batch_lines(ctx, &key, &provider, &body[span.clone()])?;
            edits.push((span, lines));
        }
        let body = splice_all(&body, edits);
        let out = Outgoing {
            op,
            body,
            path,
            query,
        };
        admission::admit_object_call(ctx, state, &key, named.as_deref()).await?;
        return Ok(forward(ctx, &key, out, Where::Route(provider, resolved)));
    }
    // A batch goes where its input file lives.
    if !key.budgets.is_empty() {
        let msg = format!("the API key {:?} has budgets, and a batch's cost is billed by the provider after it runs, where the budget cannot hold it; batches need a key without budgets", key.name);
        return Err(GatewayError::new(ErrorCode::ModelNotAllowed, msg).into());
    }
    #[derive(serde::Deserialize)]
    struct Batch {
        input_file_id: Option<String>,
    }
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        GatewayError::new(
            ErrorCode::InvalidRequest,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    let Some(file_id) = batch.input_file_id.filter(|f| !f.is_empty()) else {
        let msg = "the request is missing 'input_file_id', which the OpenAI API requires for /v1/batches (upload the requests with POST /v1/files, purpose \"batch\")";
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg)
            .with_param("input_file_id")
            .into());
    };
    let (provider, credential) = owned(ctx, state, &key, ObjectKind::File, &file_id).await?;
    let out = Outgoing {
        op,
        body,
        path,
        query,
    };
    admission::admit_object_call(ctx, state, &key, named_model(session).as_deref()).await?;
    Ok(forward(ctx, &key, out, Where::Object(provider, credential)))
}

/// A call on an object by id (`id: Some`), or a list (`None`).
pub async fn admit_call(
    session: &mut Session,
    ctx: &mut RequestCtx,
    state: &State,
    kind: ObjectKind,
    id: Option<String>,
) -> Result<Admitted, Refused> {
    let key = caller(ctx)?;
    let op = Op::Object(kind);
    let body = admission::read_body(session, ctx, op).await?;
    let req = session.req_header();
    let path = canonical(req.uri.path());
    let deleting = req.method == http::Method::DELETE;
    // A list's routing parameters are the gateway's; an object call's query is the API's.
    let drop: &[&str] = if id.is_none() {
        &["key", "model", "provider"]
    } else {
        &["key"]
    };
    let query = admission::upstream_query(req.uri.query(), drop);
    let out = Outgoing {
        op,
        body,
        path,
        query,
    };
    let to = match id {
        None => {
            let (model, asked) = (named_model(session), query_param(session, "provider"));
            let (provider, resolved) = choose_provider(ctx, &key, model.as_deref(), asked)?;
            let allowed = state
                .objects
                .ids_of(&key.name, kind, &provider.name, state.store())
                .await
                .map_err(store_unavailable)?;
            ctx.response.list_filter = Some(allowed);
            Where::Route(provider, resolved)
        }
        Some(id) => {
            let (provider, credential) = owned(ctx, state, &key, kind, &id).await?;
            if deleting {
                ctx.response.forget = Some(id);
            }
            Where::Object(provider, credential)
        }
    };
    // Last, as for model requests: a call refused for its id or model uses no quota.
    admission::admit_object_call(ctx, state, &key, named_model(session).as_deref()).await?;
    Ok(forward(ctx, &key, out, to))
}

/// `body` with each range replaced (ranges do not overlap).
fn splice_all(body: &Bytes, mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)>) -> Bytes {
    if edits.is_empty() {
        return body.clone();
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = BytesMut::with_capacity(body.len());
    let mut at = 0;
    for (range, with) in edits {
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(&with);
        at = range.end;
    }
    out.extend_from_slice(&body[at..]);
    out.freeze()
}

/// A batch file's JSON lines with each request's `body.model` resolved like a request's
/// model (it must exist and be in the key's scope) and replaced by the provider's name
/// for it at `provider`, where the file goes. Errors name the line.
fn batch_lines(
    ctx: &RequestCtx,
    key: &ClientKey,
    provider: &Provider,
    content: &[u8],
) -> Result<Vec<u8>, GatewayError> {
    let bad = |msg: String| GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("file");
    let text = std::str::from_utf8(content)
        .map_err(|_| bad("the batch file is not UTF-8 text (JSON lines)".into()))?;
    let mut out = Vec::with_capacity(content.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let json = line.trim_end_matches(['\n', '\r']);
        if json.trim().is_empty() {
            out.extend_from_slice(line.as_bytes());
            continue;
        }
        let mut v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| bad(format!("line {n} of the batch file is not JSON: {e}")))?;
        let Some(name) = v["body"]["model"].as_str().map(str::to_string) else {
            return Err(bad(format!("line {n} of the batch file has no body.model")));
        };
        let shown: String = name.chars().take(200).collect();
        let Some(resolved) = ctx.config.models.resolve(&name) else {
            let msg = format!("line {n} of the batch file names the model {shown:?}, which does not exist on this gateway");
            return Err(GatewayError::new(ErrorCode::ModelNotFound, msg).with_param("file"));
        };
        if !key.allows_model(&[&name, &resolved.route.name]) {
            let msg = format!("line {n} of the batch file names the model {shown:?}, which the API key {:?} may not use", key.name);
            return Err(GatewayError::new(ErrorCode::ModelNotAllowed, msg).with_param("file"));
        }
        let route = &resolved.route;
        let Some(t) = route
            .targets
            .iter()
            .position(|t| t.provider.name == provider.name)
        else {
            return Err(bad(format!("line {n} of the batch file names the model {shown:?}, which provider {:?} (where this file goes) does not serve", provider.name)));
        };
        let upstream = route.upstream_model(t, &name);
        if upstream == name {
            // Unchanged lines keep their bytes.
            out.extend_from_slice(line.as_bytes());
            continue;
        }
        v["body"]["model"] = upstream.into();
        out.extend_from_slice(serde_json::to_string(&v).unwrap_or_default().as_bytes());
        out.extend_from_slice(&line.as_bytes()[json.len()..]);
    }
    Ok(out)
}

fn caller(ctx: &RequestCtx) -> Result<Arc<ClientKey>, GatewayError> {
    ctx.key
        .clone()
        .ok_or_else(|| GatewayError::new(ErrorCode::Internal, "no key for an object request"))
}

fn canonical(path: &str) -> String {
    match path {
        p if p.len() > 1 => p.trim_end_matches('/').to_string(),
        p => p.to_string(),
    }
}

fn header(session: &Session, name: &str) -> Option<String> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn query_param(session: &Session, name: &str) -> Option<String> {
    let q = session.req_header().uri.query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The model a create or list names: `?model=`, else `x-modelgate-model`.
fn named_model(session: &Session) -> Option<String> {
    query_param(session, "model").or_else(|| header(session, "x-modelgate-model"))
}

fn store_unavailable(e: String) -> GatewayError {
    log::warn!("cannot read provider object ids from the store: {e}");
    GatewayError::new(
        ErrorCode::StoreUnavailable,
        "the store that remembers where files, batches and responses live cannot be read; retry shortly",
    )
}

/// The openai-kind provider a create or list goes to: the named model's (checked against
/// the key's scope), the `?provider=NAME` asked for, or the only one there is. A key
/// limited to some models must name one of them.
fn choose_provider(
    ctx: &mut RequestCtx,
    key: &ClientKey,
    model: Option<&str>,
    asked: Option<String>,
) -> Result<(Arc<Provider>, Option<Resolved>), GatewayError> {
    let config = ctx.config.clone();
    if let Some(model) = model {
        let (resolved, _) = admission::resolve_in_scope(ctx, model)?;
        let Some(t) = resolved
            .route
            .targets
            .iter()
            .find(|t| t.provider.kind == ProviderKind::OpenAi)
        else {
            let msg = format!("the model {model:?} is served by no openai-kind provider, and files and batches live only at those");
            return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("model"));
        };
        return Ok((t.provider.clone(), Some(resolved)));
    }
    if key.scope.is_some() {
        let msg = format!("the API key {:?} may use only some models: name one with ?model=NAME (or an x-modelgate-model header, or a 'model' form field) to choose where files and batches live", key.name);
        return Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("model"));
    }
    if let Some(name) = asked {
        return match config.providers.get(&name) {
            Some(p) if p.kind == ProviderKind::OpenAi => Ok((p.clone(), None)),
            Some(_) => {
                let msg = format!(
                    "provider {name:?} is not openai-kind; files and batches live only at those"
                );
                Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("provider"))
            }
            None => {
                let msg = format!("there is no provider {name:?} on this gateway");
                Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("provider"))
            }
        };
    }
    let openai: Vec<&Arc<Provider>> = config
        .providers
        .values()
        .filter(|p| p.kind == ProviderKind::OpenAi)
        .collect();
    match openai.as_slice() {
        [only] => Ok(((*only).clone(), None)),
        [] => Err(GatewayError::new(
            ErrorCode::InvalidRequest,
            "files and batches live at openai-kind providers, and this gateway has none",
        )),
        several => {
            let names: Vec<&str> = several.iter().map(|p| p.name.as_str()).collect();
            let msg = format!("this gateway has several openai-kind providers ({}); choose where with ?model=NAME (or an x-modelgate-model header, or a 'model' form field)", names.join(", "));
            Err(GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("model"))
        }
    }
}

/// The provider and credential holding `id`, when `key` made it; every other case is the
/// 404 of an unknown id (no key learns that another key's object exists).
async fn owned(
    ctx: &RequestCtx,
    state: &State,
    key: &ClientKey,
    kind: ObjectKind,
    id: &str,
) -> Result<(Arc<Provider>, usize), GatewayError> {
    let unknown = || {
        let msg = format!(
            "no {} {id:?} was created through this gateway with this API key (or it was forgotten after store.retention.objects)",
            kind.as_str()
        );
        GatewayError::new(ErrorCode::NotFound, msg)
    };
    if !capture::plausible_id(id) {
        return Err(unknown());
    }
    let owner = state
        .objects
        .find(id, state.store())
        .await
        .map_err(store_unavailable)?
        .filter(|o| o.kind == kind && o.key == key.name)
        .ok_or_else(unknown)?;
    let Some(provider) = ctx.config.providers.get(&owner.provider) else {
        let msg = format!(
            "the {} {id:?} lives at provider {:?}, which is no longer configured",
            kind.as_str(),
            owner.provider
        );
        return Err(GatewayError::new(ErrorCode::NotFound, msg));
    };
    let Some(credential) = provider.credential_by_id(&owner.credential) else {
        let msg = format!(
            "the {} {id:?} was created with a credential of provider {:?} that is no longer configured",
            kind.as_str(),
            owner.provider
        );
        return Err(GatewayError::new(ErrorCode::NotFound, msg));
    };
    Ok((provider.clone(), credential))
}

/// The credential a key's new objects at `provider` are made with, and its lists read
/// with: always the same one per key (from its name), so a list sees every object the key
/// made there even when the provider's credentials belong to separate accounts.
fn credential_of(key: &str, provider: &Provider) -> usize {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) % provider.credential_count().max(1) as u64) as usize
}

/// What goes out: the client's request, its path canonical and its query cleaned.
struct Outgoing {
    op: Op,
    body: Bytes,
    path: String,
    query: Option<String>,
}

/// Where it goes.
enum Where {
    /// A create or a list: the named model's openai-kind targets, or (no model) this
    /// provider; with the key's own credential at each.
    Route(Arc<Provider>, Option<Resolved>),
    /// An object's provider and credential.
    Object(Arc<Provider>, usize),
}

fn forward(ctx: &RequestCtx, key: &ClientKey, out: Outgoing, to: Where) -> Admitted {
    let (resolved, candidates) = match to {
        Where::Route(_, Some(r)) => {
            // Fallbacks outside the key's scope are not for it here either.
            let allowed = |name: &str| key.allows_model(&[name]);
            let candidates = failover::candidates(&ctx.config, &r, &allowed)
                .into_iter()
                .filter(|c| c.provider().kind == ProviderKind::OpenAi)
                .map(|c| Candidate {
                    credential: Some(credential_of(&key.name, c.provider())),
                    ..c
                })
                .collect();
            (r, candidates)
        }
        Where::Route(provider, None) => {
            let credential = credential_of(&key.name, &provider);
            pinned(provider, credential)
        }
        Where::Object(provider, credential) => pinned(provider, credential),
    };
    let Outgoing {
        op,
        body,
        path,
        query,
    } = out;
    Admitted::Forward(Box::new(RouteState {
        op,
        body,
        model_span: None,
        form: op.takes_form(),
        stream: false,
        stream_usage: false,
        unstored: false,
        path,
        query,
        resolved,
        failover: Failover::new(candidates),
        decoded: None,
    }))
}

/// A Responses request continuing a stored response (`previous_response_id`) can only be
/// answered where that response is: the candidates are cut down to that provider, pinned
/// to its credential. An id the key did not make here is the 404 of an unknown response.
pub async fn pin_previous_response(
    ctx: &RequestCtx,
    state: &State,
    key: &ClientKey,
    id: &str,
    candidates: Vec<Candidate>,
) -> Result<Vec<Candidate>, GatewayError> {
    let stored_anywhere = candidates
        .iter()
        .any(|c| c.provider().wire_protocol(Protocol::Responses) == Protocol::Responses);
    // On a translated route the translation refuses it, saying why.
    if !stored_anywhere {
        return Ok(candidates);
    }
    let (provider, credential) = owned(ctx, state, key, ObjectKind::Response, id)
        .await
        .map_err(|e| e.with_param("previous_response_id"))?;
    let pinned: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| c.provider().name == provider.name)
        .map(|c| Candidate {
            credential: Some(credential),
            ..c
        })
        .collect();
    if pinned.is_empty() {
        let msg = format!("the response {id:?} is stored at provider {:?}, which does not serve this model; continue it with a model served there", provider.name);
        return Err(
            GatewayError::new(ErrorCode::InvalidRequest, msg).with_param("previous_response_id")
        );
    }
    Ok(pinned)
}

/// A successful answer to an object call (or a Responses request): a deleted id is
/// forgotten before the client hears of the deletion (its next call on the id is then
/// already unknown here); ids handed out are watched for; a list is cut to the key's.
pub fn answered(
    ctx: &mut RequestCtx,
    state: &State,
    resp: &mut pingora::http::ResponseHeader,
) -> pingora::Result<()> {
    if let Some(id) = ctx.response.forget.take() {
        state.objects.forget(&id, state.store());
    }
    if let Some(allowed) = ctx.response.list_filter.take() {
        // A list hands out nothing new: only what it shows is filtered.
        resp.remove_header(&http::header::CONTENT_LENGTH);
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        ctx.response.plan = super::response::BodyPlan::FilterList(ListFilter::new(allowed));
        return Ok(());
    }
    if let (Some(route), Some(attempt)) = (&ctx.route, &ctx.attempt) {
        ctx.response.capture = capture_for(route, attempt);
    }
    Ok(())
}

/// What to read ids from in a successful answer to `route`'s request, if anything.
fn capture_for(route: &RouteState, attempt: &super::ctx::Attempt) -> Option<capture::Capture> {
    if attempt.translated.is_some() {
        return None;
    }
    match route.op {
        Op::FilesCreate | Op::BatchesCreate | Op::Object(ObjectKind::Batch) => {
            Some(capture::Capture::json())
        }
        Op::Responses if attempt.provider.kind == ProviderKind::OpenAi && !route.unstored => {
            Some(if route.stream {
                capture::Capture::events()
            } else {
                capture::Capture::json()
            })
        }
        Op::PredictLongRunning => Some(capture::Capture::json()),
        _ => None,
    }
}

/// At the end of the answer: the ids it handed out are remembered for the calling key, at
/// the attempt's provider and credential.
pub fn remember(ctx: &mut RequestCtx, state: &State) {
    let Some(mut c) = ctx.response.capture.take() else {
        return;
    };
    let (Some(attempt), Some(route), Some(key)) = (&ctx.attempt, &ctx.route, &ctx.key) else {
        return;
    };
    let credential = route.failover.current().map_or(0, |p| p.credential);
    state.objects.remember(
        c.finish(),
        &attempt.provider.name,
        &attempt.provider.credential_id(credential),
        &key.name,
        ctx.config.store.object_retention,
        state.store(),
    );
}

/// A route of one target: `provider` with `credential`.
fn pinned(provider: Arc<Provider>, credential: usize) -> (Resolved, Vec<Candidate>) {
    let route = Arc::new(ModelRoute::new(
        String::new(),
        Vec::new(),
        vec![Target {
            provider,
            model: None,
            weight: 1,
            price: None,
        }],
        Vec::new(),
        false,
    ));
    let candidates = vec![Candidate {
        route: route.clone(),
        index: 0,
        upstream_model: String::new(),
        credential: Some(credential),
    }];
    let resolved = Resolved {
        route,
        requested: String::new(),
    };
    (resolved, candidates)
}

/// A list's body, held whole and given back with only the calling key's objects in its
/// `data` (`has_more` and `last_id` stay the provider's, so paging goes on).
pub struct ListFilter {
    allowed: HashSet<String>,
    body: BytesMut,
    overflow: bool,
}

impl ListFilter {
    pub fn new(allowed: HashSet<String>) -> Self {
        ListFilter {
            allowed,
            body: BytesMut::new(),
            overflow: false,
        }
    }

    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            if self.body.len() + c.len() > MAX_LIST_BYTES {
                self.overflow = true;
            } else if !self.overflow {
                self.body.extend_from_slice(&c);
            }
        }
        if !end {
            return None;
        }
        Some(self.filtered())
    }

    fn filtered(&mut self) -> Bytes {
        let empty = || Bytes::from_static(br#"{"object":"list","data":[],"has_more":false}"#);
        if self.overflow {
            log::warn!("a provider's list was over {MAX_LIST_BYTES} bytes; answered as empty (use a smaller limit=)");
            return empty();
        }
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&self.body) else {
            return empty();
        };
        if let Some(data) = v.get_mut("data").and_then(|d| d.as_array_mut()) {
            data.retain(|item| {
                item.get("id")
                    .and_then(|i| i.as_str())
                    .is_some_and(|id| self.allowed.contains(id))
            });
            let first = data.first().and_then(|i| i.get("id")).cloned();
            if let Some(obj) = v.as_object_mut() {
                if obj.contains_key("first_id") {
                    obj.insert("first_id".into(), first.unwrap_or(serde_json::Value::Null));
                }
            }
        }
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_shows_only_the_keys_own_objects() {
        let mut f = ListFilter::new(["file-b".to_string()].into_iter().collect());
        let body = br#"{"object":"list","data":[{"id":"file-a","object":"file"},{"id":"file-b","object":"file"}],"first_id":"file-a","last_id":"file-b","has_more":true}"#;
        assert!(f
            .feed(Some(Bytes::from_static(&body[..20])), false)
            .is_none());
        let out = f.feed(Some(Bytes::from_static(&body[20..])), true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["id"], "file-b");
        assert_eq!(v["first_id"], "file-b");
        assert_eq!(v["last_id"], "file-b");
        assert_eq!(v["has_more"], true);
    }
}
