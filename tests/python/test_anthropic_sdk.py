"""The official Anthropic SDK against modelgate's /v1/messages, served by the demo's
OpenAI-compatible provider: every request and response is translated."""

import anthropic
import pytest

from conftest import DEMO_KEY, MODELS_BY_KIND

kinds = pytest.mark.parametrize("model", MODELS_BY_KIND)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(gateway, key=DEMO_KEY):
    return anthropic.Anthropic(base_url=gateway["base"], api_key=key, max_retries=0)


@kinds
def test_message(gateway, model):
    m = client(gateway).messages.create(
        model=model,
        max_tokens=100,
        system="You are a test.",
        messages=[{"role": "user", "content": "ping"}],
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.model == model
    assert m.content[0].type == "text" and "You said: ping" in m.content[0].text
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens > 0


@kinds
def test_streamed_message(gateway, model):
    with client(gateway).messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "stream"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello from the modelgate demo provider!")
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@kinds
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(gateway, stream, model):
    c = client(gateway)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with c.messages.stream(model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=messages) as s:
            first = s.get_final_message()
    else:
        first = c.messages.create(model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=messages)
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "demo"}
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]},
    ]
    second = c.messages.create(model=model, max_tokens=100, tools=[WEATHER_TOOL], messages=messages)
    assert second.content[0].text == "The tool returned: 18C and sunny"


def test_errors_raise_the_sdk_classes(gateway):
    with pytest.raises(anthropic.AuthenticationError):
        client(gateway, key="sk-wrong-key-123456").messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.NotFoundError) as e:
        client(gateway).messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.body["error"]["type"] == "not_found_error"


def test_rate_limit_raises_rate_limit_error(gateway):
    from conftest import DEMO_LIMITED_KEY

    c = client(gateway, key=DEMO_LIMITED_KEY)
    with pytest.raises(anthropic.RateLimitError) as e:
        for _ in range(5):
            c.messages.create(model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "rate_limit_error"


def test_a_spent_budget_raises_rate_limit_error_with_its_code(gateway):
    from conftest import DEMO_BUDGET_KEY

    c = client(gateway, key=DEMO_BUDGET_KEY)
    with pytest.raises(anthropic.RateLimitError) as e:
        for _ in range(5):
            c.messages.create(model="claude-demo", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["code"] == "insufficient_quota"


def test_count_tokens_is_estimated_for_other_kinds(gateway):
    c = client(gateway)
    raw = c.messages.with_raw_response.count_tokens(
        model="gpt-4o-mini", system="Be brief.", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert raw.headers["x-modelgate-token-count"] == "estimated"
    assert 100 <= raw.parse().input_tokens <= 110
