//! `multipart/form-data` request bodies (audio transcriptions and translations, image
//! edits and variations): the `model` field wherever it stands (after a file part too),
//! the byte range of its value so a routed name can be spliced in while every other byte
//! goes out as the client sent it, and how much of the body is text (the rest is files,
//! which are not prompt tokens). Parsing is `multer`'s; this only reads its answer.

use std::ops::Range;

use bytes::Bytes;
use futures_util::StreamExt;
use memchr::memmem;

#[derive(Debug, Default, PartialEq)]
pub struct FormPeek {
    pub model: Option<String>,
    /// Where the `model` value's bytes are in the body.
    pub model_span: Option<Range<usize>>,
    /// The whole `model` part (delimiter to delimiter): cut out where the provider takes
    /// no `model` field (file uploads).
    pub model_part: Option<Range<usize>>,
    /// `stream=true` (transcriptions can stream server-sent events).
    pub stream: bool,
    /// The `purpose` field (file uploads: `batch`, `assistants`, ...).
    pub purpose: Option<String>,
    /// Where the first file part's bytes are in the body.
    pub file_span: Option<Range<usize>>,
    /// Bytes of the non-file fields (a prompt, a language): what may count as tokens.
    pub text_bytes: usize,
}

/// How much of a form multer is given at a time.
const FEED: usize = 64 * 1024;

/// Whether `content_type` is a multipart form.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|v| {
        v.trim_start()
            .get(..19)
            .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
    })
}

/// Reads the form's fields; `Err` says what is wrong with it, for a 400.
pub async fn peek(content_type: &str, body: &Bytes) -> Result<FormPeek, String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| format!("the multipart/form-data body cannot be read: {e}"))?;
    // multer copies what it is fed into its own buffer, and takes all a stream has ready
    // before it parses: fed one slice at a time (each slice no copy; the stream is not
    // ready again until multer has looked at it), it holds one slice, not a second copy
    // of a large upload.
    let slices: Vec<Bytes> = (0..body.len())
        .step_by(FEED)
        .map(|at| body.slice(at..body.len().min(at + FEED)))
        .collect();
    // The first slice is ready at once: multer gives up on a form whose first poll finds
    // nothing and whose second reaches the end.
    let stream =
        futures_util::stream::iter(slices.into_iter().enumerate()).then(|(i, slice)| async move {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            Ok::<Bytes, std::convert::Infallible>(slice)
        });
    let mut form = multer::Multipart::new(stream, boundary.clone());
    let mut out = FormPeek::default();
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| format!("the multipart/form-data body is malformed: {e}"))?;
        let Some(field) = field else { break };
        if field.file_name().is_some() {
            // multer skips the rest of a field when the next one is asked for.
            continue;
        }
        let name = field.name().map(str::to_string);
        let text = field
            .text()
            .await
            .map_err(|e| format!("the multipart/form-data body is malformed: {e}"))?;
        out.text_bytes = out.text_bytes.saturating_add(text.len());
        match name.as_deref() {
            Some("model") if out.model.is_none() => out.model = Some(text),
            Some("stream") => out.stream = text.trim().eq_ignore_ascii_case("true"),
            Some("purpose") if out.purpose.is_none() => out.purpose = Some(text.trim().to_string()),
            _ => {}
        }
    }
    out.file_span = part_span(body, &boundary, None).map(|(value, _)| value);
    if let Some(model) = &out.model {
        if let Some((value, part)) = part_span(body, &boundary, Some("model"))
            .filter(|(s, _)| body[s.clone()] == *model.as_bytes())
        {
            out.model_span = Some(value);
            out.model_part = Some(part);
        }
    }
    Ok(out)
}

/// The byte ranges of the first text field named `name` (or, with `None`, the first file
/// part) in a well-formed body (multer has already checked it): its value (after its
/// headers' blank line, up to the next delimiter) and the whole part (from its delimiter
/// to the next one).
fn part_span(
    body: &[u8],
    boundary: &str,
    name: Option<&str>,
) -> Option<(Range<usize>, Range<usize>)> {
    let delimiter = format!("\r\n--{boundary}");
    let first = format!("--{boundary}");
    let wanted = name.map(|n| format!("name=\"{n}\""));
    let mut at = memmem::find(body, first.as_bytes())?;
    loop {
        let headers_start = at + first.len();
        let headers_end = headers_start + memmem::find(&body[headers_start..], b"\r\n\r\n")?;
        let value_start = headers_end + 4;
        let value_end = value_start + memmem::find(&body[value_start..], delimiter.as_bytes())?;
        let headers = &body[headers_start..headers_end];
        let is_it = headers
            .split(|b| *b == b'\n')
            .filter(|line| {
                line.len() >= 20 && line[..20].eq_ignore_ascii_case(b"content-disposition:")
            })
            .any(|line| {
                let file = memmem::find(line, b"filename").is_some();
                match &wanted {
                    Some(w) => memmem::find(line, w.as_bytes()).is_some() && !file,
                    None => file,
                }
            });
        if is_it {
            return Some((value_start..value_end, at..value_end + 2));
        }
        // The next part starts where this value's delimiter does (its CRLF is the value's).
        at = value_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Bytes) {
        let boundary = "----modelgate-test-boundary";
        let mut body = Vec::new();
        for (name, file, value) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (
            format!("multipart/form-data; boundary={boundary}"),
            Bytes::from(body),
        )
    }

    #[tokio::test]
    async fn the_model_is_found_after_a_large_file_and_its_bytes_located() {
        // A file holding what looks like a delimiter and a model field must not confuse it.
        let mut file = vec![7u8; 1 << 20];
        file.extend_from_slice(b"name=\"model\"\r\n\r\nfake");
        let (ct, body) = form(&[
            ("file", Some("a.wav"), &file),
            ("prompt", None, b"names: Ana, Bo"),
            ("model", None, b"whisper-alias"),
            ("stream", None, b"true"),
        ]);
        assert!(is_form(Some(&ct)));
        let p = peek(&ct, &body).await.unwrap();
        assert_eq!(p.model.as_deref(), Some("whisper-alias"));
        let span = p.model_span.unwrap();
        assert_eq!(&body[span], b"whisper-alias");
        // Without its part the form is the same form less that field.
        let part = p.model_part.clone().unwrap();
        let mut without = body[..part.start].to_vec();
        without.extend_from_slice(&body[part.end..]);
        let rest = peek(&ct, &Bytes::from(without)).await.unwrap();
        assert_eq!(rest.model, None);
        assert!(rest.stream);
        assert_eq!(rest.text_bytes, p.text_bytes - "whisper-alias".len());
        assert!(p.stream);
        assert_eq!(
            p.text_bytes,
            "names: Ana, Bo".len() + "whisper-alias".len() + 4
        );
    }

    #[tokio::test]
    async fn broken_forms_are_refused_and_a_missing_model_is_none() {
        let (ct, body) = form(&[("file", Some("a.png"), b"\x89PNG")]);
        assert_eq!(peek(&ct, &body).await.unwrap().model, None);
        let truncated = body.slice(..body.len() - 10);
        assert!(peek(&ct, &truncated).await.is_err());
        assert!(
            peek("multipart/form-data", &body).await.is_err(),
            "no boundary"
        );
        assert!(!is_form(Some("application/json")));
        assert!(is_form(Some("Multipart/Form-Data; boundary=x")));
    }
}
