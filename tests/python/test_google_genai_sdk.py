"""The official Google GenAI SDK against modelgate's Gemini endpoints, served by the demo's
OpenAI-compatible provider: requests and responses (streams included) are translated."""

import pytest
from google import genai
from google.genai import errors, types

from conftest import DEMO_KEY, MODELS_BY_KIND

kinds = pytest.mark.parametrize("model", MODELS_BY_KIND)


def client(gateway, key=DEMO_KEY):
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=gateway["base"]))


@kinds
def test_generate_content(gateway, model):
    c = client(gateway)  # kept: the SDK closes its HTTP client when the Client is dropped
    r = c.models.generate_content(
        model=model,
        contents="ping",
        config=types.GenerateContentConfig(system_instruction="You are a test.", max_output_tokens=50),
    )
    assert "You said: ping" in r.text
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.candidates_token_count > 0


@kinds
def test_stream_generate_content(gateway, model):
    c = client(gateway)
    chunks = list(c.models.generate_content_stream(model=model, contents="stream please"))
    text = "".join(c.text or "" for c in chunks)
    assert text.startswith("Hello from the modelgate demo provider!")
    assert len(chunks) > 3
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


@kinds
def test_function_call_round_trip(gateway, model):
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city",
        parameters=types.Schema(
            type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
        ),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    c = client(gateway)
    first = c.models.generate_content(model=model, contents="Weather in Paris?", config=config)
    call = first.function_calls[0]
    assert call.name == "get_weather" and call.args == {"city": "demo"}
    history = [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response={"result": "18C"})],
        ),
    ]
    second = c.models.generate_content(model=model, contents=history, config=config)
    assert second.text == "The tool returned: 18C"


def test_errors_raise_client_errors(gateway):
    bad, good = client(gateway, key="wrong-key-123456"), client(gateway)
    with pytest.raises(errors.ClientError) as e:
        bad.models.generate_content(model="gpt-4o-mini", contents="x")
    assert e.value.code == 401 and e.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as e:
        good.models.generate_content(model="no-such-model", contents="x")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"


def test_count_tokens_is_estimated_for_other_kinds(gateway):
    c = client(gateway)
    r = c.models.count_tokens(model="gpt-4o-mini", contents="y" * 800)
    assert 200 <= r.total_tokens <= 205
