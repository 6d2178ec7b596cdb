#!/usr/bin/env bash
# Installs everything the project needs, idempotently: Debian packages, a virtual
# environment with the package and its extras, and a cached livekit-server build.
# Usage: scripts/setup.sh [EXTRAS]   (default: dev,demo)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev,demo}"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages listed by each part of the project in scripts/apt/*.txt.
wanted=$(cat scripts/apt/*.txt 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u || true)
missing=()
for pkg in $wanted; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Python environment (re-installed only when pyproject.toml changes).
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
  say "installing Python packages (extras: $EXTRAS)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[$EXTRAS]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# 3. The LiveKit server: on PATH, LIVEKIT_SERVER_BIN, the cache, or built once with Go.
if [ -z "${LIVEKIT_URL:-}" ]; then
  .venv/bin/livekit-avatar server --build
fi

# 4. The browser viewer: npm packages from web/package-lock.json, bundled into the Python
# package (livekit_avatar_plugin/viewer/static/) when missing or older than its sources.
if ! command -v npm >/dev/null; then
  say "installing Debian's npm"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  say "installing the viewer's npm packages"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
stamp_file=livekit_avatar_plugin/viewer/static/BUILD_STAMP
if [ ! -f "$stamp_file" ] || [ -n "$(find web/src web/build.mjs web/package-lock.json -newer "$stamp_file" 2>/dev/null | head -1)" ]; then
  say "bundling the viewer page"
  (cd web && npm run --silent build)
fi
say "ready"
