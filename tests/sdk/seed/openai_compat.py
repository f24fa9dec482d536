# Groq's OpenAI-compatibility example as the seed project shipped it
# (console.groq.com/docs/openai, 2024). The one change: the base URL comes from OPENAI_BASE_URL
# when set (tests/it/sdk.rs points it at groxy) instead of being written out.
import os

import openai

client = openai.OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "https://api.groq.com/openai/v1"),
    api_key=os.environ.get("GROQ_API_KEY")
)

chat_completion = client.chat.completions.create(
    messages=[
        {
            "role": "user",
            "content": "Explain the importance of fast language models",
        }
    ],
    model="llama3-8b-8192",
)

print(chat_completion.choices[0].message.content)
