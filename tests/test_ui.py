"""The web UI in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium) against a real `herald serve`, a real ansible-playbook run and the real webhook
plugin: sign in, find the failed run, see its failed host and task, open an event, open a
delivery attempt and see the request and the sink's answer, retry a dead letter and see it
delivered; tenant B cannot reach tenant A's pages by URL; a form without its CSRF token is
refused. Each page's screenshot is saved under the test's tmp dir (not committed)."""
from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import api, token_pair, wait_for, webhook_plugin, run_playbook

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from plugin_sinks import deploy_run  # noqa: E402

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
SINK_DOWN = (500, {"Content-Type": "application/json"}, b'{"error":"database is down"}')


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        if os.environ.get("CI"):
            raise AssertionError("CI needs Debian's chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Pages:
    """The browser on one Herald, saving a screenshot of each page it checks."""

    def __init__(self, driver, base: str, shots: Path):
        self.d, self.base, self.shots = driver, base, shots
        shots.mkdir(parents=True, exist_ok=True)

    def go(self, path: str):
        self.d.get(self.base + path)

    def shot(self, name: str):
        self.d.save_screenshot(str(self.shots / f"{name}.png"))

    def text(self) -> str:
        return self.d.find_element(By.TAG_NAME, "body").text

    def sign_in(self, token: str):
        self.d.delete_all_cookies()
        self.go("/runs")
        assert "/login" in self.d.current_url, self.d.current_url
        self.d.find_element(By.ID, "token").send_keys(token)
        self.d.find_element(By.ID, "sign-in").click()
        wait_for(lambda: "/runs" in self.d.current_url and "/login" not in self.d.current_url,
                 timeout=10, what="the runs list after signing in")


def dead_letters(host, token) -> dict:
    """A tenant's dead letters (all of them), (event id, plugin) -> attempts."""
    status, body = api(host, "GET", "/v1/dead-letters?limit=500", token)
    assert status == 200, body
    return {(d["event_id"], d["plugin"]): d["attempts"] for d in body["items"]}


def test_ui_end_to_end(make_host, receiver, tmp_path, browser):
    ta, ha = token_pair()
    tb, hb = token_pair()
    hook = webhook_plugin("alpha", receiver)
    hook["retry"] = {"initial_ms": 100, "max_ms": 200, "max_attempts": 1}
    host = make_host({"alpha": ha, "bravo": hb}, {"hook": hook}).start()
    receiver.default = SINK_DOWN
    # Tenant A's failed run (web2 fails the migration), every delivery refused by the sink.
    run = deploy_run(run_playbook, host, ta, tmp_path / "alpha", fail_hosts=("web2",))
    assert run.returncode != 0, run.stdout
    wait_for(lambda: len(api(host, "GET", "/v1/dead-letters", ta)[1].get("items", [])) >= 5,
             timeout=60, what="the refused deliveries to be dead letters")
    # Tenant B's own run, so its list is not empty.
    shutil.copy(tmp_path / "alpha" / "deploy.yml", tmp_path / "bravo.yml")
    (tmp_path / "bravo-inv.ini").write_text("web9 ansible_connection=local\n")
    run_playbook(Path("bravo.yml"), tmp_path / "bravo-inv.ini", host, tb, tmp_path,
                 extra_env={"DEPLOY_FAIL_HOSTS": ""})
    runs = api(host, "GET", "/v1/runs", ta)[1]["items"]
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    run_id = runs[0]["id"]

    p = Pages(browser, host.url, tmp_path / "screenshots")
    # Sign in; the list shows tenant A's failed run only.
    p.go("/runs")
    p.shot("01-sign-in")
    p.sign_in(ta)
    p.shot("02-runs")
    assert "deploy.yml" in p.text() and "bravo.yml" not in p.text()
    # Find the failed run with the status filter, open it.
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element(By.CSS_SELECTOR, "form.filters select[name=status]")).select_by_visible_text("failed")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait_for(lambda: "status=failed" in browser.current_url, timeout=10, what="the filtered list")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.run")
    assert len(rows) == 1 and "failed" in rows[0].text, [r.text for r in rows]
    rows[0].find_element(By.CSS_SELECTOR, "td:nth-child(2) a").click()
    wait_for(lambda: f"/runs/{run_id}" in browser.current_url, timeout=10, what="the run page")
    p.shot("03-run")
    assert browser.find_element(By.ID, "status").text == "failed"
    failures = browser.find_elements(By.CSS_SELECTOR, "tr.failure")
    assert failures, p.text()
    first = failures[0].text
    assert "web2" in first and "Migrate the database" in first and "migration 42 failed on web2" in first, first
    recap_bad = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.recap tr.bad")]
    assert len(recap_bad) == 1 and recap_bad[0].startswith("web2"), recap_bad
    assert "release" in p.text() and "2.0.1" in p.text(), "set_stats shown"
    # Open the failed result's event.
    failures[0].find_element(By.CSS_SELECTOR, "a.event-link").click()
    wait_for(lambda: "/events/" in browser.current_url, timeout=10, what="the event page")
    p.shot("04-event")
    event_json = browser.find_element(By.ID, "event-json").text
    assert "runner_on_failed" in event_json and "migration 42 failed on web2" in event_json
    # A delivery attempt: what the webhook sent and what the sink answered.
    p.go("/dead-letters")
    p.shot("05-dead-letters")
    dead = browser.find_elements(By.CSS_SELECTOR, "tr.dead-letter")
    assert len(dead) >= 5
    attempts_url = dead[0].find_element(By.CSS_SELECTOR, "a.attempts-link").get_attribute("href")
    browser.get(attempts_url)
    p.shot("06-attempt")
    req = browser.find_element(By.CSS_SELECTOR, "table.requests tbody tr").text
    assert f"POST http://127.0.0.1:{receiver.port}/hook" in req and "500" in req, req
    assert "database is down" in browser.find_element(By.CSS_SELECTOR, ".sink-answer").text
    message = browser.find_element(By.CSS_SELECTOR, ".plugin-message").text
    assert "gave up after 1 attempts" in message and "HTTP 500" in message, message
    # A form without its CSRF token is refused, and retries nothing: every dead letter is still
    # dead with the attempts it had. More may die meanwhile: after 5 failures in a row the
    # instance's breaker pauses it (5 s, then longer), and each probe at the end of a pause
    # dead-letters one more of the run's events, so the test compares dead letters, not counts.
    p.go("/dead-letters")
    target = int(browser.find_element(By.CSS_SELECTOR, "tr.dead-letter input[name=event_id]").get_attribute("value"))
    before = dead_letters(host, ta)
    assert (target, "hook") in before, (target, before)
    browser.execute_script(
        "const f = document.querySelector('tr.dead-letter form');"
        "f.querySelector('input[name=csrf]').remove(); f.submit();")
    wait_for(lambda: "CSRF" in p.text(), timeout=10, what="the CSRF refusal")
    p.shot("07-csrf-refused")
    assert "403" in p.text()
    after = dead_letters(host, ta)
    assert {k: after.get(k) for k in before} == before, "a refused form retried a dead letter"
    # The sink is back: retry one dead letter and see it delivered.
    receiver.default = (200, {}, b'{"ok":true}')
    p.go("/dead-letters")
    row = browser.find_elements(By.CSS_SELECTOR, "tr.dead-letter")[0]
    retried = (int(row.find_element(By.CSS_SELECTOR, "input[name=event_id]").get_attribute("value")), "hook")
    others = dead_letters(host, ta)
    others.pop(retried, None)
    attempts_url = row.find_element(By.CSS_SELECTOR, "a.attempts-link").get_attribute("href")
    row.find_element(By.CSS_SELECTOR, "button.retry").click()
    wait_for(lambda: browser.find_elements(By.ID, "notice"), timeout=10, what="the retry notice")
    assert "1 dead letter(s) of hook queued again" in browser.find_element(By.ID, "notice").text
    p.shot("08-retried")

    def delivered():
        browser.get(attempts_url)
        return [a.text for a in browser.find_elements(By.CSS_SELECTOR, "section.attempt h2") if " ok" in a.text]

    wait_for(delivered, timeout=30, interval=0.5, what="the retried delivery to succeed")
    p.shot("09-delivered")
    assert "200" in browser.find_elements(By.CSS_SELECTOR, "section.attempt")[-1].text
    # The retried one is no longer a dead letter; every other still is.
    after = dead_letters(host, ta)
    assert retried not in after
    assert {k: after.get(k) for k in others} == others
    # The same attempts through the API.
    uuid = attempts_url.rsplit("/", 1)[1]
    status, body = api(host, "GET", f"/v1/deliveries/hook/{uuid}/attempts", ta)
    assert status == 200 and [a["outcome"] for a in body["attempts"]] == ["dead", "ok"], body
    assert body["attempts"][0]["requests"][0]["status"] == 500
    # Plugins and search pages.
    p.go("/plugins")
    p.shot("10-plugins")
    plugin_row = browser.find_element(By.CSS_SELECTOR, "table.plugins tbody tr").text
    assert plugin_row.startswith("hook") and "running" in plugin_row, plugin_row
    p.go("/search?q=migrate")
    p.shot("11-search")
    assert "Migrate the database" in p.text()
    # Tenant B signed in reaches none of tenant A's pages by URL.
    p.sign_in(tb)
    assert "bravo.yml" in p.text() and "deploy.yml" not in p.text()
    for path in (f"/runs/{run_id}", f"/events/{uuid}", "/hosts/web2", f"/deliveries/hook/{uuid}"):
        p.go(path)
        assert "404" in p.text(), (path, p.text())
    p.shot("12-tenant-b-refused")
    p.go("/dead-letters")
    assert not browser.find_elements(By.CSS_SELECTOR, "tr.dead-letter")
    # Signing out ends the session.
    browser.find_element(By.ID, "sign-out").click()
    # The click only starts the form's POST: wait for its redirect, or the next `get`
    # can cancel it before the server has ended the session (a CI run failed that way).
    wait_for(lambda: "/login" in browser.current_url, timeout=10, what="the sign-out redirect")
    p.go("/runs")
    assert "/login" in browser.current_url
    # The pages are observed like the API: HTTP metrics by route template.
    with urllib.request.urlopen(host.url + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'route="/runs/{id}"' in metrics and 'route="/search"' in metrics, \
        [line for line in metrics.splitlines() if line.startswith("herald_http_requests_total")]
