"""Issue 20: `herald plugin test COMPONENT --config FILE --events FILE` runs a built component
against a recorded run offline: the host's runtime, limits and allow-lists, with outbound HTTP
answered by a scripted fake and sockets by scripted local peers (`--sockets`). It prints each
call's outcome, each request and each socket conversation; exit 0 when every call answered ok,
1 on a fault or another outcome, 2 on bad input."""
from __future__ import annotations

import base64
import json
import subprocess

from conftest import HERALD_BIN, HOSTILE_DIR, PLUGIN_DIR, ROOT

RECORDED = ROOT / "plugins" / "chat" / "tests" / "data" / "deploy-failed.jsonl"
HOOK = "https://chat.example.com/hooks/right"


def write_config(tmp_path, component: str, config: dict, allow=("https://chat.example.com",), name="p"):
    lines = [f"[plugins.{name}]", 'tenant = "ops"', f'component = "{component}"',
             "allow_http = " + json.dumps(list(allow)), f"[plugins.{name}.config]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    path = tmp_path / "herald.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_socket_config(tmp_path, config: dict, allow=("10.9.8.7:587",), name="p"):
    """An instance whose destinations are sockets (addresses no test machine has: the runner
    must answer them itself)."""
    lines = [f"[plugins.{name}]", 'tenant = "ops"', 'component = "x.wasm"',
             "allow_sockets = " + json.dumps(list(allow)), f"[plugins.{name}.config]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    path = tmp_path / "sockets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


MAIL = {"server": "10.9.8.7:587", "server_name": "mail.example.com", "username": "herald",
        "password": "pw-s3cr3t", "from": "Herald <herald@example.com>", "to": ["ops@example.com"],
        "timeout_ms": 2000}


def plugin_test(component, config, events=RECORDED, http=None, tmp_path=None, *extra, sockets=None):
    argv = [str(HERALD_BIN), "plugin", "test", str(component), "--config", str(config), "--events", str(events)]
    if http is not None:
        script = tmp_path / "http.json"
        script.write_text(json.dumps(http))
        argv += ["--http", str(script)]
    if sockets is not None:
        script = tmp_path / "sockets.json"
        script.write_text(json.dumps(sockets))
        argv += ["--sockets", str(script)]
    return subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=300)


def test_the_python_chat_sink_against_a_recorded_run(tmp_path):
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK, "flavor": "discord", "username": "Herald"})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, http=[{"url": HOOK, "status": 204}], tmp_path=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.count(f"POST {HOOK} -> 204") == 3, out
    assert "#18 runner_on_failed web2: ok" in out
    assert '{"content":"❌ deploy.yml: task \'Migrate the database\' failed on web2: migration 42 failed on web2",' \
           '"username":"Herald","allowed_mentions":{"parse":[]}}' in out
    assert '"content":"🔴 deploy.yml failed in ' in out
    assert out.rstrip().endswith("27 events, every call answered ok")


def test_a_plugin_that_sends_the_wrong_thing_fails(tmp_path):
    # Configured with the wrong webhook: the script's service answers it 404.
    config = write_config(tmp_path, "x.wasm", {"webhook_url": "https://chat.example.com/hooks/wrong"})
    script = [{"url": HOOK, "status": 200, "body": "ok"},
              {"url": "https://chat.example.com/", "status": 404, "body": {"message": "Unknown Webhook"}}]
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, http=script, tmp_path=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert '#18 runner_on_failed web2: permanent: HTTP 404 from https://chat.example.com: {"message":"Unknown Webhook"}' \
        in r.stdout, r.stdout
    assert r.stdout.rstrip().endswith("NOT every call answered ok")
    # A 429 with Retry-After is shown as the host would retry it.
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, tmp_path=tmp_path,
                    http=[{"url": HOOK, "status": 429, "headers": {"Retry-After": "7"}, "times": 1}])
    assert r.returncode == 1 and "#8 runner_on_unreachable cache1: retryable after 7000 ms: HTTP 429" in r.stdout, r.stdout


def test_a_trap_is_reported_with_the_plugins_message(tmp_path):
    config = write_config(tmp_path, "x.wasm", {"mode": "panic", "only_host": "web2"}, allow=())
    r = plugin_test(HOSTILE_DIR / "hostile.wasm", config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "#17 runner_on_skipped db1: ok" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("#18 "))
    assert line.startswith("#18 runner_on_failed web2: FAULT plugin panicked: ") and \
        "hostile plugin panicked on purpose" in line, line


def test_the_sandbox_is_the_hosts_and_secrets_are_masked(tmp_path):
    # A destination outside allow_http is refused as in the host, before the fake is asked.
    config = write_config(tmp_path, "x.wasm", {"mode": "http", "url": "https://elsewhere.example.com/x"},
                          allow=("https://chat.example.com",))
    r = plugin_test(HOSTILE_DIR / "hostile.wasm", config, tmp_path=tmp_path, http=[])
    assert r.returncode == 1 and "POST https://elsewhere" not in r.stdout, r.stdout
    assert "#1 playbook_on_start: permanent: " in r.stdout and "not allowed" in r.stdout.splitlines()[0], r.stdout
    # The webhook's bearer token is sent, and printed masked.
    config = write_config(tmp_path, "x.wasm", {"url": HOOK, "bearer_token": "tok-s3cr3t"})
    r = plugin_test(PLUGIN_DIR / "webhook.wasm", config, tmp_path=tmp_path, http=[{"url": HOOK, "status": 200}])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "authorization: ***" in r.stdout and "tok-s3cr3t" not in r.stdout
    assert r.stdout.count(f"POST {HOOK} -> 200") == 27


def test_bad_input_names_the_file(tmp_path):
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK, "flavour": "x"})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config)
    assert r.returncode == 2 and "plugins.p: plugin refused its configuration: config key `flavour`: unknown key" \
        in r.stderr, r.stderr
    bad = tmp_path / "events.jsonl"
    bad.write_text(RECORDED.read_text().splitlines()[0] + "\nnot json\n")
    config = write_config(tmp_path, "x.wasm", {"webhook_url": HOOK})
    r = plugin_test(PLUGIN_DIR / "chat.wasm", config, bad)
    assert r.returncode == 2 and f"{bad}:2: not a JSON event" in r.stderr, r.stderr


def transcript(out: str, event: int) -> list:
    """The lines printed under call #event (its requests and socket transcript)."""
    lines = out.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"#{event} "))
    rest = lines[start + 1:]
    end = next((i for i, x in enumerate(rest) if not x.startswith(" ")), len(rest))
    return [x.strip() for x in rest[:end]]


def test_the_email_sink_talks_smtp_to_a_scripted_peer(tmp_path):
    config = write_socket_config(tmp_path, MAIL)
    r = plugin_test(PLUGIN_DIR / "email.wasm", config, tmp_path=tmp_path,
                    sockets=[{"address": "10.9.8.7:587", "protocol": "smtp"}])
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # Three mails (cache1 unreachable, web2 failed, the run summary), each a whole conversation.
    assert out.count("> DATA") == 3 and out.count("< 250 2.0.0 OK: queued") == 3, out
    first = transcript(out, 8)
    assert first[:3] == ["tcp 10.9.8.7:587 (connection 1)", "* connected", "< 220 herald-plugin-test ESMTP"], first
    order = ["> EHLO example.com", "> STARTTLS", "< 220 2.0.0 Ready to start TLS",
             "* TLS for mail.example.com: simulated (what follows would be encrypted)",
             "> AUTH PLAIN ***", "> MAIL FROM:<herald@example.com>", "> RCPT TO:<ops@example.com>",
             "> Subject: [Herald] deploy.yml: Render the configuration unreachable on cache1", "> .", "> QUIT"]
    at = [first.index(x) for x in order]
    assert at == sorted(at), first
    assert transcript(out, 9) == [], out  # nothing sent for an ok host
    assert "> Subject: [Herald] deploy.yml: Migrate the database failed on web2" in transcript(out, 18)
    # The password never shows: neither in clear nor as AUTH PLAIN's base64 token.
    token = base64.b64encode(b"\0herald\0pw-s3cr3t").decode()
    assert "pw-s3cr3t" not in out and token not in out
    # AUTH LOGIN: both answers masked.
    config = write_socket_config(tmp_path, dict(MAIL, auth="login"))
    r = plugin_test(PLUGIN_DIR / "email.wasm", config, tmp_path=tmp_path,
                    sockets=[{"address": "10.9.8.7:587", "protocol": "smtp"}])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = transcript(r.stdout, 8)
    i = lines.index("> AUTH LOGIN")
    assert lines[i + 1:i + 6] == ["< 334 VXNlcm5hbWU6", "> ***", "< 334 UGFzc3dvcmQ6", "> ***",
                                  "< 235 2.7.0 Authentication successful"], lines
    assert base64.b64encode(b"pw-s3cr3t").decode() not in r.stdout


def test_a_socket_peer_that_refuses_fails_the_run(tmp_path):
    config = write_socket_config(tmp_path, MAIL)
    # A server that does not know the recipient: permanent, exit 1, with the server's words.
    r = plugin_test(PLUGIN_DIR / "email.wasm", config, tmp_path=tmp_path, sockets=[
        {"address": "10.9.8.7:587", "protocol": "smtp",
         "replies": [{"match": "RCPT", "send": "550 5.1.1 <ops@example.com>: no such user"}]}])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "#18 runner_on_failed web2: permanent: every recipient was refused: ops@example.com: " \
           "550 5.1.1 <ops@example.com>: no such user" in r.stdout, r.stdout
    assert r.stdout.rstrip().endswith("NOT every call answered ok")
    # Nothing listening: retryable, as the host would retry it.
    r = plugin_test(PLUGIN_DIR / "email.wasm", config, tmp_path=tmp_path,
                    sockets=[{"address": "10.9.8.7:587", "fail": "refused"}])
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("#8 "))
    assert line.startswith("#8 runner_on_unreachable cache1: retryable: cannot reach 10.9.8.7:587") \
        and "connection-refused" in line, line
    # A rule for an address the instance may not reach is bad input, named.
    r = plugin_test(PLUGIN_DIR / "email.wasm", config, tmp_path=tmp_path,
                    sockets=[{"address": "10.9.8.7:25", "protocol": "smtp"}])
    assert r.returncode == 2 and "sockets.json: rule 1: 10.9.8.7:25 is not in the instance's allow_sockets " \
        "(10.9.8.7:587)" in r.stderr, r.stderr


def test_syslog_over_tcp_and_udp_is_transcribed(tmp_path):
    config = write_socket_config(tmp_path, {"address": "10.9.8.7:6514", "transport": "tcp"}, allow=("10.9.8.7:6514",))
    r = plugin_test(PLUGIN_DIR / "syslog.wasm", config, tmp_path=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    first = transcript(r.stdout, 1)
    assert first[:2] == ["tcp 10.9.8.7:6514 (connection 1)", "* connected"], first
    # One RFC 6587 octet-counted frame per event, over one kept connection.
    frame = first[2][2:]
    length, msg = frame.split(" ", 1)
    assert int(length) == len(msg.encode()) and msg.startswith("<134>1 ") and "playbook deploy.yml started" in msg, frame
    failed = transcript(r.stdout, 18)
    assert failed[0] == "tcp 10.9.8.7:6514 (connection 1)" and " <131>1 " in failed[1], failed
    assert r.stdout.count("* connected") == 1
    config = write_socket_config(tmp_path, {"address": "10.9.8.7:6514", "transport": "udp"}, allow=("10.9.8.7:6514",))
    r = plugin_test(PLUGIN_DIR / "syslog.wasm", config, tmp_path=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("    udp 10.9.8.7:6514") == 27, r.stdout
    assert transcript(r.stdout, 1)[1].startswith("> <134>1 ")


def test_socket_grants_are_the_hosts(tmp_path):
    # Allowed: redirected to the runner's peer. Not allowed: refused by the host's gate, not faked.
    config = write_socket_config(tmp_path, {"mode": "tcp", "address": "10.9.8.7:9"}, allow=("10.9.8.7:9",))
    r = plugin_test(HOSTILE_DIR / "hostile.wasm", config, tmp_path=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "> hostile" in transcript(r.stdout, 1)
    config = write_socket_config(tmp_path, {"mode": "tcp", "address": "10.9.8.7:10"}, allow=("10.9.8.7:9",))
    r = plugin_test(HOSTILE_DIR / "hostile.wasm", config, tmp_path=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "fault denied_socket: socket use TcpConnect of 10.9.8.7:10 refused" in r.stdout, r.stdout
    assert "> hostile" not in r.stdout


def test_a_run_recorded_against_a_real_service_replays_offline(tmp_path):
    # A real (local) service answers the webhook: 503 to the first failure's post, 200 to the rest.
    import http.server
    import threading

    seen = []

    class Service(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(json.loads(body))
            failing = len(seen) == 8
            self.send_response(503 if failing else 200)
            payload = b'{"error":"busy"}' if failing else b'{"ok":true}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks/x"
    config = write_config(tmp_path, "x.wasm", {"url": url}, allow=(url.rsplit("/", 2)[0],))
    recording = tmp_path / "recorded.json"
    try:
        r = plugin_test(PLUGIN_DIR / "webhook.wasm", config, RECORDED, None, tmp_path, "--record-http", str(recording))
    finally:
        server.shutdown()
    assert len(seen) == 27, r.stdout + r.stderr
    assert r.returncode == 1 and f"#8 runner_on_unreachable cache1: retryable" in r.stdout, r.stdout
    assert f"    POST {url} -> 503" in r.stdout
    assert r.stdout.rstrip().endswith(f"recorded 27 requests to {recording} (replay: --http {recording})")
    rules = json.loads(recording.read_text())
    assert len(rules) == 27 and rules[7] == {"url": url, "method": "POST", "times": 1, "status": 503,
                                             "body": '{"error":"busy"}'}, rules[7]
    # The service is gone: the recording answers, the same outcomes come out.
    again = plugin_test(PLUGIN_DIR / "webhook.wasm", config, RECORDED, None, tmp_path, "--http", str(recording))
    outcomes = lambda out: [x for x in out.splitlines() if x.startswith("#")]  # noqa: E731
    assert outcomes(again.stdout) == outcomes(r.stdout), again.stdout
    assert again.stdout.count(f"POST {url} -> 200") == 26 and f"POST {url} -> 503" in again.stdout
