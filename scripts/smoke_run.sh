#!/usr/bin/env bash
# The README's promise for `make run` on a fresh clone, checked by .ci/run: the command brings the
# detector, the analyzer and the bridge up on their embedded defaults, prints the URL, /health
# reports each one SERVING, and SIGTERM takes everything down with exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
setsid make run >"$log" 2>&1 &
pid=$!
stop() { kill -TERM -- "-$pid" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 300); do
  grep -q "Open http://127.0.0.1:8000/" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "make run exited early" >&2; exit 1; }
  sleep 1
done
grep -q "Open http://127.0.0.1:8000/" "$log" || { cat "$log"; echo "no URL in 300 s" >&2; exit 1; }
health=$(curl -fsS http://127.0.0.1:8000/health)
echo "GET /health: $health"
.venv/bin/python - "$health" <<'PY'
import json, sys
services = json.loads(sys.argv[1])["services"]
expected = {"bridge": "SERVING", "detector": "SERVING", "analyzer": "SERVING"}
sys.exit(0 if services == expected else f"not every service is serving: {services}")
PY
curl -fsS -o /dev/null http://127.0.0.1:8000/ && echo "GET /: 200"
# SIGTERM to the launcher alone (not to make): it stops the services, and make exits with its code.
pkill -TERM -g "$pid" -f "bin/vigil run"
rc=0
wait "$pid" || rc=$?
trap - EXIT
echo "make run stopped (exit $rc)"
[ "$rc" -eq 0 ] || { tail -20 "$log"; exit 1; }
for _ in $(seq 1 20); do pgrep -g "$pid" >/dev/null || exit 0; sleep 0.5; done
echo "processes left behind: $(pgrep -a -g "$pid")" >&2
exit 1
