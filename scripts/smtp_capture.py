#!/usr/bin/env python3
"""SMTP capture server for tests: each message -> DIR/<n>.eml plus one JSON line in DIR/index.jsonl.

Usage: python3 scripts/smtp_capture.py --host 127.0.0.1 --port 2525 --dir DIR
           [--cert cert.pem --key key.pem [--require-starttls] [--tls-port PORT]]
           [--auth-user USER --auth-password-env VAR]
Prints "smtp_capture listening on HOST:PORT" once it accepts connections.

With --cert/--key the plain port offers STARTTLS (and with --require-starttls refuses mail before it), and
--tls-port also listens with implicit TLS (SMTPS). rustls clients need a certificate with a subjectAltName.
With --auth-user, AUTH PLAIN/LOGIN is offered (only over TLS) and required; the password is read from the
environment variable named by --auth-password-env (never from the command line, where `ps` shows it).
Each index line records whether the message came over TLS and as which user.
"""
import argparse, asyncio, email, email.policy, json, os, signal, ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


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
                "rcpt_tos": list(envelope.rcpt_tos), "subject": str(msg.get("Subject", "")),
                "tls": bool(session.ssl) or getattr(server, "implicit_tls", False),
                "auth_user": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None}
        with open(os.path.join(self.dir, "index.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        return "250 Message accepted for delivery"


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--auth-user")
    ap.add_argument("--auth-password-env")
    a = ap.parse_args()
    handler = Capture(a.dir)
    loop = asyncio.get_running_loop()
    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    auth = {}
    if a.auth_user:
        password = os.environ.get(a.auth_password_env or "", "")

        def authenticator(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and data.login.decode() == a.auth_user \
                and data.password.decode() == password
            # handled=False: aiosmtpd itself answers 535 on failure (otherwise the client waits forever).
            return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

        auth = {"authenticator": authenticator, "auth_required": True}

    def plain():
        return SMTP(handler, hostname="localhost", tls_context=ctx, require_starttls=a.require_starttls, **auth)

    def implicit():
        # The connection is TLS from the first byte: aiosmtpd cannot see that, so allow AUTH without STARTTLS.
        s = SMTP(handler, hostname="localhost", auth_require_tls=False, **auth)
        s.implicit_tls = True
        return s

    server = await loop.create_server(plain, a.host, a.port)
    servers = [server]
    if a.tls_port:
        servers.append(await loop.create_server(implicit, a.host, a.tls_port, ssl=ctx))
        print(f"smtp_capture implicit TLS on {a.host}:{a.tls_port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp_capture listening on {a.host}:{a.port} dir={a.dir}", flush=True)
    await stop.wait()
    for s in servers:
        s.close()
        await s.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
