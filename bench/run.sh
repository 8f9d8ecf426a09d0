#!/usr/bin/env bash
# Petrel vs Postfix relay throughput on loopback.
#
#   bench/run.sh [N messages] [S bytes] [C concurrent sessions]
#
# For each of three setups, smtp-source injects N messages of S bytes over C
# sessions and Postfix's smtp-sink (which exits after N messages) receives
# them:
#   direct   smtp-source -> smtp-sink            (the loopback limit)
#   petrel   smtp-source -> Petrel -> smtp-sink  (two sources 127.0.0.2/.3)
#   postfix  smtp-source -> Postfix -> smtp-sink (a private relay instance)
# Both MTAs fsync their queue before answering 250. Prints a table with
# injection and end-to-end rates, machine CPU per message, and ratios.
set -euo pipefail
N=${1:-20000}
S=${2:-2048}
C=${3:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(mktemp -d /tmp/petrel-bench.XXXXXX)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/petrel/target}"
PETREL="$CARGO_TARGET_DIR/release/petrel"

log() { printf '%s\n' "$*" >&2; }

install_tools() {
  if ! command -v smtp-source >/dev/null || ! command -v postfix >/dev/null; then
    log "installing postfix (its own daemon is not started)"
    # Keep Debian's maintainer scripts from starting the system instance.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  (cd "$ROOT" && make -s deps && cargo build -q --release -p petrel)
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Busy CPU ticks of the whole machine (user+nice+system+irq+softirq).
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  log "nothing listening on port $1"; return 1
}

# run NAME TARGET_PORT SINK_PORT: inject, wait for the sink, print a row.
run() {
  local name=$1 target=$2 sink_port=$3
  smtp-sink -u nobody -M "$N" 127.0.0.1:"$sink_port" 1024 &
  local sink_pid=$!
  wait_port "$sink_port"
  local cpu0 t0 t1 t2 cpu1
  cpu0=$(busy_ticks); t0=$(date +%s.%N)
  # The sink exits after N messages, so the last sessions lose their QUIT.
  smtp-source -d -s "$C" -m "$N" -l "$S" -f bench@sender.example -t user@dest.example 127.0.0.1:"$target" 2>/dev/null || true
  t1=$(date +%s.%N)
  wait "$sink_pid"
  t2=$(date +%s.%N); cpu1=$(busy_ticks)
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$name" "$N" "$t0" "$t1" "$t2" "$cpu0" "$cpu1" "$hz" <<'PY'
import sys
name, n, t0, t1, t2, c0, c1, hz = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:8]), int(sys.argv[8])
inj = n / (t1 - t0); e2e = n / (t2 - t0); cpu_ms = (c1 - c0) / hz * 1000 / n
print(f"{name}\t{inj:.0f}\t{e2e:.0f}\t{cpu_ms:.3f}")
PY
}

petrel_policy() {
  cat > "$BENCH/petrel.lua" <<LUA
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$BENCH/petrel-spool' }
  kumo.configure_local_logs { log_dir = '$BENCH/petrel-logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:$1', relay_hosts = { '127.0.0.1' } }
  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.2', ehlo_domain = 'mta2.bench' }
  kumo.define_egress_source { name = 'ip-3', source_address = '127.0.0.3', ehlo_domain = 'mta3.bench' }
  kumo.define_egress_pool { name = 'bench', entries = { { name = 'ip-2' }, { name = 'ip-3' } } }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { egress_pool = 'bench', protocol = { smtp = { mx_list = { '127.0.0.1:$2' } } } }
end)
-- smtp-source sends byte-identical messages, which Petrel would otherwise
-- merge into multi-recipient transactions; Postfix cannot, so keep it fair.
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { max_recipients_per_batch = 1 }
end)
LUA
}

# A private Postfix relay: its own config, queue and port. Postfix only
# accepts `postfix -c DIR` for directories the default main.cf names, so the
# instance lives at a fixed path and a minimal default main.cf says so.
PF_CONF=/tmp/petrel-bench-postfix
postfix_instance() {
  local marker="# written by petrel bench/run.sh"
  if [ ! -f /etc/postfix/main.cf ] || grep -q "$marker" /etc/postfix/main.cf; then
    printf '%s\ncompatibility_level = 3.6\nalternate_config_directories = %s\n' "$marker" "$PF_CONF" > /etc/postfix/main.cf
  fi
  rm -rf "$PF_CONF"; mkdir -p "$PF_CONF"
  chmod 755 "$BENCH"
  mkdir -p "$BENCH/postfix-queue" "$BENCH/postfix-data"
  chown postfix "$BENCH/postfix-data"
  cat > "$PF_CONF/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $BENCH/postfix-queue
data_directory = $BENCH/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$2
smtputf8_enable = no
default_process_limit = $((C * 2))
default_destination_concurrency_limit = 64
smtpd_relay_restrictions = permit_mynetworks, reject
CF
  sed -e "s/^smtp      inet .*/127.0.0.1:$1 inet n - n - - smtpd/" \
      -e 's/^\(postlog .*\)/#\1/' /etc/postfix/master.cf > "$PF_CONF/master.cf"
  postfix -c "$PF_CONF" post-install create-missing >/dev/null 2>&1
  postfix -c "$PF_CONF" start >/dev/null 2>&1
}

main() {
  install_tools
  local rows=()
  log "N=$N messages, S=$S bytes, C=$C sessions"

  local sink; sink=$(free_port)
  log "direct: smtp-source -> smtp-sink"
  rows+=("$(run direct "$sink" "$sink")")

  local pport; pport=$(free_port); sink=$(free_port)
  petrel_policy "$pport" "$sink"
  "$PETREL" serve --policy "$BENCH/petrel.lua" >"$BENCH/petrel.out" 2>&1 &
  local petrel_pid=$!
  wait_port "$pport"
  log "petrel: smtp-source -> petrel -> smtp-sink"
  rows+=("$(run petrel "$pport" "$sink")")
  local rss; rss=$(awk '/VmHWM/{print $2}' /proc/"$petrel_pid"/status)
  kill "$petrel_pid"; wait "$petrel_pid" || true

  local fport; fport=$(free_port); sink=$(free_port)
  postfix_instance "$fport" "$sink"
  wait_port "$fport"
  log "postfix: smtp-source -> postfix -> smtp-sink"
  rows+=("$(run postfix "$fport" "$sink")")
  postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true

  python3 - "$rss" "${rows[@]}" <<'PY'
import sys
rss = int(sys.argv[1])
rows = {r.split("\t")[0]: list(map(float, r.split("\t")[1:])) for r in sys.argv[2:]}
print(f"{'setup':<8} {'inject msg/s':>13} {'end-to-end msg/s':>17} {'machine CPU ms/msg':>19}")
for name in ("direct", "petrel", "postfix"):
    inj, e2e, cpu = rows[name]
    print(f"{name:<8} {inj:>13.0f} {e2e:>17.0f} {cpu:>19.3f}")
p, f, d = rows["petrel"], rows["postfix"], rows["direct"]
print(f"\npetrel/postfix end-to-end: {p[1]/f[1]:.2f}x   petrel/direct end-to-end: {100*p[1]/d[1]:.0f}%")
print(f"petrel peak RSS: {rss/1024:.0f} MiB")
PY
  rm -rf "$BENCH"
}
main
