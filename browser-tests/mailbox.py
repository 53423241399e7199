"""A test mailbox for the browser tests: a real SMTP server (aiosmtpd, which scripts/test installs)
that accepts any number of messages per connection and keeps each one as a JSON file in a
directory the harness reads: {id, sender, recipients, subject, plain, source}.

Usage: python3 mailbox.py HOST PORT DIRECTORY

A message is written (to a temporary name, then renamed) before 250 is answered, so a test that
sees the send recorded as `sent` finds the mail. Replaces mailtutan 0.3.0 here, which records a
connection's first message again for each later one on it.
"""

import asyncio
import itertools
import json
import os
import sys
from email import message_from_bytes, policy

from aiosmtpd.smtp import SMTP


class Mailbox:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        message = message_from_bytes(raw, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        plain = body.get_content() if body is not None else ""
        number = next(self.counter)
        record = {
            "id": number,
            "sender": envelope.mail_from,
            "recipients": list(envelope.rcpt_tos),
            "subject": str(message.get("Subject", "")),
            "plain": plain,
            "source": raw.decode("utf-8", "replace"),
        }
        name = os.path.join(self.directory, f"{number:08d}.json")
        with open(name + ".tmp", "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.rename(name + ".tmp", name)
        return "250 Message accepted"


async def main(host, port, directory):
    os.makedirs(directory, exist_ok=True)
    handler = Mailbox(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mailbox.test", decode_data=False),
        host=host,
        port=port,
    )
    print(f"listening on smtp://{host}:{port}, keeping mail in {directory}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: mailbox.py HOST PORT DIRECTORY")
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
