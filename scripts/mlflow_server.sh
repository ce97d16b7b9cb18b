#!/usr/bin/env bash
# Start an MLflow tracking server for runs whose jobs are on several machines (a SLURM cluster):
# sqlite's file lock is not safe on network file systems, so the jobs talk to this server over
# HTTP, and the server alone writes its sqlite store and artifacts, on its own local disk.
#
#   bash scripts/mlflow_server.sh [--store DIR] [--port 5000] [--host 0.0.0.0]
#
# Prints the tracking URI to put in the config (mlflow.tracking_uri, with mlflow.artifact_location: null
# so that artifacts go through the server); the server runs on in the background, its pid in
# DIR/server.pid and its log in DIR/server.log. Stop it with: kill "$(cat DIR/server.pid)".
# Default store: ~/animote-mlflow (a local disk of the machine it runs on, e.g. the login node).
set -euo pipefail
cd "$(dirname "$0")/.."
STORE="$HOME/animote-mlflow"; PORT=5000; HOST=0.0.0.0
while [ $# -gt 0 ]; do
  case "$1" in
    --store) STORE="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --host) HOST="$2"; shift 2 ;;
    *) echo "mlflow_server: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$STORE/artifacts"
STORE="$(cd "$STORE" && pwd)"
if [ -f "$STORE/server.pid" ] && kill -0 "$(cat "$STORE/server.pid")" 2>/dev/null; then
  echo "mlflow_server: already running (pid $(cat "$STORE/server.pid")); stop it first" >&2; exit 1
fi
export MLFLOW_DISABLE_TELEMETRY=true
setsid .venv/bin/mlflow server --backend-store-uri "sqlite:///$STORE/mlflow.db" \
  --artifacts-destination "$STORE/artifacts" --host "$HOST" --port "$PORT" --workers 1 \
  >"$STORE/server.log" 2>&1 < /dev/null &
echo $! > "$STORE/server.pid"
URI="http://$( [ "$HOST" = 0.0.0.0 ] && hostname -f 2>/dev/null || echo "$HOST" ):$PORT"
for _ in $(seq 1 120); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=1)" \
       "http://127.0.0.1:$PORT" 2>/dev/null; then
    echo "$URI"; exit 0
  fi
  if ! kill -0 "$(cat "$STORE/server.pid")" 2>/dev/null; then
    echo "mlflow_server: the server exited; its log:" >&2; tail -20 "$STORE/server.log" >&2; exit 1
  fi
  sleep 0.5
done
echo "mlflow_server: no answer on port $PORT after 60 s; see $STORE/server.log" >&2; exit 1
