#!/usr/bin/env python3
"""Send test messages to Petrel's listener: `send.py SENDER COUNT`."""
import smtplib
import sys

sender = sys.argv[1] if len(sys.argv) > 1 else "news@customer-a.example"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
with smtplib.SMTP("127.0.0.1", 2025) as smtp:
    for i in range(count):
        rcpt = f"user{i}@destination.example"
        body = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: test {i}\r\n\r\nHello {i}\r\n"
        smtp.sendmail(sender, [rcpt], body)
print(f"sent {count} messages from {sender}")
