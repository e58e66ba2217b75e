"""The deployment files in deploy/ against the real tools they are written for."""

import fcntl
import os
import re
import smtplib
import subprocess
import time
from pathlib import Path

from conftest import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"


def test_shipped_haproxy_config_is_valid():
    result = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def haproxy_config(instances, port):
    """deploy/haproxy.cfg as shipped (defaults, timeouts, balance, SMTP check), with its frontend on
    `port` and its servers replaced by the loopback instances; checks every 200 ms instead of 10 s,
    and no daemon, user switch or syslog."""
    lines = []
    for line in HAPROXY_CFG.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(("log /dev/log", "user ", "group ", "daemon", "server ", "log global", "option tcplog")):
            continue
        if stripped.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        lines.append(line)
        if stripped.startswith("default-server"):
            lines[-1] = re.sub(r"inter \S+", "inter 200", line)
            lines += [f"    server mail{n} 127.0.0.1:{m.smtp_port} check" for n, m in enumerate(instances, 1)]
    return "\n".join(lines) + "\n"


class HAProxy:
    """haproxy in the foreground; `log()` is what it wrote to stderr so far (server state changes)."""

    def __init__(self, config: Path):
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        fd = self.proc.stderr.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.output = ""

    def log(self) -> str:
        try:
            chunk = self.proc.stderr.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            self.output += chunk.decode(errors="replace")
        return self.output

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def send_through(port, subject):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.example")
        s.sendmail("app@example.com", ["rcpt@example.net"], f"Subject: {subject}\r\n\r\nbody\r\n")


def delivered_subjects(m):
    return {re.search(rb"Subject: (\S+)", p.read_bytes()).group(1).decode() for p in m.files("local")}


def test_haproxy_spreads_sessions_and_skips_a_stopped_instance(mailer_factory, tmp_path):
    """The multi-instance example of deploy/haproxy.cfg: sessions go round robin over the instances,
    the SMTP check (HELO, QUIT) passes against a running relay, and an instance that is stopped
    drops out, so every later message lands on the one still running."""
    first, second = mailer_factory(), mailer_factory()
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config([first, second], port))
    proxy = HAProxy(config)
    try:
        wait_for(lambda: proxy.proc.poll() is not None or port_open(port), 10, message="haproxy listening")
        assert proxy.proc.poll() is None, proxy.log()
        started = time.monotonic()
        for n in range(10):
            send_through(port, f"spread-{n}")
        wait_for(lambda: len(delivered_subjects(first) | delivered_subjects(second)) == 10, 10,
                 message="10 messages stored")
        # Round robin: both take a share (the probe for the listening port above counts as a session).
        assert 3 <= len(delivered_subjects(first)) <= 7 and 3 <= len(delivered_subjects(second)) <= 7
        assert not delivered_subjects(first) & delivered_subjects(second)
        # Let at least five checks run (every 200 ms): HELO and QUIT against a relay pass.
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        assert "is DOWN" not in proxy.log(), proxy.log()

        first.stop()
        # fall 3 at 200 ms: the check marks it down within about a second.
        wait_for(lambda: "mail1 is DOWN" in proxy.log(), 10, message="haproxy marks mail1 down")
        for n in range(6):
            send_through(port, f"after-{n}")
        wait_for(lambda: {f"after-{n}" for n in range(6)} <= delivered_subjects(second), 10,
                 message="later messages on the running instance")
    finally:
        proxy.stop()
