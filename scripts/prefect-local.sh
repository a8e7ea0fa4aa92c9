#!/usr/bin/env bash
# A local Prefect deployment, started in order: the server (telemetry off, logs to a folder), a
# wait until its health endpoint answers, the process work pool, every deployment of prefect.yaml,
# and a worker. Ctrl-C or SIGTERM stops the worker, then the server; nothing is left running.
#
#   bash scripts/prefect-local.sh            # then, in another terminal, what it prints
#
# Environment: NST_PREFECT_PORT (default 4200), NST_PREFECT_POOL (nst-local), NST_PREFECT_LOGS
# (.prefect-local), NST_PREFECT_WAIT_S (how long to wait for the server, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${NST_PREFECT_PORT:-4200}
POOL=${NST_PREFECT_POOL:-nst-local}
LOGS=${NST_PREFECT_LOGS:-.prefect-local}
WAIT_S=${NST_PREFECT_WAIT_S:-120}
PREFECT=prefect
if ! command -v prefect >/dev/null && [ -x .venv/bin/prefect ]; then PREFECT=.venv/bin/prefect; fi
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
# Offline servers log "Failed to send telemetry" errors; nothing is sent from here.
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
mkdir -p "$LOGS"

SERVER="" WORKER=""
stop() {
  trap - INT TERM EXIT
  # The worker ignores SIGINT (it waits for its flow runs); SIGTERM stops it.
  for pid in $WORKER $SERVER; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  echo "prefect-local: stopped the worker and the server" >&2
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop' EXIT

"$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$LOGS/server.log" 2>&1 &
SERVER=$!
echo "prefect-local: starting the server on $PREFECT_API_URL (log: $LOGS/server.log)" >&2
deadline=$((SECONDS + WAIT_S))
until curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1; do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "prefect-local: the server exited before it answered; the end of its log:" >&2
    tail -n 20 "$LOGS/server.log" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "prefect-local: the server did not answer in ${WAIT_S}s (log: $LOGS/server.log)" >&2
    exit 1
  fi
  sleep 0.5
done

"$PREFECT" work-pool create "$POOL" --type process --overwrite >"$LOGS/setup.log" 2>&1
"$PREFECT" --no-prompt deploy --all >>"$LOGS/setup.log" 2>&1 || {
  echo "prefect-local: prefect deploy failed; its output:" >&2
  tail -n 30 "$LOGS/setup.log" >&2
  exit 1
}
"$PREFECT" worker start --pool "$POOL" >"$LOGS/worker.log" 2>&1 &
WORKER=$!

cat >&2 <<EOF
prefect-local: ready. Server $PREFECT_API_URL (UI: http://127.0.0.1:$PORT), pool $POOL, worker pid $WORKER, logs in $LOGS/.
  In another terminal:
    export PREFECT_API_URL=$PREFECT_API_URL
    prefect deployment run stylize-batch/default -p manifest=\$PWD/manifests/example.yaml -p output=\$PWD/example-out --watch
  Stop: Ctrl-C here (or kill $$).
EOF
wait "$WORKER"
