"""herald-ship: send spooled Herald events without running a playbook (for cron or a systemd timer).

Settings come from the command line, else the HERALD_* environment variables, else the
``[callback_herald]`` section of the ansible.cfg Ansible would use (ANSIBLE_CONFIG,
./ansible.cfg, ~/.ansible.cfg, /etc/ansible/ansible.cfg).

Exit status: 0 everything sent, 1 events left in the spool (host unreachable or busy),
2 usage error, 3 the host refused the token (events stay spooled) or a batch (moved to a
quarantine file, see the message).

Quarantined events (refused by the host with a 4xx other than 401/403) are never sent again
by themselves: `--list-quarantined` shows them, `--requeue RUN_ID` moves a run's quarantined
events back into the spool (and sends them when a URL is set).
"""

from __future__ import annotations

import argparse
import configparser
import os
import random
import sys
import time

from herald_ansible.quarantine import quarantined_runs, requeue_quarantined
from herald_ansible.shipper import Shipper
from herald_ansible.spool import default_spool_dir, spool_files


def _ansible_cfg_section() -> dict:
    candidates = []
    if os.environ.get("ANSIBLE_CONFIG"):
        p = os.path.expanduser(os.environ["ANSIBLE_CONFIG"])
        candidates.append(os.path.join(p, "ansible.cfg") if os.path.isdir(p) else p)
    candidates += [os.path.join(os.getcwd(), "ansible.cfg"), os.path.expanduser("~/.ansible.cfg"),
                   "/etc/ansible/ansible.cfg"]
    for path in candidates:
        if not os.path.isfile(path):
            continue
        cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",), strict=False)
        try:
            cp.read(path, encoding="utf-8")
        except (configparser.Error, OSError):
            return {}
        if not cp.has_section("callback_herald"):
            return {}
        out = {}
        for k, v in cp.items("callback_herald"):
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            out[k] = v
        return out
    return {}


def _setting(args_value, env_name, cfg, key, default=None):
    if args_value is not None:
        return args_value
    if os.environ.get(env_name):
        return os.environ[env_name]
    if cfg.get(key):
        return cfg[key]
    return default


def _list_quarantined(spool_dir: str, quiet: bool) -> int:
    runs = quarantined_runs(spool_dir)
    if not runs:
        if not quiet:
            print("herald-ship: no quarantined events in %s" % spool_dir)
        return 0
    print("%-36s %7s %6s  %s" % ("RUN ID", "EVENTS", "STATUS", "FILE / LAST ERROR"))
    for q in runs:
        err = q["error"]
        if isinstance(err, dict):
            err = err.get("message") or err.get("error") or err
        print("%-36s %7d %6s  %s" % (q["run_id"], q["events"], q["status"] if q["status"] is not None else "-",
                                      q["path"]))
        if err:
            print("%-36s %7s %6s  %s" % ("", "", "", str(err)[:200]))
    print("herald-ship: send a run's events again with: herald-ship --requeue RUN_ID")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="herald-ship",
        description="Send the events spooled by Herald's Ansible callback to the Herald host, oldest run first.",
        epilog="Settings default to HERALD_URL, HERALD_TOKEN, HERALD_SPOOL_DIR, ... then to [callback_herald] in ansible.cfg.",
    )
    p.add_argument("--url", help="Herald host base URL (HERALD_URL)")
    p.add_argument("--token", help="tenant token (HERALD_TOKEN)")
    p.add_argument("--spool-dir", help="spool directory (HERALD_SPOOL_DIR; default %s)" % default_spool_dir())
    p.add_argument("--timeout", type=float, help="seconds per HTTP request (HERALD_TIMEOUT, default 10)")
    p.add_argument("--max-time", type=float, default=60.0,
                   help="give up retrying after this many seconds (default 60); what is unsent stays spooled")
    p.add_argument("--batch-max-events", type=int, help="events per request (HERALD_BATCH_MAX_EVENTS, default 500)")
    p.add_argument("--batch-max-bytes", type=int, help="bytes per request (HERALD_BATCH_MAX_BYTES, default 1 MiB)")
    p.add_argument("--spool-max-bytes", type=int, help="spool cap (HERALD_SPOOL_MAX_BYTES, default 256 MiB)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.add_argument("--list-quarantined", action="store_true",
                   help="list the quarantined runs (events the host refused; never sent again by themselves) and exit")
    p.add_argument("--requeue", metavar="RUN_ID", action="append", default=[],
                   help="move the quarantined events of RUN_ID back into the spool, then ship (repeatable)")
    a = p.parse_args(argv)

    cfg = _ansible_cfg_section()
    url = _setting(a.url, "HERALD_URL", cfg, "url")
    token = _setting(a.token, "HERALD_TOKEN", cfg, "token", "")
    spool_dir = _setting(a.spool_dir, "HERALD_SPOOL_DIR", cfg, "spool_dir") or default_spool_dir()
    spool_dir = os.path.expandvars(os.path.expanduser(spool_dir))
    try:
        timeout = float(_setting(a.timeout, "HERALD_TIMEOUT", cfg, "timeout", 10.0))
        bme = int(_setting(a.batch_max_events, "HERALD_BATCH_MAX_EVENTS", cfg, "batch_max_events", 500))
        bmb = int(_setting(a.batch_max_bytes, "HERALD_BATCH_MAX_BYTES", cfg, "batch_max_bytes", 1048576))
        smb = int(_setting(a.spool_max_bytes, "HERALD_SPOOL_MAX_BYTES", cfg, "spool_max_bytes", 256 * 1024 * 1024))
    except ValueError as e:
        print("herald-ship: bad setting: %s" % e, file=sys.stderr)
        return 2
    if a.list_quarantined:
        return _list_quarantined(spool_dir, a.quiet)
    for run_id in a.requeue:
        try:
            moved = requeue_quarantined(spool_dir, run_id)
        except OSError as e:
            print("herald-ship: cannot requeue run %s: %s" % (run_id, e), file=sys.stderr)
            return 1
        if not moved:
            print("herald-ship: no quarantined events of run %s in %s" % (run_id, spool_dir), file=sys.stderr)
            return 2
        for _src, dst, n in moved:
            print("herald-ship: run %s: %d quarantined event(s) moved back to %s" % (run_id, n, dst))
    if a.requeue and not url:
        print("herald-ship: requeued; they are sent by the next run or herald-ship --url URL")
        return 0
    if not url:
        print("herald-ship: no URL (use --url, HERALD_URL or [callback_herald] url in ansible.cfg)", file=sys.stderr)
        return 2
    if not os.path.isdir(spool_dir):
        if not a.quiet:
            print("herald-ship: nothing to send (%s does not exist)" % spool_dir)
        return 0

    sh = Shipper(url, token, spool_dir, batch_max_events=bme, batch_max_bytes=bmb, timeout=timeout,
                   spool_max_bytes=smb)
    deadline = time.monotonic() + max(0.0, a.max_time)
    backoff = 0.0
    try:
        sh.enforce_cap()
    except OSError as e:
        print("herald-ship: spool cap check failed: %s" % e, file=sys.stderr)
    while True:
        res = sh.ship_all(deadline=deadline)
        if res.remaining == 0 or res.fatal:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        backoff = min(max(backoff * 2, 0.5), 30.0)
        delay = backoff * (0.75 + random.random() / 2)
        if res.retry_after is not None:
            delay = max(delay, min(res.retry_after, 30.0))
        time.sleep(min(delay, left))

    for msg in sh.warnings:
        print(msg.replace("herald: ", "herald-ship: ", 1), file=sys.stderr)
    if sh.auth_failed:
        print("herald-ship: the host at %s refused the token (%s); nothing more was sent and every spooled "
              "event stays in %s: check HERALD_TOKEN (or --token, [callback_herald] token)"
              % (url, sh.auth_error, spool_dir), file=sys.stderr)
    left_runs = len(spool_files(spool_dir))
    if not a.quiet or res.remaining:
        print("herald-ship: sent %d event(s) in %d request(s); quarantined %d; dropped %d; %d spooled run(s) left"
              % (sh.total_sent, sh.requests, sh.total_quarantined, sh.total_dropped, left_runs),
              file=sys.stderr if res.remaining else sys.stdout)
    if res.remaining and sh.last_error and not sh.auth_failed:
        print("herald-ship: last error: %s" % sh.last_error, file=sys.stderr)
    if sh.total_quarantined or res.fatal:
        return 3
    return 1 if res.remaining else 0


if __name__ == "__main__":
    sys.exit(main())
