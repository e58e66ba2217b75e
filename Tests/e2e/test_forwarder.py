"""The forwarder end to end: the real binary delivering to real upstreams on loopback (aiosmtpd with
STARTTLS from a test CA and AUTH, implicit TLS, Postfix's smtp-sink), failover, retries, batches,
connection reuse, kill -9 while mail flows, and local mode."""

import json
import os
import re
import signal
import smtplib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import free_port, wait_for
from upstream_servers import AioUpstream, SmtpSink, UpstreamCA

ID = re.compile(r"queued as ([0-9A-F]{22})")
ID_IN_RECEIVED = re.compile(rb"with E?SMTP id ([0-9A-F]{22})")


@pytest.fixture
def upstreams():
    """Starts upstream servers and stops them at the end of the test."""
    made = []

    def add(server):
        made.append(server)
        return server.start()

    yield add
    for server in made:
        server.stop()


def relay_config(providers, **extra):
    config = {
        "forwardSMTP": True,
        "forwardProviders": providers,
        "queue": {"retryInitialDelay": 1, "retryMaxDelay": 2, "scanInterval": 1},
        "batchDelay": 0,
        "workerCount": 4,
        "circuitBreaker": {"failureThreshold": 50, "cooldown": 1},
    }
    config.update(extra)
    return config


def provider(name, port, priority=0, **extra):
    return dict({"name": name, "host": "127.0.0.1", "port": port, "priority": priority}, **extra)


def submit(m, recipients, subject="test", body="Hello.\r\n", sender="app@example.com", smtp=None):
    """Submits one message to the relay; returns its queue id."""
    message = f"From: <{sender}>\r\nTo: <{recipients[0]}>\r\nSubject: {subject}\r\n\r\n{body}"

    def go(s):
        s.mail(sender)
        for r in recipients:
            code, text = s.rcpt(r)
            assert code == 250, text
        code, text = s.data(message.encode())
        assert code == 250, text
        return ID.search(text.decode()).group(1)

    if smtp is not None:
        return go(smtp)
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        return go(s)


def envelope(path):
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    length = int(header.split()[-1])
    return json.loads(rest[:length])


def queue_empty(m):
    return not any(m.files(state) for state in ("new", "active", "deferred"))


def assert_no_crash(m):
    logs = m.logs()
    assert "Fatal error" not in logs and "crash-loop" not in logs, logs[-3000:]
    assert not re.search(r"forwarder pid \d+ exited with status [1-9]", logs), logs[-3000:]


def metric(m, kind, name, labels_contain=""):
    try:
        status = m.status()
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(s["value"] for s in status.get(kind, []) if s["name"] == name and labels_contain in s["labels"])


# MARK: - Routes, TLS, AUTH


def test_failover_past_dead_port_and_unverifiable_certificate(mailer_factory, upstreams):
    """A dead port, then a provider whose certificate does not verify (never plaintext), then a provider
    with a certificate from the test CA (caFile) and AUTH over STARTTLS: the message arrives there intact."""
    m = mailer_factory(start=False)
    ca = UpstreamCA(m.dir)
    rogue = UpstreamCA(m.dir, name="rogue CA")
    bad = upstreams(AioUpstream(starttls=rogue.issue("bad")))
    good = upstreams(AioUpstream(starttls=ca.issue("good"), auth=("relay", "upstream-secret")))
    dead = free_port()
    m.write_config(dict(m.config, **relay_config([
        provider("dead", dead, 0),
        provider("badcert", bad.port, 1, username="relay", password="upstream-secret"),
        provider("good", good.port, 2, caFile=str(ca.cert_path), username="relay", password="upstream-secret"),
    ])))
    m.start()
    body = "first line\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n"
    qid = submit(m, ["alice@example.net"], subject="failover", body=body)
    wait_for(lambda: good.messages, 20, message="delivery to the good provider")
    wait_for(lambda: queue_empty(m), 10, message="empty queue")
    got = good.messages[0]
    assert got["recipients"] == ["alice@example.net"]
    assert got["tls"] and got["auth"] == "relay"
    assert b"\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n" in got["data"]
    assert qid.encode() in got["data"]
    assert bad.messages == []  # the unverified server never got the message, nor the password in plaintext
    m.wait_for_log(r"provider=dead.*outcome=connect_error|outcome=connect_error.*provider=dead", regex=True)
    m.wait_for_log(r"provider=badcert.*outcome=tls_error|outcome=tls_error.*provider=badcert", regex=True)
    assert "upstream-secret" not in m.logs()
    wait_for(lambda: metric(m, "counters", "mailer_delivered_total", "provider=good") == 1, 5,
             message="delivered counter")
    assert metric(m, "counters", "mailer_delivery_attempts_total", "outcome=tls_error") >= 1
    assert_no_crash(m)


def test_implicit_tls_with_auth_login(mailer_factory, upstreams):
    m = mailer_factory(start=False)
    ca = UpstreamCA(m.dir)
    up = upstreams(AioUpstream(implicit=ca.issue("smtps"), auth=("relay", "pw-465"), exclude_auth=["PLAIN"]))
    m.write_config(dict(m.config, **relay_config([
        provider("smtps", up.port, ssl=True, caFile=str(ca.cert_path), username="relay", password="pw-465"),
    ])))
    m.start()
    submit(m, ["bob@example.net"], subject="implicit")
    wait_for(lambda: up.messages, 20, message="delivery over implicit TLS")
    assert up.messages[0]["tls"] and up.messages[0]["auth"] == "relay"
    wait_for(lambda: queue_empty(m), 10, message="empty queue")
    assert_no_crash(m)


# MARK: - Replies


def test_temporary_failure_then_success(mailer_factory, upstreams):
    up = upstreams(AioUpstream())
    up.recorder.mail_failures = 1
    m = mailer_factory(relay_config([provider("only", up.port)]))
    qid = submit(m, ["carol@example.net"], subject="retry")
    wait_for(lambda: up.messages, 20, message="delivery after the retry")
    wait_for(lambda: queue_empty(m), 10, message="empty queue")
    assert up.recorder.mail_commands >= 2
    assert len(up.messages) == 1
    m.wait_for_log(rf"delivery attempt.*id={qid}.*outcome=temporary", regex=True)
    wait_for(lambda: metric(m, "counters", "mailer_deferred_total") >= 1, 5, message="deferred counter")
    assert_no_crash(m)


def test_permanent_failure_for_one_of_several_recipients(mailer_factory, upstreams):
    up = upstreams(AioUpstream())
    up.recorder.rcpt_replies["nobody@example.net"] = "550 5.1.1 <nobody@example.net>: Recipient address rejected"
    m = mailer_factory(relay_config([provider("mx", up.port)]))
    qid = submit(m, ["one@example.net", "nobody@example.net", "two@example.net"], subject="mixed")
    # The spool makes failed/ID durable before it removes active/ID: for an instant it is in both.
    wait_for(lambda: (m.data / "failed" / qid).exists() and queue_empty(m), 20, message="message in failed/ only")
    env = envelope(m.data / "failed" / qid)
    states = {r["address"]: (r["state"], r["reply"]) for r in env["recipients"]}
    assert states["one@example.net"][0] == "delivered"
    assert states["two@example.net"][0] == "delivered"
    assert states["nobody@example.net"][0] == "failed"
    assert "550 5.1.1" in states["nobody@example.net"][1]
    assert env["history"] and env["history"][0]["route"] == "mx"
    assert [msg["recipients"] for msg in up.messages] == [["one@example.net", "two@example.net"]]
    wait_for(lambda: metric(m, "counters", "mailer_failed_total") == 1, 5, message="failed counter")
    assert_no_crash(m)


def test_pipelined_refusals_on_a_reused_connection(mailer_factory, upstreams):
    """smtp-sink offers PIPELINING: RSET, MAIL, RCPT and DATA go as one group. Every RCPT refused with
    a 5xx: each message lands in failed/ with the refusal, one after the other on one connection."""
    sink = upstreams(SmtpSink(extra_args=("-f", "RCPT")))
    m = mailer_factory(relay_config([provider("sink", sink.port)], workerCount=1))
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        ids = [submit(m, [f"r{i}@example.net"], subject=f"refused {i}", smtp=s) for i in range(3)]
    wait_for(lambda: all((m.data / "failed" / qid).exists() for qid in ids) and queue_empty(m), 30,
             message="three messages in failed/ only")
    for qid in ids:
        [recipient] = envelope(m.data / "failed" / qid)["recipients"]
        assert recipient["state"] == "failed" and recipient["reply"].startswith("500 5.3.0"), recipient
    assert not any(b"Subject: refused" in d for d in sink.dumps())
    assert_no_crash(m)


def test_45_recipients_go_in_transactions_of_20_20_5(mailer_factory, upstreams):
    up = upstreams(AioUpstream())
    m = mailer_factory(relay_config([provider("mx", up.port)], batchSize=20, batchDelay=50))
    recipients = [f"user{i:02d}@example.net" for i in range(45)]
    submit(m, recipients, subject="batches")
    wait_for(lambda: len(up.messages) >= 3 and queue_empty(m), 20, message="three transactions")
    sizes = [len(msg["recipients"]) for msg in up.messages]
    assert sizes == [20, 20, 5]
    assert sorted(r for msg in up.messages for r in msg["recipients"]) == recipients
    assert_no_crash(m)


def test_connections_are_reused(mailer_factory, upstreams):
    up = upstreams(AioUpstream())
    m = mailer_factory(relay_config([provider("mx", up.port)], workerCount=2))
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        for i in range(30):
            submit(m, [f"r{i}@example.net"], subject=f"reuse {i}", smtp=s)
    wait_for(lambda: len(up.messages) == 30 and queue_empty(m), 30, message="30 deliveries")
    assert up.connections <= 6, f"{up.connections} connections for 30 messages"
    assert_no_crash(m)


# MARK: - Crashes and outages


def test_kill_9_while_1000_messages_flow_loses_nothing(mailer_factory, upstreams):
    sink = upstreams(SmtpSink())
    m = mailer_factory(relay_config([provider("sink", sink.port)], workerCount=5))
    total = 1000

    def client(start):
        with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=60) as s:
            s.ehlo("client.test")
            for i in range(start, total, 4):
                submit(m, [f"r{i}@example.net"], subject=f"token-{i:04d}-end", smtp=s)

    def delivered():
        return {int(t) for d in sink.dumps() for t in re.findall(rb"token-(\d{4})-end", d)}

    killed = 0
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, start) for start in range(4)]
        deadline = time.monotonic() + 60
        while killed < 2 and time.monotonic() < deadline:
            if len(delivered()) >= 150 * (killed + 1):
                os.kill(m.worker_pid("forwarder"), signal.SIGKILL)
                killed += 1
                time.sleep(0.5)
            time.sleep(0.05)
        for f in futures:
            f.result(timeout=120)
    assert killed >= 1
    wait_for(lambda: len(delivered()) == total, 120, interval=0.5, message="every message delivered")
    wait_for(lambda: queue_empty(m), 20, message="empty queue")
    assert m.files("failed") == []
    assert_no_crash(m)


def test_only_provider_down_then_back(mailer_factory, upstreams):
    port = free_port()
    m = mailer_factory(relay_config([provider("flaky", port)],
                                    circuitBreaker={"failureThreshold": 2, "cooldown": 1}))
    ids = [submit(m, [f"d{i}@example.net"], subject=f"down {i}") for i in range(5)]
    wait_for(lambda: len(m.files("deferred")) + len(m.files("active")) == 5 and
             metric(m, "counters", "mailer_deferred_total") >= 5, 20, message="messages deferred")
    wait_for(lambda: metric(m, "gauges", "mailer_provider_circuit_open", "provider=flaky") == 1, 20,
             message="circuit open")
    time.sleep(2)
    sink = upstreams(SmtpSink(port=port))
    wait_for(lambda: len(sink.dumps()) >= 5 and queue_empty(m), 30, message="deliveries after the outage")
    assert m.files("failed") == []
    wait_for(lambda: metric(m, "gauges", "mailer_provider_circuit_open", "provider=flaky") == 0, 10,
             message="circuit closed")
    for qid in ids:
        m.wait_for_log(rf"delivery attempt.*id={qid}.*outcome=success", regex=True)
    assert_no_crash(m)


# MARK: - Local mode


def test_local_mode_stores_eml_files(mailer):
    qid = submit(mailer, ["local@example.net"], subject="local mode", body="kept here\r\n")
    path = mailer.data / "local" / f"{qid}.eml"
    wait_for(path.exists, 20, message="local .eml file")
    wait_for(lambda: queue_empty(mailer), 10, message="empty queue")
    content = path.read_bytes()
    assert b"Subject: local mode\r\n" in content and content.endswith(b"kept here\r\n")
    assert mailer.files("failed") == []
    wait_for(lambda: metric(mailer, "counters", "mailer_delivered_total", "provider=local") == 1, 5,
             message="delivered counter")
    assert_no_crash(mailer)


# MARK: - Timeouts and 8-bit mail


class SilentServer:
    """Accepts connections on 127.0.0.1 and never says a word (a wedged upstream)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except OSError:
                continue

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.running = False
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_a_provider_that_never_answers_times_out_and_the_next_one_delivers(mailer_factory, upstreams):
    silent = upstreams(SilentServer())
    good = upstreams(AioUpstream())
    m = mailer_factory(relay_config([provider("silent", silent.port, priority=1), provider("good", good.port, priority=2)],
                                    processingTimeout=2))
    qid = submit(m, ["patient@example.net"])
    wait_for(lambda: good.messages, 20, message="delivery through the second provider")
    assert silent.accepted, "the silent provider was tried first"
    m.wait_for_log(rf"delivery attempt.*id={qid}.*outcome=timeout.*provider=silent", regex=True)
    wait_for(lambda: queue_empty(m), 10, message="empty queue")


def test_eight_bit_mail_is_passed_on_as_8bitmime(mailer_factory, upstreams):
    up = upstreams(AioUpstream())
    m = mailer_factory(relay_config([provider("only", up.port)]))
    body = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.mail("app@example.com", ["BODY=8BITMIME"])[0] == 250
        assert s.rcpt("eight@example.net")[0] == 250
        code, _ = s.data(body)
        assert code == 250
    got = wait_for(lambda: up.messages, 20, message="delivery")[0]
    assert "BODY=8BITMIME" in got["options"]
    assert body in got["data"]


def test_two_forwarder_generations_never_deliver_one_message_twice(mailer_factory, upstreams):
    """Reloads while mail flows: the old forwarder finishes what it holds, the new one takes the
    rest, and every accepted message reaches the upstream exactly once."""
    up = upstreams(AioUpstream())
    m = mailer_factory(relay_config([provider("only", up.port)], workerCount=8))
    accepted, stop = [], threading.Event()

    def client(n):
        with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=30) as s:
            s.ehlo("client.test")
            while not stop.is_set():
                accepted.append(submit(m, [f"c{n}@example.net"], smtp=s))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for generation in (2, 3):
        wait_for(lambda: len(accepted) >= 100 * (generation - 1), 30, message="traffic")
        os.kill(m.proc.pid, signal.SIGHUP)
        wait_for(lambda: m.status()["generation"] == generation, 20, message=f"generation {generation}")
    stop.set()
    for t in threads:
        t.join(30)
    wait_for(lambda: len(up.messages) >= len(accepted), 60, message="every message at the upstream")
    time.sleep(1)  # a duplicate, if any, would arrive now
    delivered = [ID_IN_RECEIVED.search(msg["data"]).group(1).decode() for msg in up.messages]
    assert sorted(delivered) == sorted(accepted)
    assert_no_crash(m)
