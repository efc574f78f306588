"""`signoff scheduler`: APScheduler calls tick every `interval_seconds`. All state lives in the
database, so this process can be restarted, or briefly run twice by mistake, without harm."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from workflow import tick

log = logging.getLogger("signoff.scheduler")
JOB_ID = "signoff-tick"


def tick_job(app: Flask, stopping: threading.Event) -> None:
    svc = app.extensions["signoff"]
    try:
        with app.app_context():
            result = tick.run(svc, dt.datetime.now(dt.timezone.utc), stopping)
    except Exception:
        # A bad tick must not kill the scheduler; the next interval tries again.
        log.exception("tick failed")
        return
    (log.info if result.ok else log.warning)(result.summary())


def build(app: Flask, stopping: threading.Event) -> BlockingScheduler:
    svc = app.extensions["signoff"]
    interval = svc.config.scheduler.interval_seconds
    scheduler = BlockingScheduler(timezone=svc.tz)
    scheduler.add_job(
        tick_job, "interval", args=[app, stopping], id=JOB_ID, replace_existing=True,
        seconds=interval,
        next_run_time=dt.datetime.now(svc.tz),  # first tick at once, not after one interval
        coalesce=True,  # after a pause, one catch-up run, not one per missed interval
        max_instances=1,
        misfire_grace_time=max(interval, 3600),
    )
    return scheduler


def run(app: Flask) -> None:
    stopping = threading.Event()
    scheduler = build(app, stopping)

    def stop(signum, _frame):
        # A tick sending at the provider's pace may have hours to go: it stops after the
        # message in hand, and hands back its claim if that had not gone.
        log.info("received %s, stopping after the message in hand", signal.Signals(signum).name)
        stopping.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    svc = app.extensions["signoff"]
    log.info("scheduler started: tick every %ss (%s)", svc.config.scheduler.interval_seconds,
             svc.tz.key)
    scheduler.start()
    log.info("scheduler stopped")
