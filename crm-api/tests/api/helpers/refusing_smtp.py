"""A real SMTP server (aiosmtpd) that refuses some recipients, as receiving servers do.

    python3 refusing_smtp.py PORT MAILDIR

- `RCPT TO:<refuse…@…>`: 550 5.1.1 (the mailbox does not exist: a hard bounce), every time.
- `RCPT TO:<greylist…@…>`: 451 4.7.1 the first time this address is seen, accepted afterwards
  (greylisting: a transient refusal that a retry gets through).
- every other recipient: accepted, and each message is stored in MAILDIR as aiosmtpd's Mailbox
  handler does.
"""

import asyncio
import mailbox
import sys

from aiosmtpd.controller import Controller


class Refusing:
    def __init__(self, directory):
        self.box = mailbox.Maildir(directory, create=True)
        self.seen = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("refuse"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local.startswith("greylist") and address.lower() not in self.seen:
            self.seen.add(address.lower())
            return "451 4.7.1 <%s>: Recipient address rejected: Greylisted, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.box.add(envelope.original_content)
        return "250 OK: queued"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Refusing(directory), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
