#!/usr/bin/env python3
"""A million queued messages: memory per queued message, restart, drain.

Run through bench/backlog.sh. Steps, each timed:
1. start Petrel with an HTTP listener and a sink; suspend the tenant
   every message gets (`backlog`), so nothing leaves;
2. inject M messages of S bytes over D recipient domains through
   `POST /api/inject/v1` (B recipients per request, K requests in flight);
3. read the daemon's RSS: (RSS now - RSS before injecting) / M;
4. stop Petrel (SIGTERM) and start it again on the same spool: the time
   until it has re-queued every message and listens again. Suspensions do
   not survive a restart yet, so the restart is also the resume;
5. the drain: the sink's acknowledged count over time, until all M.
Compare the drain rate with a fresh end-to-end rate from bench/run.sh in
the same run (bench/backlog.sh does).
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from matrix import PETREL, SINK, free_port, log, wait_port  # noqa: E402


def policy(path, work, smtp_port, http_port, sink_port):
    with open(path, "w") as f:
        f.write(f"""local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{work}/spool' }}
  kumo.configure_local_logs {{ log_dir = '{work}/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{smtp_port}', relay_hosts = {{ '127.0.0.1' }} }}
  kumo.start_http_listener {{ listen = '127.0.0.1:{http_port}', max_request_size = 64 * 1024 * 1024 }}
  kumo.define_egress_source {{ name = 'ip-2', source_address = '127.0.0.2' }}
  kumo.define_egress_source {{ name = 'ip-3', source_address = '127.0.0.3' }}
  kumo.define_egress_pool {{ name = 'bench', entries = {{ {{ name = 'ip-2', weight = 1 }}, {{ name = 'ip-3', weight = 2 }} }} }}
end)
kumo.on('http_message_generated', function(msg)
  msg:set_meta('tenant', 'backlog')
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ egress_pool = 'bench', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{sink_port}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ max_recipients_per_batch = 1 }}
end)
""")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post(port, path, body, method="POST"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
    return data


def inject(args, port):
    header = "From: bench@sender.example\r\nSubject: backlog\r\n\r\n"
    lines = max(1, (args.size - len(header)) // 78)
    content = header + ("x" * 76 + "\r\n") * lines
    batches = list(range(0, args.messages, args.batch))
    done = [0]
    failures = []
    lock = threading.Lock()

    def worker(mine):
        try:
            send(mine)
        except Exception as e:  # a failed batch must stop the benchmark
            failures.append(e)

    def send(mine):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for start in mine:
            count = min(args.batch, args.messages - start)
            recipients = [{"email": f"u{start + i}@d{(start + i) % args.domains}.bench"} for i in range(count)]
            req = {"envelope_sender": "bench@sender.example", "recipients": recipients, "content": content}
            conn.request("POST", "/api/inject/v1", json.dumps(req), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"inject: {resp.status} {data[:300]!r}")
            with lock:
                done[0] += count
        conn.close()

    threads = [threading.Thread(target=worker, args=(batches[i :: args.parallel],)) for i in range(args.parallel)]
    t0 = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        print(f"\r  injected {done[0]}/{args.messages}", end="", file=sys.stderr, flush=True)
    for t in threads:
        t.join()
    log("")
    if failures:
        raise failures[0]
    return args.messages / (time.time() - t0)


def start_petrel(policy_path, out_path):
    out = open(out_path, "a")
    return subprocess.Popen([PETREL, "serve", "--policy", policy_path], stdout=out, stderr=out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--domains", type=int, default=10_000)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--batch", type=int, default=1000, help="recipients per inject request")
    p.add_argument("--parallel", type=int, default=4, help="inject requests in flight")
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="petrel-backlog-")
    smtp_port, http_port, sink_port = free_port(), free_port(), free_port()
    policy_path = os.path.join(work, "init.lua")
    policy(policy_path, work, smtp_port, http_port, sink_port)
    out_path = os.path.join(work, "petrel.out")
    sink = subprocess.Popen([SINK, "--listen", f"127.0.0.1:{sink_port}", "--expect", str(args.messages),
                             "--progress", "0"], stdout=subprocess.PIPE, text=True)
    wait_port(sink_port)
    daemon = start_petrel(policy_path, out_path)
    try:
        wait_port(http_port)
        post(http_port, "/api/admin/suspend/v1", {"tenant": "backlog"})
        rss0 = rss_kib(daemon.pid)
        log(f"injecting {args.messages} messages over {args.domains} domains")
        inject_rate = inject(args, http_port)
        time.sleep(2)
        rss1 = rss_kib(daemon.pid)
        per_message = (rss1 - rss0) * 1024 / args.messages
        log(f"  {inject_rate:.0f} msg/s injected; RSS {rss0 // 1024} -> {rss1 // 1024} MiB ({per_message:.0f} B per queued message)")

        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
        t0 = time.time()
        daemon = start_petrel(policy_path, out_path)
        wait_port(smtp_port, timeout=args.timeout)
        restart = time.time() - t0
        with open(out_path) as f:
            m = re.findall(r"re-queued spooled messages count=(\d+)", f.read())
        requeued = int(m[-1]) if m else 0
        log(f"  restart: {requeued} re-queued, listening after {restart:.1f} s")

        t0 = time.time()
        tally, _ = sink.communicate(timeout=args.timeout)
        drain = args.messages / (time.time() - t0)
        split = json.loads(tally)["by_peer"]
        print(json.dumps({
            "messages": args.messages, "domains": args.domains, "inject_rate": round(inject_rate),
            "rss_before_mib": rss0 // 1024, "rss_queued_mib": rss1 // 1024,
            "bytes_per_queued_message": round(per_message), "requeued": requeued,
            "restart_seconds": round(restart, 1), "drain_rate": round(drain), "split": split,
        }, indent=1))
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
        if sink.poll() is None:
            sink.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
