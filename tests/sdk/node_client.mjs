// The official openai Node SDK, unmodified, pointed at groxy (driven by tests/it/sdk.rs).
import OpenAI from "openai";

const base = process.env.GROXY_BASE;
const model = "openai/gpt-oss-20b";
const messages = [{ role: "user", content: "Say hi" }];
const ok = (name) => console.log(`ok: ${name}`);
const assert = (cond, what) => { if (!cond) throw new Error(`assertion failed: ${what}`); };

const client = new OpenAI({ baseURL: `${base}/v1`, maxRetries: 0, timeout: 20000 });

const r = await client.chat.completions.create({ model, messages });
assert(r.choices[0].message.content, "plain content");
ok("node plain");

const stream = await client.chat.completions.create({ model, messages, stream: true });
let text = "";
for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
assert(text.length > 0, "streamed text");
ok("node stream");

const ids = [];
for await (const m of client.models.list()) ids.push(m.id);
assert(ids.includes(model), `models ${ids}`);
ok("node models.list");

try {
  await client.models.retrieve("does-not/exist");
  throw new Error("expected a 404");
} catch (e) {
  assert(e instanceof OpenAI.NotFoundError, `NotFoundError, got ${e}`);
  assert(e.code === "model_not_found", `code ${e.code}`);
}
ok("node error");

const r2 = await client.responses.create({ model, input: "Say hi", max_output_tokens: 64 });
assert(r2.output_text, "responses output_text");
assert(r2.usage.input_tokens > 0, "responses usage");
ok("node responses.create");

const rs = client.responses.stream({ model, input: messages, temperature: 0 });
let deltas = "";
for await (const event of rs) if (event.type === "response.output_text.delta") deltas += event.delta;
const final = await rs.finalResponse();
assert(deltas && final.output_text === deltas, `streamed ${deltas} vs ${final.output_text}`);
ok("node responses.stream");

const tools = [{ type: "function", name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }];
const called = await client.responses.create({ model, input: messages, tools });
const call = called.output[0];
assert(call.type === "function_call" && call.name === "get_weather", `call ${JSON.stringify(call)}`);
assert(JSON.parse(call.arguments).city === "Paris", `arguments ${call.arguments}`);
const next = await client.responses.create({
  model, tools, tool_choice: "none",
  input: [...messages, call, { type: "function_call_output", call_id: call.call_id, output: "sunny" }],
});
assert(next.output_text, "the next turn");
ok("node responses tools");

try {
  const cut = client.responses.stream({ model, input: "Say hi" }, { headers: { "x-sim-reply": "drop-after:4" } });
  for await (const _ of cut) { /* the error event raises */ }
  throw new Error("expected the stream to raise");
} catch (e) {
  assert(e instanceof OpenAI.APIError, `APIError, got ${e}`);
  assert(e.code === "upstream_truncated", `code ${e.code}`);
}
ok("node responses truncation raises");
