"""The monitor end to end: /health, /metrics and the admin API of the running binary, through a real
HTTP client, with the Prometheus text read by prometheus_client's parser and deliveries observed at
an upstream SMTP server (aiosmtpd) on loopback."""

import os
import shutil
import signal
import smtplib
import subprocess
import threading
import time

import pytest
import requests
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, port_open, wait_for


# MARK: - Helpers

class Upstream:
    """An aiosmtpd handler that records what it accepts and refuses chosen recipients with 550."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.reject = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            if address in self.reject:
                return "550 5.1.1 <%s>: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 OK: queued"

    def recipients(self):
        with self.lock:
            return [r for _, rcpts, _ in self.messages for r in rcpts]


@pytest.fixture
def upstream():
    handler = Upstream()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


def forwarding(upstream, **extra):
    config = {"forwardSMTP": True, "forwardProviders": [{"host": "127.0.0.1", "port": upstream.port}],
              "batchDelay": 0}
    config.update(extra)
    return config


def url(m, path):
    return f"http://127.0.0.1:{m.http_port}{path}"


def get(m, path, **kwargs):
    return requests.get(url(m, path), timeout=10, **kwargs)


def post(m, path, **kwargs):
    return requests.post(url(m, path), timeout=10, **kwargs)


def send(m, count=1, recipients=("rcpt@example.org",), sender="app@example.com", subject="monitor test"):
    ids = []
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        for i in range(count):
            body = f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject} {i}\r\n\r\nhello {i}\r\n"
            code, reply = s.mail(sender)
            assert code == 250, reply
            for r in recipients:
                code, _ = s.rcpt(r)
                assert code == 250
            code, reply = s.data(body.encode())
            assert code == 250, reply
            ids.append(reply.decode().rsplit(" ", 1)[-1])
    return ids


def samples(m):
    """Every sample of /metrics as {(name, frozenset(labels)): value}, parsed by prometheus_client."""
    response = get(m, "/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    result = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            result[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result


def metric(m, name, **labels):
    return samples(m).get((name, frozenset(labels.items())))


def health(m):
    response = get(m, "/health")
    return response.status_code, response.json()


def assert_error(response, code):
    assert response.status_code == code, response.text
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["error"], str) and body["error"]
    assert body["timestamp"].endswith("Z")


# MARK: - /health and /metrics

def test_health_has_the_original_fields_and_workers(mailer):
    status, body = wait_for(lambda: (lambda r: r if r[1]["status"] == "ok" else None)(health(mailer)), 10,
                            message="status ok")
    assert status == 200
    assert list(body)[:3] == ["status", "timestamp", "details"]
    assert time.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    details = body["details"]
    for field in ("disk_space_available_mb", "queued_emails", "failed_emails", "total_emails_processed"):
        assert isinstance(details[field], int), field
    assert details["disk_space_available_mb"] > 0
    assert details["success_rate"] == 100
    roles = {w["role"]: w for w in details["workers"]}
    assert set(roles) == {"receiver", "forwarder", "monitor"}
    for worker in roles.values():
        assert worker["state"] == "running" and worker["pid"] > 0 and worker["restarts"] == 0
    assert roles["monitor"]["pid"] == mailer.worker_pid("monitor")
    assert details["providers"] == []
    # HEAD answers like GET, without a body.
    head = requests.head(url(mailer, "/health"), timeout=10)
    assert head.status_code == 200 and head.content == b""
    # The guide's Docker health check.
    if shutil.which("curl"):
        assert subprocess.run(["curl", "-fsS", url(mailer, "/health")], capture_output=True, timeout=10).returncode == 0
    # Several requests on one kept-alive connection.
    with requests.Session() as session:
        for path in ("/health", "/metrics", "/admin/queue", "/metrics?format=json"):
            assert session.get(url(mailer, path), timeout=10).status_code == 200


def test_metrics_count_what_was_sent(mailer):
    send(mailer, 5, recipients=("a@example.org", "b@example.org"))
    wait_for(lambda: metric(mailer, "mailer_accepted_total") == 5, 10, message="mailer_accepted_total == 5")
    values = samples(mailer)
    assert values[("mailer_accepted_recipients_total", frozenset())] == 10
    assert values[("mailer_commit_seconds_count", frozenset())] == 5
    assert values[("mailer_commit_seconds_bucket", frozenset({("le", "+Inf")}))] == 5
    assert values[("mailer_worker_up", frozenset({("worker", "receiver")}))] == 1
    assert values[("mailer_disk_free_bytes", frozenset())] > 0
    for state in ("new", "active", "deferred", "hold", "failed"):
        assert ("mailer_queue_messages", frozenset({("state", state)})) in values
    # The original JSON, by Accept and by query.
    for response in (get(mailer, "/metrics", headers={"Accept": "application/json"}),
                     get(mailer, "/metrics?format=json")):
        assert response.status_code == 200
        body = response.json()
        assert body["total_emails"] == 5
        assert body["total_recipients"] == 10
    # Local mode: each message is delivered (stored) once.
    json_metrics = lambda: get(mailer, "/metrics?format=json").json()
    wait_for(lambda: json_metrics()["successful_emails"] == 5, 10, message="successful_emails == 5")
    assert json_metrics()["failed_emails"] == 0
    assert json_metrics()["avg_processing_time_ms"] >= 0
    status, body = health(mailer)
    assert body["details"]["total_emails_processed"] == 5


def test_rejections_are_counted_by_reason(mailer_factory):
    m = mailer_factory({"limits": {"maxMessageSize": 2000, "maxRecipients": 2}})
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        s.ehlo()
        assert s.mail("a@example.com", ["SIZE=5000"])[0] == 552  # declared too big
        s.mail("a@example.com")
        s.rcpt("x@example.org")
        s.rcpt("y@example.org")
        assert s.rcpt("z@example.org")[0] == 452  # one recipient too many
        code, _ = s.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
        assert code == 552  # too big once sent
    wait_for(lambda: metric(m, "mailer_rejected_total", reason="message_too_big") == 2, 10,
             message="message_too_big counted twice")
    assert metric(m, "mailer_rejected_total", reason="too_many_recipients") == 1
    assert metric(m, "mailer_accepted_total") in (None, 0)


def test_health_degrades_on_an_open_circuit_and_fails_on_an_unwritable_spool(mailer_factory):
    dead = free_port()
    m = mailer_factory({"forwardSMTP": True, "forwardHost": "127.0.0.1", "forwardPort": dead,
                        "circuitBreaker": {"failureThreshold": 1, "cooldown": 3600}})
    send(m, 1)
    status, body = wait_for(lambda: (lambda r: r if r[1]["status"] == "degraded" else None)(health(m)), 20,
                            message="degraded")
    assert status == 200  # degraded still passes `curl -f`: the relay accepts mail
    assert any("circuit open" in problem for problem in body["details"]["problems"])
    tmp = m.data / "queue" / "tmp"
    os.chmod(tmp, 0o500)
    try:
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(health(m)), 20, message="503")
        assert body["status"] == "error" and body["details"]["spool_writable"] is False
        assert "the spool is not writable" in body["details"]["problems"]
        assert subprocess.run(["curl", "-fsS", url(m, "/health")], capture_output=True, timeout=10).returncode == 22
    finally:
        os.chmod(tmp, 0o750)
    wait_for(lambda: health(m)[0] == 200, 20, message="healthy again")


def test_monitor_is_off_without_health_check(mailer_factory):
    m = mailer_factory({"enableHealthCheck": False})
    assert not port_open(m.http_port)
    send(m, 1)


# MARK: - Errors

def test_errors_are_json_with_fitting_codes(mailer):
    assert_error(get(mailer, "/nope"), 404)
    wrong = post(mailer, "/health")
    assert_error(wrong, 405)
    assert wrong.headers["Allow"] == "GET, HEAD"
    wrong = get(mailer, "/admin/retry-failed")
    assert_error(wrong, 405)
    assert wrong.headers["Allow"] == "POST"
    assert_error(post(mailer, "/admin/service", data="{not json"), 400)
    assert_error(post(mailer, "/admin/service", json={"action": "explode"}), 400)
    assert_error(post(mailer, "/admin/clean-old-emails", json={"days": -3}), 400)
    assert_error(get(mailer, "/admin/queue/not-a-queue-id"), 400)
    assert_error(get(mailer, "/admin/queue/0123456789ABCDEF012345"), 404)
    assert_error(post(mailer, "/admin/service", data=b"{" + b" " * 70000 + b"}"), 413)
    # A browser page cannot drive the admin API.
    assert_error(post(mailer, "/admin/clean-queue", headers={"Origin": "http://evil.example"}), 403)
    assert_error(post(mailer, "/admin/clean-queue", headers={"Host": "evil.example"}), 403)


def test_admin_token_and_redacted_config(mailer_factory):
    m = mailer_factory({"adminToken": "t0ken-for-admin", "defaultUsername": "app",
                        "defaultPassword": "very-secret-pw", "forwardPassword": "fwd-secret-pw"})
    unauthorized = get(m, "/admin/config")
    assert_error(unauthorized, 401)
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(post(m, "/admin/retry-failed", headers={"Authorization": "Bearer wrong"}), 401)
    # Health checks carry no token. (Waited for: the monitor may not have the snapshot in which the
    # receiver is up for a few milliseconds after "serving".)
    wait_for(lambda: get(m, "/health").status_code == 200, 10, message="/health 200 without a token")
    response = get(m, "/admin/config", headers={"Authorization": "Bearer t0ken-for-admin"})
    assert response.status_code == 200
    for secret in ("t0ken-for-admin", "very-secret-pw", "fwd-secret-pw"):
        assert secret not in response.text
    config = response.json()["config"]
    assert config["defaultUsername"] == "app"
    assert config["defaultPassword"] == "***"
    assert config["adminToken"] == "***"
    assert config["healthCheckPort"] == m.http_port
    assert config["smtpPort"] == m.smtp_port


# MARK: - Admin against an upstream

def test_queue_listing_and_cleaning(mailer_factory, upstream):
    m = mailer_factory(forwarding(upstream))
    assert post(m, "/admin/service", json={"action": "pause"}).json()["status"] == "ok"
    wait_for(lambda: health(m)[1]["details"]["deliveries_paused"], 10, message="paused")
    time.sleep(0.3)
    ids = send(m, 2, recipients=("x@example.org", "y@example.org"))
    listing = get(m, "/admin/queue").json()
    assert listing["status"] == "ok"
    assert [e["id"] for e in listing["messages"]] == ids
    first = listing["messages"][0]
    assert first["state"] == "new" and first["recipients"] == 2 and first["attempts"] == 0
    assert first["age_seconds"] >= 0 and first["last_error"] is None
    shown = get(m, f"/admin/queue/{ids[0]}").json()["message"]
    assert shown["sender"] == "app@example.com"
    assert [r["address"] for r in shown["recipients"]] == ["x@example.org", "y@example.org"]
    m.wait_for_log("admin: queue listed client=127.0.0.1")
    m.wait_for_log(rf"admin: queue entry read client=127\.0\.0\.1 .*id={ids[0]}", regex=True)
    status, body = health(m)
    assert body["details"]["queued_emails"] == 2
    wait_for(lambda: metric(m, "mailer_queue_messages", state="new") == 2, 5, message="gauge")
    assert metric(m, "mailer_deliveries_paused") == 1

    cleaned = post(m, "/admin/clean-queue")
    assert cleaned.status_code == 200
    assert cleaned.json() == {"status": "ok", "message": "2 messages removed from the queue", "removed": 2,
                              "states": ["new", "deferred", "hold"]}
    assert get(m, "/admin/queue").json()["messages"] == []
    assert_error(get(m, f"/admin/queue/{ids[0]}"), 404)

    # clean-old-emails: failed/ and local/ files older than the given days go, younger ones stay.
    old, young = "0000000000001000000001", "0000000000001000000002"
    for name in (old, young):
        (m.data / "failed" / name).write_bytes(b"x")
    (m.data / "local" / "old.eml").write_bytes(b"x")
    forty_days = time.time() - 40 * 86400
    os.utime(m.data / "failed" / old, (forty_days, forty_days))
    os.utime(m.data / "local" / "old.eml", (forty_days, forty_days))
    response = post(m, "/admin/clean-old-emails", params={"days": "30"})
    assert response.status_code == 200
    assert response.json()["removed_failed"] == 1 and response.json()["removed_local"] == 1
    assert [p.name for p in m.files("failed")] == [young]
    m.wait_for_log(r"clean-old-emails.*client=127\.0\.0\.1|client=127\.0\.0\.1.*clean-old-emails", regex=True)
    post(m, "/admin/service", json={"action": "resume"})


def test_retry_failed_requeues_and_delivers(mailer_factory, upstream):
    upstream.reject.add("nobody@example.org")
    m = mailer_factory(forwarding(upstream))
    [queue_id] = send(m, 1, recipients=("nobody@example.org",))
    wait_for(lambda: [p.name for p in m.files("failed")] == [queue_id], 30, message="message in failed/")
    wait_for(lambda: health(m)[1]["details"]["failed_emails"] == 1, 5, message="failed_emails == 1")
    wait_for(lambda: metric(m, "mailer_failed_total") == 1, 5, message="mailer_failed_total == 1")
    shown = get(m, f"/admin/queue/{queue_id}").json()["message"]
    assert shown["state"] == "failed"
    assert shown["recipients"][0]["state"] == "failed"
    assert "nobody@example.org" not in upstream.recipients()

    with upstream.lock:
        upstream.reject.clear()
    response = post(m, "/admin/retry-failed")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["message"] == "1 messages re-queued"
    wait_for(lambda: "nobody@example.org" in upstream.recipients(), 20, message="delivery after retry")
    wait_for(lambda: not m.files("failed") and not m.spool_ids(), 10, message="spool empty")
    wait_for(lambda: (metric(m, "mailer_delivered_total", provider=f"127.0.0.1:{upstream.port}") or 0) >= 1, 5,
             message="mailer_delivered_total")
    assert health(m)[1]["details"]["failed_emails"] == 0
    m.wait_for_log("retry-failed")


def test_pause_and_resume_observed_at_the_upstream(mailer_factory, upstream):
    m = mailer_factory(forwarding(upstream))
    send(m, 1, recipients=("before@example.org",))
    wait_for(lambda: "before@example.org" in upstream.recipients(), 20, message="delivery before pause")

    response = post(m, "/admin/service", json={"action": "pause"})
    assert response.status_code == 200 and response.json()["status"] == "ok"
    wait_for(lambda: health(m)[1]["details"]["deliveries_paused"], 10, message="paused in /health")
    time.sleep(0.3)
    send(m, 3, recipients=("paused@example.org",))
    time.sleep(3)
    assert "paused@example.org" not in upstream.recipients()
    assert len(get(m, "/admin/queue").json()["messages"]) == 3
    # A forwarder that restarts (killed here, a reload alike) starts paused: nothing goes out.
    for _ in range(3):
        old = m.worker_pid("forwarder")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: m.worker_pid("forwarder") != old, 20, message="forwarder restarted")
    time.sleep(2)
    assert "paused@example.org" not in upstream.recipients()

    response = post(m, "/admin/service", json={"action": "resume"})
    assert response.status_code == 200
    wait_for(lambda: upstream.recipients().count("paused@example.org") == 3, 20, message="deliveries after resume")
    wait_for(lambda: not health(m)[1]["details"]["deliveries_paused"], 5, message="resumed in /health")


def test_monitor_killed_and_restarted_while_smtp_accepts(mailer):
    old = mailer.worker_pid("monitor")
    os.kill(old, signal.SIGKILL)
    # SMTP keeps accepting while the monitor is down.
    send(mailer, 2)
    new = wait_for(lambda: (lambda p: p if p != old else None)(mailer.worker_pid("monitor")), 20,
                   message="a new monitor")
    assert new != old
    status, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(health(mailer)), 10, message="health 200")
    monitor = [w for w in body["details"]["workers"] if w["role"] == "monitor"][0]
    assert monitor["pid"] == new and monitor["restarts"] == 1
    # The counters live in the supervisor: nothing was lost with the monitor.
    wait_for(lambda: metric(mailer, "mailer_accepted_total") == 2, 10, message="accepted == 2")
    assert metric(mailer, "mailer_worker_restarts_total", worker="monitor") == 1
