#!/usr/bin/env python3
"""Throughput matrix: connection shapes x client counts x setups.

Run through bench/run.sh, which installs Postfix and builds the binaries.
Every cell starts fresh (new spool, new Postfix queue), injects N messages
with Postfix's smtp-source and waits until petrel-bench-sink has
acknowledged every one of them. Figures are only comparable within a run.
"""

import argparse
import json
import statistics
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
import time

TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/petrel/target"))
PETREL = os.path.join(TARGET, "release", "petrel")
SINK = os.path.join(TARGET, "release", "petrel-bench-sink")
# Another Petrel build (e.g. the previous commit's) for the `baseline`
# setup: the same bare policy, measured in the same run as `petrel`.
BASELINE = os.environ.get("PETREL_BASELINE")
CGROUP_ROOT = "/sys/fs/cgroup/cpuacct"
PF_CONF = "/tmp/petrel-bench-postfix"
PF_MARKER = "# written by petrel bench/run.sh"


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def listen_counters():
    """ListenOverflows and ListenDrops from /proc/net/netstat (TcpExt)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return table.get("ListenOverflows", 0), table.get("ListenDrops", 0)
    return 0, 0


class CpuMeter:
    """CPU time of a daemon and everything it forks, from a cpuacct cgroup
    (falls back to /proc/<pid>/stat for a single process)."""

    def __init__(self, name):
        self.path = os.path.join(CGROUP_ROOT, f"petrel-bench-{name}-{os.getpid()}")
        try:
            os.makedirs(self.path, exist_ok=True)
            self.ok = os.path.exists(os.path.join(self.path, "cpuacct.usage"))
        except OSError:
            self.ok = False
        self.pid = None

    def wrap(self, argv):
        if not self.ok:
            return argv
        procs = os.path.join(self.path, "cgroup.procs")
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]

    def seconds(self):
        if self.ok:
            with open(os.path.join(self.path, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        if self.pid:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return float("nan")

    def close(self):
        if self.ok:
            # Anything left goes back to the root group so the cgroup can go.
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    left = f.read().split()
                for pid in left:
                    with open(os.path.join(CGROUP_ROOT, "cgroup.procs"), "w") as root:
                        root.write(pid)
                os.rmdir(self.path)
            except OSError:
                pass


def dkim_handler(work):
    """A DKIM RSA-2048 signature on every message, as ESPs sign."""
    key = os.path.join(work, "dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    return f"""
kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{
    domain = 'sender.example', selector = 'bench',
    headers = {{ 'From', 'To', 'Subject', 'Date', 'Message-ID' }}, key = '{key}',
  }})
end)
"""


def petrel_policy(path, work, port, sink_port, http_port, realistic, batch=1, dkim=False):
    handlers = dkim_handler(work) if dkim else ""
    if realistic:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "realistic-handler.lua")) as f:
            handlers = f.read()
    with open(path, "w") as f:
        f.write(f"""local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{work}/spool' }}
  kumo.configure_local_logs {{ log_dir = '{work}/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{port}', relay_hosts = {{ '127.0.0.1' }}, max_connections = 4096 }}
  kumo.start_http_listener {{ listen = '127.0.0.1:{http_port}' }}
  kumo.define_egress_source {{ name = 'ip-2', source_address = '127.0.0.2', ehlo_domain = 'mta2.bench' }}
  kumo.define_egress_source {{ name = 'ip-3', source_address = '127.0.0.3', ehlo_domain = 'mta3.bench' }}
  kumo.define_egress_pool {{ name = 'bench', entries = {{ {{ name = 'ip-2', weight = 1 }}, {{ name = 'ip-3', weight = 2 }} }} }}
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ egress_pool = 'bench', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{sink_port}' }} }} }} }}
end)
-- smtp-source sends byte-identical messages, which Petrel would merge into
-- multi-recipient transactions; Postfix cannot, so keep it fair: a batch
-- carries the recipients of one message at most.
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ max_recipients_per_batch = {batch} }}
end)
{handlers}""")


def postfix_start(work, port, sink_port):
    if not os.path.exists("/etc/postfix/main.cf") or PF_MARKER in open("/etc/postfix/main.cf").read():
        with open("/etc/postfix/main.cf", "w") as f:
            f.write(f"{PF_MARKER}\ncompatibility_level = 3.6\nalternate_config_directories = {PF_CONF}\n")
    shutil.rmtree(PF_CONF, ignore_errors=True)
    os.makedirs(PF_CONF)
    os.chmod(work, 0o755)
    for d in ("postfix-queue", "postfix-data"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    shutil.chown(os.path.join(work, "postfix-data"), "postfix")
    with open(os.path.join(PF_CONF, "main.cf"), "w") as f:
        f.write(f"""compatibility_level = 3.6
queue_directory = {work}/postfix-queue
data_directory = {work}/postfix-data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtputf8_enable = no
default_process_limit = 400
default_destination_concurrency_limit = 100
smtpd_relay_restrictions = permit_mynetworks, reject
""")
    with open("/etc/postfix/master.cf") as src, open(os.path.join(PF_CONF, "master.cf"), "w") as dst:
        for line in src:
            if line.startswith("smtp      inet "):
                line = f"127.0.0.1:{port} inet n - n - - smtpd\n"
            elif line.startswith("postlog "):
                line = "#" + line
            dst.write(line)
    subprocess.run(["postfix", "-c", PF_CONF, "post-install", "create-missing"], capture_output=True)


def lua_event_us(http_port, n):
    """The time the daemon itself spent in Lua events per message, from its
    `petrel_lua_event_seconds` histograms: wall time of each call, which for
    a handler that does not wait is the worker's CPU time, without the noise
    of comparing two runs."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError as e:
        log(f"  cannot read the daemon's metrics: {e}")
        return None
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("petrel_lua_event_seconds_sum"))
    return total * 1e6 / n


def run_cell(args, shape, clients, setup):
    work = tempfile.mkdtemp(prefix="petrel-bench-")
    sink_port, port = free_port(), free_port()
    expect = args.n * args.rcpts
    sink = subprocess.Popen(
        [SINK, "--listen", f"127.0.0.1:{sink_port}", "--expect", str(expect)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_port(sink_port)
    meter, daemon, target, http_port = None, None, sink_port, None
    try:
        if setup.startswith("petrel") or setup == "baseline":
            policy = os.path.join(work, "init.lua")
            http_port = free_port()
            petrel_policy(policy, work, port, sink_port, http_port, setup == "petrel+lua", args.rcpts,
                          setup == "petrel+dkim")
            meter = CpuMeter(setup)
            out = open(os.path.join(work, "petrel.out"), "w")
            binary = BASELINE if setup == "baseline" else PETREL
            if not binary:
                raise SystemExit("the baseline setup needs PETREL_BASELINE=/path/to/another/petrel")
            daemon = subprocess.Popen(meter.wrap([binary, "serve", "--policy", policy]), stdout=out, stderr=out)
            meter.pid = daemon.pid
            target = port
        elif setup == "postfix":
            postfix_start(work, port, sink_port)
            meter = CpuMeter(setup)
            subprocess.run(meter.wrap(["postfix", "-c", PF_CONF, "start"]), capture_output=True)
            target = port
        wait_port(target)
        cpu0 = meter.seconds() if meter else float("nan")
        lo0, ld0 = listen_counters()
        t0 = time.time()
        source = ["smtp-source", "-s", str(clients), "-m", str(args.n), "-l", str(args.size),
                  "-f", "bench@sender.example", "-t", "user@dest.example"]
        if args.rcpts > 1:
            source += ["-r", str(args.rcpts)]
        if shape == "reuse":
            source.insert(1, "-d")
        subprocess.run(source + [f"127.0.0.1:{target}"], capture_output=True, timeout=args.timeout)
        t1 = time.time()
        try:
            tally, _ = sink.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            sink.kill()
            tally, _ = sink.communicate()
            log(f"  sink did not get all {expect} messages within {args.timeout}s")
            tally = None
        t2 = time.time()
        cpu1 = meter.seconds() if meter else float("nan")
        lo1, ld1 = listen_counters()
        rss = None
        if daemon is not None:
            with open(f"/proc/{daemon.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rss = int(line.split()[1]) / 1024
        row = {
            "shape": shape, "clients": clients, "setup": setup,
            "inject": args.n / (t1 - t0), "e2e": args.n / (t2 - t0) if tally else 0.0,
            "cpu_us": (cpu1 - cpu0) * 1e6 / args.n if meter else None,
            "rss": rss, "overflows": lo1 - lo0, "drops": ld1 - ld0,
            "split": json.loads(tally)["by_peer"] if tally else {},
            "lua_us": lua_event_us(http_port, args.n) if http_port else None,
        }
        return row
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if setup == "postfix":
            subprocess.run(["postfix", "-c", PF_CONF, "stop"], capture_output=True)
            time.sleep(0.5)
        if sink.poll() is None:
            sink.kill()
        if meter:
            meter.close()
        shutil.rmtree(work, ignore_errors=True)


def medians(rows):
    """One row per shape, clients and setup: the median of its runs' rates
    and CPU, the highest RSS, every run's overflows and split added up."""
    groups = {}
    for r in rows:
        groups.setdefault((r["shape"], r["clients"], r["setup"]), []).append(r)
    out = []
    for runs in groups.values():
        row = dict(runs[0])
        for key in ("e2e", "inject", "cpu_us", "lua_us"):
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rss = [r["rss"] for r in runs if r["rss"] is not None]
        row["rss"] = max(rss) if rss else None
        row["overflows"] = sum(r["overflows"] for r in runs)
        row["drops"] = sum(r["drops"] for r in runs)
        split = {}
        for r in runs:
            for peer, n in r["split"].items():
                split[peer] = split.get(peer, 0) + n
        row["split"] = split
        row["runs"] = len(runs)
        out.append(row)
    return out


def split_text(split):
    two, three = split.get("127.0.0.2", 0), split.get("127.0.0.3", 0)
    total = two + three
    if not total:
        return "-"
    return f"{two}:{three} ({100 * two / total:.1f}% : {100 * three / total:.1f}%)"


def paired_cpu(runs, shape, clients, setup, other):
    """The median over rounds of `other`'s CPU per message minus `setup`'s
    in the same round (the two ran minutes apart at most), or None."""
    by_round = {}
    for r in runs:
        if r["shape"] == shape and r["clients"] == clients and r["cpu_us"] is not None:
            by_round.setdefault(r.get("round", 0), {})[r["setup"]] = r["cpu_us"]
    deltas = [v[other] - v[setup] for v in by_round.values() if setup in v and other in v]
    return statistics.median(deltas) if deltas else None


def print_table(rows, runs=None):
    head = f"{'shape':<6} {'C':>5} {'setup':<11} {'e2e/s':>8} {'inject/s':>9} {'CPU µs/msg':>11} {'RSS MiB':>8} {'ovfl':>5} {'drop':>5}  split .2:.3 (weights 1:2)"
    repeats = max(r.get("runs", 1) for r in rows)
    if repeats > 1:
        print(f"each row: the median of {repeats} runs (RSS the highest; split and overflows added up)")
    print(head)
    print("-" * len(head))
    for r in rows:
        cpu = f"{r['cpu_us']:.0f}" if r["cpu_us"] is not None else "-"
        rss = f"{r['rss']:.0f}" if r["rss"] is not None else "-"
        split = split_text(r["split"]) if r["setup"].startswith("petrel") or r["setup"] == "baseline" else ""
        print(f"{r['shape']:<6} {r['clients']:>5} {r['setup']:<11} {r['e2e']:>8.0f} {r['inject']:>9.0f} {cpu:>11} {rss:>8} {r['overflows']:>5} {r['drops']:>5}  {split}")
    print()
    by = {(r["shape"], r["clients"], r["setup"]): r for r in rows}
    for (shape, clients, setup), r in by.items():
        if setup != "petrel":
            continue
        parts = []
        pf = by.get((shape, clients, "postfix"))
        if pf and pf["e2e"]:
            parts.append(f"petrel/postfix {r['e2e'] / pf['e2e']:.1f}x")
        direct = by.get((shape, clients, "direct"))
        if direct and direct["e2e"]:
            parts.append(f"petrel/direct {100 * r['e2e'] / direct['e2e']:.0f}%")
        base = by.get((shape, min(c for (s, c, p) in by if s == shape and p == "petrel"), "petrel"))
        if base and base["e2e"] and base is not r:
            parts.append(f"vs C={base['clients']} {100 * r['e2e'] / base['e2e']:.0f}%")
        lua = by.get((shape, clients, "petrel+lua"))
        paired = paired_cpu(runs or rows, shape, clients, "petrel", "petrel+lua")
        if paired is not None and r.get("runs", 1) > 1:
            parts.append(f"Lua events {paired:+.0f} µs/msg (median of {r['runs']} paired runs)")
        elif lua and lua["cpu_us"] is not None and r["cpu_us"] is not None:
            parts.append(f"Lua events +{lua['cpu_us'] - r['cpu_us']:.0f} µs/msg")
        if lua and lua.get("lua_us") is not None and r.get("lua_us") is not None:
            parts.append(f"time in the events by the daemon's histograms {r['lua_us']:.1f} -> {lua['lua_us']:.1f} µs/msg")
        old = by.get((shape, clients, "baseline"))
        if old and old["e2e"] and old["cpu_us"] is not None and r["cpu_us"] is not None:
            parts.append(f"vs baseline build {100 * r['e2e'] / old['e2e']:.0f}% e2e, {r['cpu_us'] - old['cpu_us']:+.0f} µs/msg CPU")
        dkim = by.get((shape, clients, "petrel+dkim"))
        if dkim and dkim["cpu_us"] is not None and r["cpu_us"] is not None:
            parts.append(f"DKIM RSA-2048 +{dkim['cpu_us'] - r['cpu_us']:.0f} µs/msg ({dkim['e2e']:.0f} msg/s)")
        print(f"{shape:<6} C={clients:<5} " + ", ".join(parts))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="messages per cell (default 20000)")
    p.add_argument("--size", type=int, default=2048, help="message size in bytes (default 2048)")
    p.add_argument("--rcpts", type=int, default=1, help="recipients per message (default 1)")
    p.add_argument("--clients", default="50,200,1000", help="client counts (default 50,200,1000)")
    p.add_argument("--shapes", default="one,reuse", help="one (a connection per message), reuse, or both")
    p.add_argument("--setups", default="direct,petrel,petrel+lua,petrel+dkim,postfix",
                   help="any of direct, petrel, petrel+lua, petrel+dkim (RSA-2048 signing), postfix, "
                        "baseline (the Petrel binary named by PETREL_BASELINE)")
    p.add_argument("--timeout", type=float, default=600, help="limit per cell, seconds")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each cell's setups this many times, alternating their order, and report medians")
    args = p.parse_args()
    setups = args.setups.split(",")
    cells = []
    for s in args.shapes.split(","):
        for c in args.clients.split(","):
            for round_ in range(args.repeat):
                # Every other round runs the setups in reverse, so no setup
                # always runs right after a heavier one.
                order = setups if round_ % 2 == 0 else setups[::-1]
                cells += [(s, int(c), setup, round_) for setup in order]
    log(f"N={args.n} messages of {args.size} bytes, {args.rcpts} recipient(s) each; {len(cells)} cells")
    rows = []
    for i, (shape, clients, setup, round_) in enumerate(cells, 1):
        log(f"[{i}/{len(cells)}] {shape:<5} C={clients:<4} {setup}")
        rows.append(run_cell(args, shape, clients, setup))
        r = rows[-1]
        r["round"] = round_
        log(f"  -> {r['e2e']:.0f} msg/s end to end, {r['inject']:.0f} msg/s injected")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print_table(medians(rows), rows)


if __name__ == "__main__":
    main()
