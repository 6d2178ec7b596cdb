#!/usr/bin/env bash
# The main job: set everything up, then run the local demo: a LiveKit server on loopback,
# the example agent worker (dev mode) with its avatar, and the browser viewer, whose URL
# is printed once the agent is ready. Ctrl-C stops all of it.
#   LIVEKIT_PORT (7880) and VIEWER_PORT (7890) move the ports (0: any free port);
#   LIVEKIT_URL + LIVEKIT_API_KEY + LIVEKIT_API_SECRET use your own server instead.
#   With OPENAI_API_KEY set the agent listens and talks through OpenAI; --realtime uses
#   its realtime model.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh dev,demo
# exec: Ctrl-C and SIGTERM go straight to the demo, which stops its children in order.
exec .venv/bin/livekit-avatar demo --port "${LIVEKIT_PORT:-7880}" --viewer-port "${VIEWER_PORT:-7890}" "$@"
