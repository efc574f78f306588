"""The `signoff` command. Exit codes: 0 done; 1 the work ran but something failed; 2 bad config,
usage or input. Errors are one line naming the file, key or line; never a traceback."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
from pathlib import Path

from typing import TYPE_CHECKING

import click

from .errors import ConfigError, DatabaseError, RosterError

if TYPE_CHECKING:
    from .config import Config
    from .services import Services

# Each command imports what it needs when it runs: `signoff --version` or `report` should not wait
# for Flask, the mail stack or the holidays package.


class Failed(Exception):
    """The work ran but something failed: exit 1 with this message."""


class Context:
    def __init__(self, config_path: Path):
        self.config_path = config_path
        self._svc = None
        self._app = None

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def app(self):
        """The Flask app, for the commands that serve or send mail; on the same database."""
        if self._app is None:
            from .app import create_app

            self._app = create_app(self.services.config, db=self.services.db)
        return self._app

    @property
    def services(self) -> Services:
        if self._svc is None:
            from . import config as config_mod
            from .services import Services

            self._svc = Services.of(config_mod.load(self.config_path))
        return self._svc

    def ready(self):
        """Services, after checking the database has been set up."""
        self.services.db.check_ready()
        return self.services


pass_ctx = click.make_pass_decorator(Context)


def _now(at: dt.datetime | None, tz) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=tz)


class When(click.ParamType):
    name = "ISO-8601"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.datetime):
            return value
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 date or time (e.g. 2026-09-01T08:00+01:00)",
                      param, ctx)


class SignoffGroup(click.Group):
    """Turns every known failure into one line on stderr and the contract's exit code."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # bare `signoff`: the help, as click prints it
        except click.UsageError as exc:  # e.g. a misspelt option before the sub-command
            click.echo(f"signoff: {_usage(exc)}", err=True)
            raise click.exceptions.Exit(2) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `signoff admin` alone: that group's help
        except click.UsageError as exc:
            # One line, like every other error, rather than click's Usage / Try / Error block.
            _fail(ctx, _usage(exc), 2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (ConfigError, DatabaseError) as exc:
            _fail(ctx, str(exc), 2)
        except RosterError as exc:
            for problem in exc.problems:
                click.echo(f"signoff: {problem}", err=True)
            _fail(ctx, "nothing was imported; fix the lines above and import again", 2)
        except Failed as exc:
            _fail(ctx, str(exc), 1)
        except Exception as exc:  # the last line of defence: one line, never a traceback
            if os.environ.get("SIGNOFF_DEBUG"):
                raise
            logging.getLogger("signoff").debug("unexpected error", exc_info=True)
            _fail(ctx, f"unexpected error: {type(exc).__name__}: {exc} "
                       "(set SIGNOFF_DEBUG=1 for details)", 1)


def _fail(ctx: click.Context, message: str, code: int):
    click.echo(f"signoff: {message}", err=True)
    ctx.exit(code)


def _usage(exc: click.UsageError) -> str:
    """Click's message, and where to look unless it is a bad value (which says what to type)."""
    message = exc.format_message()
    bad_value = isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter)
    if bad_value or exc.ctx is None:
        return message
    return f"{message} (see `{exc.ctx.command_path} --help`)"


@click.group(cls=SignoffGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file (default: $SIGNOFF_CONFIG, else ./signoff.toml).")
@click.version_option(package_name="signoff")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """signoff: every member of staff re-reads the policy each year, and says so."""
    # Our own log lines at INFO; libraries (Alembic, waitress, APScheduler) only when they warn.
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("signoff").setLevel(os.environ.get("SIGNOFF_LOG_LEVEL", "INFO").upper())
    from .config import default_path

    ctx.obj = Context(config_path or default_path())


@cli.command()
@pass_ctx
def init(ctx: Context) -> None:
    """Create or upgrade the database; the first time, take in the config's policies (idempotent)."""
    from . import library
    from .db import upgrade

    svc = ctx.services
    upgrade(svc.db.url)
    with svc.db.write() as session:
        seeded = library.seed(session, svc.config, dt.datetime.now(dt.timezone.utc))
        notice = None if seeded else library.notice(session, svc.config)
        slugs = [e.slug for e in svc.library(session).policies]
    if notice:
        click.echo(f"notice: {notice}", err=True)
    click.echo(f"database ready; policies in use: {', '.join(slugs) or 'none'}")


@cli.group()
def staff() -> None:
    """The staff roster."""


@staff.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--full", is_flag=True,
              help="FILE is the whole staff list: make everyone not in it inactive.")
@click.option("--dry-run", is_flag=True, help="Say what would change; store nothing.")
@pass_ctx
def staff_import(ctx: Context, file: Path, full: bool, dry_run: bool) -> None:
    """Upsert the roster from a staff list (CSV as schools export it); all or nothing."""
    from . import library, policies, requests, roster

    try:
        data = file.read_bytes()
    except OSError as exc:
        # One line, not click's usage block: a mistyped file name is bad input, not bad usage.
        _fail(click.get_current_context(), f"{file}: cannot read: {exc.strerror}", 2)
    parsed = roster.parse(data, str(file))
    click.echo(parsed.columns_line(str(file)))
    svc = ctx.ready()
    now = dt.datetime.now(dt.timezone.utc)
    if dry_run:
        with svc.db.read() as session:
            result = roster.plan(session, policies.setting_id(session), parsed.rows, full)
        click.echo(f"{file}: dry run, nothing stored; would be {result.summary()}")
        for line in result.lines():
            click.echo(line)
        return
    with svc.db.write() as session:
        setting_id = library.ensure_setting(session, svc.config).id
        result = roster.apply(session, setting_id, parsed.rows, now,
                              actor=f"import:{file.name}", full=full)
        session.flush()
        requests.after_change(session, svc.library(session), now)
    click.echo(f"{file}: {result.summary()}")
    for line in result.inactive_lines():  # who stops getting reminders is never a surprise
        click.echo(line)


@cli.group()
def admin() -> None:
    """Accounts for the admin console at /admin."""


@admin.command("add")
@click.argument("email")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of prompting.")
@pass_ctx
def admin_add(ctx: Context, email: str, password_stdin: bool) -> None:
    """Add an admin (or set a new password for one); the password is asked for twice."""
    from .admin import accounts

    svc = ctx.ready()
    try:
        address = accounts.normal_email(email)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        added = accounts.add(svc, address, password, dt.datetime.now(dt.timezone.utc))
    except accounts.AccountError as exc:
        _fail(click.get_current_context(), str(exc), 2)
    click.echo(f"{address} {'can now sign in' if added else 'has a new password'} at "
               f"{ctx.config.setting.base_url}/admin")


@admin.command("list")
@pass_ctx
def admin_list(ctx: Context) -> None:
    """List the admins and when each last signed in."""
    from .admin import accounts

    admins = accounts.listing(ctx.ready())
    if not admins:
        click.echo("no admins yet: add one with `signoff admin add EMAIL`")
    tz = ctx.services.tz
    for a in admins:
        last = a.last_login_at.astimezone(tz).isoformat(timespec="minutes") if a.last_login_at else "never"
        click.echo(f"{a.email}  last signed in: {last}")


@admin.command("remove")
@click.argument("email")
@pass_ctx
def admin_remove(ctx: Context, email: str) -> None:
    """Remove an admin; their sessions stop working at once."""
    from .admin import accounts

    try:
        address = accounts.remove(ctx.ready(), email, dt.datetime.now(dt.timezone.utc))
    except accounts.AccountError as exc:
        _fail(click.get_current_context(), str(exc), 2)
    click.echo(f"{address} removed")


@cli.command()
@click.option("--at", type=When(), help="Act as if it were this moment (default: now).")
@pass_ctx
def tick(ctx: Context, at: dt.datetime | None) -> None:
    """Do all work due now: open cycles, reminders, follow-ups, digests, retries."""
    from . import tick as tick_mod

    svc = ctx.ready()
    with ctx.app.app_context():
        result = tick_mod.run(svc, _now(at, svc.tz))
    click.echo(result.summary())
    for failure in result.delivery.failure_lines:
        click.echo(f"  failed: {failure}", err=True)
    if not result.ok:
        why = result.delivery.stopped
        if why and result.delivery.waiting:
            why += f"; {result.delivery.waiting:,} waiting for a later tick"
        raise Failed(why or "some messages were not delivered (see `signoff report`); they "
                     "are retried or reported")


@cli.command()
@click.option("--from", "start", type=When(), help="Start of the timeline (default: now).")
@click.option("--to", "end", type=When(), help="End of the timeline (default: 8 weeks on).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv"]), default="text",
              show_default=True, help="csv: one row per policy named in each email, and per digest.")
@pass_ctx
def plan(ctx: Context, start: dt.datetime | None, end: dt.datetime | None, fmt: str) -> None:
    """Dry run: the dated timeline of what would be sent, to whom, and why."""
    from . import timeline

    svc = ctx.ready()
    start = _now(start, svc.tz)
    end = _now(end, svc.tz) if end else start + dt.timedelta(weeks=8)
    if end <= start:
        _fail(click.get_current_context(), "--to must be after --from", 2)
    with svc.db.read() as session:
        lines = (timeline.render if fmt == "text" else timeline.render_csv)(svc, session,
                                                                             start, end)
        for line in lines:
            click.echo(line)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "csv"]), default="text",
              show_default=True)
@click.option("--at", type=When(), help="Report the cycle current at this moment (default: now).")
@pass_ctx
def report(ctx: Context, fmt: str, at: dt.datetime | None) -> None:
    """One row per active person per policy for the current cycle."""
    from . import reports

    svc = ctx.ready()
    with svc.db.read_streaming() as session:
        rows = reports.rows(svc, session, _now(at, svc.tz))
        click.echo(reports.to_csv(rows) if fmt == "csv" else reports.to_text(rows), nl=False)


@cli.group()
def policy() -> None:
    """The setting's policies, as stored in the database."""


@policy.command("export")
@pass_ctx
def policy_export(ctx: Context) -> None:
    """Print the policies, their schedules and audiences, and the closures as TOML."""
    from . import library, policies

    svc = ctx.ready()
    with svc.db.read() as session:
        click.echo(library.export(session, policies.setting_id(session), svc.config.setting.name,
                                  dt.datetime.now(svc.tz)), nl=False)


@policy.command("list")
@pass_ctx
def policy_list(ctx: Context) -> None:
    """Each policy: its slug, title, state, the version in force (short hash) and its approvals,
    a newer version waiting for approval, and the next review date."""
    from . import library, reviews

    svc = ctx.ready()
    with svc.db.read() as session:
        lib = svc.library(session)
        if not lib.policies:
            click.echo("no policies yet: `signoff init` takes them from the config")
        review_of = {r.policy_id: r for r in reviews.reviews(session, lib)}
        for entry in lib.policies:
            in_force = library.current_version(session, entry.id)
            waiting = library.proposal(session, entry.id)
            click.echo(f"{entry.slug}  {entry.title}  [{entry.state}]")
            if in_force is not None:
                click.echo(f"  in force: {in_force.sha256[:12]} since "
                           f"{in_force.in_force_at.astimezone(svc.tz):%Y-%m-%d}; "
                           + (library.approved_line(in_force.approvals) or "no approval recorded"))
            if waiting is not None:
                click.echo(f"  proposed: {waiting.sha256[:12]} on "
                           f"{waiting.created_at.astimezone(svc.tz):%Y-%m-%d}, waiting for "
                           f"approval (signoff policy approve {entry.slug} …)")
            if entry.id in review_of:
                review = review_of[entry.id]
                click.echo(f"  next review: {review.due:%Y-%m-%d} ({review.why})")


@policy.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Say what would change; store nothing.")
@pass_ctx
def policy_import(ctx: Context, file: Path, dry_run: bool) -> None:
    """Take a library file's [schedule], [[policy]] and [[closure]] tables (the inverse of
    `policy export`), and say what that changes in the coming emails."""
    from . import policy_import as importer

    svc = ctx.ready()
    outcome = importer.run(svc, file, dt.datetime.now(dt.timezone.utc),
                           actor=f"import:{file.name}", dry_run=dry_run)
    if dry_run:
        click.echo(f"{file}: dry run: nothing stored")
    for line in outcome.library or ["nothing in the library changed"]:
        click.echo(f"{file}: {line}")
    click.echo(f"the coming emails ({importer.AHEAD.days // 7} weeks):")
    for line in outcome.emails or ["no change to the coming emails"]:
        click.echo(f"  {line}")


@policy.command("version")
@click.argument("slug")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--material", "change", flag_value="material", default=True,
              help="It changes what staff must do (the default): once approved, everyone who "
                   "confirmed the older text this cycle is asked again, and shown what changed.")
@click.option("--minor", "change", flag_value="minor",
              help="Wording only: confirmations of the older text stand.")
@click.option("--note", default=None, help="What the new text changes, shown to staff.")
@pass_ctx
def policy_version(ctx: Context, slug: str, file: Path, change: str | None,
                   note: str | None) -> None:
    """Propose a new text for policy SLUG from FILE (Word .docx, Markdown or text): a --material
    change (the default, the safe one: everyone is asked again) or a --minor one, with a --note
    of what it changes. It reaches staff once approved (`signoff policy approve`); the
    statements stay as they are."""
    from . import events, library, policies
    from .models import Policy

    svc = ctx.ready()
    change = "material" if change is True else change
    note = " ".join((note or "").split()) or None
    if note is not None and len(note) > 1000:
        _fail(click.get_current_context(), "--note: keep it under 1,000 characters", 2)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        _fail(click.get_current_context(), f"{file}: cannot read it ({exc.strerror})", 2)
    try:
        text = policies.text_of_file(file.name, raw)
    except policies.UnreadableText as exc:
        _fail(click.get_current_context(), str(exc), 2)
    moment = dt.datetime.now(dt.timezone.utc)
    with svc.db.write() as session:
        entry = svc.library(session).by_slug(slug)
        if entry is None:
            _fail(click.get_current_context(), _no_policy(svc, session, slug), 2)
        policy = session.get(Policy, entry.id)
        newest = library.newest_version(session, entry.id)
        version = library.add_version(session, policy, text, list(newest.statements), moment,
                                      actor="command line", note=note, change=change)
        if version is None:
            click.echo(f"{file}: the same text as the {policy.title}'s newest version; nothing "
                       "to propose")
            return
        events.record(session, "policy_changed", moment, actor="command line", policy=slug,
                      changes={"proposed": [newest.sha256, version.sha256]})
        click.echo(f"proposed {version.sha256[:12]}, a {change} change, for the {policy.title}: "
                   f"staff are shown it once approved (signoff policy approve {slug} --name … "
                   f"--role … --date …)"
                   + ("; then everyone who confirmed the older text this cycle is asked again"
                      if change == "material" else ""))


@policy.command("approve")
@click.argument("slug")
@click.option("--name", required=True, help="Who approved it, e.g. Jane Smith.")
@click.option("--role", required=True, help="Their role, e.g. Chair of Governors.")
@click.option("--date", "on", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="The date it was approved, YYYY-MM-DD.")
@click.option("--minute", default=None, help="The minute reference of the meeting.")
@pass_ctx
def policy_approve(ctx: Context, slug: str, name: str, role: str, on: dt.datetime,
                   minute: str | None) -> None:
    """Record one approval of policy SLUG's newest version (the Chair of Governors', then the
    Head Teacher's, say). The first approval of a proposed text puts it in force."""
    from . import library

    svc = ctx.ready()
    moment = dt.datetime.now(dt.timezone.utc)
    if on.date() > moment.astimezone(svc.tz).date():
        _fail(click.get_current_context(), f"--date {on:%Y-%m-%d} is in the future", 2)
    name, role = " ".join(name.split()), " ".join(role.split())
    if not name or not role or len(name) > 200 or len(role) > 200 or len(minute or "") > 200:
        _fail(click.get_current_context(), "--name and --role must be given, each under 200 "
              "characters (and --minute too)", 2)
    with svc.db.write() as session:
        entry = svc.library(session).by_slug(slug)
        if entry is None:
            _fail(click.get_current_context(), _no_policy(svc, session, slug), 2)
        version = library.newest_version(session, entry.id)
        came, asked = library.approve(session, version, name=name, role=role, on=on.date(),
                                      minute=minute, actor="command line", now=moment)
        click.echo(f"recorded: {entry.title} {version.sha256[:12]} approved by {name}, {role}, "
                   f"on {on:%-d %B %Y}"
                   + ("; in force from now" if came else " (it was in force already)"))
        if came and version.change == "material":
            click.echo(f"a material change: {asked} who confirmed the older text this cycle "
                       "are asked again with the next run")


def _no_policy(svc, session, slug: str) -> str:
    known = ", ".join(e.slug for e in svc.library(session).policies) or "none yet"
    return f"no policy {slug!r} (the policies: {known})"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@pass_ctx
def serve(ctx: Context, host: str, port: int, threads: int) -> None:
    """Run the web app under waitress, a production WSGI server."""
    import waitress

    ctx.ready()
    click.echo(f"signoff serving {ctx.config.setting.name} on http://{host}:{port}/")
    # waitress handles Ctrl-C but not SIGTERM (what systemd and the demo send): stop the same way.
    signal.signal(signal.SIGTERM, lambda *_: _stop_serving())
    # A request briefly waiting for a free thread is normal under load, not a warning.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        waitress.serve(ctx.app, host=host, port=port, threads=threads,
                       **waitress_options(ctx.config.web.proxy_count))
    except KeyboardInterrupt:
        pass
    click.echo("signoff serve stopped")


def waitress_options(proxy_count: int) -> dict:
    """How `signoff serve` meets the internet (docs/security.md, "The web edge")."""
    from .app import MAX_BODY

    options = dict(
        ident="signoff",
        max_request_body_size=MAX_BODY,  # answered 413 from the headers, before the body is read
        max_request_header_size=64 * 1024,
        # Connections cost no thread until a whole request has arrived, so many slow or idle
        # clients only hold sockets: allow plenty, and close one after 30 s of silence.
        connection_limit=1000,
        channel_timeout=30,
        cleanup_interval=5,
        asyncore_use_poll=True,  # select() stops at 1,024 open files
    )
    if proxy_count:
        # The client's address and scheme, from exactly proxy_count proxies' X-Forwarded-For and
        # -Proto (the Host header is checked against base_url in the app). Without proxies, these
        # headers are dropped: a client cannot choose the address recorded as its evidence.
        options.update(trusted_proxy="*", trusted_proxy_count=proxy_count,
                       trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"},
                       clear_untrusted_proxy_headers=True)
    return options


def _stop_serving():
    raise KeyboardInterrupt


@cli.command("scheduler")
@pass_ctx
def scheduler_cmd(ctx: Context) -> None:
    """Long-running: run `tick` every [scheduler] interval_seconds until SIGTERM."""
    from scheduler.main import run

    ctx.ready()
    run(ctx.app)


@cli.command(hidden=True)
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo"), show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--mail-port", default=8025, show_default=True, type=int)
def demo(folder: Path, port: int, mail_port: int) -> None:
    """Everything at once on this machine: web app, scheduler and a mail catcher."""
    from . import demo as demo_mod

    demo_mod.run(folder, port, mail_port)


def main() -> None:
    # What signoff creates (the database, the secret key, instance/) is for its own user only,
    # however it is started.
    os.umask(0o077)
    cli.main(prog_name="signoff")
