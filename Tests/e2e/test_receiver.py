"""The receiver end to end: real clients (smtplib, swaks, smtp-source) against the running binary."""

import base64
import hmac
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from conftest import MAILER, wait_for

AUTH_CONFIG = {"defaultUsername": "app", "defaultPassword": "s3cret-pass"}


def read_reply(sock_file):
    lines = []
    while True:
        line = sock_file.readline().decode()
        assert line, "connection closed"
        lines.append(line)
        if line[3:4] == " ":
            return lines


def stored_message(m, queue_id):
    """The stored message (without envelope) wherever it is now; None if it is not (or is moving)."""
    candidates = [m.data / "queue" / state / queue_id for state in ("new", "active", "deferred")]
    candidates.append(m.data / "failed" / queue_id)
    for p in candidates:
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            continue  # not there, or the forwarder moved it on between two looks
        header, rest = data.split(b"\n", 1)
        length = int(header.split()[-1])
        return rest[length + 1:]
    try:
        return (m.data / "local" / f"{queue_id}.eml").read_bytes()
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_mechanisms_submit_durably(mailer_factory, mechanism):
    m = mailer_factory(AUTH_CONFIG)
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        assert "auth" in s.esmtp_features
        assert mechanism in s.esmtp_features["auth"].split()
        s.user, s.password = "app", "s3cret-pass"
        if mechanism == "PLAIN":
            code, _ = s.auth("PLAIN", s.auth_plain)
        elif mechanism == "LOGIN":
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        else:
            code, _ = s.auth("CRAM-MD5", s.auth_cram_md5)
        assert code == 235
        s.mail("app@example.com")
        s.rcpt("rcpt@example.net")
        code, reply = s.data(b"Subject: hi\r\n\r\nbody\r\n")
        assert code == 250
    queue_id = reply.decode().split()[-1]
    body = wait_for(lambda: stored_message(m, queue_id), 5, message="stored message")
    assert body is not None, "message not in the spool"
    assert b"with ESMTPA id " + queue_id.encode() in body


def test_wrong_password_and_mail_before_auth(mailer_factory):
    m = mailer_factory(AUTH_CONFIG)
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        s.ehlo()
        code, msg = s.mail("app@example.com")
        assert code == 530 and msg.startswith(b"5.7.0")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("app", "wrong")
        assert e.value.smtp_code == 535
        m.wait_for_log("authentication failed")
        assert "s3cret-pass" not in m.logs() and "wrong" not in m.logs()
    assert m.spool_ids() == set()


def test_swaks_gets_queue_id_and_message_is_stamped(mailer):
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{mailer.smtp_port}", "--from", "a@example.com",
                          "--to", "b@example.net", "--header", "Subject: swaks test", "--body", "hello"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    queue_id = re.search(r"250 2\.0\.0 Ok: queued as ([0-9A-F]{22})", out.stdout).group(1)
    body = wait_for(lambda: stored_message(mailer, queue_id), 5, message="stored message")
    assert re.search(rb"^Received: from .*\r\n\tby mailer\.test \(mailer\) with ESMTP id " + queue_id.encode(), body, re.M)
    assert b"Subject: swaks test" in body
    # swaks sets its own Date and Message-Id: none added
    assert body.count(b"\nDate:") + body.startswith(b"Date:") == 1
    mailer.wait_for_log(rf"accepted message.*{queue_id}|{queue_id}.*accepted message", regex=True)


def test_message_id_and_date_added_when_missing(mailer):
    with smtplib.SMTP("127.0.0.1", mailer.smtp_port, timeout=10) as s:
        s.ehlo()
        s.mail("a@example.com")
        s.rcpt("b@example.net")
        code, reply = s.data(b"Subject: bare\r\n\r\nno date here\r\n.leading dot\r\n")
    assert code == 250
    queue_id = reply.decode().split()[-1]
    body = wait_for(lambda: stored_message(mailer, queue_id), 5, message="stored message")
    assert f"Message-ID: <{queue_id}@mailer.test>".encode() in body
    assert re.search(rb"\r\nDate: \w{3}, \d+ \w{3} \d{4} ", body)
    assert b"\r\n.leading dot\r\n" in body


def test_size_limit_declared_and_actual(mailer_factory):
    m = mailer_factory({"limits": {"maxMessageSize": 4096}})
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        s.ehlo()
        assert s.esmtp_features["size"] == "4096"
        code, msg = s.mail("a@example.com", ["SIZE=5000"])
        assert (code, msg[:5]) == (552, b"5.3.4")
        s.rset()
        s.mail("a@example.com")
        s.rcpt("b@example.net")
        code, msg = s.data(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 100)
        assert (code, msg[:5]) == (552, b"5.3.4")
        assert s.noop()[0] == 250
    assert m.spool_ids() == set()


def test_smuggling_bare_lf_never_ends_data(mailer):
    with socket.create_connection(("127.0.0.1", mailer.smtp_port), timeout=10) as sock:
        f = sock.makefile("rb")
        read_reply(f)
        sock.sendall(b"EHLO c\r\n")
        read_reply(f)
        sock.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        assert read_reply(f)[0].startswith("250")
        assert read_reply(f)[0].startswith("250")
        assert read_reply(f)[0].startswith("354")
        sock.sendall(b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\n"
                     b"DATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\n")
        reply = read_reply(f)
        assert reply[0].startswith("550 5.6.0"), reply
        sock.sendall(b"NOOP\r\n")
        assert read_reply(f)[0].startswith("250")
    assert mailer.spool_ids() == set()


def test_rate_limit_answers_451(mailer_factory):
    m = mailer_factory({"rateLimits": {"enabled": True, "maxPerHour": 3}})
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        for i in range(3):
            s.sendmail("limited@example.com", ["b@example.net"], f"Subject: {i}\r\n\r\nx\r\n")
        code, msg = s.mail("limited@example.com")
        assert (code, msg[:5]) == (451, b"4.7.1")
        s.rset()
        s.sendmail("other@example.com", ["b@example.net"], "Subject: other\r\n\r\nx\r\n")
    assert len(m.spool_ids()) == 4


def test_smtp_source_20_sessions_1000_messages_all_on_disk(mailer):
    out = subprocess.run(["/usr/sbin/smtp-source", "-s", "20", "-m", "1000", "-l", "4096", "-f", "a@example.com",
                          "-t", "b@example.net", f"127.0.0.1:{mailer.smtp_port}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: len(mailer.spool_ids()) >= 1000, 30, message="1000 messages on disk")
    assert len(mailer.spool_ids()) == 1000


def test_kill_9_receiver_under_load_loses_nothing(mailer):
    accepted = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def client(n):
        sent = 0
        while not stop.is_set() and sent < 400:
            try:
                with smtplib.SMTP("127.0.0.1", mailer.smtp_port, timeout=10) as s:
                    s.ehlo()
                    for _ in range(5):
                        s.mail("load@example.com")
                        s.rcpt("b@example.net")
                        code, reply = s.data(f"Subject: load {n}/{sent}\r\n\r\nbody\r\n".encode())
                        sent += 1
                        if code == 250:
                            with lock:
                                accepted.append(reply.decode().split()[-1])
            except (smtplib.SMTPException, OSError) as e:
                errors.append(repr(e))
                if len(errors) > 500:
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(accepted) >= 50, 30, message="load running")
    old = mailer.worker_pid("receiver")
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()

    def fresh_session():
        try:
            with smtplib.SMTP("127.0.0.1", mailer.smtp_port, timeout=2) as s:
                return s.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    wait_for(fresh_session, 5, interval=0.02, message="new session after kill")
    recovered = time.monotonic() - killed_at
    assert recovered < 1.0, f"new connections took {recovered:.2f}s"
    new = mailer.worker_pid("receiver")
    assert new != old
    count_at_restart = len(accepted)
    wait_for(lambda: len(accepted) >= count_at_restart + 50, 30, message="load continues")
    stop.set()
    for t in threads:
        t.join(60)
    on_disk = wait_for(lambda: mailer.spool_ids() >= set(accepted) and mailer.spool_ids(), 10,
                       message="every accepted id on disk")
    missing = set(accepted) - mailer.spool_ids()
    assert not missing, f"{len(missing)} accepted messages lost"
    mailer.wait_for_log(r"receiver pid \d+ killed by signal 9", regex=True)


def test_check_config_names_key_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  // comment\n  "smtpPort": "abc",\n}\n')
    r = subprocess.run([str(MAILER), "check-config", "-config", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "smtpPort" in r.stderr and "line 3" in r.stderr
    good = tmp_path / "good.json"
    good.write_text('{"smtpPort": 2525, "mystery": 1, "security": {"requireAuth": false,},}')
    r = subprocess.run([str(MAILER), "check-config", "--config", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "unknown configuration key 'mystery'" in r.stdout
    # Files the configuration names must load: a certificate that does not is named, not started on.
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate\n")
    tls = tmp_path / "tls.json"
    tls.write_text(f'{{"tls": {{"certFile": "{broken}", "keyFile": "{broken}"}}}}')
    r = subprocess.run([str(MAILER), "check-config", "-config", str(tls)], capture_output=True, text=True)
    assert r.returncode == 78 and "config error at key 'tls.certFile'" in r.stderr, r.stderr
    cert, key = make_certificate(tmp_path)
    tls.write_text(f'{{"tls": {{"certFile": "{cert}", "keyFile": "{broken}"}}}}')
    r = subprocess.run([str(MAILER), "check-config", "-config", str(tls)], capture_output=True, text=True)
    assert r.returncode == 78 and "config error at key 'tls.keyFile'" in r.stderr, r.stderr


def make_certificate(directory):
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=mailer.test"], check=True, capture_output=True)
    os.chmod(key, 0o600)  # readable by root only: the receiver loads it before dropping privileges
    return cert, key


def test_starttls_with_a_root_only_key(mailer_factory):
    m = mailer_factory(start=False)
    cert, key = make_certificate(m.dir)
    m.write_config(dict(m.config, tls={"certFile": str(cert), "keyFile": str(key)}))
    m.start()
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{m.smtp_port}", "--tls", "--from", "a@example.com",
                          "--to", "b@example.net", "--body", "over tls"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "220 2.0.0 Ready to start TLS" in out.stdout
    queue_id = re.search(r"queued as ([0-9A-F]{22})", out.stdout).group(1)
    body = wait_for(lambda: stored_message(m, queue_id), 5, message="stored message")
    assert b"with ESMTPS id " + queue_id.encode() in body


def test_plaintext_pipelined_after_starttls_is_refused(mailer_factory):
    m = mailer_factory(start=False)
    cert, key = make_certificate(m.dir)
    m.write_config(dict(m.config, tls={"certFile": str(cert), "keyFile": str(key)}))
    m.start()
    with socket.create_connection(("127.0.0.1", m.smtp_port), timeout=10) as sock:
        f = sock.makefile("rb")
        read_reply(f)
        sock.sendall(b"EHLO c\r\n")
        assert any("STARTTLS" in line for line in read_reply(f))
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
        assert read_reply(f)[0].startswith("554 5.5.1")
        assert f.readline() == b""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root")
def test_full_disk_answers_452_and_leaves_no_half_file(mailer_factory):
    m = mailer_factory(start=False)
    m.data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(m.data)], check=True)
    try:
        m.start()
        replies = []
        with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
            s.ehlo()
            for i in range(40):
                s.mail("a@example.com")
                s.rcpt("b@example.net")
                code, reply = s.data(b"Subject: fill\r\n\r\n" + (b"z" * 998 + b"\r\n") * 50)
                replies.append((code, reply))
                if code != 250:
                    break
            assert s.noop()[0] == 250, "the session goes on after a full disk"
        code, reply = replies[-1]
        assert (code, reply[:5]) == (452, b"4.3.1"), replies[-1]
        accepted = {r.decode().split()[-1] for c, r in replies if c == 250}
        assert accepted and accepted <= m.spool_ids()
        assert m.files("tmp") == []
        assert all(p.stat().st_size > 50_000 for p in m.files("new"))
        m.wait_for_log("cannot store message")
    finally:
        m.stop()
        subprocess.run(["umount", "-l", str(m.data)], check=False)


def test_session_limits_idle_connections_and_errors(mailer_factory):
    m = mailer_factory({"limits": {"idleTimeout": 1, "maxConnections": 2, "maxErrors": 3}})

    def greeted():
        # The start-up probe's connection may not have ended on the server side yet: retry on 421.
        sock = socket.create_connection(("127.0.0.1", m.smtp_port), timeout=10)
        f = sock.makefile("rb")
        if read_reply(f)[0].startswith("220"):
            return sock, f
        sock.close()
        return None

    first, f1 = wait_for(greeted, 5, message="first session")
    second, f2 = wait_for(greeted, 5, message="second session")
    with socket.create_connection(("127.0.0.1", m.smtp_port), timeout=10) as third:
        assert read_reply(third.makefile("rb"))[0].startswith("421 4.7.0")
    # Bad commands: two errors, then the third closes the session.
    second.sendall(b"FOO\r\nBAR\r\nBAZ\r\n")
    assert read_reply(f2)[0].startswith("500 5.5.1")
    assert read_reply(f2)[0].startswith("500 5.5.1")
    assert read_reply(f2)[0].startswith("421 4.7.0")
    assert f2.readline() == b""
    # The first one stays silent past the idle timeout.
    assert read_reply(f1)[0].startswith("421 4.4.2")
    assert f1.readline() == b""
    first.close()
    second.close()
    with smtplib.SMTP("127.0.0.1", m.smtp_port, timeout=10) as s:
        assert s.noop()[0] == 250


def test_flood_from_a_client_that_reads_late_gets_every_reply_in_order(mailer):
    """A client pipelines far more commands than the socket buffers hold before it reads a reply.
    The receiver stops reading while its replies back up and carries on when they drain: every reply
    arrives, in order, and the session stays usable."""
    count = 400_000
    with socket.create_connection(("127.0.0.1", mailer.smtp_port), timeout=30) as sock:
        f = sock.makefile("rb")
        read_reply(f)
        sender = threading.Thread(target=lambda: sock.sendall(b"NOOP\r\n" * count + b"QUIT\r\n"))
        sender.start()
        time.sleep(1)
        for _ in range(count):
            line = f.readline()
            assert line.startswith(b"250 2.0.0"), line
        assert f.readline().startswith(b"221 2.0.0")
        sender.join(30)


def test_transactions_sent_in_one_burst_are_kept_apart(mailer):
    """A client that writes three whole transactions at once (bodies of 200 KB, far more than the
    receiver keeps while a commit is pending) gets three queue ids, and each stored message is its
    own: nothing of one transaction leaks into another."""
    bodies = [(f"Subject: burst {n}\r\n\r\n".encode() + (f"line {n} ".encode() * 20 + b"\r\n") * 1200) for n in range(3)]
    burst = b"".join(b"MAIL FROM:<burst@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n" + body + b".\r\n"
                     for body in bodies) + b"QUIT\r\n"
    with socket.create_connection(("127.0.0.1", mailer.smtp_port), timeout=30) as sock:
        f = sock.makefile("rb")
        read_reply(f)
        sock.sendall(b"EHLO burst.example\r\n")
        read_reply(f)
        sender = threading.Thread(target=lambda: sock.sendall(burst))
        sender.start()
        replies = [read_reply(f)[-1] for _ in range(3 * 4 + 1)]
        sender.join(30)
    codes = [int(r[:3]) for r in replies]
    assert codes == [250, 250, 354, 250] * 3 + [221], replies
    ids = [r.split()[-1] for r in replies[3::4]]
    assert len(set(ids)) == 3
    for queue_id, body in zip(ids, bodies):
        stored = wait_for(lambda: stored_message(mailer, queue_id), 5, message=f"stored {queue_id}")
        assert stored.endswith(body), queue_id


def test_msmtp_submits_with_auth_and_gets_clear_refusals(mailer_factory):
    """msmtp, what many applications hand mail to, submits with AUTH PLAIN over loopback; a wrong
    password and a missing AUTH end in msmtp's own error exits with the server's reply shown."""
    m = mailer_factory(AUTH_CONFIG)

    def msmtp(*auth):
        return subprocess.run(
            ["msmtp", "--host=127.0.0.1", f"--port={m.smtp_port}", "--tls=off", *auth,
             "--from=app@example.com", "rcpt@example.net"],
            input=b"Subject: via msmtp\n\nhello from msmtp\n", capture_output=True, timeout=30)

    ok = msmtp("--auth=plain", "--user=app", "--passwordeval=echo s3cret-pass")
    assert ok.returncode == 0, ok.stderr
    (queue_id,) = wait_for(lambda: m.spool_ids(), 5, message="stored message")
    body = wait_for(lambda: stored_message(m, queue_id), 5, message="stored body")
    assert b"Subject: via msmtp" in body and b"hello from msmtp\r\n" in body  # bare LF from stdin became CRLF

    wrong = msmtp("--auth=plain", "--user=app", "--passwordeval=echo wrong")
    assert wrong.returncode == 77, wrong.stderr  # EX_NOPERM
    assert b"535 5.7.8" in wrong.stderr
    anonymous = msmtp("--auth=off")
    assert anonymous.returncode == 65, anonymous.stderr  # EX_DATAERR: sender refused
    assert b"530 5.7.0" in anonymous.stderr
    assert m.spool_ids() == {queue_id}
