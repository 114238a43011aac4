"""The official OpenAI SDK against modelgate (demo mode: built-in mock provider)."""

import json
import warnings

import openai
import pytest

from conftest import DEMO_KEY, DEMO_LIMITED_KEY, MODELS_BY_KIND

kinds = pytest.mark.parametrize("model", MODELS_BY_KIND)


def client(gateway, key=DEMO_KEY):
    return openai.OpenAI(base_url=gateway["base"] + "/v1", api_key=key, max_retries=0)


@kinds
def test_chat_completion(gateway, model):
    r = client(gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "ping"}]
    )
    assert r.model == model
    assert "You said: ping" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens > 0


@kinds
def test_streaming_chat_completion(gateway, model):
    stream = client(gateway).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the modelgate demo provider!")
    assert all(c.model == model for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len(chunks) > 5


def test_raw_response_carries_gateway_headers(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-modelgate-provider"] == "demo"
    assert raw.headers["x-request-id"].startswith("mg-")


def test_bad_key_raises_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError) as e:
        client(gateway, key="sk-not-a-real-key-1234").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"


def test_unknown_model_raises_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.code == "model_not_found"


def test_models_list_and_embeddings(gateway):
    c = client(gateway)
    ids = [m.id for m in c.models.list()]
    assert ids == ["gpt-4o-mini", "demo", "claude-demo", "gemini-demo"]
    emb = c.embeddings.create(model="gpt-4o-mini", input="hello")
    assert len(emb.data[0].embedding) == 3


@kinds
def test_tool_round_trip(gateway, model):
    c = client(gateway)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = c.chat.completions.create(model=model, messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"demo"}'
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    second = c.chat.completions.create(model=model, messages=messages, tools=tools)
    assert second.choices[0].message.content == "The tool returned: 18C"


def test_rate_limit_raises_rate_limit_error(gateway):
    from conftest import DEMO_LIMITED_KEY

    c = client(gateway, key=DEMO_LIMITED_KEY)
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(5):
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
            assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1


def test_a_spent_budget_raises_insufficient_quota(gateway):
    from conftest import DEMO_BUDGET_KEY

    c = client(gateway, key=DEMO_BUDGET_KEY)
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(5):
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "insufficient_quota"
    assert e.value.type == "insufficient_quota"
    assert e.value.response.headers["x-modelgate-budget-limit"] == "2 requests/day"
    usage = c.get("/usage", cast_to=object)
    assert usage["budgets"][0]["remaining"] == 0


# --- the Responses API (Codex CLI's protocol), translated to every provider kind ---


@kinds
def test_responses_create(gateway, model):
    r = client(gateway).responses.create(
        model=model, instructions="Be brief.", input="ping", max_output_tokens=200
    )
    assert r.model == model
    assert r.status == "completed"
    assert "You said: ping" in r.output_text
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


@kinds
def test_responses_stream(gateway, model):
    with client(gateway).responses.stream(model=model, input="stream please") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas).startswith("Hello from the modelgate demo provider!")
    assert len(deltas) > 3
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    assert final.usage is not None and final.usage.output_tokens > 0


@kinds
def test_responses_tool_round_trip(gateway, model):
    c = client(gateway)
    tools = [{"type": "function", "name": "get_weather", "description": "Weather by city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"], "additionalProperties": False}, "strict": True}]
    items = [{"role": "user", "content": "Weather in Paris?"}]
    first = c.responses.create(model=model, input=items, tools=tools)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].arguments == '{"city":"demo"}'
    items += [calls[0].model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"}]
    second = c.responses.create(model=model, input=items, tools=tools)
    assert second.output_text == "The tool returned: 18C"


def test_responses_bad_key_and_stored_state(gateway):
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-not-a-real-key-1234").responses.create(model="claude-demo", input="x")
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).responses.create(model="claude-demo", input="x", previous_response_id="resp_1")
    assert e.value.param == "previous_response_id"


def test_uploads_reach_the_provider_as_forms(gateway):
    # 200 KB of "audio": the SDK sends a multipart form with the model after the file.
    audio = bytes(range(256)) * 800
    t = client(gateway).audio.transcriptions.create(model="gpt-4o-mini", file=("speech.wav", audio, "audio/wav"))
    assert t.text.startswith("(the demo's transcript of a ")
    size = int(t.text.split("a ", 1)[1].split("-byte", 1)[0])
    assert size > len(audio)  # the whole form arrived
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks translations deprecated
        tr = client(gateway).audio.translations.create(model="gpt-4o-mini", file=("speech.wav", audio, "audio/wav"))
    assert tr.text
    img = client(gateway).images.edit(model="gpt-4o-mini", image=("a.png", b"\x89PNG\r\n\x1a\n", "image/png"), prompt="a hat")
    assert img.data[0].b64_json
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).audio.transcriptions.create(model="", file=("speech.wav", audio, "audio/wav"))
    assert e.value.status_code == 400


def test_files_and_batches_through_the_sdk(gateway):
    c = client(gateway)
    lines = b'{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}}\n'
    f = c.files.create(file=("requests.jsonl", lines, "application/jsonl"), purpose="batch")
    assert f.id and f.purpose == "batch"
    # The provider runs the batch as written: the gateway gave it the provider's model name.
    stored = c.files.content(f.id).read()
    line = json.loads(stored)
    assert line["custom_id"] == "r1" and line["body"]["model"] == "demo-model-1"
    assert c.files.retrieve(f.id).bytes == len(stored)
    assert f.id in [x.id for x in c.files.list()]
    batch = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = c.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.total == 1
    first = json.loads(c.files.content(batch.output_file_id).text.splitlines()[0])
    assert first["custom_id"] == "r1" and first["response"]["status_code"] == 200
    assert batch.id in [b.id for b in c.batches.list()]
    # Another key neither reads the file nor sees it listed. (Not the rpm-limited key:
    # object calls count against its limit, which other tests use up.)
    from conftest import DEMO_BUDGET_KEY

    other = client(gateway, key=DEMO_BUDGET_KEY)
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(f.id)
    assert f.id not in [x.id for x in other.files.list()]
    assert c.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)
