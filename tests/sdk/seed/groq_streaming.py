# Groq's streaming example as the seed project shipped it (console.groq.com/docs/text-chat, 2024),
# unmodified. The groq SDK reads GROQ_BASE_URL, which tests/it/sdk.rs points at groxy.
from groq import Groq

client = Groq()

stream = client.chat.completions.create(
    messages=[
        {
            "role": "system",
            "content": "you are a helpful assistant."
        },
        {
            "role": "user",
            "content": "Explain the importance of fast language models",
        }
    ],
    model="llama3-8b-8192",
    temperature=0.5,
    max_tokens=1024,
    top_p=1,
    stop=None,
    stream=True,
)

for chunk in stream:
    print(chunk.choices[0].delta.content, end="")
