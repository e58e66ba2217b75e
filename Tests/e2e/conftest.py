"""Shared fixtures for the end-to-end tests: they start the real `mailer` binary on loopback ports
with a temporary data directory and talk to it with real clients."""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAILER = Path(os.environ.get("MAILER_BIN", ROOT / ".build" / "debug" / "mailer"))
IS_ROOT = os.geteuid() == 0
RUN_AS = os.environ.get("MAILER_TEST_USER", "mailer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Polls `predicate` until it returns a truthy value; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_shared_binary = None


def binary_for(user):
    """The binary a relay started as `user` runs: the build tree may not be readable by that user
    (a checkout under a 0700 directory), so such relays run a copy in a world-readable directory."""
    global _shared_binary
    if user is None:
        return MAILER
    if _shared_binary is None:
        directory = Path(tempfile.mkdtemp(prefix="mailer-test-bin-", dir="/tmp"))
        os.chmod(directory, 0o755)
        _shared_binary = directory / "mailer"
        shutil.copy2(MAILER, _shared_binary)
        os.chmod(_shared_binary, 0o755)
    return _shared_binary


def ensure_run_as_user():
    if not IS_ROOT:
        return
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "-r", "-s", "/usr/sbin/nologin", RUN_AS], check=True)


class Mailer:
    """One running `mailer serve` with its own data directory and ports."""

    def __init__(self, config: dict, env: dict | None = None, run_as: str | None = None):
        """`run_as`: start the supervisor itself as this (non-root) user, so nothing is dropped."""
        ensure_run_as_user()
        self.run_as = run_as
        self.binary = binary_for(run_as)
        self.dir = Path(tempfile.mkdtemp(prefix="mailer-test-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.smtp_port = config.setdefault("smtpPort", free_port())
        self.http_port = config.setdefault("healthCheckPort", free_port())
        config.setdefault("dataDir", str(self.dir / "emails"))
        config.setdefault("hostname", "mailer.test")
        if IS_ROOT:
            config.setdefault("user", RUN_AS)
        config.setdefault("drainTimeout", 5)
        self.config = config
        self.data = Path(config["dataDir"])
        self.config_path = self.dir / "config.json"
        self.write_config(config)
        self.env = dict(os.environ, **(env or {}))
        self.log_path = self.dir / "mailer.log"
        self.proc = None

    def write_config(self, config: dict):
        self.config = config
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        extra = {}
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
            extra = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "-config", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            start_new_session=True, **extra,
        )
        if wait:
            wait_for(lambda: self.proc.poll() is not None or port_open(self.smtp_port), 20, message="SMTP port")
            assert self.proc.poll() is None, self.logs()
            wait_for(lambda: "serving" in self.logs() or self.proc.poll() is not None, 20, message="serving")
            assert self.proc.poll() is None, self.logs()
        return self

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout=10.0, regex=False) -> str:
        """Waits until the log holds `pattern` (a substring, or a regular expression with `regex`).

        Workers write their own lines to the shared log, so a line can land a moment after the
        event the test observed (a reply, a file moved, the supervisor's "serving").
        """
        found = (lambda text: re.search(pattern, text)) if regex else (lambda text: pattern in text)
        try:
            return wait_for(lambda: found(self.logs()) and self.logs(), timeout, message=f"log line {pattern!r}")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()[-3000:]}") from None

    def cli(self, *args, check=True, timeout=60):
        """Runs `mailer <args> -config <this config>`."""
        result = subprocess.run([str(self.binary), *args, "-config", str(self.config_path)], capture_output=True,
                                text=True, timeout=timeout, env=self.env)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def status(self) -> dict:
        path = self.data / "run" / "status.json"
        return json.loads(path.read_text())

    def worker_pid(self, role: str, generation=None) -> int:
        def find():
            try:
                status = self.status()
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            for w in status["workers"]:
                if w["role"] == role and w["pid"] > 0 and w["state"] == "running" and \
                        (generation is None or w["generation"] == generation):
                    return w["pid"]
            return None
        return wait_for(find, 20, message=f"running {role}")

    def files(self, state: str) -> list[Path]:
        d = self.data / "failed" if state == "failed" else (
            self.data / "local" if state == "local" else self.data / "queue" / state)
        if not d.exists():
            return []
        # Names starting with a dot are files still being written (a local copy's temporary name).
        return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))

    def spool_ids(self) -> set[str]:
        """Ids of every message the relay holds or has finished locally."""
        ids = set()
        for state in ("new", "active", "deferred", "hold", "failed"):
            ids |= {p.name for p in self.files(state)}
        ids |= {p.name.removesuffix(".eml") for p in self.files("local")}
        return ids

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc:
            # Workers are in the same session: make sure none is left.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if getattr(self, "log", None):
            self.log.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def mailer_factory():
    """Makes Mailer instances and stops them all at the end of the test."""
    made = []

    def make(config=None, env=None, start=True, run_as=None):
        m = Mailer(dict(config or {}), env, run_as)
        made.append(m)
        if start:
            m.start()
        return m

    yield make
    for m in made:
        m.cleanup()


@pytest.fixture
def mailer(mailer_factory):
    """A relay on built-in defaults (local mode) with its own ports and data directory."""
    return mailer_factory()


@pytest.fixture(scope="session", autouse=True)
def _remove_shared_binary():
    yield
    if _shared_binary is not None:
        shutil.rmtree(_shared_binary.parent, ignore_errors=True)
