"""A real SMTP server (aiosmtpd on loopback) that misbehaves on cue, for the delivery fault tests.

Rules say what to do to a recipient at RCPT or DATA, and how many times: answer with a reply
("451 4.3.0 Try later", "550 5.1.1 No such user"), stall longer than the client's timeout, or drop
the connection. Everything else is accepted and kept in `inbox`, like the plain `smtp` fixture.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from ports import free_port


@dataclass
class Rule:
    address: str
    at: str  # "RCPT" or "DATA"
    action: str  # an SMTP reply, "stall" or "drop"
    times: int | None = None  # None: every time
    stall_seconds: float = 3.0

    def applies(self, at: str, address: str) -> bool:
        return (self.at == at and self.address == address.lower()
                and (self.times is None or self.times > 0))


@dataclass
class FaultInbox:
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    data_delay: float = 0.0  # seconds every DATA takes: a slow server
    on_data: Callable[[str], None] | None = None  # called with each message's recipient,
    # before the message is taken
    hits: Counter = field(default_factory=Counter)  # (address, at, action) -> times a rule fired
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, address: str, at: str, action: str, times: int | None = None, **kw) -> None:
        self.rules.append(Rule(address.lower(), at, action, times, **kw))

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address.lower() in m["To"].lower()]

    def recipients(self) -> Counter:
        with self.lock:
            return Counter(m["To"].addresses[0].addr_spec for m in self.messages)

    def __len__(self) -> int:
        with self.lock:
            return len(self.messages)


class FaultHandler:
    def __init__(self, inbox: FaultInbox):
        self.inbox = inbox

    def _rule(self, at: str, address: str) -> Rule | None:
        with self.inbox.lock:
            for rule in self.inbox.rules:
                if rule.applies(at, address):
                    if rule.times is not None:
                        rule.times -= 1
                    self.inbox.hits[(address.lower(), at, rule.action)] += 1
                    return rule
        return None

    async def _act(self, rule: Rule, server) -> str | None:
        if rule.action == "stall":
            await asyncio.sleep(rule.stall_seconds)
            return "451 4.4.2 Timed out"  # the client has given up by now
        if rule.action == "drop":
            server.transport.abort()
            return "421 4.4.2 Dropped"  # never reaches the client
        return rule.action

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self._rule("RCPT", address)
        if rule is not None:
            return await self._act(rule, server)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.inbox.data_delay:
            await asyncio.sleep(self.inbox.data_delay)
        for address in envelope.rcpt_tos:
            rule = self._rule("DATA", address)
            if rule is not None:
                return await self._act(rule, server)
        if self.inbox.on_data is not None:
            self.inbox.on_data(envelope.rcpt_tos[0])
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.inbox.lock:
            self.inbox.messages.append(message)
        return "250 Message accepted for delivery"


def password_checker(username: str, password: str):
    """An aiosmtpd authenticator accepting exactly this username and password."""
    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (getattr(auth_data, "login", None) == username.encode()
              and getattr(auth_data, "password", None) == password.encode())
        return AuthResult(success=ok, handled=False)
    return check


class FaultServer:
    """A started aiosmtpd server with a FaultInbox; `stop()`/`start()` to take it down and back."""

    def __init__(self, port: int | None = None, **controller_kw):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.inbox = FaultInbox()
        self._kw = controller_kw
        self.controller: Controller | None = None

    def start(self) -> "FaultServer":
        self.controller = Controller(FaultHandler(self.inbox), hostname=self.host, port=self.port,
                                     **self._kw)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
