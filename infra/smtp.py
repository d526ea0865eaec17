"""The local stack's SMTP server: aiosmtpd on a loopback port, writing every message it
receives into a maildir (`<state>/mail/new/`, one file per message), so that the alert
e-mails of `make run` and of the tests can be read without any relay.

`python -m infra.smtp --port PORT --maildir DIR` runs it (the stack runner does, like its
other services: pid file, log, readiness = the server answers with its 220 greeting).
It accepts any sender and any recipient and keeps messages as received, with the envelope
written in front as `Return-Path` and `X-RPM-Envelope-To` headers. It is for development
and tests only: production points the platform at a real relay (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
import sys
from pathlib import Path
from typing import Final

from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_BYTES: Final = 1 << 20  # an alert e-mail is a few KiB


class MaildirHandler:
    """Stores each message of a completed DATA command in the maildir, envelope first."""

    def __init__(self, maildir: Path) -> None:
        # Maildir(create=True) makes the folders only when the directory itself is new.
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(maildir, create=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.original_content or b""
        front = f"Return-Path: <{envelope.mail_from or ''}>\r\n".encode()
        front += "".join(f"X-RPM-Envelope-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos).encode()
        # mailbox writes the file under tmp/ and renames it into new/: a reader never sees half a message.
        self.box.add(front + content)
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, maildir: Path) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, hostname="rpm-local-smtp", ident="rpm local SMTP"),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp: listening on {host}:{port}, writing to the maildir {maildir}", flush=True)
    async with server:
        await stop.wait()
    print("smtp: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.maildir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
