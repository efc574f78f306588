"""The SMTP client's own shortcuts (mailer._Meanwhile) against a real aiosmtpd server: what the
server receives must be what smtplib itself would have sent."""

from __future__ import annotations

import smtplib

import pytest
from aiosmtpd.controller import Controller

from ports import free_port
from workflow import mailer

ADDRESSES = ["person000123@example.org", "o'brien@example.org", "a.b+c@x-y.example.co.uk",
             "x|y~z{1}@example.org", "a..b@example.org", ".a@example.org", "a.@example.org",
             "Name <a@example.org>", "<a@example.org>", '"q x"@example.org', "a@[192.0.2.1]",
             "a@example.org ", "ä@example.org", "a@bü.example", "", "postmaster"]

MESSAGES = [b"Subject: plain\r\n\r\nno line starts with a dot\r\n",
            b"Subject: dots\r\n\r\n.a line starting with a dot\r\nand\r\n..two of them\r\n",
            b".the very first line\r\nand no line end at the end",
            b"Subject: dot in a line\r\n\r\nends.\r\nmid . dle\r\n.\r\nthe line above is a dot\r\n"]


@pytest.mark.parametrize("address", ADDRESSES)
def test_an_address_is_quoted_as_smtplib_quotes_it(address):
    assert mailer.quoted(address) == smtplib.quoteaddr(address)


def test_the_server_receives_what_smtplib_would_have_sent():
    received: list[tuple] = []

    class Keep:
        async def handle_DATA(self, server, session, envelope):
            received.append((envelope.mail_from, tuple(envelope.mail_options),
                             tuple(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sent = []
        for client in (smtplib.SMTP, mailer._SMTP):
            with client("127.0.0.1", port, timeout=10) as smtp:
                for i, message in enumerate(MESSAGES):
                    smtp.sendmail("Policy Reminders <noreply@example.org>",
                                  [ADDRESSES[i % 4]], message)
            sent.append(received[:])
            received.clear()
    finally:
        controller.stop()
    by_smtplib, by_ours = sent
    assert len(by_ours) == len(MESSAGES)
    assert by_ours == by_smtplib
    assert by_ours[1][3].startswith(b"Subject: dots\r\n\r\n.a line starting with a dot\r\n")
    assert by_ours[0][1] == (f"SIZE={len(MESSAGES[0])}",)  # the server said it takes SIZE
