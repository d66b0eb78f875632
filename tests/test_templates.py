"""Issue 21: message templates. A plugin instance's `[plugins.<name>.templates]` are compiled when
the config loads (`herald check` locates an error in herald.toml or the template file), rendered
by the host for the plugin (contract 0.3.0) against the event, its run and at the end of the run
the summary read from the journal, under limits (fuel, output size), with a failed render the
event's permanent failure. Real `herald`, real `ansible-playbook`, the webhook sink (its `body`
template) posting to a local receiver."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from conftest import (HERALD_BIN, PLUGIN_DIR, api, run_playbook, token_pair, toml_table, wait_for,
                      webhook_plugin)

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import (  # noqa: E402
    GRAFANA_TOKEN, ROUTING_KEY, FakeGrafana, FakePagerDuty, FakeSlack, deploy_run, sample, wait_settled)

TENANT = "ops"
WEBHOOK = PLUGIN_DIR / "webhook.wasm"


def check(tmp_path, text: str, files: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    for name, body in (files or {}).items():
        (tmp_path / name).write_text(body)
    path = tmp_path / "herald.toml"
    path.write_text(text)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    return subprocess.run([str(HERALD_BIN), "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_check_locates_template_errors_in_herald_toml_and_in_template_files(tmp_path):
    _, h = token_pair()
    lines = [
        "[tenants.ops]",                                                          # 1
        f"tokens = [\"{h}\"]",                                                    # 2
        "[plugins.hook]",                                                         # 3
        "tenant = \"ops\"",                                                       # 4
        f"component = \"{WEBHOOK}\"",                                             # 5
        "allow_http = [\"http://127.0.0.1:9101\"]",                               # 6
        "[plugins.hook.config]",                                                  # 7
        "url = \"http://127.0.0.1:9101/x\"",                                      # 8
        "[plugins.hook.templates]",                                               # 9
        "fine = \"{{ event.host }}\"",                                            # 10
        "body = '{{ run.id }} {% if summary %}'",                                 # 11
        "text = { file = \"text.j2\" }",                                          # 12
        "other = { file = \"missing.j2\" }",                                      # 13
    ]
    r = check(tmp_path, "\n".join(lines) + "\n",
              {"text.j2": "Run {{ run.playbook }}\n{% for h in summary.failed_hosts %}\n  {{ h.host | }}\n"})
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stderr.replace(str(tmp_path) + "/", "")
    # The unclosed `if` of the inline template: line 11, at its last token, the `%}` 27
    # characters into the text, which starts at column 9; the filter without a name in text.j2,
    # line 3, at the `}}`.
    assert "herald.toml:11:36: plugins.hook.templates.body: template `body`: syntax error: " \
        "unexpected end of input, expected end of block" in out, out
    assert "text.j2:3:15: plugins.hook.templates.text: template `text`: syntax error: " in out, out
    assert "herald.toml:13:1: plugins.hook.templates.other: cannot read the template file" in out, out
    assert "templates.fine" not in out, out


def wait_deliveries(host, token: str, plugin: str, count: int, outcome: str) -> list[dict]:
    def got():
        q = urllib.parse.urlencode({"plugin": plugin, "outcome": outcome, "limit": 500})
        status, body = api(host, "GET", f"/v1/deliveries?{q}", token)
        assert status == 200, body
        items = body.get("items", [])
        return items if len(items) >= count else None
    return wait_for(got, timeout=60, what=f"{count} {outcome} deliveries of {plugin}")


SUMMARY = (
    "{% if summary %}"
    "{{ run.playbook }} {{ run.status }} hosts={{ summary.hosts }} changed={{ summary.changed }}"
    "{% for h in summary.failed_hosts %} FAILED {{ h.host }}:"
    "{% for t in h.tasks %} {{ t.task }} ({{ t.message }}){% endfor %}{% endfor %}"
    " release={{ summary.set_stats._run.release }} url={{ run_url }}"
    "{% else %}{{ event.kind }} {{ event.host }} {{ event.status }} {{ event.message }}{% endif %}"
)


def test_a_custom_template_is_sent_exactly_with_the_run_summary_from_the_journal(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    hook = webhook_plugin(TENANT, receiver, kinds=["runner_on_failed", "playbook_on_stats"],
                          headers={"content-type": "text/plain"})
    hook["templates"] = {"body": SUMMARY, "run_url": "https://awx.example/#/jobs/{{ run.id }}"}
    host = make_host({TENANT: token_hash}, {"hook": hook})
    host.start()
    r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",))
    assert r.returncode == 2, r.stdout + r.stderr
    wait_for(lambda: len(receiver.requests) >= 2, timeout=60, what="the failure and the summary")
    bodies = [q["body"].decode() for q in receiver.requests]
    run_id = api(host, "GET", "/v1/runs", token)[1]["items"][0]["id"]
    assert bodies == [
        "runner_on_failed web2 failed migration 42 failed on web2",
        f"deploy.yml failed hosts=4 changed=1 FAILED web2: Migrate the database (migration 42 failed on web2)"
        f" release=2.0.1 url=https://awx.example/#/jobs/{run_id}",
    ], bodies
    assert all(q["headers"]["content-type"] == "text/plain" for q in receiver.requests)


NO_LOG_PLAYBOOK = """
- hosts: all
  gather_facts: false
  vars:
    db_password: "{{ lookup('ansible.builtin.env', 'SECRET_VALUE') }}"
  tasks:
    - name: Use the secret
      ansible.builtin.fail:
        msg: "cannot log in with {{ db_password }}"
      no_log: true
"""


def test_no_log_secrets_never_reach_a_rendered_message(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    secret = "s3cr3t-" + token[:12]
    hook = webhook_plugin(TENANT, receiver, kinds=["runner_on_failed", "playbook_on_stats"])
    hook["templates"] = {"body": "{{ event.message }} {{ event.res | tojson }} "
                                 "{% if summary %}{{ summary.failures | tojson }}{% endif %}"}
    host = make_host({TENANT: token_hash}, {"hook": hook})
    host.start()
    work = tmp_path / "run"
    work.mkdir()
    (work / "play.yml").write_text(NO_LOG_PLAYBOOK)
    (work / "inventory.ini").write_text("web1 ansible_connection=local\n")
    r = run_playbook(Path("play.yml"), work / "inventory.ini", host, token, work,
                     extra_env={"SECRET_VALUE": secret})
    assert r.returncode == 2, r.stdout + r.stderr
    wait_for(lambda: len(receiver.requests) >= 2, timeout=60, what="the failure and the summary")
    bodies = [q["body"].decode() for q in receiver.requests]
    assert len(bodies) == 2
    assert all(secret not in b for b in bodies), bodies
    # What the template did get: the censored result, and the failure with no message.
    assert "censored" in bodies[0], bodies
    summary = json.loads(bodies[1].split(" ", 2)[2])
    assert [(f["host"], f["task"]) for f in summary] == [("web1", "Use the secret")], summary


def test_an_endless_loop_or_megabytes_are_stopped_and_dead_lettered_with_the_reason(make_host, receiver, tmp_path):
    token, token_hash = token_pair()
    loop = webhook_plugin(TENANT, receiver, kinds=["playbook_on_stats"])
    loop["templates"] = {"body": "{% for a in range(100000) %}{% for b in range(100000) %}"
                                 "{% endfor %}{% endfor %}"}
    big = webhook_plugin(TENANT, receiver, kinds=["playbook_on_stats"])
    big["templates"] = {"body": "{% for a in range(5000) %}{{ 'x' * 1000 }}{% endfor %}"}
    big["limits"] = {"template_max_bytes": 100000}
    ok = webhook_plugin(TENANT, receiver, kinds=["playbook_on_stats"])
    ok["templates"] = {"body": "{{ run.status }}"}
    host = make_host({TENANT: token_hash}, {"loop": loop, "big": big, "ok": ok})
    host.start()
    r = deploy_run(run_playbook, host, token, tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    (dead_loop,) = wait_deliveries(host, token, "loop", 1, "dead")
    (dead_big,) = wait_deliveries(host, token, "big", 1, "dead")
    # One attempt each: a broken template is permanent, not retried.
    assert dead_loop["attempts"] == 1 and dead_big["attempts"] == 1, (dead_loop, dead_big)
    assert "message template failed: template `body`" in dead_loop["last_error"], dead_loop
    assert "units of fuel" in dead_loop["last_error"], dead_loop
    assert "output over 100000 bytes" in dead_big["last_error"], dead_big
    # The host kept working: the healthy instance delivered, and nothing else was sent.
    text = wait_settled(host, TENANT, ["ok"], 1)
    assert [q["body"] for q in receiver.requests] == [b"successful"]
    # Renders count in /metrics by outcome.
    assert sample(text, "herald_template_renders_total", plugin="loop", outcome="failed") == 1
    assert sample(text, "herald_template_renders_total", plugin="big", outcome="failed") == 1
    assert sample(text, "herald_template_renders_total", plugin="ok", outcome="ok") == 1


def test_each_shipped_sink_sends_exactly_the_user_s_template(make_host, tmp_path):
    """A user's template replaces the sink's default exactly: the strict fakes receive the
    rendered text as it is (Slack without blocks when only its text is given, or with exactly the
    rendered blocks; PagerDuty's summaries; Grafana's annotation texts)."""
    token, token_hash = token_pair()
    pd, slack, slack2, grafana = (FakePagerDuty(routing_key=ROUTING_KEY), FakeSlack(), FakeSlack(),
                                  FakeGrafana(token=GRAFANA_TOKEN, org_id=1))
    retry = {"initial_ms": 100, "max_ms": 1000, "max_attempts": 5}
    plugins = {
        "slack": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "slack.wasm"), "allow_http": [slack.url],
            "retry": retry, "config": {"webhook_url": slack.url + "/services/T1/B1/x", "mention": "<!here>"},
            "templates": {
                "failure_text": "FAIL {{ event.host }} {{ event.task }}",
                "summary_text": "{{ run.playbook }}|{{ run.status }}|{% for h in summary.failed_hosts %}"
                                "{{ h.host }}={{ h.tasks | map(attribute='task') | join('+') }};{% endfor %}",
            },
        },
        "slack2": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "slack.wasm"), "allow_http": [slack2.url],
            "retry": retry, "config": {"webhook_url": slack2.url + "/services/T1/B1/y", "failure_messages": False},
            "templates": {
                "summary_blocks": '[{"type": "section", "text": {"type": "mrkdwn", "text": '
                                  '{{ ("*" ~ run.playbook ~ "* " ~ run.status) | tojson }}}}]',
                # The user's run_url reaches the plugin's default summary_text.
                "run_url": "https://awx.example/#/jobs/{{ run.id }}",
            },
        },
        "pd": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "pagerduty.wasm"), "allow_http": [pd.url],
            "retry": retry,
            "config": {"routing_key": ROUTING_KEY, "events_url": pd.url + "/v2/enqueue",
                       "change_events_url": pd.url + "/v2/change/enqueue", "change_events": True},
            "templates": {
                "failure_summary": "{{ event.host }} broke '{{ event.task }}': {{ event.message }}",
                "change_summary": "{{ run.playbook }} {{ run.status }}, {{ summary.changed }} changed",
            },
        },
        "grafana": {
            "tenant": TENANT, "component": str(PLUGIN_DIR / "grafana.wasm"), "allow_http": [grafana.url],
            "retry": retry,
            "config": {"url": grafana.url, "api_token": GRAFANA_TOKEN, "org_id": 1, "failure_annotations": True},
            "templates": {
                "failure_text": "{{ event.host }}!",
                "run_text": "{{ run.playbook }} {{ run.status }} failed={{ summary.failed_hosts "
                            "| map(attribute='host') | join(',') }}",
            },
        },
    }
    host = make_host({TENANT: token_hash}, plugins)
    host.start()
    try:
        r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",),
                       record=tmp_path / "run.record")
        assert r.returncode == 2, r.stdout + r.stderr
        total = len((tmp_path / "run.record").read_text().split())
        wait_settled(host, TENANT, list(plugins), total)
        assert not (slack.errors or slack2.errors or pd.errors or grafana.errors)
        assert [(m["text"], "blocks" in m) for m in slack.messages] == [
            ("FAIL web2 Migrate the database", False),
            ("deploy.yml|failed|web2=Migrate the database;", False),
        ], slack.messages
        (summary,) = slack2.messages
        assert summary["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy.yml* failed"}}]
        # slack2 has no text template: its text is the default, naming the failed host and task.
        assert "• web2 failed: task 'Migrate the database': migration 42 failed on web2" in summary["text"]
        run_id = api(host, "GET", "/v1/runs", token)[1]["items"][0]["id"]
        assert summary["text"].rstrip().endswith("https://awx.example/#/jobs/" + run_id), summary["text"]
        triggers = [e for e in pd.events if e["event_action"] == "trigger"]
        assert [e["payload"]["summary"] for e in triggers] == \
            ["web2 broke 'Migrate the database': migration 42 failed on web2"]
        assert [c["payload"]["summary"] for c in pd.change_events] == ["deploy.yml failed, 1 changed"]
        assert sorted(a["text"] for a in grafana.annotations) == ["deploy.yml failed failed=web2", "web2!"]
    finally:
        for f in (pd, slack, slack2, grafana):
            f.stop()


def test_template_render_previews_a_recorded_run_without_sending(make_host, receiver, tmp_path):
    """`herald template render` prints what each template renders for a recorded run (over the
    query API, or from a file of events), sends nothing, and fails naming a broken template."""
    token, token_hash = token_pair()
    hook = webhook_plugin(TENANT, receiver, kinds=["playbook_on_stats"])
    hook["templates"] = {"body": SUMMARY, "broken": "{{ run.id | truncate(1) }}",
                         "run_url": "https://awx.example/#/jobs/{{ run.id }}"}
    host = make_host({TENANT: token_hash}, {"hook": hook})
    host.start()
    r = deploy_run(run_playbook, host, token, tmp_path / "run", fail_hosts=("web2",))
    assert r.returncode == 2, r.stdout + r.stderr
    wait_for(lambda: len(receiver.requests) >= 1, timeout=60, what="the summary")
    sent = [q["body"].decode() for q in receiver.requests]
    run_id = api(host, "GET", "/v1/runs", token)[1]["items"][0]["id"]
    env = {**os.environ, "HERALD_URL": host.url, "HERALD_TOKEN": token}

    def render(*args):
        return subprocess.run([str(HERALD_BIN), "template", "render", "--config", str(host.config_path),
                               "--plugin", "hook", *args], capture_output=True, text=True, timeout=60, env=env)

    p = render("--run", run_id, "--template", "body", "--kind", "playbook_on_stats")
    assert p.returncode == 0, p.stdout + p.stderr
    header, text = p.stdout.rstrip("\n").split("\n", 1)
    assert header.startswith("--- event ") and header.endswith(" playbook_on_stats · template body"), header
    # Exactly what the plugin sent for that event.
    assert text == sent[0], (text, sent)

    # The same run from a file of its events (NDJSON), every event, one line each.
    events = api(host, "GET", f"/v1/runs/{run_id}/events?limit=500", token)[1]["items"]
    (tmp_path / "events.ndjson").write_text("".join(json.dumps(e) + "\n" for e in events))
    p = render("--events", str(tmp_path / "events.ndjson"), "--template", "body")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("--- event ") == len(events)
    assert sent[0] in p.stdout
    assert "runner_on_failed web2 failed migration 42 failed on web2" in p.stdout

    # A sink's defaults are rendered too, marked so: a Slack instance with no templates (in a
    # copy of the config; it is only configured, nothing is sent).
    preview = tmp_path / "preview.toml"
    preview.write_text(host.config_path.read_text() + "\n" + toml_table("plugins.chat", {
        "tenant": TENANT, "component": str(PLUGIN_DIR / "slack.wasm"), "allow_http": ["http://127.0.0.1:9"],
        "config": {"webhook_url": "http://127.0.0.1:9/services/T/B/x"}}))
    p = subprocess.run([str(HERALD_BIN), "template", "render", "--config", str(preview), "--plugin", "chat",
                        "--events", str(tmp_path / "events.ndjson"), "--kind", "playbook_on_stats"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "playbook_on_stats · template summary_text (default)" in p.stdout, p.stdout
    assert "• web2 failed: task 'Migrate the database': migration 42 failed on web2" in p.stdout, p.stdout

    # Every event, no --kind: the default summary_text reads `summary`, which only the
    # end-of-run event has; on the others it is said so, not reported as a failure.
    p = subprocess.run([str(HERALD_BIN), "template", "render", "--config", str(preview), "--plugin", "chat",
                        "--events", str(tmp_path / "events.ndjson")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    # (summary_text and summary_blocks)
    assert p.stdout.count("(not rendered: it reads `summary`") == 2 * (len(events) - 1), p.stdout
    blocks = p.stdout.split("playbook_on_stats · template summary_blocks (default)\n", 1)[1].split("\n--- ", 1)[0]
    assert "```host" in json.dumps(json.loads(blocks)), blocks
    assert "• web2 failed: task 'Migrate the database'" in p.stdout, p.stdout

    # A template that fails is printed and makes the exit status 1, naming it.
    p = render("--run", run_id, "--template", "broken", "--kind", "playbook_on_stats")
    assert p.returncode == 1
    assert "template `broken`" in p.stdout + p.stderr and "truncate" in p.stdout + p.stderr, p.stdout + p.stderr
    # Nothing was sent by the previews.
    assert len(receiver.requests) == len(sent)


def test_slacks_default_blocks_of_a_big_run_stay_within_block_kit_limits(make_host, tmp_path):
    """Slack's default `summary_blocks` (a template the host renders) for a run of 300 hosts with
    long names, long failure messages holding mrkdwn's special characters and many set_stats
    values: the strict fake accepts it (Block Kit's limits), the table stops at `max_hosts`, and
    the text is escaped."""
    token, token_hash = token_pair()
    slack = FakeSlack()
    plugins = {"slack": {
        "tenant": TENANT, "component": str(PLUGIN_DIR / "slack.wasm"), "allow_http": [slack.url],
        "config": {"webhook_url": slack.url + "/services/T1/B1/z", "failure_messages": False,
                   "max_hosts": 100, "mention": "<!here>"}}}
    host = make_host({TENANT: token_hash}, plugins)
    host.start()
    try:
        run, names = "big-run", [f"host-{i:03}-{'x' * 60}" for i in range(300)]
        events = [{"uuid": "s", "event": "playbook_on_start", "counter": 1, "created": "2026-01-01T00:00:00",
                   "run_id": run, "event_data": {"playbook": "big.yml"}}]
        for i, n in enumerate(names):
            events.append({"uuid": f"f{i}", "event": "runner_on_failed", "counter": i + 2,
                           "created": "2026-01-01T00:00:01", "run_id": run,
                           "event_data": {"playbook": "big.yml", "host": n, "task": f"step <{i}> & more",
                                          "res": {"msg": "a < b & c > d " * 300}}})
        zero = {n: 0 for n in names}
        events.append({"uuid": "st", "event": "playbook_on_stats", "counter": len(names) + 2,
                       "created": "2026-01-01T00:10:00", "run_id": run,
                       "event_data": {"playbook": "big.yml", "ok": {n: 1 for n in names}, "changed": zero,
                                      "failures": {n: 1 for n in names}, "dark": zero, "skipped": zero,
                                      "artifact_data": {"_run": {f"key{k}": "v" * 500 for k in range(30)}}}})
        for i in range(0, len(events), 100):
            status, body = api(host, "POST", "/v1/events", token, events[i:i + 100])
            assert status == 202, body
        wait_for(lambda: slack.messages or slack.errors, timeout=60, what="the summary")
        assert not slack.errors, slack.errors
        (m,) = slack.messages
        blocks = m["blocks"]
        assert blocks[0]["text"]["text"] == "big.yml failed" and len(blocks) <= 50
        sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
        assert "<!here>" in sections
        table = next(s for s in sections if s.startswith("```host"))
        # 100 rows of 40-character names do not fit a section: it is cut, within the limit.
        assert len(table) <= 3000 and table.endswith("…"), table
        row = table.splitlines()[1]
        assert row.startswith("host-000-") and row.split()[1:] == ["1", "0", "1", "0", "0"], row
        assert len(row.split()[0]) == 40, row
        failures = next(s for s in sections if s.startswith("*Failures*"))
        assert "*step &lt;0&gt; &amp; more*: a &lt; b &amp; c &gt; d" in failures
        assert len(failures) <= 3000 and failures.count("\n• ") <= 10, failures
        assert any(s.startswith("*Custom stats*") for s in sections)
    finally:
        slack.stop()
