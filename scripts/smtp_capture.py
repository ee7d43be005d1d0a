#!/usr/bin/env python3
"""SMTP capture server for tests: each message -> DIR/<n>.eml plus one JSON line in DIR/index.jsonl.

Usage: python3 scripts/smtp_capture.py --host 127.0.0.1 --port 2525 --dir DIR
Prints "smtp_capture listening on HOST:PORT" once it accepts connections.
"""
import argparse, asyncio, email, email.policy, json, os, signal

from aiosmtpd.smtp import SMTP


class Capture:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.n = sum(1 for f in os.listdir(directory) if f.endswith(".eml"))

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = f"{self.n}.eml"
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        tmp = os.path.join(self.dir, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.dir, name))  # the .eml is complete before its index line
        msg = email.message_from_bytes(data, policy=email.policy.default)
        line = {"file": name, "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos), "subject": str(msg.get("Subject", ""))}
        with open(os.path.join(self.dir, "index.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        return "250 Message accepted for delivery"


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    handler = Capture(a.dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="localhost"), a.host, a.port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp_capture listening on {a.host}:{a.port} dir={a.dir}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
