"""Upstream SMTP servers for the forwarder tests, all on 127.0.0.1: aiosmtpd with a scriptable handler
(STARTTLS or implicit TLS from a test certificate authority, AUTH), Postfix's smtp-sink, and the test CA."""

import datetime
import ipaddress
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import IS_ROOT, free_port, port_open, wait_for

SMTP_SINK = "/usr/sbin/smtp-sink"


# MARK: - Certificates

class UpstreamCA:
    """A throw-away certificate authority; files are world-readable so the relay's run-as user can read them."""

    def __init__(self, directory: Path, name: str = "mailer test CA"):
        self.directory = Path(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        safe = re.sub(r"\W+", "-", name)
        self.cert_path = self.directory / f"{safe}.pem"
        self._write(self.cert_path, self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, dns=("localhost",), ips=("127.0.0.1",)) -> tuple[Path, Path]:
        """A server certificate for the given names; returns (certificate path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else ips[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        self._write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        self._write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        return cert_path, key_path

    @staticmethod
    def _write(path: Path, data: bytes):
        path.write_bytes(data)
        os.chmod(path, 0o644)


def server_context(cert_key: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_key[0]), str(cert_key[1]))
    return ctx


# MARK: - aiosmtpd

class Recorder:
    """The aiosmtpd handler: answers as scripted and records every transaction it accepted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []          # dicts: sender, recipients, data (bytes), tls, auth, options
        self.mail_failures = 0      # answer this many MAIL commands with 451
        self.rcpt_replies = {}      # address -> reply for RCPT (e.g. "550 5.1.1 No such user")
        self.mail_commands = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands += 1
            if self.mail_failures > 0:
                self.mail_failures -= 1
                return "451 4.3.0 Temporary local problem, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append({
                "sender": envelope.mail_from, "recipients": list(envelope.rcpt_tos),
                "data": envelope.original_content or envelope.content, "tls": server.transport.get_extra_info("ssl_object") is not None,
                "auth": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
                "options": list(envelope.mail_options),
            })
        return "250 2.0.0 Message accepted"

    def snapshot(self):
        with self.lock:
            return list(self.messages)


class AioUpstream:
    """An aiosmtpd server on 127.0.0.1. `starttls`/`implicit` take (cert, key) paths; `auth` is (user, password)."""

    def __init__(self, starttls=None, implicit=None, auth=None, exclude_auth=(), port=None):
        self.recorder = Recorder()
        self.port = port or free_port()
        self.connections = 0
        self.auth = auth
        outer = self

        class CountingController(Controller):
            def factory(self):
                outer.connections += 1
                return SMTP(self.handler, **self.SMTP_kwargs)

        kwargs = {"enable_SMTPUTF8": True, "decode_data": False}
        if starttls:
            kwargs["tls_context"] = server_context(starttls)
        if auth:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd counts only STARTTLS as TLS; with implicit TLS everything is encrypted anyway.
            kwargs["auth_require_tls"] = not implicit
            kwargs["auth_exclude_mechanism"] = list(exclude_auth)
        self.controller = CountingController(
            self.recorder, hostname="127.0.0.1", port=self.port,
            ssl_context=server_context(implicit) if implicit else None, ready_timeout=10, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and \
            (auth_data.login.decode(), auth_data.password.decode()) == self.auth
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self):
        self.controller.start()
        self.connections = 0  # the controller's own readiness probe
        return self

    def stop(self):
        try:
            self.controller.stop()
        except Exception:
            pass

    @property
    def messages(self):
        return self.recorder.snapshot()


# MARK: - smtp-sink

class SmtpSink:
    """Postfix's smtp-sink, dumping each transaction into `dump_dir` (one file per message)."""

    def __init__(self, port=None, extra_args=()):
        """`extra_args`: more smtp-sink options, e.g. `("-f", "RCPT")` to refuse every RCPT with a 5xx."""
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        # smtp-sink drops to nobody when root: the directory must be reachable and writable by it.
        self.dump_dir = Path(tempfile.mkdtemp(prefix="smtp-sink-", dir="/tmp"))
        os.chmod(self.dump_dir, 0o777)
        self.proc = None

    def start(self):
        args = [SMTP_SINK]
        if IS_ROOT:
            args += ["-u", "nobody"]
        args += [*self.extra_args, "-d", f"{self.dump_dir}/%M.", f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: port_open(self.port), 10, message="smtp-sink")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dump_dir, ignore_errors=True)

    def dumps(self) -> list[bytes]:
        out = []
        for p in self.dump_dir.iterdir():
            try:
                out.append(p.read_bytes())
            except OSError:
                pass
        return out
