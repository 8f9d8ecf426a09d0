#!/usr/bin/env bash
# A million queued messages over 10,000 domains: injection rate, RAM per
# queued message, restart time, drain rate; then a fresh end-to-end row
# from the matrix to compare the drain with. See bench/backlog.py --help.
#
#   bench/backlog.sh                      # 1,000,000 messages
#   bench/backlog.sh --messages 100000    # a quicker look
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/petrel/target}"
(cd "$ROOT" && make -s deps && cargo build -q --release -p petrel -p petrel-testkit --bins)
python3 "$ROOT/bench/backlog.py" "$@"
echo "fresh end-to-end rate for comparison (reused connections, C=50, N=20000):" >&2
"$ROOT/bench/run.sh" --shapes reuse --clients 50 --setups petrel
