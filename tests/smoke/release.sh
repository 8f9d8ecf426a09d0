#!/usr/bin/env bash
# The optimized build, as operators and the benchmarks run it: start
# `petrel serve` from target/release, relay one message through it to
# petrel-bench-sink, and check that the sink acknowledged it from the
# policy's source address. Debug builds can hide what only an optimized
# build does (stack contents, inlining), so this runs in `make test`.
#
#   tests/smoke/release.sh TARGET_DIR
set -euo pipefail
TARGET=${1:?usage: tests/smoke/release.sh TARGET_DIR}
PETREL="$TARGET/release/petrel"
SINK="$TARGET/release/petrel-bench-sink"
WORK=$(mktemp -d /tmp/petrel-smoke.XXXXXX)
pids=()
# Wait for the processes to end: a stopping Petrel still writes its state.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "release smoke: nothing listening on port $1" >&2
  [ -f "$WORK/petrel.out" ] && cat "$WORK/petrel.out" >&2
  return 1
}

SINK_PORT=$(free_port); PORT=$(free_port)
"$SINK" --listen 127.0.0.1:"$SINK_PORT" --expect 1 --progress 0 > "$WORK/tally.json" &
sink_pid=$!; pids+=("$sink_pid")
cat > "$WORK/init.lua" <<LUA
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$WORK/spool' }
  kumo.configure_local_logs { log_dir = '$WORK/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:$PORT', relay_hosts = { '127.0.0.1' } }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2' }
  kumo.define_egress_pool { name = 'p', entries = { { name = 'ip-2' } } }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { egress_pool = 'p', protocol = { smtp = { mx_list = { '127.0.0.1:$SINK_PORT' } } } }
end)
LUA
"$PETREL" serve --policy "$WORK/init.lua" > "$WORK/petrel.out" 2>&1 &
pids+=("$!")
wait_port "$SINK_PORT"; wait_port "$PORT"
python3 - "$PORT" <<'PY'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    s.sendmail("smoke@sender.example", ["user@dest.example"], "Subject: smoke\r\n\r\nhello\r\n")
PY
for _ in $(seq 1 200); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.05; done
if ! grep -q '"127.0.0.2": 1' "$WORK/tally.json"; then
  echo "release smoke: the sink did not acknowledge the message from 127.0.0.2" >&2
  cat "$WORK/tally.json" "$WORK/petrel.out" >&2
  exit 1
fi
echo "release smoke: relayed through the optimized build"
