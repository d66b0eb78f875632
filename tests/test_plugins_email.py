"""Issue 22, sink 2: the email plugin through the real host to a real SMTP server (aiosmtpd,
started here on loopback) over STARTTLS and implicit TLS with a test CA made here, AUTH PLAIN
and LOGIN, after a real `ansible-playbook` run with a failing task and an unreachable host.

The TLS is the host's (`wasi:tls`, rustls) on the plugin's granted socket; the test CA is
trusted only through the instance's `tls_ca_file`, so an instance without it must refuse the
same server. The received messages are parsed as a mail client would: headers, both parts,
recipients, and no password anywhere (mails, Herald's log, the journal)."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from conftest import PLUGIN_DIR, Host, api, run_playbook, token_pair, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import FakeWebhook, by_run, delivery_counts, deploy_run, poll, wait_settled  # noqa: E402
from smtp_server import Script, SmtpServer, make_test_ca  # noqa: E402

TENANT = "ops"
EMAIL = PLUGIN_DIR / "email.wasm"
SERVER_NAME = "mail.herald.test"
USER, PASSWORD = "herald-bot", "pw-Zq8!x7-not-in-any-log"
FAST = {"initial_ms": 100, "max_ms": 500, "max_attempts": 5}


@pytest.fixture
def ca(tmp_path):
    return make_test_ca(tmp_path / "pki", SERVER_NAME)


@pytest.fixture
def servers():
    started: list[SmtpServer] = []

    def start(*args, **kw) -> SmtpServer:
        s = SmtpServer(*args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def instance(server: SmtpServer, ca_pem: Path | None, **config) -> dict:
    spec = {"tenant": TENANT, "component": str(EMAIL), "allow_sockets": [server.address], "retry": FAST,
            "config": {"server": server.address, "server_name": SERVER_NAME, "username": USER,
                       "password": "${env:HERALD_TEST_SMTP_PASSWORD}",
                       "from": "Herald <herald@herald.test>", **config}}
    if ca_pem is not None:
        spec["tls_ca_file"] = str(ca_pem)
    return spec


def parts(msg) -> dict[str, str]:
    """The text of each leaf part by content type (line ends as Python's, LF)."""
    return {p.get_content_type(): p.get_content().replace("\r\n", "\n")
            for p in msg.walk() if not p.is_multipart()}


# The implicit-TLS server takes AUTH with auth_require_tls=False (aiosmtpd counts STARTTLS alone as
# TLS), and aiosmtpd warns for each session; its whole connection is TLS (tests/support/smtp_server.py).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_failure_and_summary_mails_over_starttls_and_implicit_tls(ca, servers, tmp_path, monkeypatch):
    ca_pem, cert, key = ca
    monkeypatch.setenv("HERALD_TEST_SMTP_PASSWORD", PASSWORD)
    starttls = servers(cert, key, "starttls", USER, PASSWORD)
    smtps = servers(cert, key, "implicit", USER, PASSWORD)
    capture = FakeWebhook()
    token, token_hash = token_pair()
    (tmp_path / "host").mkdir()
    host = Host(tmp_path / "host", {TENANT: token_hash}, {
        "capture": {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"), "allow_http": [capture.url],
                    "config": {"url": capture.url + "/events"}},
        # STARTTLS + AUTH PLAIN, two recipients, failure mails and the summary.
        "mail": instance(starttls, ca_pem, tls="starttls", auth="plain",
                         to=["Ops <ops@herald.test>", "oncall@herald.test"]),
        # Implicit TLS + AUTH LOGIN, the summary of failed runs only.
        "mail-smtps": instance(smtps, ca_pem, tls="implicit", auth="login", to=["lead@herald.test"],
                               failure_mails=False, summary="failed"),
    }).start()
    try:
        record = tmp_path / "run.record"
        r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",), cache_unreachable=True,
                       record=record)
        assert r.returncode == 4, r.stdout + r.stderr
        n = len(record.read_text().split())
        text = wait_settled(host, TENANT, ["mail", "mail-smtps", "capture"], n)
        assert delivery_counts(text, "mail") == {"ok": n}, delivery_counts(text, "mail")
        assert delivery_counts(text, "mail-smtps") == {"ok": n}
        (run,) = by_run(capture.events()).values()
        failed = next(e for e in run if e["event"] == "runner_on_failed")
        unreachable = next(e for e in run if e["event"] == "runner_on_unreachable")
        stats = next(e for e in run if e["event"] == "playbook_on_stats")

        got = poll(lambda: starttls.received if len(starttls.received) >= 3 else None, 20, "3 mails over STARTTLS")
        assert len(starttls.received) == 3, [m.message()["Subject"] for m in starttls.received]
        by_id = {m.message()["Message-ID"]: m for m in got}
        # Message-ID is the event's id, so a mail sent again after a retry is the same mail.
        assert set(by_id) == {f"<{e['uuid']}.herald@herald.test>" for e in (failed, unreachable, stats)}
        for m in got:
            # Sent over TLS (the server refuses MAIL before STARTTLS), as the configured user.
            assert m.tls and m.user == USER
            assert m.mail_from == "herald@herald.test"
            assert m.rcpt_tos == ["ops@herald.test", "oncall@herald.test"]
            msg = m.message()
            assert msg["From"] == "Herald <herald@herald.test>"
            assert [str(a.addr_spec) for a in msg["To"].addresses] == ["ops@herald.test", "oncall@herald.test"]
            assert msg["Date"] is not None and msg["Date"].datetime is not None
            assert msg.get_content_type() == "multipart/alternative"
            assert set(parts(msg)) == {"text/plain", "text/html"}
            assert msg["Auto-Submitted"] == "auto-generated"

        f = by_id[f"<{failed['uuid']}.herald@herald.test>"].message()
        assert f["Subject"] == "[Herald] deploy.yml: Migrate the database failed on web2"
        assert f["X-Herald-Event-Id"] == failed["uuid"] and f["X-Herald-Run-Id"] == failed["run_id"]
        text, html = parts(f)["text/plain"], parts(f)["text/html"]
        assert text.startswith("Task 'Migrate the database' failed on web2.\n"), text
        assert "migration 42 failed on web2" in text and "Host:       web2" in text, text
        assert "<pre>migration 42 failed on web2</pre>" in html and "<td>web2</td>" in html, html

        u = by_id[f"<{unreachable['uuid']}.herald@herald.test>"].message()
        assert u["Subject"] == "[Herald] deploy.yml: Render the configuration unreachable on cache1"

        s = by_id[f"<{stats['uuid']}.herald@herald.test>"].message()
        assert s["Subject"] == "[Herald] deploy.yml failed: 2 host(s) failed", s["Subject"]
        text, html = parts(s)["text/plain"], parts(s)["text/html"]
        assert "PLAY RECAP\n" in text and "web2: ok=1 changed=0 unreachable=0 failed=1" in text, text
        assert re.search(r"^web1: ok=\d+ changed=1 unreachable=0 failed=0", text, re.M), text
        assert "  - Migrate the database: migration 42 failed on web2" in text, text
        assert "Stats: " in text and 'release="2.0.1"' in text, text
        assert "<td>web2</td><td>1</td><td>0</td><td>0</td><td>1</td>" in html, html

        # The implicit-TLS instance: the failed run's summary only, to its one recipient, AUTH LOGIN.
        (only,) = poll(lambda: smtps.received or None, 20, "the summary over implicit TLS")
        assert only.tls and only.user == USER and only.rcpt_tos == ["lead@herald.test"]
        assert only.message()["Message-ID"] == f"<{stats['uuid']}.herald@herald.test>"
        assert starttls.auth_failures == 0 and smtps.auth_failures == 0

        # No secret anywhere: not in a mail, not in Herald's log, not in the journal.
        for m in starttls.received + smtps.received:
            assert PASSWORD.encode() not in m.data
        host.kill(signal.SIGTERM)
        assert PASSWORD not in host.logs()
        for db in (tmp_path / "host").rglob("*.db*"):
            assert PASSWORD.encode() not in db.read_bytes(), db
    finally:
        host.kill(signal.SIGTERM)
        capture.stop()


def test_4xx_is_retried_5xx_and_untrusted_tls_dead_letter_with_the_reason(ca, servers, tmp_path, monkeypatch):
    ca_pem, cert, key = ca
    monkeypatch.setenv("HERALD_TEST_SMTP_PASSWORD", PASSWORD)
    flaky = servers(cert, key, "starttls", USER, PASSWORD,
                    script=Script(data_first="451 4.3.0 Queue full, try later",
                                  rcpt={"gone@herald.test": "550 5.1.1 No such user"}))
    rejecting = servers(cert, key, "starttls", USER, PASSWORD, script=Script(data_always="554 5.7.1 Spam detected"))
    capture = FakeWebhook()
    token, token_hash = token_pair()
    (tmp_path / "host").mkdir()
    host = Host(tmp_path / "host", {TENANT: token_hash}, {
        "capture": {"tenant": TENANT, "component": str(PLUGIN_DIR / "webhook.wasm"), "allow_http": [capture.url],
                    "config": {"url": capture.url + "/events"}},
        # The user's templates replace the defaults exactly; an empty HTML template: a text-only mail.
        "flaky": {**instance(flaky, ca_pem, to=["ops@herald.test", "gone@herald.test"], summary="never"),
                  "templates": {"failure_subject": "{{ event.host }}: {{ event.task }} <{{ event.status }}>\nBcc: x@y.z",
                                "failure_html": ""}},
        "rejecting": instance(rejecting, ca_pem, to=["ops@herald.test"], failure_mails=False),
        # The same good server without the test CA: the host's TLS must refuse its certificate.
        "untrusted": instance(flaky, None, to=["ops@herald.test"], failure_mails=False),
    }).start()
    try:
        record = tmp_path / "run.record"
        r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",), record=record)
        assert r.returncode == 2, r.stdout + r.stderr
        text = wait_settled(host, TENANT, ["flaky", "rejecting", "untrusted", "capture"],
                            len(record.read_text().split()))
        (events,) = by_run(capture.events()).values()
        failed = next(e for e in events if e["event"] == "runner_on_failed")
        stats = next(e for e in events if e["event"] == "playbook_on_stats")
        # 451 on DATA: retried, then delivered once, with the same Message-ID both times; the
        # recipient refused with 550 is skipped, the other gets the mail.
        mid = f"<{failed['uuid']}.herald@herald.test>"
        assert flaky.attempts == [mid, mid], flaky.attempts
        (m,) = flaky.received
        assert m.rcpt_tos == ["ops@herald.test"] and m.message()["Message-ID"] == mid
        # A rendered line break cannot add a header: it is a space in the Subject.
        assert m.message()["Subject"] == "web2: Migrate the database <failed> Bcc: x@y.z"
        assert m.message()["Bcc"] is None
        assert m.message().get_content_type() == "text/plain"
        assert "migration 42 failed on web2" in m.message().get_content()
        assert delivery_counts(text, "flaky").get("retry", 0) >= 1, delivery_counts(text, "flaky")
        assert "refused recipient gone@herald.test: 550 5.1.1 No such user" in host.logs()
        # 554 on DATA: dead-lettered at once with the server's reply.
        status, dl = wait_for(lambda: (lambda r: r if len(r[1].get("items", [])) >= 2 else None)(
            api(host, "GET", "/v1/dead-letters", token)), timeout=30, what="two dead letters")
        assert status == 200
        by_plugin = {d["plugin"]: d for d in dl["items"]}
        assert set(by_plugin) == {"rejecting", "untrusted"}, dl
        assert by_plugin["rejecting"]["uuid"] == stats["uuid"]
        assert "554 5.7.1 Spam detected" in by_plugin["rejecting"]["reason"], by_plugin["rejecting"]
        assert rejecting.attempts == [f"<{stats['uuid']}.herald@herald.test>"]
        reason = by_plugin["untrusted"]["reason"]
        assert "TLS" in reason and "UnknownIssuer" in reason, reason
        assert PASSWORD not in host.logs() and PASSWORD not in json.dumps(dl)
    finally:
        host.kill(signal.SIGTERM)
        capture.stop()


def test_check_locates_email_config_errors_and_a_bad_ca_file(tmp_path):
    import subprocess
    from conftest import HERALD_BIN
    _, h = token_pair()
    (tmp_path / "not-a-cert.pem").write_text("hello\n")

    def check(lines):
        path = tmp_path / "herald.toml"
        path.write_text("\n".join(lines) + "\n")
        r = subprocess.run([str(HERALD_BIN), "check", "--config", str(path)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")})
        return r, [line.split("/herald.toml", 1)[1].lstrip(":") for line in r.stderr.splitlines()
                   if "/herald.toml:" in line]

    base = [
        "[tenants.ops]",                                          # 1
        f"tokens = [\"{h}\"]",                                    # 2
        "[plugins.mail]",                                         # 3
        "tenant = \"ops\"",                                       # 4
        f"component = \"{EMAIL}\"",                               # 5
        "allow_sockets = [\"127.0.0.1:587\"]",                    # 6
        "tls_ca_file = \"not-a-cert.pem\"",                       # 7
        "[plugins.mail.config]",                                  # 8
        "server = \"127.0.0.1:25\"",                              # 9
        "server_name = \"mail.example.com\"",                     # 10
        "from = \"herald@example.com\"",                          # 11
        "to = [\"ops@example.com\"]",                             # 12
    ]
    r, found = check(base)
    assert r.returncode == 1, r.stderr
    assert found[0].startswith("7:1: plugins.mail.tls_ca_file: ") and "holds no PEM certificate" in found[0], found
    lines = base[:6] + base[7:]
    r, found = check(lines)
    assert r.returncode == 1, r.stderr
    assert found[0] == ("8:1: plugins.mail.config.server: plugin refused its configuration: "
                        "127.0.0.1:25 is not in allow_sockets (it lists 127.0.0.1:587); add it to the "
                        "instance's allow_sockets"), found
    lines[7] = "server = \"127.0.0.1:587\""
    lines.append("password = \"s3cret-pw\"")
    r, found = check(lines)
    assert r.returncode == 1 and "plugins.mail.config.username: plugin refused its configuration: required with `password`" in found[0], (r.stderr, found)
    assert "s3cret-pw" not in r.stderr
    r, found = check(lines[:-1])
    assert r.returncode == 0, r.stderr


def test_a_local_relay_without_tls_gets_the_failure_mail(ca, servers, tmp_path):
    """`tls = "none"` (a relay on the same machine): plain SMTP, no AUTH offered or sent, and
    the mail arrives whole."""
    ca_pem, cert, key = ca
    relay = servers(cert, key, "none", USER, PASSWORD)
    token, token_hash = token_pair()
    (tmp_path / "host").mkdir()
    spec = {"tenant": TENANT, "component": str(EMAIL), "allow_sockets": [relay.address], "retry": FAST,
            "config": {"server": relay.address, "tls": "none", "from": "Herald <herald@herald.test>",
                       "to": ["ops@herald.test"], "summary": "never"}}
    host = Host(tmp_path / "host", {TENANT: token_hash}, {"relay": spec}).start()
    try:
        run = "relay-run"
        events = [
            {"uuid": "r1", "event": "playbook_on_start", "counter": 1, "created": "2026-01-01T00:00:00",
             "run_id": run, "event_data": {"playbook": "site.yml"}},
            {"uuid": "r2", "event": "runner_on_failed", "counter": 2, "created": "2026-01-01T00:00:01",
             "run_id": run, "event_data": {"playbook": "site.yml", "host": "web7", "task": "Restart nginx",
                                           "res": {"msg": "unit nginx.service not found"}}},
        ]
        status, body = api(host, "POST", "/v1/events", token, events)
        assert status == 202, body
        (m,) = poll(lambda: relay.received or None, 20, "the failure mail over plain SMTP")
        assert not m.tls and m.user is None and m.rcpt_tos == ["ops@herald.test"]
        msg = m.message()
        assert "web7" in msg["Subject"], msg["Subject"]
        assert "unit nginx.service not found" in parts(msg)["text/plain"]
    finally:
        host.kill()
