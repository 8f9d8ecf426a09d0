#!/usr/bin/env python3
"""Verify every DKIM signature of each message with dkimpy, an
implementation independent of Petrel's, fetching keys from the test's DNS
server. Prints one JSON line per message: {"file", "results": [{"d", "ok"}]}.

    verify.py DNS_PORT MESSAGE_FILE...
"""
import json
import sys

import dkim
import dns.message
import dns.query
import dns.rdatatype


def resolver(port):
    def get_txt(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=timeout)
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(list(rrset.items)[0].strings)
        return None

    return get_txt


def main():
    port = int(sys.argv[1])
    get_txt = resolver(port)
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            message = f.read()
        d = dkim.DKIM(message, minkey=1024)
        results = []
        count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
        for idx in range(count):
            sig = dkim.parse_tag_value(
                [v for n, v in d.headers if n.lower() == b"dkim-signature"][idx]
            )
            ok = dkim.DKIM(message, minkey=1024).verify(idx=idx, dnsfunc=get_txt)
            results.append({"d": sig[b"d"].decode(), "a": sig[b"a"].decode(), "ok": bool(ok)})
        print(json.dumps({"file": path, "results": results}))


if __name__ == "__main__":
    main()
