#!/usr/bin/env bash
# Installs what the headless-browser dashboard check needs, once:
#   setup.sh chromium -> Debian's chromium at /usr/bin/chromium (apt-get, needs root)
#   setup.sh node     -> tests/browser/node_modules with playwright-core and pngjs
# playwright-core never downloads a browser of its own; the check drives the system chromium.
# Re-running is cheap: a stamp file records what was installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
what="${1:-all}"

# Serialise concurrent callers (cargo runs tests in parallel).
exec 9>"$here/.setup.lock"
flock 9

if [[ "$what" == chromium || "$what" == all ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    if ! command -v apt-get >/dev/null; then
      echo "setup.sh: /usr/bin/chromium is missing and apt-get is not available" >&2
      exit 1
    fi
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium >/dev/null
  fi
fi

if [[ "$what" == node || "$what" == all ]]; then
  if ! command -v node >/dev/null; then
    echo "setup.sh: node is not installed" >&2
    exit 1
  fi
  want="$(cat package.json)"
  if [[ ! -d node_modules/playwright-core || ! -d node_modules/pngjs || "$(cat node_modules/.stamp 2>/dev/null)" != "$want" ]]; then
    npm install --silent --no-audit --no-fund --no-package-lock >/dev/null
    printf '%s' "$want" > node_modules/.stamp
  fi
fi
