"""Writes the fuzz targets' seed inputs from tests/fixtures and conf/ into fuzz/seeds/.

Each target reads a few leading selector bytes (protocols, flags, where to split), then
the body; the seeds are the fixtures' real bodies behind the selectors that match them.
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds")
INDEX = {"openai": 0, "responses": 1, "anthropic": 2, "gemini": 3}
CUTS = bytes([37, 80, 129, 200, 251])


def put(target: str, name: str, data: bytes) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


for fx in sorted((ROOT / "tests" / "fixtures").iterdir()):
    if "_to_" not in fx.name:
        continue
    client, provider = (INDEX[p] for p in fx.name.split("_to_"))
    files = {f.name: f.read_bytes() for f in fx.iterdir()}
    if "request.client.json" in files:
        put("translate_request", fx.name, bytes([client]) + files["request.client.json"])
    for side, proto in (("client", client), ("provider", provider)):
        if f"response.{side}.json" in files:
            body = files[f"response.{side}.json"]
            put("translate_response", f"{fx.name}.{side}", bytes([provider, client]) + CUTS[:2] + body)
            put("passthrough_relay", f"{fx.name}.{side}.json", bytes([proto, 2]) + CUTS[:4] + body)
        if f"stream.{side}.sse" in files:
            body = files[f"stream.{side}.sse"]
            put("sse_framer", f"{fx.name}.{side}", CUTS + bytes(3) + body)
            for flags in (1, 3, 5):
                put("passthrough_relay", f"{fx.name}.{side}.{flags}", bytes([proto, flags]) + CUTS[:4] + body)
    if "stream.provider.sse" in files:
        for flags in (0, 1, 2, 3):
            put(
                "translate_stream",
                f"{fx.name}.{flags}",
                bytes([provider, client, flags]) + CUTS + files["stream.provider.sse"],
            )
for f in (ROOT / "tests" / "fixtures" / "cli").glob("*.json"):
    proto = INDEX["anthropic"] if "claude" in f.name else INDEX["gemini"]
    put("translate_request", f"cli.{f.stem}", bytes([proto]) + f.read_bytes())
for f in (ROOT / "conf").glob("*.yaml"):
    put("config_load", f.name, f.read_bytes())
put("config_load", "minimal.yaml", b"providers:\n  p: { kind: openai, base_url: \"http://127.0.0.1:1\", credentials: [\"${SET}\"] }\nmodels:\n  m: { targets: [{ provider: p }] }\nkeys:\n  - { name: k, key: \"${SET}\" }\n")
for i, (q, hs) in enumerate([
    ("", ["Bearer sk-abc-123", "", "", "203.0.113.7, 127.0.0.1"]),
    ("key=AIza-xyz&alt=sse", ["", "", "", "", "10.0.0.1"]),
    ("", ["Basic dXNlcjpwYXNz", "sk-ant-1"]),
    ("x=1", ["bearer  sk-two-spaces ", "", "g-key", "", "", "for=192.0.2.60;proto=http"]),
]):
    put("key_extraction", f"k{i}", "\n".join([q] + hs).encode())
for i, p in enumerate([
    "/v1/chat/completions", "/v1/responses/resp_1/input_items", "/v1/messages/count_tokens",
    "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "/v1/v1/models",
    "/v1/files/file-1/content", "/v1beta/models/veo:predictLongRunning",
]):
    put("path_classification", f"p{i}", bytes([i]) + p.encode())
put("path_classification", "raw", b"\x00POST /v1/messages HTTP/1.1\r\nx-api-key: k\r\nbroken\r\n")
