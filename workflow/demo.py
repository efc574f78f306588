"""`signoff demo` (what `make demo` runs): the whole service on this machine in one command.

It writes a config into the demo folder, runs `init` and, into a new database, imports the sample
roster; it catches all mail
in-process (workflow.mailcatcher), and runs the web app and the scheduler as child processes, as a
real deployment would. One Ctrl-C stops everything; the folder keeps its data for the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from . import config as config_mod
from . import planner, resources
from .calendar import Calendar
from .mailcatcher import MailCatcher, Stored

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60  # seconds for the web app to answer /healthz
STOP_TIMEOUT = 10  # seconds a child gets to finish after SIGTERM


class _Child:
    """`signoff --config … <args>` as a child process, its output in a log file."""

    def __init__(self, name: str, config_path: Path, args: list[str], log: Path):
        self.name, self.log = name, log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            # Its own process group: a Ctrl-C in the terminal reaches only the demo, which then
            # stops the children in order instead of each dying half-way.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workflow", "--config", str(config_path), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0)

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run(folder: Path, port: int, mail_port: int) -> None:
    web_port = mail_port + 1
    _check_ports({"--port (the web app)": port, "--mail-port (the mail catcher's SMTP)": mail_port,
                  "--mail-port + 1 (the mail catcher's page)": web_port})
    folder = folder.resolve()
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    config_path = folder / "signoff.toml"
    config_path.write_text(demo_config(port, mail_port), encoding="utf-8")
    config = config_mod.load(config_path)

    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    catcher, children = None, []
    try:
        click.echo(f"signoff demo in {_short(folder)}/ (delete the folder to start afresh)")
        new = not (folder / "signoff.db").exists()
        _signoff(config_path, "init")
        if new:  # only then: what was changed in the console since stays as it was left
            _signoff(config_path, "staff", "import", str(resources.path("examples") / "staff.csv"))
        else:
            click.echo("the roster is as you left it (the sample roster went in on the first run)")
        if stopping.is_set():
            return
        catcher = MailCatcher(folder / "mail", mail_port, web_port, HOST, on_message=_announce)
        try:
            catcher.start()
        except OSError as exc:  # taken between the check and now
            catcher = None
            _stop(f"cannot start the mail catcher on ports {mail_port}/{web_port}: {exc}")
        logs = folder / "logs"
        children = [
            _Child("web app", config_path, ["serve", "--host", HOST, "--port", str(port)],
                   logs / "web.log"),
            _Child("scheduler", config_path, ["scheduler"], logs / "scheduler.log"),
        ]
        if not _wait_until_up(f"http://{HOST}:{port}/healthz", children, stopping):
            return
        click.echo(instructions(config, config_path, port, catcher.url))
        while not stopping.wait(0.5):
            for child in children:
                _check_alive(child)
    finally:
        for child in children:
            child.stop()
        if catcher is not None:
            catcher.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("demo stopped; its data stays in the folder for next time")


def demo_config(port: int, mail_port: int) -> str:
    """config.example.toml with the demo's values in place, its comments kept, and the example
    policies of examples/policies.toml after its own; each policy's file found where signoff's
    own files are."""
    values = {
        ("setting", "base_url"): f"http://{HOST}:{port}",
        ("database", "url"): "sqlite:///signoff.db",
        ("mail", "server"): HOST,
        ("mail", "port"): mail_port,
        ("scheduler", "interval_seconds"): 10,
    }
    text = (resources.path("config.example.toml").read_text(encoding="utf-8") + "\n"
            + (resources.path("examples") / "policies.toml").read_text(encoding="utf-8"))
    shipped = resources.path("policies").parent
    lines, table, done = [], None, set()
    for line in text.splitlines():
        header = re.match(r"\s*\[\[?\s*([\w.-]+)\s*\]\]?", line)
        if header:
            table = header.group(1)
        key = re.match(r"(\s*([\w-]+)\s*=\s*)(\"(?:[^\"\\]|\\.)*\"|[^\s#]+)(.*)", line)
        if key and (table, key.group(2)) in values:
            line = key.group(1) + json.dumps(values[table, key.group(2)]) + key.group(4)
            done.add((table, key.group(2)))
        elif key and (table, key.group(2)) == ("policy", "file"):
            line = (key.group(1) + json.dumps(str(shipped / json.loads(key.group(3))))
                    + key.group(4))
        lines.append(line)
    missing = set(values) - done
    if missing:
        raise RuntimeError(f"config.example.toml lacks {sorted(missing)}")
    return ("# Written by `signoff demo` from config.example.toml at every start: edits here are "
            "overwritten.\n" + "\n".join(lines) + "\n")


def instructions(config: config_mod.Config, config_path: Path, port: int, mail_url: str) -> str:
    """What to open and what to try, with fast-forward dates worked out by the real calendar."""
    cal = Calendar(config.schedule, config.setting.timezone, config.closures)
    now = dt.datetime.now(dt.timezone.utc)
    sched = config.schedule
    followup = planner.followup_due(now, 1, cal).astimezone(cal.tz)
    overdue = planner.next_digest_due(planner.overdue_at(now, cal), None, cal).astimezone(cal.tz)
    signoff = f"{_signoff_command()} --config {_short(config_path)}"
    return f"""
Open in a browser:
  mail catcher (every email sent):  {mail_url}
  confirmation site:                http://{HOST}:{port}/

Try this:
  1. In the mail catcher, open a reminder: the scheduler sends one email to each of the 6 active
     staff within seconds, naming each policy they are asked to read (two examples come with
     the social media policy; the lone-working one is for the site team only, Farah Ali).
     Click a policy's personal link in it.
  2. Tick every statement and press the button to confirm; the others wait for their own links.
  3. In another terminal, see the report change:
       {signoff} report
  4. Fast-forward (dates in {cal.tz.key}):
     a follow-up to everyone who has not confirmed ({sched.reminder_after_days[0]} days after the first reminder):
       {signoff} tick --at {followup:%Y-%m-%dT%H:%M}
     the head teacher's digest of overdue people (the first digest day after the date the reminders ask for):
       {signoff} tick --at {overdue:%Y-%m-%dT%H:%M}
     and the coming timeline, without sending anything:
       {signoff} plan

Logs: {_short(config_path.parent / "logs")}/. Press Ctrl-C to stop.
"""


def _check_ports(ports: dict[str, int]) -> None:
    if len(set(ports.values())) < len(ports):
        _stop("--port, --mail-port and --mail-port + 1 must be three different ports")
    for what, port in ports.items():
        if not 1 <= port <= 65535:
            _stop(f"{what}: {port} is not a port number (1-65535)")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                sock.bind((HOST, port))
            except OSError:
                _stop(f"port {port} on {HOST} is already in use, needed for {what}; stop what "
                      "uses it (another demo?) or choose other ports with --port/--mail-port")


def _stop(message: str, code: int = 2):
    click.echo(f"signoff: {message}", err=True)
    raise click.exceptions.Exit(code)


def _signoff(config_path: Path, *args: str) -> None:
    """A one-off signoff command (init, import), exactly as a user would run it."""
    done = subprocess.run([sys.executable, "-m", "workflow", "--config", str(config_path), *args],
                          stdin=subprocess.DEVNULL, process_group=0)
    if done.returncode != 0:
        _stop(f"`signoff {' '.join(args)}` failed (exit {done.returncode}); see above",
              done.returncode if done.returncode > 0 else 1)


def _wait_until_up(url: str, children: list[_Child], stopping: threading.Event) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not stopping.is_set():
        for child in children:
            _check_alive(child)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            _stop(f"the web app did not answer {url} within {STARTUP_TIMEOUT} s; "
                  f"see {_short(children[0].log)}", 1)
        stopping.wait(0.2)
    return False


def _check_alive(child: _Child) -> None:
    code = child.exited()
    if code is not None:
        click.echo(child.tail(), err=True)
        _stop(f"the {child.name} stopped unexpectedly (exit {code}); its log is "
              f"{_short(child.log)}", 1)


def _announce(stored: Stored) -> None:
    click.echo(f"  mail caught: to {stored.to}: {stored.subject}")


def _signoff_command() -> str:
    script = Path(sys.executable).parent / "signoff"
    return _short(script) if script.exists() else f"{_short(Path(sys.executable))} -m workflow"


def _short(path: Path) -> str:
    """A path relative to the current folder when it is inside it, for copy-pasting."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
