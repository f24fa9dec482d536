// Groq's OpenAI-compatibility example for Node as the seed project shipped it
// (console.groq.com/docs/openai, 2024). The one change: the base URL comes from OPENAI_BASE_URL
// when set (tests/it/sdk.rs points it at groxy) instead of being written out.
import OpenAI from "openai";

const client = new OpenAI({
  apiKey: process.env.GROQ_API_KEY,
  baseURL: process.env.OPENAI_BASE_URL ?? "https://api.groq.com/openai/v1",
});

async function main() {
  const chatCompletion = await client.chat.completions.create({
    messages: [{ role: "user", content: "Explain the importance of fast language models" }],
    model: "llama3-8b-8192",
  });
  console.log(chatCompletion.choices[0]?.message?.content || "");
}

main();
