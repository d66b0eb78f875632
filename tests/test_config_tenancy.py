"""Issue 5: `herald check`, routes, hot reload under load, tenants, rate limits."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

from conftest import HERALD_BIN, PLUGIN_DIR, api, token_pair, toml_table, toml_value, wait_for, webhook_plugin


def event(run: str, counter: int, kind: str = "runner_on_ok", host: str = "web1", changed: bool = False,
          playbook: str = "site.yml", labels: dict | None = None) -> dict:
    e = {"uuid": str(uuid.uuid4()), "event": kind, "counter": counter, "run_id": run,
         "created": "2026-11-21T10:00:00+00:00",
         "event_data": {"playbook": playbook, "host": host, "res": {"changed": changed}}}
    if labels:
        e["labels"] = labels
    return e


def check(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "herald.toml"
    path.write_text(text)
    return subprocess.run([str(HERALD_BIN), "check", "--config", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_check_names_every_problem_with_its_line_and_key(tmp_path):
    _, good_hash = token_pair()
    webhook = PLUGIN_DIR / "webhook.wasm"
    lines = [
        "[server]",                                   # 1
        "listen = \"127.0.0.1:0\"",                   # 2
        "bodylimit = 5",                              # 3  unknown key
        "",                                           # 4
        "[tenants.ops]",                              # 5
        f"tokens = [\"{good_hash}\"]",                # 6
        "max_events_per_second = \"fast\"",           # 7  wrong type
        "",                                           # 8
        "[plugins.missing]",                          # 9
        "tenant = \"ops\"",                           # 10
        "component = \"nope/missing.wasm\"",          # 11 missing file
        "",                                           # 12
        "[plugins.pinned]",                           # 13
        "tenant = \"ops\"",                           # 14
        f"component = \"{webhook}\"",                 # 15
        "sha256 = \"" + "0" * 64 + "\"",              # 16 sha256 mismatch
        "",                                           # 17
        "[plugins.orphan]",                           # 18
        "tenant = \"nobody\"",                        # 19 unknown tenant
        f"component = \"{webhook}\"",                 # 20
        "",                                           # 21
        "[plugins.globs]",                            # 22
        "tenant = \"ops\"",                           # 23
        f"component = \"{webhook}\"",                 # 24
        "[[plugins.globs.routes]]",                   # 25
        "hosts = [\"web[\"]",                         # 26 invalid glob
    ]
    r = check(tmp_path, "\n".join(lines) + "\n")
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    expected = [
        (3, "server.bodylimit", "unknown field"),
        (7, "tenants.ops.max_events_per_second", "invalid type"),
        (11, "plugins.missing.component", "no component file"),
        (16, "plugins.pinned.sha256", "not the pinned"),
        (19, "plugins.orphan.tenant", "unknown tenant"),
        (26, "plugins.globs.routes.hosts", "invalid glob"),
        # The other problems do not hide the plugins' own: loadable instances are configured
        # too, and a key missing from the file is located at its table.
        (13, "plugins.pinned.config.url", "plugin refused its configuration: missing field `url`"),
        (18, "plugins.orphan.config.url", "missing field `url`"),
        (22, "plugins.globs.config.url", "missing field `url`"),
    ]
    for line, key, words in expected:
        assert re.search(rf"herald\.toml:{line}:\d+: {re.escape(key)}: .*{words}", err), (key, err)
    assert "9 problem(s) found" in err, err


def test_check_reports_a_plugins_own_configure_error_and_passes_a_good_config(tmp_path):
    _, h = token_pair()
    base = f"[tenants.ops]\ntokens = [\"{h}\"]\n\n"
    plugin = {"tenant": "ops", "component": str(PLUGIN_DIR / "webhook.wasm"),
              "allow_http": ["http://127.0.0.1:9"], "config": {"url": "http://127.0.0.1:9/x", "methd": "POST"}}
    r = check(tmp_path, base + toml_table("plugins.hook", plugin))
    assert r.returncode == 1
    # Located at the offending key of [plugins.hook.config], not at the table with a JSON position.
    text = (tmp_path / "herald.toml").read_text().splitlines()
    line = text.index('methd = "POST"') + 1
    assert re.search(rf"herald\.toml:{line}:1: plugins\.hook\.config\.methd: plugin refused its configuration: "
                     r"unknown field `methd`, expected one of [^\n]*`template`\n", r.stderr), r.stderr
    del plugin["config"]["methd"]
    r = check(tmp_path, base + toml_table("plugins.hook", plugin))
    assert r.returncode == 0, r.stderr
    assert "ok (1 tenants, 1 plugin instances)" in r.stdout


def test_routes_send_each_event_to_exactly_the_matching_instances(make_host, receiver):
    token, h = token_pair()
    def routed(name, routes):
        p = webhook_plugin("ops", receiver, headers={"X-Instance": name})
        p["routes"] = routes
        return p
    plugins = {
        "all": routed("all", []),
        "failures": routed("failures", [{"status": ["failed", "unreachable"]}, {"kinds": ["playbook_on_stats"]}]),
        "web-prod": routed("web-prod", [{"hosts": ["web*"], "playbooks": ["deploy-*.yml"], "labels": {"env": "prod"}}]),
        "changes": routed("changes", [{"kinds": ["runner_on_ok"], "status": ["changed"]}]),
    }
    # Routes are arrays of tables: write them by hand.
    host = make_host({"ops": h}, {})
    text = host.config_path.read_text()
    for name, spec in plugins.items():
        routes = spec.pop("routes")
        text += toml_table(f"plugins.{name}", spec)
        for r in routes:
            text += f"[[plugins.{name}.routes]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in r.items())
    host.config_path.write_text(text)
    host.start()
    run = str(uuid.uuid4())
    prod = {"env": "prod"}
    cases = [
        (event(run, 1, "runner_on_failed", "web1", playbook="deploy-app.yml", labels=prod), {"all", "failures", "web-prod"}),
        (event(run, 2, "runner_on_unreachable", "db1", playbook="deploy-app.yml", labels=prod), {"all", "failures"}),
        (event(run, 3, "runner_on_ok", "web2", True, playbook="/srv/deploy-app.yml", labels=prod), {"all", "web-prod", "changes"}),
        (event(run, 4, "runner_on_ok", "web1", False, playbook="deploy-app.yml", labels={"env": "dev"}), {"all"}),
        (event(run, 5, "playbook_on_stats", "", playbook="deploy-app.yml", labels=prod), {"all", "failures"}),
        (event(run, 6, "playbook_on_start", "", playbook="site.yml"), {"all"}),
    ]
    for e, _ in cases:
        if not e["event_data"]["host"]:
            del e["event_data"]["host"]
    status, body = host.post(json.dumps([e for e, _ in cases]).encode(), token)
    assert status == 202, body
    total = sum(len(w) for _, w in cases)
    wait_for(lambda: len(receiver.requests) >= total, timeout=30, what=f"{total} deliveries")
    time.sleep(0.5)
    got: dict[str, set] = {}
    for r in receiver.requests:
        got.setdefault(json.loads(r["body"])["uuid"], set()).add(r["headers"]["x-instance"])
    for e, want in cases:
        assert got.get(e["uuid"], set()) == want, (e["event"], e["event_data"].get("host"))
    assert len(receiver.requests) == total


def reload_status(host, admin_token):
    req = urllib.request.Request(host.url + "/v1/admin/reload", headers={"Authorization": f"Bearer {admin_token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_reload_under_load_keeps_ingest_and_loses_nothing(make_host, receiver):
    token, h = token_pair()
    admin, admin_h = token_pair()
    def inst(name):
        return webhook_plugin("ops", receiver, headers={"X-Instance": name})
    host = make_host({"ops": h}, {"keep": inst("keep"), "change": inst("change"), "drop": inst("drop")},
                     extra=f"[server.x]\n")
    # admin token in [server]
    text = host.config_path.read_text().replace("[server.x]\n", "").replace(
        "[server]\n", f"[server]\nadmin_tokens = [\"{admin_h}\"]\nwatch_config = true\n", 1)
    host.config_path.write_text(text)
    host.start()
    accepted: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()
    run = str(uuid.uuid4())

    def load():
        i = 0
        while not stop.is_set() and i < 2000:
            batch = [event(run, i * 3 + k) for k in range(3)]
            status, _ = host.post(json.dumps(batch).encode(), token)
            statuses.append(status)
            if status == 202:
                accepted.extend(e["uuid"] for e in batch)
            i += 1
            time.sleep(0.01)

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(1.0)
        # 1. SIGHUP with a new config: drop removed, change reconfigured, new added.
        new = text.replace('"X-Instance" = "change"', '"X-Instance" = "change2"')
        new = new.split("[plugins.drop]")[0] + new.split("[plugins.drop]")[1].split("\n[", 1)[1].join(["\n[", ""]) \
            if False else new
        # rebuild the plugins part cleanly
        head = new.split("[plugins.")[0]
        new = head + toml_table("plugins.keep", inst("keep")) + toml_table(
            "plugins.change", inst("change2")) + toml_table("plugins.new", inst("new"))
        host.config_path.write_text(new)
        host.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reload_status(host, admin)["ok"] and reload_status(host, admin)["generation"] >= 1,
                 timeout=30, what="the reload")
        swapped_at = len(accepted)
        time.sleep(1.0)
        # 2. A broken config (written to the file, picked up by the watcher) is refused without effect.
        gen = reload_status(host, admin)["generation"]
        host.config_path.write_text(new + "\n[plugins.broken]\ntenant = \"ghost\"\ncomponent = \"x.wasm\"\n")
        wait_for(lambda: reload_status(host, admin)["generation"] > gen, timeout=30, what="the refused reload")
        st = reload_status(host, admin)
        assert st["ok"] is False and any("plugins.broken.tenant" in p for p in st["problems"]), st
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(timeout=60)
    assert statuses and all(s == 202 for s in statuses), set(statuses)
    metrics = host.metrics()
    assert re.search(r'herald_config_reloads_total\{result="ok"\} [1-9]', metrics), metrics
    assert re.search(r'herald_config_reloads_total\{result="error"\} [1-9]', metrics)

    def by(name):
        return {json.loads(r["body"])["uuid"] for r in receiver.requests if r["headers"].get("x-instance") == name}

    # keep existed throughout: every accepted event reaches it.
    wait_for(lambda: by("keep") >= set(accepted), timeout=60, what="every accepted event at 'keep'")
    # change existed before and after (reconfigured): every event reaches it, under one config or the other.
    wait_for(lambda: by("change") | by("change2") >= set(accepted), timeout=60, what="every event at 'change'")
    # ... and in the run's order: the old and the new worker of `change` never delivered at once.
    firsts: list[str] = []
    for r in list(receiver.requests):
        if r["headers"].get("x-instance") in ("change", "change2"):
            u = json.loads(r["body"])["uuid"]
            if u not in firsts:
                firsts.append(u)
    assert firsts == [u for u in accepted if u in set(firsts)], "first deliveries out of order"
    # new receives the events accepted after the swap. A request is routed when
    # it arrives, so the one batch (3 events) in flight during the swap may
    # have been routed by the old configuration and answered after it.
    wait_for(lambda: by("new") >= set(accepted[swapped_at + 3:]), timeout=60, what="post-swap events at 'new'")
    # drop stopped receiving: it got nothing accepted after the swap finished settling.
    late = set(accepted[swapped_at + 30:])
    assert not (by("drop") & late)
    # The broken config had no effect: the broken instance never existed, the others still deliver.
    status, _ = host.post(json.dumps([event(run, 99999)]).encode(), token)
    assert status == 202


def test_tenants_see_only_their_own_deliveries_and_tokens_are_checked(make_host, receiver, tmp_path):
    from conftest import Receiver
    other = Receiver()
    try:
        ta, ha = token_pair()
        tb, hb = token_pair()
        plugins = {"a-hook": webhook_plugin("a", receiver), "b-hook": webhook_plugin("b", other)}
        host = make_host({"a": ha, "b": hb}, plugins).start()
        run = str(uuid.uuid4())
        ea = [event(run, i) for i in range(5)]
        eb = [event(run, i) for i in range(3)]
        # The same uuid in two tenants is two events.
        eb.append(dict(ea[0]))
        assert host.post(json.dumps(ea).encode(), ta)[0] == 202
        assert host.post(json.dumps(eb).encode(), tb) == (202, {"accepted": 4, "duplicates": 0})
        wait_for(lambda: len(receiver.requests) >= 5 and len(other.requests) >= 4, timeout=30, what="deliveries")
        time.sleep(0.3)
        assert {json.loads(r["body"])["uuid"] for r in receiver.requests} == {e["uuid"] for e in ea}
        assert {json.loads(r["body"])["uuid"] for r in other.requests} == {e["uuid"] for e in eb}
        assert host.post(json.dumps(ea).encode(), "not-a-token")[0] == 401
        # Revoke b's token with a reload: its requests are refused from then on.
        text = host.config_path.read_text().replace(hb, token_pair()[1])
        host.config_path.write_text(text)
        wait_for(lambda: host.post(json.dumps([event(run, 50)]).encode(), tb)[0] == 401, timeout=30,
                 what="the revoked token refused")
        # Metrics carry the tenant label.
        # Metrics carry the tenant label (b's count includes the events sent while its token was valid).
        wait_for(lambda: 'herald_deliveries_total{tenant="a",plugin="a-hook",outcome="ok"} 5' in host.metrics()
                 and f'herald_deliveries_total{{tenant="b",plugin="b-hook",outcome="ok"}} {len(other.requests)}'
                 in host.metrics(), timeout=10, what="per-tenant delivery counters")
    finally:
        other.close()


def test_rate_limit_answers_429_with_retry_after(make_host):
    token, h = token_pair()
    host = make_host({"ops": h}, {})
    text = host.config_path.read_text().replace(f'tokens = ["{h}"]', f'tokens = ["{h}"]\nmax_events_per_second = 5\nburst = 5')
    host.config_path.write_text(text)
    host.start()
    run = str(uuid.uuid4())
    assert host.post(json.dumps([event(run, i) for i in range(5)]).encode(), token)[0] == 202
    req = urllib.request.Request(host.url + "/v1/events", data=json.dumps([event(run, 9)]).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("expected 429")
    except urllib.error.HTTPError as e:
        assert e.code == 429
        assert int(e.headers["Retry-After"]) >= 1
        assert json.loads(e.read())["error"] == "rate_limited"
    time.sleep(1.1)
    assert host.post(json.dumps([event(run, 10)]).encode(), token)[0] == 202


def openssl(*args):
    made = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr


def start_tls_host(make_host, receiver, tmp_path, private_ca: bool = False):
    """A host serving https for 127.0.0.1: (host, its https:// URL, the file
    a client trusts, the key file, a token). The certificate is self-signed,
    or with `private_ca` signed by a CA of its own (the trusted file is then
    the CA's certificate)."""
    import ssl
    token, h = token_pair()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if private_ca:
        ca, ca_key, csr = tmp_path / "ca.pem", tmp_path / "ca-key.pem", tmp_path / "cert.csr"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=herald-test-ca",
                "-keyout", str(ca_key), "-out", str(ca))
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=herald-test",
                "-keyout", str(key), "-out", str(csr))
        ext = tmp_path / "ext.cnf"
        ext.write_text("basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                "-days", "1", "-extfile", str(ext), "-out", str(cert))
        trusted = ca
    else:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=herald-test", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(key), "-out", str(cert))
        trusted = cert
    host = make_host({"ops": h}, {"hook": webhook_plugin("ops", receiver)})
    text = host.config_path.read_text().replace("[storage]", f'[server.tls]\ncert = "{cert}"\nkey = "{key}"\n\n[storage]', 1)
    host.config_path.write_text(text)
    context = ssl.create_default_context(cafile=str(trusted))
    https = host.url.replace("http://", "https://")

    def up():
        try:
            with urllib.request.urlopen(https + "/health", timeout=1, context=context) as r:
                return r.status == 200
        except OSError:
            return False

    # Start it by hand: the fixture's start() speaks plain http.
    import conftest
    log = open(host.log_path, "ab")
    host.proc = subprocess.Popen([str(HERALD_BIN), "serve", "--config", str(host.config_path)],
                                 stdout=log, stderr=log, cwd=host.workdir)
    wait_for(up, timeout=60, what="herald over https")
    return host, https, trusted, key, token


def test_tls_serves_https_with_the_configured_certificate(make_host, receiver, tmp_path):
    import ssl
    host, https, cert, key, token = start_tls_host(make_host, receiver, tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    req = urllib.request.Request(https + "/v1/events", method="POST",
                                 data=json.dumps([event(str(uuid.uuid4()), 1)]).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=context) as r:
        assert r.status == 202
    wait_for(lambda: len(receiver.requests) == 1, timeout=30, what="the delivery")
    # Plain http is not served on the TLS port.
    try:
        urllib.request.urlopen(host.url + "/health", timeout=3)
        plain_ok = True
    except Exception:
        plain_ok = False
    assert not plain_ok
    # A missing key file is a located config problem.
    key.unlink()
    r = subprocess.run([str(HERALD_BIN), "check", "--config", str(host.config_path)], capture_output=True, text=True)
    assert r.returncode == 1 and re.search(r"herald\.toml:\d+:\d+: server\.tls\.key: no PEM file", r.stderr), r.stderr


def test_cli_speaks_https_trusting_a_private_ca(make_host, receiver, tmp_path):
    host, https, ca, _key, token = start_tls_host(make_host, receiver, tmp_path, private_ca=True)
    run = str(uuid.uuid4())
    import ssl
    req = urllib.request.Request(https + "/v1/events", method="POST",
                                 data=json.dumps([event(run, 1)]).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=ssl.create_default_context(cafile=str(ca))) as r:
        assert r.status == 202
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["HERALD_TOKEN"] = token

    def cli(*args, **extra_env):
        return subprocess.run([str(HERALD_BIN), *args], env={**env, **extra_env}, capture_output=True, text=True,
                              timeout=60)

    # --ca-cert names the private CA that signed the host's certificate.
    r = cli("runs", "list", "--url", https, "--ca-cert", str(ca))
    assert r.returncode == 0, r.stderr
    assert run in r.stdout and r.stdout.startswith("ID"), r.stdout
    # HERALD_CA_CERT does the same, for the JSON output too.
    r = cli("runs", "show", run, "--url", https, "-o", "json", HERALD_CA_CERT=str(ca))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == run
    # Without it the certificate is not trusted: exit 1, the cause on stderr, nothing on stdout.
    r = cli("runs", "list", "--url", https)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"herald: cannot reach herald at {https}: "), r.stderr
    assert re.search(r"certificate", r.stderr, re.I) and "--ca-cert" in r.stderr, r.stderr
    # A file that is not a PEM certificate is named.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    r = cli("runs", "list", "--url", https, "--ca-cert", str(junk))
    assert r.returncode == 1 and str(junk) in r.stderr, r.stderr


def test_journal_quota_answers_507_and_keeps_what_was_accepted(make_host, receiver):
    token, h = token_pair()
    host = make_host({"ops": h}, {"hook": webhook_plugin("ops", receiver)})
    text = host.config_path.read_text().replace(f'tokens = ["{h}"]', f'tokens = ["{h}"]\nmax_stored_events = 5')
    host.config_path.write_text(text)
    host.start()
    run = str(uuid.uuid4())
    first = [event(run, i) for i in range(5)]
    assert host.post(json.dumps(first).encode(), token) == (202, {"accepted": 5, "duplicates": 0})
    status, body = host.post(json.dumps([event(run, 5)]).encode(), token)
    assert status == 507 and body["error"] == "quota_exceeded", body
    wait_for(lambda: len(receiver.requests) == 5, timeout=30, what="the accepted events delivered")


def test_an_instance_moved_to_another_tenant_never_delivers_the_first_tenants_events(make_host, tmp_path):
    """Issue 17 (2): a reload gives instance `hook` (tenant a, pointing at a's
    sink) to tenant b (pointing at b's sink) while a's events wait for a retry.
    None of a's events may reach b's sink: they are dead-lettered for a, with a
    reason, and a can requeue them once `hook` is a's again."""
    from conftest import Receiver
    sink_a, sink_b = Receiver(), Receiver()
    try:
        ta, ha = token_pair()
        tb, hb = token_pair()
        admin, admin_h = token_pair()
        sink_a.default = (503, {}, b"down")  # a's deliveries stay pending, retried
        slow = {"initial_ms": 300, "max_ms": 600, "max_attempts": 1000}
        hook_a = dict(webhook_plugin("a", sink_a), retry=slow)
        hook_b = dict(webhook_plugin("b", sink_b), retry=slow)
        host = make_host({"a": ha, "b": hb}, {"hook": hook_a})
        text = host.config_path.read_text().replace(
            "[server]\n", f"[server]\nadmin_tokens = [\"{admin_h}\"]\nwatch_config = false\n", 1)
        host.config_path.write_text(text)
        host.start()
        run = str(uuid.uuid4())
        ea = [event(run, i) for i in range(5)]
        assert host.post(json.dumps(ea).encode(), ta)[0] == 202
        wait_for(lambda: len(sink_a.requests) >= 2, timeout=30, what="a's first attempts")

        def reload_to(plugin: dict):
            gen = reload_status(host, admin)["generation"]
            head = host.config_path.read_text().split("[plugins.hook]")[0]
            host.config_path.write_text(head + toml_table("plugins.hook", plugin))
            host.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: reload_status(host, admin)["generation"] > gen, timeout=30, what="the reload")
            assert reload_status(host, admin)["ok"], reload_status(host, admin)

        # Move `hook` to tenant b, whose sink answers.
        reload_to(hook_b)
        sink_a.default = (200, {}, b"ok")
        eb = [event(str(uuid.uuid4()), i) for i in range(2)]
        assert host.post(json.dumps(eb).encode(), tb)[0] == 202
        wait_for(lambda: len(sink_b.requests) >= 2, timeout=30, what="b's events at b's sink")
        # a's events are dead letters of a, with a reason naming the move; b sees none of them.
        status, dl = wait_for(lambda: (lambda r: r if len(r[1].get("items", [])) == 5 else None)(
            api(host, "GET", "/v1/dead-letters", ta)), timeout=30, what="a's 5 dead letters")
        assert status == 200
        assert {d["uuid"] for d in dl["items"]} == {e["uuid"] for e in ea}
        for d in dl["items"]:
            assert d["plugin"] == "hook" and 'to tenant "b"' in d["reason"] and "requeue" in d["reason"], d
        assert api(host, "GET", "/v1/dead-letters", tb)[1]["items"] == []
        time.sleep(1.5)  # several retry periods: nothing of a's may show up at b's sink
        got_b = {json.loads(r["body"])["uuid"] for r in sink_b.requests}
        assert got_b == {e["uuid"] for e in eb}, "b's sink received another tenant's events"
        # While `hook` is b's, a cannot requeue them onto it.
        assert api(host, "POST", "/v1/dead-letters/retry", ta, {"plugin": "hook"})[0] == 404
        # The dead-letter gauge keeps them under tenant a.
        wait_for(lambda: 'herald_dead_letters{tenant="a",plugin="hook"} 5' in host.metrics(), timeout=15,
                 what="a's dead letters in the gauge")
        # `hook` back to a: a requeues them and its own sink gets every one.
        reload_to(hook_a)
        before = len(sink_a.requests)
        assert api(host, "POST", "/v1/dead-letters/retry", ta, {"plugin": "hook"}) == (200, {"requeued": 5})
        wait_for(lambda: {e["uuid"] for e in ea} <= {json.loads(r["body"])["uuid"] for r in sink_a.requests[before:]},
                 timeout=30, what="a's events at a's sink after the requeue")
        assert {json.loads(r["body"])["uuid"] for r in sink_b.requests} == {e["uuid"] for e in eb}
    finally:
        sink_a.close()
        sink_b.close()
