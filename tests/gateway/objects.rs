//! Provider objects: files, batches, stored responses and Gemini operations are created
//! where a model routes (or the only openai-kind provider), and every later call on their
//! id goes to the provider and credential that created them, for the key that did only;
//! lists show a key its own objects; the ids survive a restart.

use crate::support::postgres::Postgres;
use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const BOUNDARY: &str = "----modelgate-objects-test";
const K1: &str = "sk-objects-key-0001";
const K2: &str = "sk-objects-key-0002";
const K3: &str = "sk-objects-key-0003";

/// One stored object at the mock: the credential that made it, its JSON, its content.
type Objects = Arc<Mutex<HashMap<String, (String, Value, String)>>>;

fn not_found(id: &str) -> Reply {
    Reply::Json(
        404,
        json!({"error": {"message": format!("No such object: {id}"), "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

/// The value of a text field of a multipart body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let marker = format!("name=\"{name}\"\r\n\r\n");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find("\r\n--")? + start;
    Some(text[start..end].to_string())
}

/// An OpenAI files, batches and responses API (shapes from the OpenAPI document) where,
/// as at OpenAI, an object is visible only to the credential that created it.
fn objects_api(mock: &MockProvider, name: &'static str) -> Objects {
    let objects: Objects = Arc::default();
    let seq = Arc::new(AtomicUsize::new(0));
    let store = objects.clone();
    mock.reply(move |r| {
        let cred = r.header("authorization").unwrap_or_default().to_string();
        let path = r.uri.split('?').next().unwrap_or_default().to_string();
        let mut objs = store.lock().unwrap();
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let visible = |objs: &HashMap<String, (String, Value, String)>, id: &str| {
            objs.get(id).filter(|(c, _, _)| *c == cred).cloned()
        };
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "files"]) => {
                if form_field(&r.body, "model").is_some() {
                    return Reply::Json(400, json!({"error": {"message": "Unrecognized request argument supplied: model", "type": "invalid_request_error", "param": null, "code": null}}));
                }
                let purpose = form_field(&r.body, "purpose").unwrap_or_default();
                let id = format!("file-{name}-{n}");
                let obj = json!({"id": id, "object": "file", "bytes": r.body.len(), "created_at": 1700000000,
                    "filename": "requests.jsonl", "purpose": purpose, "status": "processed"});
                let content = form_field_file(&r.body);
                objs.insert(id, (cred, obj.clone(), content));
                Reply::Json(200, obj)
            }
            ("GET", ["v1", "files"]) => {
                let mut data: Vec<Value> = objs
                    .iter()
                    .filter(|(id, (c, _, _))| *c == cred && id.starts_with("file-"))
                    .map(|(_, (_, v, _))| v.clone())
                    .collect();
                data.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_string());
                let (first, last) = (data.first().map(|v| v["id"].clone()), data.last().map(|v| v["id"].clone()));
                Reply::Json(200, json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false}))
            }
            ("GET", ["v1", "files", id]) => match visible(&objs, id) {
                Some((_, v, _)) => Reply::Json(200, v),
                None => not_found(id),
            },
            ("GET", ["v1", "files", id, "content"]) => match visible(&objs, id) {
                Some((_, _, content)) => Reply::Raw(200, "application/octet-stream", content),
                None => not_found(id),
            },
            ("DELETE", ["v1", "files", id]) => match visible(&objs, id) {
                Some(_) => {
                    objs.remove(*id);
                    Reply::Json(200, json!({"id": id, "object": "file", "deleted": true}))
                }
                None => not_found(id),
            },
            ("POST", ["v1", "batches"]) => {
                let input = r.json()["input_file_id"].as_str().unwrap_or_default().to_string();
                if visible(&objs, &input).is_none() {
                    return not_found(&input);
                }
                let id = format!("batch_{name}_{n}");
                let output = format!("file-{name}-out-{n}");
                let out_obj = json!({"id": output, "object": "file", "bytes": 2, "created_at": 1700000000,
                    "filename": "batch_output.jsonl", "purpose": "batch_output", "status": "processed"});
                objs.insert(output.clone(), (cred.clone(), out_obj, format!("{{\"custom_id\":\"r1\",\"from\":\"{name}\"}}\n")));
                let batch = json!({"id": id, "object": "batch", "endpoint": r.json()["endpoint"], "errors": null,
                    "input_file_id": input, "completion_window": "24h", "status": "completed",
                    "output_file_id": output, "error_file_id": null, "created_at": 1700000000,
                    "request_counts": {"total": 1, "completed": 1, "failed": 0}, "metadata": null});
                objs.insert(id, (cred, batch.clone(), String::new()));
                Reply::Json(200, batch)
            }
            ("GET", ["v1", "batches", id]) => match visible(&objs, id) {
                Some((_, v, _)) => Reply::Json(200, v),
                None => not_found(id),
            },
            ("POST", ["v1", "batches", id, "cancel"]) => match visible(&objs, id) {
                Some((_, mut v, _)) => {
                    v["status"] = "cancelling".into();
                    Reply::Json(200, v)
                }
                None => not_found(id),
            },
            ("POST", ["v1", "responses"]) => {
                let id = format!("resp_{name}_{n}");
                let model = r.json()["model"].clone();
                let obj = json!({"id": id, "object": "response", "created_at": 1700000000, "status": "completed",
                    "model": model, "output": [{"type": "message", "id": format!("msg_{n}"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": format!("hi from {name}"), "annotations": []}]}],
                    "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}});
                objs.insert(id, (cred, obj.clone(), String::new()));
                if r.json()["stream"] == true {
                    let created = json!({"type": "response.created", "sequence_number": 0, "response": obj});
                    let done = json!({"type": "response.completed", "sequence_number": 1, "response": obj});
                    Reply::Sse(vec![
                        format!("event: response.created\ndata: {created}\n\n"),
                        format!("event: response.completed\ndata: {done}\n\n"),
                    ], std::time::Duration::from_millis(5))
                } else {
                    Reply::Json(200, obj)
                }
            }
            ("GET", ["v1", "responses", id]) => match visible(&objs, id) {
                Some((_, v, _)) => Reply::Json(200, v),
                None => not_found(id),
            },
            ("GET", ["v1", "responses", id, "input_items"]) => match visible(&objs, id) {
                Some(_) => Reply::Json(200, json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false})),
                None => not_found(id),
            },
            ("POST", ["v1", "responses", id, "cancel"]) => match visible(&objs, id) {
                Some((_, v, _)) => Reply::Json(200, v),
                None => not_found(id),
            },
            ("DELETE", ["v1", "responses", id]) => match visible(&objs, id) {
                Some(_) => {
                    objs.remove(*id);
                    Reply::Json(200, json!({"id": id, "object": "response", "deleted": true}))
                }
                None => not_found(id),
            },
            _ => not_found(&path),
        }
    });
    objects
}

/// The bytes of the (one) file part of a multipart body.
fn form_field_file(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Some(at) = text.find("filename=") else {
        return String::new();
    };
    let start = text[at..]
        .find("\r\n\r\n")
        .map(|i| at + i + 4)
        .unwrap_or(at);
    let end = text[start..]
        .find("\r\n--")
        .map(|i| start + i)
        .unwrap_or(start);
    text[start..end].to_string()
}

fn form(parts: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
    let parts: Vec<(&str, Option<&str>, &[u8])> = parts
        .iter()
        .map(|(n, f, v)| (*n, *f, v.as_bytes()))
        .collect();
    multipart_form(BOUNDARY, &parts)
}

async fn upload(
    gw: &Gateway,
    query: &str,
    key: &str,
    parts: &[(&str, Option<&str>, &str)],
) -> (u16, Value, String) {
    let r = client()
        .post(format!("{}/v1/files{query}", gw.url))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form(parts))
        .send()
        .await
        .unwrap();
    answer(r).await
}

async fn answer(r: reqwest::Response) -> (u16, Value, String) {
    let status = r.status().as_u16();
    let provider = r
        .headers()
        .get("x-modelgate-provider")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, v, provider)
}

async fn call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> (u16, Value, String) {
    let r = client()
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    answer(r).await
}

fn two_providers(a: &MockProvider, b: &MockProvider) -> Config {
    Config::new()
        .provider_with(
            "a",
            Kind::OpenAi,
            &a.url(),
            "credentials: [cred-a1, cred-a2]",
        )
        .provider_with("b", Kind::OpenAi, &b.url(), "credentials: [cred-b1]")
        .model("m", "targets: [{ provider: a }, { provider: b }]")
        .model("on-a", "targets: [{ provider: a, model: a-real-model }]")
        .model(
            "spread",
            "targets: [{ provider: a, model: a-name }, { provider: b, model: b-name }]",
        )
        .key("k1", K1)
        .key("k2", K2)
        .key_with("k3", K3, "models: [m]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_batches_go_back_to_where_they_were_made() {
    let (a, b) = (
        MockProvider::start("a").await,
        MockProvider::start("b").await,
    );
    objects_api(&a, "a");
    objects_api(&b, "b");
    let mut gw = Gateway::start("", &two_providers(&a, &b).yaml()).await;
    let lines = "{\"custom_id\":\"r1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n";

    // Creates spread over the model's targets; each file is then read back from its own.
    let mut made = Vec::new();
    for i in 0..4 {
        let parts: &[(&str, Option<&str>, &str)] = if i % 2 == 0 {
            &[
                ("purpose", None, "batch"),
                ("file", Some("requests.jsonl"), lines),
            ]
        } else {
            // The routing field in the form, cut out before the provider sees it.
            &[
                ("purpose", None, "batch"),
                ("model", None, "m"),
                ("file", Some("requests.jsonl"), lines),
            ]
        };
        let query = if i % 2 == 0 { "?model=m" } else { "" };
        let (status, v, provider) = upload(&gw, query, K1, parts).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["object"], "file");
        made.push((v["id"].as_str().unwrap().to_string(), provider));
    }
    let providers: std::collections::HashSet<_> = made.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(
        providers.len(),
        2,
        "creates follow the model's weights: {made:?}"
    );
    for (id, provider) in &made {
        for _ in 0..5 {
            let (status, v, p) =
                call(&gw, reqwest::Method::GET, &format!("/v1/files/{id}"), K1).await;
            assert_eq!((status, &p), (200, provider), "{v}");
            assert_eq!(v["id"], id.as_str());
        }
        let r = client()
            .get(format!("{}/v1/files/{id}/content", gw.url))
            .bearer_auth(K1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), lines);
        // Another key never reaches it, and learns nothing about it.
        let (status, v, _) = call(&gw, reqwest::Method::GET, &format!("/v1/files/{id}"), K2).await;
        assert_eq!(status, 404);
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (status, v, _) = call(&gw, reqwest::Method::GET, "/v1/files/file-never-made", K1).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Lists show the calling key its own objects only.
    let on_a = made.iter().filter(|(_, p)| p == "a").count();
    let (status, v, p) = call(&gw, reqwest::Method::GET, "/v1/files?provider=a", K1).await;
    assert_eq!((status, p.as_str()), (200, "a"), "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), on_a, "{v}");
    let (_, v, _) = call(&gw, reqwest::Method::GET, "/v1/files?provider=a", K2).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0, "{v}");
    let (status, v, _) = call(&gw, reqwest::Method::GET, "/v1/files", K1).await;
    assert_eq!(
        status, 400,
        "two openai-kind providers: the client must choose"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("?model=NAME"),
        "{v}"
    );

    // A batch goes where its input file is; its output file is then found there too.
    let (file_on_b, _) = made.iter().find(|(_, p)| p == "b").unwrap().clone();
    let r = gw
        .post("/v1/batches", K1, json!({"input_file_id": file_on_b, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    let (status, batch, p) = answer(r).await;
    assert_eq!((status, p.as_str()), (200, "b"), "{batch}");
    let batch_id = batch["id"].as_str().unwrap().to_string();
    let (status, got, p) = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/batches/{batch_id}"),
        K1,
    )
    .await;
    assert_eq!((status, p.as_str()), (200, "b"), "{got}");
    let output = got["output_file_id"].as_str().unwrap().to_string();
    let r = client()
        .get(format!("{}/v1/files/{output}/content", gw.url))
        .bearer_auth(K1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"from\":\"b\""));
    let (status, v, p) = call(
        &gw,
        reqwest::Method::POST,
        &format!("/v1/batches/{batch_id}/cancel"),
        K1,
    )
    .await;
    assert_eq!(
        (status, p.as_str(), v["status"].as_str()),
        (200, "b", Some("cancelling"))
    );
    let r = gw
        .post("/v1/batches", K2, json!({"input_file_id": file_on_b, "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "another key's file cannot feed a batch");

    // A batch file's models are checked against the key's scope and given the names of
    // the provider the file goes to.
    let line = |model: &str| {
        format!("{{\"custom_id\":\"r1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"{model}\",\"messages\":[]}}}}\n")
    };
    let aliased = format!("{}\n{}", line("m"), line("on-a"));
    let parts: &[(&str, Option<&str>, &str)] = &[
        ("purpose", None, "batch"),
        ("file", Some("b.jsonl"), &aliased),
    ];
    let (status, v, p) = upload(&gw, "?provider=a", K1, parts).await;
    assert_eq!((status, p.as_str()), (200, "a"), "{v}");
    let stored = String::from_utf8_lossy(&a.last().body).to_string();
    assert!(
        stored.contains("\"model\":\"a-real-model\"") && !stored.contains("on-a"),
        "{stored}"
    );
    assert!(
        stored.contains(&line("m")),
        "an unchanged line keeps its bytes: {stored}"
    );
    // Spread over two providers, each batch file carries the names of the one it went to.
    let spread = line("spread");
    let mut went = std::collections::HashSet::new();
    for _ in 0..2 {
        let parts: &[(&str, Option<&str>, &str)] = &[
            ("purpose", None, "batch"),
            ("file", Some("b.jsonl"), &spread),
        ];
        let (status, v, p) = upload(&gw, "?model=spread", K1, parts).await;
        assert_eq!(status, 200, "{v}");
        let mock = if p == "a" { &a } else { &b };
        let stored = String::from_utf8_lossy(&mock.last().body).to_string();
        assert!(
            stored.contains(&format!("\"model\":\"{p}-name\"")),
            "{p}: {stored}"
        );
        went.insert(p);
    }
    assert_eq!(went.len(), 2, "batch files follow the model's weights too");
    let one = line("on-a");
    let narrow = &[
        ("purpose", None, "batch"),
        ("file", Some("b.jsonl"), one.as_str()),
    ];
    let (status, v, _) = upload(&gw, "?model=m", K3, narrow).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 1"),
        "{v}"
    );
    let (status, v, _) = upload(&gw, "?provider=b", K1, narrow).await;
    assert_eq!(status, 400, "on-a is not served by b: {v}");

    // A deleted file is forgotten; the others survive a restart (the store keeps them).
    let (deleted, _) = made[0].clone();
    let (status, v, _) = call(
        &gw,
        reqwest::Method::DELETE,
        &format!("/v1/files/{deleted}"),
        K1,
    )
    .await;
    assert_eq!((status, &v["deleted"]), (200, &json!(true)));
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/files/{deleted}"),
        K1,
    )
    .await;
    assert_eq!(status, 404);
    let gets_before = a.requests().len() + b.requests().len();
    gw.signal("TERM");
    gw.restart().await;
    for (id, provider) in &made[1..] {
        let (status, _, p) = call(&gw, reqwest::Method::GET, &format!("/v1/files/{id}"), K1).await;
        assert_eq!((status, &p), (200, provider), "after a restart");
    }
    assert_eq!(a.requests().len() + b.requests().len(), gets_before + 3);
    let logs = gw.logs();
    assert!(
        !logs.contains("cred-a") && !logs.contains("cred-b"),
        "no credential in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_responses_and_operations_go_back_to_their_provider() {
    let (a, b) = (
        MockProvider::start("a").await,
        MockProvider::start("b").await,
    );
    objects_api(&a, "a");
    objects_api(&b, "b");
    let g = MockProvider::start("g").await;
    g.reply(|r| match (r.method.as_str(), r.uri.as_str()) {
        ("POST", "/v1beta/models/veo-3:predictLongRunning") => {
            Reply::Json(200, json!({"name": "models/veo-3/operations/op-7"}))
        }
        ("GET", "/v1beta/models/veo-3/operations/op-7") if r.header("x-goog-api-key") == Some("cred-g") => {
            Reply::Json(200, json!({"name": "models/veo-3/operations/op-7", "done": true,
                "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": "https://example.invalid/v.mp4"}}]}}}))
        }
        _ => Reply::Json(404, json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})),
    });
    let cfg = two_providers(&a, &b)
        .provider_with("g", Kind::Gemini, &g.url(), "credentials: [cred-g]")
        .model("veo", "targets: [{ provider: g, model: veo-3 }]");
    let gw = Gateway::start("", &cfg.yaml()).await;

    let mut made = Vec::new();
    for stream in [false, true, false, true] {
        let body = json!({"model": "m", "input": "hi", "stream": stream});
        let r = gw.post("/v1/responses", K1, body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let provider = r.headers()["x-modelgate-provider"]
            .to_str()
            .unwrap()
            .to_string();
        let text = r.text().await.unwrap();
        let id = text
            .split("\"id\":\"resp_")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|rest| format!("resp_{rest}"))
            .unwrap_or_else(|| panic!("no response id in {text}"));
        made.push((id, provider));
    }
    for (id, provider) in &made {
        for path in [
            format!("/v1/responses/{id}"),
            format!("/v1/responses/{id}/input_items"),
        ] {
            let (status, v, p) = call(&gw, reqwest::Method::GET, &path, K1).await;
            assert_eq!((status, &p), (200, provider), "{path}: {v}");
        }
        let (status, _, p) = call(
            &gw,
            reqwest::Method::POST,
            &format!("/v1/responses/{id}/cancel"),
            K1,
        )
        .await;
        assert_eq!((status, &p), (200, provider));
        let (status, _, _) = call(
            &gw,
            reqwest::Method::GET,
            &format!("/v1/responses/{id}"),
            K2,
        )
        .await;
        assert_eq!(status, 404);
    }
    // `"store": false` (Codex's default): nothing is kept, so nothing is remembered.
    let body = json!({"model": "m", "input": "hi", "store": false});
    let (status, v, _) = answer(gw.post("/v1/responses", K1, body).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let id = v["id"].as_str().unwrap().to_string();
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}"),
        K1,
    )
    .await;
    assert_eq!(status, 404, "an unstored response is not looked up");

    // A conversation continues where its previous response is stored, on any route.
    let (previous, provider) = &made[1];
    for _ in 0..4 {
        let body = json!({"model": "m", "input": "and then?", "previous_response_id": previous});
        let (status, v, p) = answer(gw.post("/v1/responses", K1, body).send().await.unwrap()).await;
        assert_eq!((status, &p), (200, provider), "{v}");
    }
    let body = json!({"model": "m", "input": "and then?", "previous_response_id": previous});
    let (status, v, _) = answer(gw.post("/v1/responses", K2, body).send().await.unwrap()).await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (404, Some("previous_response_id")),
        "{v}"
    );

    let (id, _) = &made[0];
    let (status, _, _) = call(
        &gw,
        reqwest::Method::DELETE,
        &format!("/v1/responses/{id}"),
        K1,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v, _) = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}"),
        K1,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // A Gemini long-running operation is polled where it was started, in Gemini's shape.
    let r = client()
        .post(format!("{}/v1beta/models/veo:predictLongRunning", gw.url))
        .header("x-goog-api-key", K1)
        .json(&json!({"instances": [{"prompt": "a cat"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let op: Value = r.json().await.unwrap();
    let name = op["name"].as_str().unwrap();
    let r = client()
        .get(format!("{}/v1beta/{name}", gw.url))
        .header("x-goog-api-key", K1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["done"], true);
    let r = client()
        .get(format!("{}/v1beta/models/veo-3/operations/op-8", gw.url))
        .header("x-goog-api-key", K1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["status"], "NOT_FOUND",
        "Gemini's error shape: {v}"
    );
}

/// Replicas sharing a Postgres store: an object made through one is used through another
/// (at once: the id is looked up in the store when a replica has not seen it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_store_find_each_others_objects() {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("postgres: {e}"));
    let (a, b) = (
        MockProvider::start("a").await,
        MockProvider::start("b").await,
    );
    objects_api(&a, "a");
    objects_api(&b, "b");
    let cfg = two_providers(&a, &b).store(&format!("url: \"{}\"", pg.url()));
    let yaml = cfg.yaml();
    let (one, two) = tokio::join!(Gateway::start("", &yaml), Gateway::start("", &yaml));
    for i in 0..6 {
        let parts: &[(&str, Option<&str>, &str)] = &[
            ("purpose", None, "batch"),
            ("file", Some("r.jsonl"), "{\"custom_id\":\"r\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n"),
        ];
        let (maker, user) = if i % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let (status, v, provider) = upload(maker, "?model=m", K1, parts).await;
        assert_eq!(status, 200, "{v}");
        let id = v["id"].as_str().unwrap();
        let (status, v, p) = call(user, reqwest::Method::GET, &format!("/v1/files/{id}"), K1).await;
        assert_eq!(
            (status, &p),
            (200, &provider),
            "made on one replica, read on the other: {v}"
        );
        let (status, _, _) = call(user, reqwest::Method::GET, &format!("/v1/files/{id}"), K2).await;
        assert_eq!(status, 404);
    }
}

/// Calls on objects count against the key's request limits like any other request:
/// with `rpm: 3`, an upload and two reads pass (a call on an unknown id is not counted)
/// and the fourth call is refused in the OpenAI shape before it reaches the provider.
/// (The provider has no credential: a file made there is found again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_calls_count_against_the_keys_limits() {
    let a = MockProvider::start("a").await;
    objects_api(&a, "a");
    let cfg = Config::new()
        // No credential at all (a local server): its files are found again too.
        .provider("a", Kind::OpenAi, &a.url())
        .model("m", "targets: [{ provider: a }]")
        .key_with("k1", K1, "limits: { rpm: 3 }")
        .key("k2", K2);
    let gw = Gateway::start("", &cfg.yaml()).await;
    let parts = [
        ("purpose", None, "assistants"),
        ("file", Some("notes.txt"), "hello"),
    ];
    let (status, v, _) = upload(&gw, "?model=m", K1, &parts).await;
    assert_eq!(status, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // Refused for its id before the limits: it uses no quota.
    let (status, _, _) = call(&gw, reqwest::Method::GET, "/v1/files/file-never-made", K1).await;
    assert_eq!(status, 404);
    for _ in 0..2 {
        let (status, v, _) = call(&gw, reqwest::Method::GET, &format!("/v1/files/{id}"), K1).await;
        assert_eq!(status, 200, "{v}");
    }
    let seen = a.requests().len();
    let r = client()
        .get(format!("{}/v1/files/{id}", gw.url))
        .bearer_auth(K1)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (429, "rate_limit_exceeded"));
    let (status, _, _) = call(&gw, reqwest::Method::GET, "/v1/files?model=m", K1).await;
    assert_eq!(status, 429, "a list is a call too");
    assert_eq!(
        a.requests().len(),
        seen,
        "refused calls never reach the provider"
    );
    // Another key's calls are its own.
    let (status, _, _) = call(&gw, reqwest::Method::GET, "/v1/files?model=m", K2).await;
    assert_eq!(status, 200);
}
