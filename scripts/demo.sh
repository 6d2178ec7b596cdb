#!/usr/bin/env bash
# The main job: set everything up, start a local LiveKit server on loopback and the
# example agent worker (in dev mode) with the avatar. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh dev,demo

cleanup() {
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if [ -z "${LIVEKIT_URL:-}" ]; then
  .venv/bin/livekit-avatar server --port "${LIVEKIT_PORT:-7880}" &
  SERVER_PID=$!
  export LIVEKIT_URL="ws://127.0.0.1:${LIVEKIT_PORT:-7880}" LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:${LIVEKIT_PORT:-7880}/" >/dev/null && break
    sleep 0.1
  done
fi
echo "LiveKit server: $LIVEKIT_URL (key $LIVEKIT_API_KEY). Join any room with a LiveKit client;"
echo "the agent and its avatar are dispatched into it."
.venv/bin/python examples/agent.py dev &
AGENT_PID=$!
wait "$AGENT_PID"
