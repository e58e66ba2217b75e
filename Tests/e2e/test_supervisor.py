"""The supervisor end to end: privilege drop, per-worker restarts, heartbeats, reload under load,
stop, status and systemd notifications. Every test runs twice when the suite runs as root: with
the supervisor as root (workers drop to the run-as user) and as that user itself (no drop)."""

import json
import os
import pwd
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import IS_ROOT, RUN_AS, wait_for

MODES = ["root", "unprivileged"] if IS_ROOT else ["unprivileged"]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def start(mailer_factory, mode, config=None, env=None):
    return mailer_factory(config or {}, env=env, run_as=RUN_AS if (IS_ROOT and mode == "unprivileged") else None)


def proc_ids(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


def worker_pids(m, generation=None):
    return {role: m.worker_pid(role, generation) for role in ("receiver", "forwarder", "monitor")}


def send(m, n=1, user=None, password=None):
    ids = []
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        s.ehlo()
        if user:
            s.login(user, password)
        for i in range(n):
            s.mail("sup@example.com")
            s.rcpt("b@example.net")
            code, reply = s.data(f"Subject: {i}\r\n\r\nx\r\n".encode())
            assert code == 250, reply
            ids.append(reply.decode().split()[-1])
    return ids


def test_workers_run_as_the_run_as_user(mailer_factory, mode):
    m = start(mailer_factory, mode)
    account = pwd.getpwnam(RUN_AS) if IS_ROOT else pwd.getpwuid(os.getuid())
    for role, pid in worker_pids(m).items():
        ids = proc_ids(pid)
        assert ids["Uid"] == [str(account.pw_uid)] * 4, (role, ids["Uid"])
        assert ids["Gid"] == [str(account.pw_gid)] * 4, (role, ids["Gid"])
        if mode == "root":
            assert ids["NoNewPrivs"] == ["1"], role
            assert ids["CapEff"] == ["0000000000000000"], role
    supervisor = proc_ids(m.proc.pid)
    assert supervisor["Uid"][0] == ("0" if mode == "root" else str(account.pw_uid))
    [queue_id] = send(m)
    def stat_stored():
        for p in (m.data / "local" / f"{queue_id}.eml", m.data / "queue" / "new" / queue_id):
            try:
                return p.stat()
            except FileNotFoundError:
                continue  # not there, or moved on between two looks
        return None
    st = wait_for(stat_stored, 10, message="stored file")
    assert (st.st_uid, st.st_gid) == (account.pw_uid, account.pw_gid)
    assert (m.data / "queue").stat().st_uid == account.pw_uid


@pytest.mark.parametrize("role", ["receiver", "forwarder", "monitor"])
def test_kill_9_restarts_that_worker_alone(mailer_factory, mode, role):
    m = start(mailer_factory, mode)
    before = worker_pids(m)
    os.kill(before[role], signal.SIGKILL)
    wait_for(lambda: m.worker_pid(role) != before[role], 10, message=f"{role} restarted")
    after = worker_pids(m)
    for other in before:
        if other != role:
            assert after[other] == before[other], f"{other} was restarted too"
    m.wait_for_log(f"{role} pid {before[role]} killed by signal 9")
    status = m.status()
    assert next(w for w in status["workers"] if w["role"] == role)["restarts"] == 1
    send(m)


def test_wedged_worker_is_killed_and_restarted(mailer_factory, mode):
    m = start(mailer_factory, mode, {"heartbeatTimeout": 3})
    old = m.worker_pid("forwarder")
    os.kill(old, signal.SIGSTOP)
    wait_for(lambda: m.worker_pid("forwarder") != old, 15, message="wedged forwarder replaced")
    m.wait_for_log("stopped answering heartbeats")


def test_crash_loop_is_logged_and_backs_off(mailer_factory, mode):
    m = start(mailer_factory, mode)
    # A receiver that dies right after each start (here: killed as soon as it is up) is crash-looping.
    for _ in range(5):
        pid = m.worker_pid("receiver")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "receiver is crash-looping" in m.logs() or m.worker_pid("receiver") != pid, 30,
                 message="receiver restarted")
    wait_for(lambda: "receiver is crash-looping" in m.logs(), 20, message="crash loop logged")
    # Backoff: 0.2 s after the first quick failure, doubling (0.2, 0.4, 0.8, 1.6, 3.2 s).
    restarts = [line for line in m.logs().splitlines() if "restarting in" in line or "crash-looping" in line]
    delays = [float(re.search(r"(?:restarting in|next start in) ([0-9.]+) s", line).group(1)) for line in restarts]
    assert delays == sorted(delays) and delays[-1] >= 3.2, delays
    status = m.status()
    receiver = [w for w in status["workers"] if w["role"] == "receiver"]
    assert receiver and receiver[0]["restarts"] >= 5
    # Kill the receiver once more while it waits out its backoff, so /health sees no receiver.
    os.kill(m.worker_pid("receiver"), signal.SIGKILL)
    # /health shows it: no receiver serves, so the check fails (503) and names the crash loop.
    def health():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{m.http_port}/health", timeout=5)
            return None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    code, body = wait_for(health, 10, message="/health failing")
    assert code == 503 and body["status"] == "error"
    assert any(w["role"] == "receiver" and w["state"] == "crash-loop" for w in body["details"]["workers"])


def test_reload_under_load_loses_and_fails_nothing(mailer_factory, mode):
    m = start(mailer_factory, mode)
    before = worker_pids(m, generation=1)
    accepted, failures = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n):
        rounds = 0
        while not stop.is_set() and rounds < 500:
            rounds += 1
            try:
                with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=20) as s:
                    s.ehlo()
                    for i in range(3):
                        s.mail("load@example.com")
                        s.rcpt("b@example.net")
                        code, reply = s.data(f"Subject: {n}-{rounds}-{i}\r\n\r\nx\r\n".encode())
                        with lock:
                            (accepted if code == 250 else failures).append(reply.decode().split()[-1])
            except (smtplib.SMTPException, OSError) as e:
                import traceback
                with lock:
                    failures.append(repr(e) + traceback.format_exc()[-600:])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(accepted) >= 100, 30, message="load running")
    result = m.cli("reload")
    assert "reload requested" in result.stdout
    after = worker_pids(m, generation=2)
    at_reload = len(accepted)
    wait_for(lambda: len(accepted) >= at_reload + 100, 30, message="load after reload")
    stop.set()
    for t in threads:
        t.join(60)
    assert failures == []
    for role in before:
        assert after[role] != before[role], role
    # The old generation is gone.
    wait_for(lambda: all(w["generation"] == 2 for w in m.status()["workers"]), 15, message="old generation exited")
    wait_for(lambda: set(accepted) <= m.spool_ids(), 10, message="every accepted message stored")


def test_reload_applies_a_changed_password(mailer_factory, mode):
    m = start(mailer_factory, mode, {"defaultUsername": "app", "defaultPassword": "old-password"})
    send(m, user="app", password="old-password")
    m.write_config(dict(m.config, defaultPassword="new-password"))
    os.kill(m.proc.pid, signal.SIGHUP)
    m.worker_pid("receiver", generation=2)
    wait_for(lambda: all(w["generation"] == 2 for w in m.status()["workers"]), 15, message="old generation exited")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send(m, user="app", password="old-password")
    send(m, user="app", password="new-password")


def test_reload_with_a_broken_config_keeps_serving(mailer_factory, mode):
    m = start(mailer_factory, mode)
    pids = worker_pids(m)
    m.config_path.write_text('{"smtpPort": "not a port",}')
    result = m.cli("reload", check=False)
    assert result.returncode != 0 and "smtpPort" in result.stderr
    os.kill(m.proc.pid, signal.SIGHUP)
    wait_for(lambda: "reload refused" in m.logs(), 10, message="reload refused")
    assert m.status()["generation"] == 1
    assert worker_pids(m) == pids
    send(m)


def test_reload_with_a_certificate_that_does_not_load_is_refused(mailer_factory, mode):
    m = start(mailer_factory, mode)
    pids = worker_pids(m)
    broken = m.dir / "broken.pem"
    broken.write_text("not a certificate\n")
    m.write_config(dict(m.config, tls={"certFile": str(broken), "keyFile": str(broken)}))
    os.kill(m.proc.pid, signal.SIGHUP)
    m.wait_for_log("reload refused, keeping generation 1: config error at key 'tls.certFile'")
    assert m.status()["generation"] == 1 and worker_pids(m) == pids
    send(m)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(c) for c in f.read().split()}
    except FileNotFoundError:
        return set()


def is_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"\0worker\0" in f.read()
    except FileNotFoundError:
        return False


def freeze_new_workers(m, before):
    """SIGSTOPs the three workers a reload spawns, before they can say they are ready."""
    frozen = set()
    deadline = time.monotonic() + 5
    while len(frozen) < 3 and time.monotonic() < deadline:
        for pid in children(m.proc.pid) - before - frozen:
            # Only once it runs the worker: stopped between posix_spawn's fork and exec, it would
            # hold the supervisor inside posix_spawn too.
            if is_worker(pid):
                os.kill(pid, signal.SIGSTOP)
                frozen.add(pid)
    assert len(frozen) == 3
    return frozen


def thaw(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("failure", ["dies", "hangs"])
def test_a_reload_whose_new_generation_fails_keeps_the_running_one(mailer_factory, mode, failure):
    """The new workers are frozen as soon as they are spawned, before they can say they are ready.
    One that then dies abandons the reload at once; workers that just hang abandon it after
    heartbeatTimeout. Either way the running generation never stopped serving, and stays."""
    m = start(mailer_factory, mode, {"heartbeatTimeout": 3} if failure == "hangs" else None)
    pids = worker_pids(m)
    before = children(m.proc.pid)
    os.kill(m.proc.pid, signal.SIGHUP)
    frozen = freeze_new_workers(m, before)
    try:
        if failure == "dies":
            receiver = next(pid for pid in frozen if b"\0receiver\0" in open(f"/proc/{pid}/cmdline", "rb").read())
            os.kill(receiver, signal.SIGKILL)
            m.wait_for_log(f"reload failed, keeping generation 1: new receiver pid {receiver} killed by signal 9")
        else:
            m.wait_for_log("reload failed, keeping generation 1", timeout=15)
            assert "not ready after 3 s" in m.logs()
        send(m)
        assert m.status()["generation"] == 1
        assert worker_pids(m, generation=1) == pids
    finally:
        thaw(frozen)
    wait_for(lambda: all(w["generation"] == 1 for w in m.status()["workers"]), 20,
             message="the abandoned generation gone")
    assert urllib.request.urlopen(f"http://127.0.0.1:{m.http_port}/health", timeout=5).status == 200
    # The next reload goes through (generation 2 was the abandoned one).
    os.kill(m.proc.pid, signal.SIGHUP)
    wait_for(lambda: m.status()["generation"] == 3, 20, message="generation 3 serving")
    send(m)


def test_reload_command_refuses_a_file_the_running_mailer_does_not_read(mailer_factory, mode):
    m = start(mailer_factory, mode)
    other = m.dir / "other.json"
    other.write_text(m.config_path.read_text())
    result = subprocess.run([str(m.binary), "reload", "-config", str(other)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert f"reads {m.config_path}, not {other}" in result.stderr
    assert m.status()["generation"] == 1


def test_sigterm_stops_everything_within_the_bound(mailer_factory, mode):
    m = start(mailer_factory, mode, {"drainTimeout": 3})
    pids = list(worker_pids(m).values())
    # An idle open session must not hold the stop up beyond the drain timeout.
    idle = socket.create_connection(("127.0.0.1", m.smtp_port))
    idle.recv(100)
    started = time.monotonic()
    m.proc.send_signal(signal.SIGTERM)
    m.proc.wait(3 + 5 + 2)
    elapsed = time.monotonic() - started
    assert m.proc.returncode == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()
    assert "mailer stopped" in m.logs()
    assert elapsed < 10
    idle.close()


def test_stop_and_status_commands(mailer_factory, mode):
    m = start(mailer_factory, mode)
    pids = worker_pids(m)
    out = m.cli("status").stdout
    assert "generation 1" in out
    for role, pid in pids.items():
        assert role in out and str(pid) in out
    out = m.cli("stop").stdout
    assert "stopped" in out
    assert m.proc.wait(5) == 0
    assert m.cli("status", check=False).returncode == 3


def test_systemd_notifications(mailer_factory, mode, tmp_path):
    path = f"/tmp/mailer-notify-{os.getpid()}-{mode}.sock"
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)
    sock.settimeout(0.2)
    received = []

    def drain_until(text, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                received.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
            if any(text in r for r in received):
                return
        raise AssertionError(f"no {text!r} in {received}")

    try:
        m = start(mailer_factory, mode, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"})
        drain_until("READY=1")
        drain_until("WATCHDOG=1")
        received.clear()
        os.kill(m.proc.pid, signal.SIGHUP)
        drain_until("RELOADING=1")
        drain_until("READY=1")
        received.clear()
        m.proc.send_signal(signal.SIGTERM)
        drain_until("STOPPING=1")
    finally:
        sock.close()
        os.unlink(path)


@pytest.mark.skipif(not IS_ROOT, reason="only root drops to a run-as user")
@pytest.mark.parametrize("user, why", [("no-such-user-here", "does not exist"), ("root", "is root")])
def test_an_unusable_run_as_user_is_a_clear_error(mailer_factory, user, why):
    m = mailer_factory({"user": user}, start=False)
    m.start(wait=False)
    assert m.proc.wait(20) == 67  # EX_NOUSER
    assert f"the run-as user '{user}' (config key 'user') {why}" in m.logs()


def test_reload_binds_changed_ports(mailer_factory, mode):
    from conftest import free_port, port_open
    m = start(mailer_factory, mode)
    old_smtp, old_http = m.smtp_port, m.http_port
    new_smtp, new_http = free_port(), free_port()
    m.write_config(dict(m.config, smtpPort=new_smtp, healthCheckPort=new_http))
    os.kill(m.proc.pid, signal.SIGHUP)
    m.smtp_port = new_smtp
    m.worker_pid("receiver", generation=2)
    wait_for(lambda: all(w["generation"] == 2 for w in m.status()["workers"]), 15, message="old generation exited")
    send(m)
    assert urllib.request.urlopen(f"http://127.0.0.1:{new_http}/health", timeout=5).status == 200
    wait_for(lambda: not port_open(old_smtp) and not port_open(old_http), 10, message="old ports closed")


def test_provider_password_is_masked_in_the_startup_log(mailer_factory, mode):
    m = start(mailer_factory, mode, {"forwardSMTP": True, "forwardHost": "127.0.0.1", "forwardPort": 9,
                                     "forwardUsername": "relay-user", "forwardPassword": "hunter2-secret"})
    m.wait_for_log("hu**********et")
    assert "hunter2-secret" not in m.logs()
