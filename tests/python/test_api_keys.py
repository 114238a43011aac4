"""A key made through the keys API, used by all three official SDKs, then revoked."""

import json
import urllib.error
import urllib.request

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

DEMO_ADMIN_KEY = "sk-modelgate-demo-admin"


def admin(gateway, method, path, body=None):
    req = urllib.request.Request(
        gateway["base"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {DEMO_ADMIN_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def api_key(gateway):
    status, body = admin(gateway, "POST", "/v0/management/keys", {"name": "sdk-user", "metadata": {"by": "pytest"}})
    assert status == 201, body
    yield body["key"]
    admin(gateway, "DELETE", "/v0/management/keys/sdk-user")


def test_one_api_key_serves_every_sdk_until_revoked(gateway, api_key):
    assert api_key.startswith("sk-mg-")
    oa = openai.OpenAI(base_url=gateway["base"] + "/v1", api_key=api_key, max_retries=0)
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
    assert "You said: ping" in r.choices[0].message.content

    an = anthropic.Anthropic(base_url=gateway["base"], api_key=api_key, max_retries=0)
    m = an.messages.create(model="claude-demo", max_tokens=50, messages=[{"role": "user", "content": "ping"}])
    assert "You said: ping" in m.content[0].text

    g = genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=gateway["base"]))
    assert "You said: ping" in g.models.generate_content(model="gemini-demo", contents="ping").text

    status, body = admin(gateway, "GET", "/v0/management/keys/sdk-user")
    assert status == 200 and body["last_used_at"], body
    assert api_key not in json.dumps(body)

    status, _ = admin(gateway, "DELETE", "/v0/management/keys/sdk-user")
    assert status == 200
    with pytest.raises(openai.AuthenticationError) as e:
        oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
    assert e.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError):
        an.messages.create(model="claude-demo", max_tokens=50, messages=[{"role": "user", "content": "ping"}])
    with pytest.raises(errors.ClientError) as ge:
        g.models.generate_content(model="gemini-demo", contents="ping")
    assert ge.value.code == 401
