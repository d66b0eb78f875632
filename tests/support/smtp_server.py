"""A real SMTP server for the email plugin's tests: aiosmtpd (PyPI, pinned in
requirements-test.txt) on a free loopback port, with STARTTLS or implicit TLS from a test CA
made here (cryptography), AUTH PLAIN/LOGIN checked against one user, and scripted refusals.

Every accepted message is kept with its envelope and what the session looked like (TLS or not,
the authenticated user), so a test parses exactly what a mail client would have received."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plugin_sinks import free_port


def make_test_ca(directory: Path, server_name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `server_name` and 127.0.0.1, valid for a day.
    Returns (ca.pem, server.pem, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Herald test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    user: str | None

    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class Script:
    """Refusals to give: `data_first` a reply for the first DATA of each Message-ID (a retry then
    succeeds), `data_always` a reply for every DATA, `rcpt` a reply per recipient address."""
    data_first: str | None = None
    data_always: str | None = None
    rcpt: dict[str, str] = field(default_factory=dict)


class _Handler:
    def __init__(self, server: "SmtpServer"):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.server.script.rcpt.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        s = self.server
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        mid = msg.get("Message-ID", "")
        with s.lock:
            s.attempts.append(mid)
            if s.script.data_always:
                return s.script.data_always
            if s.script.data_first and mid not in s.refused_once:
                s.refused_once.add(mid)
                return s.script.data_first
            s.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                       tls=session.ssl is not None  # after STARTTLS
                                       or server.transport.get_extra_info("ssl_object") is not None,  # implicit
                                       user=s.users.get(id(session))))
        return "250 2.0.0 Ok: queued as HERALD"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:<free port>. `mode` is "starttls" (STARTTLS required before MAIL,
    AUTH only over TLS), "implicit" (TLS from the first byte) or "none" (a local relay: plain
    text, no TLS offered, no AUTH)."""

    def __init__(self, cert: Path, key: Path, mode: str, user: str, password: str, script: Script | None = None):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.attempts: list[str] = []
        self.refused_once: set[str] = set()
        self.users: dict[int, str] = {}
        self.auth_failures = 0
        self.script = script or Script()
        self.lock = threading.Lock()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self._credentials = (user.encode(), password.encode())

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == self._credentials
            with self.lock:
                if ok:
                    self.users[id(session)] = auth_data.login.decode()
                else:
                    self.auth_failures += 1
            return AuthResult(success=ok)

        common = dict(hostname="127.0.0.1", port=self.port, authenticator=authenticator, auth_required=True,
                      server_hostname="mail.herald.test", ready_timeout=10)
        if mode == "starttls":
            self.controller = Controller(_Handler(self), tls_context=ctx, require_starttls=True,
                                         auth_require_tls=True, **common)
        elif mode == "implicit":
            # The listener speaks only TLS; aiosmtpd's auth_require_tls counts STARTTLS alone.
            self.controller = Controller(_Handler(self), ssl_context=ctx, auth_require_tls=False, **common)
        elif mode == "none":
            common["auth_required"] = False
            self.controller = Controller(_Handler(self), auth_require_tls=True, **common)
        else:
            raise ValueError(mode)
        self.controller.start()

    def stop(self):
        self.controller.stop()
