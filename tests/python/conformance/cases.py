"""The cases, and what each client protocol sends for them.

Every request here is written as the protocol's documentation shows it, and is itself
validated against the same definitions before it is sent (test_conformance's
self-checks), so a failure downstream is the gateway's, not a bad request of ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .anthropic_types import anthropic_version

CLIENT_KEY = "sk-conformance-client-0001"

CLIENTS = ("openai-chat", "openai-responses", "anthropic", "gemini")
PROVIDERS = ("openai", "openai-responses", "anthropic", "gemini")


def pairs():
    """(client, provider) cells. The `openai-responses` provider (an openai-kind provider
    with `responses_api: true`) differs from `openai` only for Responses clients: every
    other protocol reaches an openai-kind provider as Chat Completions."""
    for c in CLIENTS:
        for p in PROVIDERS:
            if p == "openai-responses" and c != "openai-responses":
                continue
            yield c, p


@dataclass(frozen=True)
class Case:
    name: str
    stream: bool = False
    output: str = "text"  # what the mock answers: text, tool, json, reasoning, length (cut by max tokens)
    error: int | None = None  # the mock answers this status in the provider's error shape
    cut: bool = False  # the mock closes the connection mid-stream


CASES = (
    Case("text"),
    Case("stream", stream=True),
    Case("multi_turn"),
    Case("sampling"),
    Case("tools", output="tool"),
    Case("stream_tools", stream=True, output="tool"),
    Case("tool_choice", output="tool"),
    Case("tool_result"),
    Case("system"),
    Case("image"),
    Case("json_schema", output="json"),
    Case("reasoning", output="reasoning"),
    Case("stream_reasoning", stream=True, output="reasoning"),
    Case("stream_length", stream=True, output="length"),
    Case("error", error=429),
    Case("cut_stream", stream=True, cut=True),
)
BY_NAME = {c.name: c for c in CASES}

# The provider model behind each (client, provider, case): the mock reads the case back
# from it, and each gets its own failover target, so a 429 cools down nothing else.
BASE_MODEL = {"openai": "gpt-4.1-mini", "openai-responses": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
REASONING_MODEL = {"openai": "o4-mini", "openai-responses": "o4-mini"}


def public_model(client: str, provider: str, case: str) -> str:
    return f"{client}.{provider}.{case}"


def provider_model(client: str, provider: str, case: Case) -> str:
    if provider.startswith("openai"):
        base = REASONING_MODEL[provider] if case.output == "reasoning" else BASE_MODEL[provider]
        # openai-kind reasoning detection reads the part after the last `/`
        return f"{client}.{case.name}/{base}"
    return f"{BASE_MODEL[provider]}--{client}--{case.name}"


def case_of_model(model: str) -> Case:
    if "/" in model:
        return BY_NAME[model.split("/", 1)[0].split(".", 1)[1]]
    return BY_NAME[model.rsplit("--", 1)[1]]


# --- shared content -------------------------------------------------------------------

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
    "additionalProperties": False,
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}
TOOL_NAME, TOOL_DESC = "get_weather", "Current weather for a city"
CALL_ARGS = {"city": "Paris"}
TOOL_OUTPUT = "18C and sunny"
SYSTEM, DEVELOPER = "You are a terse assistant.", "Answer in one sentence."


@dataclass
class ClientRequest:
    method: str
    path: str
    headers: dict
    body: dict
    stream: bool


# --- OpenAI Chat Completions -----------------------------------------------------------


def _chat(case: Case, model: str) -> dict:
    user = {"role": "user", "content": "Hello!"}
    tools = [{"type": "function", "function": {"name": TOOL_NAME, "description": TOOL_DESC, "parameters": WEATHER_SCHEMA}}]
    body: dict = {"model": model, "messages": [user]}
    n = case.name
    if n == "multi_turn":
        body["messages"] = [user, {"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "Tell me a joke."}]
    elif n == "sampling":
        body.update(temperature=0.7, top_p=0.9, max_completion_tokens=256, stop=["END"], seed=7,
                    presence_penalty=0.1, frequency_penalty=0.2, user="user-1234")
    elif n in ("tools", "stream_tools"):
        body.update(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools, tool_choice="auto")
    elif n == "tool_choice":
        body.update(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools,
                    tool_choice={"type": "function", "function": {"name": TOOL_NAME}})
    elif n == "tool_result":
        body.update(tools=tools, messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_abc123", "type": "function", "function": {"name": TOOL_NAME, "arguments": json.dumps(CALL_ARGS)}}]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": TOOL_OUTPUT},
        ])
    elif n == "system":
        body["messages"] = [{"role": "system", "content": SYSTEM}, {"role": "developer", "content": DEVELOPER}, user]
    elif n == "image":
        body["messages"] = [{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}"}}]}]
    elif n == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    elif n in ("reasoning", "stream_reasoning"):
        body["reasoning_effort"] = "medium"
    elif n == "stream_length":
        body["max_completion_tokens"] = 5
    if case.stream:
        body["stream"] = True
        if n != "stream_tools":  # one stream without it: no usage chunk may then appear
            body["stream_options"] = {"include_usage": True}
    return body


# --- OpenAI Responses ------------------------------------------------------------------


def _responses(case: Case, model: str) -> dict:
    tools = [{"type": "function", "name": TOOL_NAME, "description": TOOL_DESC, "parameters": WEATHER_SCHEMA, "strict": True}]
    body: dict = {"model": model, "input": "Hello!"}
    n = case.name
    if n == "multi_turn":
        body["input"] = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ]
    elif n == "sampling":
        body.update(temperature=0.7, top_p=0.9, max_output_tokens=256, safety_identifier="user-1234")
    elif n in ("tools", "stream_tools"):
        body.update(input="Weather in Paris?", tools=tools, tool_choice="auto")
    elif n == "tool_choice":
        body.update(input="Weather in Paris?", tools=tools, tool_choice={"type": "function", "name": TOOL_NAME})
    elif n == "tool_result":
        body.update(tools=tools, input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_abc123", "name": TOOL_NAME, "arguments": json.dumps(CALL_ARGS)},
            {"type": "function_call_output", "call_id": "call_abc123", "output": TOOL_OUTPUT},
        ])
    elif n == "system":
        body.update(instructions=SYSTEM, input=[{"role": "developer", "content": DEVELOPER}, {"role": "user", "content": "Hello!"}])
    elif n == "image":
        body["input"] = [{"role": "user", "content": [
            {"type": "input_text", "text": "What is in this image?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_1PX}", "detail": "auto"}]}]
    elif n == "json_schema":
        body["text"] = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    elif n in ("reasoning", "stream_reasoning"):
        body["reasoning"] = {"effort": "medium", "summary": "auto"}
    elif n == "stream_length":
        body["max_output_tokens"] = 16
    if case.stream:
        body["stream"] = True
    return body


# --- Anthropic Messages ----------------------------------------------------------------


def _anthropic(case: Case, model: str) -> dict:
    tools = [{"name": TOOL_NAME, "description": TOOL_DESC, "input_schema": WEATHER_SCHEMA}]
    body: dict = {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello!"}]}
    n = case.name
    if n == "multi_turn":
        body["messages"] = [
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi! How can I help?"}]},
            {"role": "user", "content": "Tell me a joke."},
        ]
    elif n == "sampling":
        # From anthropic-version 2026-10-21 (the SDK's) the API takes no temperature,
        # top_p or top_k: what is left to set is this.
        body.update(max_tokens=256, stop_sequences=["END"], metadata={"user_id": "user-1234"})
    elif n in ("tools", "stream_tools"):
        body.update(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools, tool_choice={"type": "auto"})
    elif n == "tool_choice":
        body.update(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools, tool_choice={"type": "tool", "name": TOOL_NAME})
    elif n == "tool_result":
        body.update(tools=tools, messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_abc123", "name": TOOL_NAME, "input": CALL_ARGS}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_abc123", "content": TOOL_OUTPUT}]},
        ])
    elif n == "system":
        body["system"] = [{"type": "text", "text": SYSTEM}, {"type": "text", "text": DEVELOPER}]
    elif n == "image":
        body["messages"] = [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1PX}},
            {"type": "text", "text": "What is in this image?"}]}]
    elif n == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}}
    elif n in ("reasoning", "stream_reasoning"):
        body.update(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048})
    elif n == "stream_length":
        body["max_tokens"] = 5
    if case.stream:
        body["stream"] = True
    return body


# --- Gemini ------------------------------------------------------------------------------


def _gemini(case: Case) -> dict:
    tools = [{"functionDeclarations": [{"name": TOOL_NAME, "description": TOOL_DESC, "parametersJsonSchema": WEATHER_SCHEMA}]}]
    user = {"role": "user", "parts": [{"text": "Hello!"}]}
    body: dict = {"contents": [user]}
    n = case.name
    if n == "multi_turn":
        body["contents"] = [user, {"role": "model", "parts": [{"text": "Hi! How can I help?"}]}, {"role": "user", "parts": [{"text": "Tell me a joke."}]}]
    elif n == "sampling":
        body["generationConfig"] = {"temperature": 0.7, "topP": 0.9, "topK": 40, "maxOutputTokens": 256, "stopSequences": ["END"],
                                    "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.2}
    elif n in ("tools", "stream_tools"):
        body.update(contents=[{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], tools=tools,
                    toolConfig={"functionCallingConfig": {"mode": "AUTO"}})
    elif n == "tool_choice":
        body.update(contents=[{"role": "user", "parts": [{"text": "Weather in Paris?"}]}], tools=tools,
                    toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [TOOL_NAME]}})
    elif n == "tool_result":
        body.update(tools=tools, contents=[
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": TOOL_NAME, "args": CALL_ARGS}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": TOOL_NAME, "response": {"result": TOOL_OUTPUT}}}]},
        ])
    elif n == "system":
        body["systemInstruction"] = {"parts": [{"text": SYSTEM}, {"text": DEVELOPER}]}
    elif n == "image":
        body["contents"] = [{"role": "user", "parts": [{"text": "What is in this image?"}, {"inlineData": {"mimeType": "image/png", "data": PNG_1PX}}]}]
    elif n == "json_schema":
        body["generationConfig"] = {"responseMimeType": "application/json", "responseJsonSchema": ANSWER_SCHEMA}
    elif n in ("reasoning", "stream_reasoning"):
        body["generationConfig"] = {"thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}}
    elif n == "stream_length":
        body["generationConfig"] = {"maxOutputTokens": 5}
    return body


def client_request(client: str, provider: str, case: Case) -> ClientRequest:
    model = public_model(client, provider, case.name)
    json_ct = {"content-type": "application/json"}
    if client == "openai-chat":
        return ClientRequest("POST", "/v1/chat/completions", {**json_ct, "authorization": f"Bearer {CLIENT_KEY}"}, _chat(case, model), case.stream)
    if client == "openai-responses":
        return ClientRequest("POST", "/v1/responses", {**json_ct, "authorization": f"Bearer {CLIENT_KEY}"}, _responses(case, model), case.stream)
    if client == "anthropic":
        headers = {**json_ct, "x-api-key": CLIENT_KEY, "anthropic-version": anthropic_version()}
        return ClientRequest("POST", "/v1/messages", headers, _anthropic(case, model), case.stream)
    if client == "gemini":
        path = f"/v1beta/models/{model}:" + ("streamGenerateContent?alt=sse" if case.stream else "generateContent")
        return ClientRequest("POST", path, {**json_ct, "x-goog-api-key": CLIENT_KEY}, _gemini(case), case.stream)
    raise ValueError(client)
