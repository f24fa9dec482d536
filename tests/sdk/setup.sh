#!/usr/bin/env bash
# Installs the official SDKs the client tests drive, once, into tests/sdk/ (git-ignored).
#   setup.sh python   -> tests/sdk/.venv with openai and groq
#   setup.sh node     -> tests/sdk/node_modules with openai
# Re-running is cheap: a stamp file records what was installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
what="${1:-all}"

# Serialise concurrent callers (cargo runs tests in parallel).
exec 9>"$here/.setup.lock"
flock 9

if [[ "$what" == python || "$what" == all ]]; then
  want="$(cat requirements.txt)"
  if [[ ! -x .venv/bin/python || "$(cat .venv/.stamp 2>/dev/null)" != "$want" ]]; then
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    printf '%s' "$want" > .venv/.stamp
  fi
fi

if [[ "$what" == node || "$what" == all ]]; then
  if ! command -v node >/dev/null; then
    echo "setup.sh: node is not installed" >&2
    exit 1
  fi
  want="$(cat package.json)"
  if [[ ! -d node_modules/openai || "$(cat node_modules/.stamp 2>/dev/null)" != "$want" ]]; then
    npm install --silent --no-audit --no-fund --no-package-lock >/dev/null
    printf '%s' "$want" > node_modules/.stamp
  fi
fi
