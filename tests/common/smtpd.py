"""A real SMTP server for the tests (PyPI `aiosmtpd`): listens on
HOST:PORT, appends each message it accepts to OUT as one JSON line
({"mail_from", "rcpt_tos", "data", "login"}), prints `ready` once it
accepts connections, and stops when its stdin closes.

  python3 smtpd.py OUT HOST PORT [--tls CERT KEY | --smtps CERT KEY] [--auth USER PASSWORD]

With --tls it offers STARTTLS and requires it before MAIL; with --smtps it
speaks TLS from the first byte; with --auth it offers AUTH (only over TLS,
aiosmtpd's default) and requires a login.
"""
import json
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
rest = sys.argv[4:]
tls = smtps = auth = None
while rest:
    if rest[0] == "--tls":
        tls, rest = (rest[1], rest[2]), rest[3:]
    elif rest[0] == "--smtps":
        smtps, rest = (rest[1], rest[2]), rest[3:]
    elif rest[0] == "--auth":
        auth, rest = (rest[1], rest[2]), rest[3:]
    else:
        sys.exit(f"unknown argument {rest[0]}")


class Handler:
    async def handle_DATA(self, server, session, envelope):
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.original_content.decode("utf-8", "replace"),
                "login": login,
            }) + "\n")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == auth[0]
          and auth_data.password.decode() == auth[1])
    # Kept on the session (session.auth_data) for handle_DATA.
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


kwargs = {}
if tls:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls)
    kwargs.update(tls_context=context, require_starttls=True)
if smtps:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*smtps)
    kwargs.update(ssl_context=context)
if auth:
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
controller = Controller(Handler(), hostname=host, port=port, **kwargs)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
