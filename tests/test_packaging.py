"""`pip install .` gives a working `signoff`: the wheel carries templates, migrations, the policy and
the scheduler, and the installed command works from a folder far from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, link_in, write_config

pytestmark = pytest.mark.slow  # each starts signoff or another program as a process

REQUIRED = [
    "workflow/templates/emails/reminder.txt",
    "workflow/templates/emails/reminder.html",
    "workflow/templates/emails/digest.txt",
    "workflow/templates/confirm.html",
    "workflow/migrations/env.py",
    "workflow/migrations/script.py.mako",
    "workflow/migrations/versions/0001_initial_schema.py",
    "workflow/policies/social-media.md",
    "workflow/policies/examples/code-of-conduct.md",
    "workflow/policies/examples/lone-working.md",
    "workflow/examples/policies.toml",
    "workflow/config.example.toml",
    "workflow/cli.py",
    "workflow/__main__.py",
    "scheduler/main.py",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    found = list(out.glob("signoff-*.whl"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable). Its dependencies come from the
    project venv's site-packages by a plain path line, so the editable hook there (which puts the
    checkout on sys.path) is never run."""
    folder = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   capture_output=True, timeout=120)
    purelib = Path(subprocess.run([str(folder / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(folder / "bin" / "python"),
                    "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=120)
    return folder


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "SIGNOFF_CONFIG", "PYTHONSTARTUP")}
    env["SIGNOFF_SECRET_KEY"] = "packaging-test"
    return env


def test_wheel_carries_the_shipped_files_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "bench/", ".venv/")) for n in names)
    assert "[console_scripts]" in entry_points
    assert "signoff = workflow.cli:main" in entry_points


def test_installed_package_works_outside_the_checkout(venv, tmp_path, smtp):
    python, signoff = str(venv / "bin" / "python"), str(venv / "bin" / "signoff")
    site = tmp_path / "school"
    config = write_config(site, f"sqlite:///{site / 'signoff.db'}", smtp.port)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), cwd=elsewhere, env=_env(), capture_output=True,
                                text=True, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    where = run(python, "-c", (
        "import sys, workflow, scheduler.main\n"
        "from workflow import resources\n"
        "print(workflow.__file__); print(scheduler.main.__file__)\n"
        "print(resources.path('templates')); print(resources.path('migrations'))\n"
        "print(repr([p for p in sys.path if p.rstrip('/') == " + repr(str(ROOT)) + "]))\n"))
    assert where.returncode == 0, where.stderr
    package, sched, templates, migrations, checkout = where.stdout.splitlines()
    inside = str(venv)
    for path in (package, sched, templates, migrations):
        assert path.startswith(inside) and not path.startswith(str(ROOT)), path
    assert checkout == "[]"  # the checkout is not importable at all

    init = run(signoff, "--config", str(config), "init")
    assert init.returncode == 0, init.stderr
    assert (site / "signoff.db").exists()

    (site / "staff.csv").write_text("name,email\nAmira Khan,amira@example.org\n")
    imported = run(python, "-m", "workflow", "--config", str(config), "staff", "import",
                   str(site / "staff.csv"))
    assert imported.returncode == 0, imported.stderr

    ticked = run(signoff, "--config", str(config), "tick", "--at", "2026-09-01T09:00+01:00")
    assert ticked.returncode == 0, ticked.stderr
    message = smtp.inbox.to("amira@example.org")[0]  # rendered from the installed templates
    assert link_in(message).startswith("http://signoff.test/c/")
    assert "Dear Amira" in message.get_body(("plain",)).get_content()

    version = run(signoff, "--version")
    assert version.returncode == 0 and "0." in version.stdout


def test_installed_example_config_is_valid(venv, tmp_path):
    """The example shipped inside the package loads, its policy found beside it in the package."""
    result = subprocess.run([str(venv / "bin" / "python"), "-c", (
        "from workflow import config, resources\n"
        "c = config.load(resources.path('config.example.toml'))\n"
        "print(c.policies[0].file)\n")], cwd=tmp_path, env=_env(), capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 0, result.stderr
    policy = Path(result.stdout.strip())
    assert policy.is_file() and str(policy).startswith(str(venv))
