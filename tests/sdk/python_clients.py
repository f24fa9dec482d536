"""The official openai and groq Python SDKs, unmodified, pointed at groxy (driven by tests/it/sdk.rs).

Each check prints `ok: <name>`; any failure raises, which fails the Rust test with this output.
"""
import asyncio
import json
import os

import groq
import openai

BASE = os.environ["GROXY_BASE"]
MODEL = "openai/gpt-oss-20b"
MESSAGES = [{"role": "user", "content": "Say hi"}]


def ok(name):
    print(f"ok: {name}", flush=True)


def check_openai_sync():
    client = openai.OpenAI(base_url=f"{BASE}/v1", max_retries=0, timeout=20)
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert r.choices[0].message.content, r
    assert r.usage.total_tokens > 0
    ok("openai sync plain")

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers.get("x-groq-request-id", "").startswith("req_"), raw.headers
    assert len(raw.headers.get("x-request-id", "")) == 36, raw.headers  # groxy's own id
    assert "set-cookie" not in raw.headers

    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text, chunks
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    ok("openai sync stream")

    # Unmodified OpenAI code: an OpenAI model name and OpenAI-only fields.
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, store=True, metadata={"team": "search"})
    assert raw.headers["x-groxy-stripped"] == "store,metadata", raw.headers
    assert raw.headers["x-groxy-mapped"] == "model", raw.headers
    assert raw.parse().choices[0].message.content
    ok("openai alias and openai-only fields")

    try:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2)
        raise AssertionError("expected a 400")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert e.body["message"] == "'n' : number must be at most 1", e.body
        assert e.body["param"] == "n", e.body
    ok("openai validation error")

    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=["\n\n", "END"])
    assert r.choices[0].finish_reason in ("stop", "length"), r
    ok("openai stop")

    r = client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                       response_format={"type": "json_object"})
    json.loads(r.choices[0].message.content)
    ok("openai json mode")

    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=tools, tool_choice="auto")
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name and json.loads(call.function.arguments) is not None
    streamed = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=tools, stream=True))
    assert any(c.choices and c.choices[0].delta.tool_calls for c in streamed), streamed
    ok("openai tools")

    models = client.models.list()
    ids = [m.id for m in models]
    assert MODEL in ids, ids
    assert client.models.retrieve(MODEL).id == MODEL
    ok("openai models.list")

    try:
        client.models.retrieve("does-not/exist")
        raise AssertionError("expected a 404")
    except openai.NotFoundError as e:
        assert e.status_code == 404
        assert e.body["code"] == "model_not_found", e.body
    try:
        client.post("/nonexistent", cast_to=object, body={})
        raise AssertionError("expected a 404")
    except openai.NotFoundError as e:
        assert e.body["code"] == "unknown_url", e.body
    ok("openai error")


async def check_openai_async():
    client = openai.AsyncOpenAI(base_url=f"{BASE}/v1", max_retries=0, timeout=20)
    r = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert r.choices[0].message.content
    ok("openai async plain")
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text
    ok("openai async stream")
    await client.close()


def check_groq_sync():
    # The Groq SDK puts /openai/v1 in every path, so its base_url is the bare host.
    client = groq.Groq(base_url=BASE, max_retries=0, timeout=20)
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert r.choices[0].message.content
    ok("groq sync plain")
    text = "".join(c.choices[0].delta.content or ""
                   for c in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                   if c.choices)
    assert text
    ok("groq sync stream")
    assert MODEL in [m.id for m in client.models.list().data]
    ok("groq models.list")


async def check_groq_async():
    client = groq.AsyncGroq(base_url=BASE, max_retries=0, timeout=20)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text
    ok("groq async stream")


def check_openai_responses():
    client = openai.OpenAI(base_url=f"{BASE}/v1", max_retries=0, timeout=20)
    r = client.responses.create(model=MODEL, input="Say hi", instructions="Be brief", max_output_tokens=64)
    assert r.output_text, r
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
    ok("openai responses.create")

    with client.responses.stream(model=MODEL, input=MESSAGES, temperature=0) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas and final.output_text == deltas, (deltas, final.output_text)
    assert final.usage.total_tokens > 0
    ok("openai responses.stream")

    tools = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    r = client.responses.create(model=MODEL, input=MESSAGES, tools=tools)
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather", r.output
    assert json.loads(call.arguments) == {"city": "Paris"}, call.arguments
    # The next turn sends the call back with its output: the stateless way.
    turn = MESSAGES + [call.model_dump(exclude_none=True),
                       {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    assert client.responses.create(model=MODEL, input=turn, tools=tools, tool_choice="none").output_text
    with client.responses.stream(model=MODEL, input=MESSAGES, tools=tools) as stream:
        args = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Paris"}, args
    ok("openai responses tools")

    try:
        client.responses.create(model=MODEL, input="Say hi", store=True)
        raise AssertionError("expected a 400")
    except openai.BadRequestError as e:
        assert e.body["param"] == "store", e.body
        assert e.body["message"].startswith("`store` is not supported"), e.body
    ok("openai responses store refused")

    try:
        with client.responses.stream(model=MODEL, input="Say hi",
                                     extra_headers={"x-sim-reply": "drop-after:4"}) as stream:
            for _ in stream:
                pass
        raise AssertionError("expected the stream to raise")
    except openai.APIError as e:
        assert "upstream" in e.message.lower(), e.message
        assert e.body["code"] == "upstream_truncated", e.body
    ok("openai responses truncation raises")


check_openai_sync()
check_openai_responses()
asyncio.run(check_openai_async())
check_groq_sync()
asyncio.run(check_groq_async())
