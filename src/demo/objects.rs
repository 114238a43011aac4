//! The demo provider's files, batches and Gemini media: enough of each API (shapes from
//! the official references) for the gateway's object routing to be tried with curl. A
//! batch completes at once, answering each request line with a short chat completion; a
//! video operation is done when first polled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{json, Value};

/// What the demo answers: status, content type, body.
pub type Answer = (u16, &'static str, Vec<u8>);

#[derive(Default)]
pub struct DemoObjects {
    /// id -> (object, content)
    objects: Mutex<HashMap<String, (Value, Vec<u8>)>>,
    seq: AtomicU64,
}

fn json_answer(status: u16, v: Value) -> Answer {
    (status, "application/json", v.to_string().into_bytes())
}

fn missing(id: &str) -> Answer {
    json_answer(
        404,
        json!({"error": {"message": format!("No such object: '{id}'"), "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

impl DemoObjects {
    fn next_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}{:06}",
            self.seq.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    fn get(&self, id: &str) -> Option<(Value, Vec<u8>)> {
        self.objects.lock().ok()?.get(id).cloned()
    }

    fn put(&self, id: &str, v: Value, content: Vec<u8>) {
        if let Ok(mut o) = self.objects.lock() {
            o.insert(id.to_string(), (v, content));
        }
    }

    /// The OpenAI files and batches endpoints; `None` for any other path.
    pub async fn openai(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Option<Answer> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        Some(match (method, segments.as_slice()) {
            ("POST", ["v1", "files"]) => self.create_file(content_type, body).await,
            ("GET", ["v1", "files"]) => self.list("file-"),
            ("GET", ["v1", "batches"]) => self.list("batch_"),
            ("GET", ["v1", "files", id]) | ("GET", ["v1", "batches", id]) => match self.get(id) {
                Some((v, _)) => json_answer(200, v),
                None => missing(id),
            },
            ("GET", ["v1", "files", id, "content"]) => match self.get(id) {
                Some((_, content)) => (200, "application/octet-stream", content),
                None => missing(id),
            },
            ("DELETE", ["v1", "files", id]) => {
                let gone = self.objects.lock().ok()?.remove(*id).is_some();
                if gone {
                    json_answer(200, json!({"id": id, "object": "file", "deleted": true}))
                } else {
                    missing(id)
                }
            }
            ("POST", ["v1", "batches"]) => self.create_batch(body),
            ("POST", ["v1", "batches", id, "cancel"]) => match self.get(id) {
                Some((mut v, c)) => {
                    if v["status"] != "completed" {
                        v["status"] = "cancelling".into();
                        self.put(id, v.clone(), c);
                    }
                    json_answer(200, v)
                }
                None => missing(id),
            },
            _ => return None,
        })
    }

    async fn create_file(&self, content_type: &str, body: &[u8]) -> Answer {
        let bad = |m: String| {
            json_answer(
                400,
                json!({"error": {"message": m, "type": "invalid_request_error", "param": null, "code": null}}),
            )
        };
        let Ok(boundary) = multer::parse_boundary(content_type) else {
            return bad("expected a multipart/form-data body".into());
        };
        let whole = Bytes::copy_from_slice(body);
        let stream =
            futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(whole) });
        let mut form = multer::Multipart::new(stream, boundary);
        let (mut purpose, mut file) = (None, None);
        while let Ok(Some(field)) = form.next_field().await {
            match (
                field.name().map(str::to_string),
                field.file_name().map(str::to_string),
            ) {
                (Some(n), None) if n == "purpose" => purpose = field.text().await.ok(),
                (Some(n), Some(filename)) if n == "file" => {
                    file = field.bytes().await.ok().map(|b| (filename, b.to_vec()))
                }
                (Some(n), _) => return bad(format!("Unrecognized request argument supplied: {n}")),
                _ => {}
            }
        }
        let (Some(purpose), Some((filename, content))) = (purpose, file) else {
            return bad("'file' and 'purpose' are required".into());
        };
        let id = self.next_id("file-demo");
        let v = json!({"id": id, "object": "file", "bytes": content.len(), "created_at": 1700000000u64,
            "filename": filename, "purpose": purpose, "status": "processed"});
        self.put(&id, v.clone(), content);
        json_answer(200, v)
    }

    fn list(&self, prefix: &str) -> Answer {
        let mut data: Vec<Value> = match self.objects.lock() {
            Ok(o) => o
                .iter()
                .filter(|(id, _)| id.starts_with(prefix))
                .map(|(_, (v, _))| v.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let first = data.first().map(|v| v["id"].clone());
        let last = data.last().map(|v| v["id"].clone());
        json_answer(
            200,
            json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false}),
        )
    }

    fn create_batch(&self, body: &[u8]) -> Answer {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let input = req["input_file_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some((_, lines)) = self.get(&input) else {
            return missing(&input);
        };
        // Each request line answered as the demo's chat endpoint would.
        let mut output = Vec::new();
        let mut total = 0u64;
        for line in String::from_utf8_lossy(&lines)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            total += 1;
            let r: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let model = r["body"]["model"].as_str().unwrap_or("demo-model-1");
            let out = json!({"id": format!("batch_req_{total}"), "custom_id": r["custom_id"], "response": {
                "status_code": 200, "request_id": format!("req_{total}"), "body": {
                    "id": "chatcmpl-demo", "object": "chat.completion", "created": 1700000000u64, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the demo batch."}, "logprobs": null, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}}}, "error": null});
            output.extend_from_slice(out.to_string().as_bytes());
            output.push(b'\n');
        }
        let out_id = self.next_id("file-demo");
        let out_file = json!({"id": out_id, "object": "file", "bytes": output.len(), "created_at": 1700000000u64,
            "filename": "batch_output.jsonl", "purpose": "batch_output", "status": "processed"});
        self.put(&out_id, out_file, output);
        let id = self.next_id("batch_demo");
        let v = json!({"id": id, "object": "batch", "endpoint": req["endpoint"], "errors": null,
            "input_file_id": input, "completion_window": req["completion_window"], "status": "completed",
            "output_file_id": out_id, "error_file_id": null, "created_at": 1700000000u64,
            "completed_at": 1700000001u64, "request_counts": {"total": total, "completed": total, "failed": 0},
            "metadata": req["metadata"]});
        self.put(&id, v.clone(), Vec::new());
        json_answer(200, v)
    }

    /// Gemini's media and embeddings actions and the operation GET; `None` elsewhere.
    pub fn gemini(
        &self,
        method: &str,
        path: &str,
        model: Option<(&str, &str)>,
        body: &[u8],
    ) -> Option<Answer> {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let Some((model, action)) = model {
            return Some(match action {
                "embedContent" => {
                    json_answer(200, json!({"embedding": {"values": [0.1, -0.2, 0.3]}}))
                }
                "batchEmbedContents" => {
                    let n = req["requests"].as_array().map_or(0, |r| r.len());
                    let one = json!({"values": [0.1, -0.2, 0.3]});
                    json_answer(200, json!({"embeddings": vec![one; n]}))
                }
                // A 1x1 transparent PNG per instance (Imagen's shape).
                "predict" => json_answer(
                    200,
                    json!({"predictions": [{"mimeType": "image/png",
                    "bytesBase64Encoded": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="}]}),
                ),
                "predictLongRunning" => {
                    let name = format!("models/{model}/operations/{}", self.next_id("demo-op-"));
                    self.put(&name, json!({"name": name, "done": false}), Vec::new());
                    json_answer(200, json!({"name": name}))
                }
                _ => return None,
            });
        }
        let name = path
            .strip_prefix("/v1beta/")
            .or_else(|| path.strip_prefix("/v1/"))?;
        if method != "GET" || !name.contains("operations/") {
            return None;
        }
        Some(match self.get(name) {
            Some(_) => json_answer(
                200,
                json!({"name": name, "done": true, "response": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {"generatedSamples": [{"video": {"uri": "https://example.invalid/demo-video.mp4"}}]}}}),
            ),
            None => json_answer(
                404,
                json!({"error": {"code": 404, "message": format!("Operation {name} not found."), "status": "NOT_FOUND"}}),
            ),
        })
    }
}
