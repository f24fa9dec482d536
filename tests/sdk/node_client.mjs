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
