//! Stream converter throughput in MB/s of provider SSE: `cargo bench --bench translate`.

use std::time::Instant;

use bytes::Bytes;
use modelgate::protocol::Protocol;
use modelgate::translate::ResponseTranslator;

/// A long provider stream: `n` text deltas in the provider's format, then its ending.
fn stream(provider: Protocol, n: usize) -> Vec<u8> {
    let mut s = String::new();
    match provider {
        Protocol::OpenAi => {
            for i in 0..n {
                s.push_str(&format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"));
            }
            s.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        }
        _ => {
            s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
            for i in 0..n {
                s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" token{i}\"}}}}\n\n"));
            }
            s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":100}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        }
    }
    s.into_bytes()
}

fn main() {
    for (provider, client, name) in [
        (
            Protocol::Anthropic,
            Protocol::OpenAi,
            "Anthropic SSE -> OpenAI chunks",
        ),
        (
            Protocol::OpenAi,
            Protocol::Anthropic,
            "OpenAI chunks -> Anthropic SSE",
        ),
        (
            Protocol::Anthropic,
            Protocol::Responses,
            "Anthropic SSE -> Responses events",
        ),
        (
            Protocol::OpenAi,
            Protocol::Responses,
            "OpenAI chunks -> Responses events",
        ),
    ] {
        // `cargo test --all-targets` runs this too (without `--bench`): a short smoke run then.
        let events = if std::env::args().any(|a| a == "--bench") {
            20_000
        } else {
            200
        };
        let input = stream(provider, events);
        // Network-sized pieces: events split at arbitrary points.
        let pieces: Vec<Bytes> = input.chunks(1400).map(Bytes::copy_from_slice).collect();
        let rounds = 10;
        let start = Instant::now();
        let mut out = 0usize;
        for _ in 0..rounds {
            let mut t = ResponseTranslator::stream(provider, client, "public", true, true)
                .expect("translator");
            for (i, p) in pieces.iter().enumerate() {
                out += t
                    .feed(Some(p.clone()), i + 1 == pieces.len())
                    .map_or(0, |b| b.len());
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let mb = (input.len() * rounds) as f64 / 1e6;
        println!(
            "{name:<34} {:>7.1} MB/s in ({:.0} events/s), {} bytes out",
            mb / secs,
            (events * rounds) as f64 / secs,
            out / rounds
        );
    }
}
