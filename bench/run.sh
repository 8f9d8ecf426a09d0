#!/usr/bin/env bash
# Relay throughput matrix on loopback: Petrel vs Postfix vs the loopback
# limit, for one message per connection and reused connections, at several
# client counts. Must run as root (installs Postfix; cgroups for CPU).
#
#   bench/run.sh                         # the full matrix, N = 20,000, 2 KB
#   bench/run.sh --clients 200 --shapes one --setups petrel,postfix
#   bench/run.sh --size 1048576 --n 2000 # large messages
#   bench/run.sh --rcpts 100 --n 500     # 100 recipients per message
#
# Setups: direct (smtp-source -> sink), petrel (bare policy), petrel+lua (a
# policy with reception, queue and path events), petrel+dkim (an RSA-2048
# DKIM signature on every message), postfix (tuned private instance),
# baseline (another Petrel build, PETREL_BASELINE=/path/to/petrel, with the
# bare policy: a regression check within one run). Petrel sends from 127.0.0.2 and 127.0.0.3 weighted 1:2; the
# sink counts what it acknowledged from each. See bench/matrix.py --help.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/petrel/target}"

log() { printf '%s\n' "$*" >&2; }

if ! command -v smtp-source >/dev/null || ! command -v postfix >/dev/null; then
  log "installing postfix (its own daemon is not started)"
  # Keep Debian's maintainer scripts from starting the system instance.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
log "building release binaries"
(cd "$ROOT" && make -s deps && cargo build -q --release -p petrel -p petrel-testkit --bins)
# smtp-source opens up to 1,000 sockets at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 "$ROOT/bench/matrix.py" "$@"
