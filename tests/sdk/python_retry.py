"""The OpenAI SDK's built-in retry, unmodified, waits exactly as long as groxy's 429 says (driven by tests/it/sdk.rs)."""
import os
import time

import openai

BASE = os.environ["GROXY_BASE"]
MODEL = "openai/gpt-oss-20b"
MESSAGES = [{"role": "user", "content": "Say hi"}]

client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=os.environ["GROXY_CLIENT_KEY"], max_retries=0, timeout=30)

# Spend the key's budget until groxy refuses.
for _ in range(100):
    try:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    except openai.RateLimitError as e:
        wait_ms = int(e.response.headers["retry-after-ms"])
        assert e.response.headers["x-ratelimit-remaining-requests"] == "0", e.response.headers
        assert e.body["type"] == "requests", e.body
        break
else:
    raise AssertionError("groxy never refused")

# The same call with the SDK's default retry policy succeeds after one retry, having waited
# about what groxy said.
patient = client.with_options(max_retries=2)
started = time.monotonic()
raw = patient.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
elapsed_ms = (time.monotonic() - started) * 1000
assert raw.retries_taken == 1, raw.retries_taken
assert raw.parse().choices[0].message.content
assert elapsed_ms >= wait_ms - 200, (elapsed_ms, wait_ms)
assert elapsed_ms <= wait_ms + 3000, (elapsed_ms, wait_ms)
print(f"ok: sdk retry honoured retry-after-ms={wait_ms} and succeeded after {elapsed_ms:.0f} ms")
