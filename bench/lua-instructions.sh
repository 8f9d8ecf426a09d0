#!/usr/bin/env bash
# Instructions per reception event for each handler variant of
# `cargo bench -p petrel-lua --bench events`, counted by callgrind: unlike
# a timing, the count repeats to within a fraction of a percent on a busy
# machine, so two builds can be compared from one run each.
#
#   bench/lua-instructions.sh                  # every variant, 2,000 events
#   bench/lua-instructions.sh "bench policy"   # one variant
#   EVENTS=5000 bench/lua-instructions.sh
#
# Each variant runs at N and 2N events on one thread (PETREL_BENCH_TASKS=0);
# the difference, less the same difference for the policy without a
# handler, divided by the extra events, is the handler's cost per event.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/petrel/target}"
N=${EVENTS:-2000}

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
echo "building the events bench" >&2
BIN=$(cd "$ROOT" && cargo bench -q -p petrel-lua --bench events --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "events" and m.get("executable"):
        print(m["executable"])')

# Total instructions of one run of the bench binary over `variant` with
# `events` calls per pass (the bench makes 1.1 calls per event it counts:
# a tenth are warm-up).
instructions() {
  PETREL_BENCH_TASKS=0 PETREL_BENCH_ITERS=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# A filter no variant matches runs the no-handler policy alone.
base1=$(instructions no-such-variant "$N")
base2=$(instructions no-such-variant $((2 * N)))
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  variants=("empty handler" "msg:sender().domain" "two set_meta" "prepend_header" "bench policy")
fi
printf '%-22s %14s\n' "variant" "instructions/event"
for v in "${variants[@]}"; do
  a=$(instructions "$v" "$N")
  b=$(instructions "$v" $((2 * N)))
  per=$(( ((b - a) - (base2 - base1)) * 10 / (11 * N) ))
  printf '%-22s %14s\n' "$v" "$per"
done
