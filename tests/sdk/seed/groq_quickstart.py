# Groq's quickstart as the seed project shipped it (console.groq.com/docs/quickstart, 2024),
# unmodified. The groq SDK reads GROQ_BASE_URL, which tests/it/sdk.rs points at groxy.
import os

from groq import Groq

client = Groq(
    api_key=os.environ.get("GROQ_API_KEY"),
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
