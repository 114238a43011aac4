//! The one internal representation every wire protocol decodes into and encodes from, so
//! N protocols need 2N converters instead of N*N. It keeps what has a meaning in at least
//! two protocols; what a target cannot express is dropped and reported.

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// System / developer instructions, in order.
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub n: Option<u64>,
    pub stream: bool,
    /// The client asked for usage in the stream (OpenAI `stream_options.include_usage`).
    pub stream_usage: bool,
    pub response_format: Option<ResponseFormat>,
    pub reasoning: Option<Reasoning>,
    pub user: Option<String>,
    pub parallel_tool_calls: Option<bool>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Client fields with no equivalent in the internal model (reported when dropped).
    pub unmapped: Vec<String>,
}

impl ChatRequest {
    /// Appends a turn. Consecutive turns of one role merge, as every provider wants them
    /// alternating (tool results join the user turn they belong to).
    pub fn push_turn(&mut self, role: Role, parts: Vec<Part>) {
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => self.messages.push(Message { role, parts }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// A call the assistant made. `arguments` is a JSON text (OpenAI's form).
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// The result of a tool call, sent back by the user side.
    ToolResult {
        id: String,
        /// The tool's name when known (Gemini needs it; OpenAI/Anthropic do not send it).
        name: Option<String>,
        content: Vec<Part>,
        is_error: bool,
    },
    Thinking {
        text: String,
        /// Anthropic's signature / Gemini's thoughtSignature, kept for round trips.
        signature: Option<Signature>,
    },
}

/// The provider kind that issued a thinking signature: only it can check one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    Anthropic,
    Gemini,
}

/// A thinking signature and who issued it. How provenance is written into a client's
/// bytes (for clients of another protocol, which replay it) is the wire edge's business:
/// see `codec::Signature` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub issuer: Issuer,
    pub value: String,
}

impl Signature {
    pub fn new(issuer: Issuer, value: impl Into<String>) -> Self {
        Signature {
            issuer,
            value: value.into(),
        }
    }

    /// Non-empty and issued by `issuer`: a signature that provider kind accepts back.
    pub fn valid_for(&self, issuer: Issuer) -> bool {
        self.issuer == issuer && !self.value.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    Base64 { media_type: String, data: String },
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// OpenAI's strict mode: the arguments must follow the schema exactly.
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    /// At least one tool must be called.
    Required,
    Tool(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reasoning {
    /// OpenAI effort: minimal/low/medium/high.
    pub effort: Option<String>,
    /// Anthropic/Gemini token budget.
    pub budget_tokens: Option<u64>,
    /// Whether thinking text should be returned (Gemini includeThoughts).
    pub include_thoughts: bool,
}

impl Reasoning {
    /// A token budget for protocols that need one, from the effort when no budget was given.
    pub fn budget(&self) -> u64 {
        self.budget_tokens.unwrap_or(match self.effort.as_deref() {
            Some("minimal") => 1024,
            Some("low") => 2048,
            Some("high") => 24576,
            Some("xhigh") | Some("max") => 32768,
            _ => 8192,
        })
    }

    /// An effort level for OpenAI, from the budget when no effort was given.
    pub fn effort(&self) -> String {
        if let Some(e) = &self.effort {
            return e.clone();
        }
        match self.budget_tokens {
            Some(b) if b <= 1024 => "minimal",
            Some(b) if b <= 4096 => "low",
            Some(b) if b >= 16384 => "high",
            _ => "medium",
        }
        .to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    StopSequence,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's cache (part of `prompt_tokens`).
    pub cached_tokens: Option<u64>,
    /// Part of `completion_tokens`.
    pub reasoning_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache (Anthropic; part of `prompt_tokens`).
    pub cache_write_tokens: Option<u64>,
}

/// More tokens than one request can have (context windows hold millions, not billions):
/// a provider reporting it sent a corrupted or wrapped counter, and its usage is ignored,
/// as if absent, rather than billed or echoed to the client.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 1_000_000_000;

impl Usage {
    pub fn plausible(&self) -> bool {
        [
            Some(self.prompt_tokens),
            Some(self.completion_tokens),
            self.cached_tokens,
            self.reasoning_tokens,
            self.cache_write_tokens,
        ]
        .into_iter()
        .flatten()
        .all(|n| n <= MAX_PLAUSIBLE_TOKENS)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub parts: Vec<Part>,
    pub finish: Option<FinishReason>,
    pub usage: Option<Usage>,
}

/// One event of a streamed response, protocol-neutral. Decoders emit them as soon as the
/// provider's event is complete; encoders turn them into the client's events.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Start {
        id: String,
    },
    TextDelta(String),
    ThinkingDelta(String),
    /// The signature of the thinking being streamed (sent when it ends).
    ThinkingSignature(Signature),
    /// A signature that belongs to the tool call that follows (Gemini's thought signature
    /// on a function call), not to any thinking text.
    CallSignature(Signature),
    /// A new tool call; `index` counts calls within the response from 0.
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    ToolCallArgs {
        index: usize,
        fragment: String,
    },
    Finish(FinishReason),
    Usage(Usage),
    /// The provider reported an error mid-stream.
    Error {
        message: String,
    },
    /// The provider's stream ended properly.
    Done,
}
