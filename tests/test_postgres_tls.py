"""TLS to PostgreSQL (issue 25): `[storage] url`'s `sslmode` takes libpq's values and
`tls_ca_file` trusts a private CA. A real PostgreSQL from Debian serving TLS only (plain
connections refused by pg_hba), with certificates made by the openssl CLI for the test."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import HERALD_BIN, Host, PgServer, token_pair, wait_for


def openssl(*args: str, cwd: Path):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory):
    """A CA, a server certificate for IP 127.0.0.1 (not for `localhost`), and a server
    that accepts only TLS."""
    d = tmp_path_factory.mktemp("pg-tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Herald test CA", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    # Another CA, which signed nothing the server has.
    openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other.pem", "-days", "2",
            "-subj", "/CN=Another CA", cwd=d)
    server = PgServer(tls=(d / "server.crt", d / "server.key"))
    yield server, d
    server.stop()


def check(tmp_path: Path, url: str, ca: Path | None) -> subprocess.CompletedProcess:
    config = tmp_path / "herald.toml"
    lines = ['[storage]', 'backend = "postgres"', f'url = "{url}"', 'data_dir = "data"']
    if ca is not None:
        lines.append(f'tls_ca_file = "{ca}"')
    config.write_text("\n".join(lines) + "\n")
    return subprocess.run([str(HERALD_BIN), "check", "--config", str(config)], capture_output=True, text=True,
                          timeout=60)


def test_sslmode_and_the_ca_decide_what_is_trusted(tls_pg, tmp_path):
    pg, certs = tls_pg
    db = pg.database("tls_" + uuid.uuid4().hex[:8])  # postgres://herald@127.0.0.1:PORT/NAME
    # verify-full with the CA: the chain and the name (IP 127.0.0.1) hold.
    ok = check(tmp_path, db + "?sslmode=verify-full", certs / "ca.pem")
    assert ok.returncode == 0, ok.stderr
    # Without the CA (only the public roots), or with another CA: refused, saying why.
    for ca in (None, certs / "other.pem"):
        bad = check(tmp_path, db + "?sslmode=verify-full", ca)
        assert bad.returncode == 1 and "storage.url: cannot use the database" in bad.stderr, bad.stderr
        assert "error performing TLS handshake: invalid peer certificate: UnknownIssuer" in bad.stderr, bad.stderr
    # The certificate is for 127.0.0.1, not `localhost`: verify-full refuses, verify-ca accepts.
    by_name = db.replace("@127.0.0.1:", "@localhost:")
    bad = check(tmp_path, by_name + "?sslmode=verify-full", certs / "ca.pem")
    assert bad.returncode == 1 and 'certificate not valid for name "localhost"' in bad.stderr, bad.stderr
    assert check(tmp_path, by_name + "?sslmode=verify-ca", certs / "ca.pem").returncode == 0
    # require and prefer encrypt without checking the certificate (as libpq without a root file).
    for mode in ("require", "prefer", None):
        url = db + (f"?sslmode={mode}" if mode else "")
        r = check(tmp_path, url, None)
        assert r.returncode == 0, (mode, r.stderr)
    # disable: a plain connection, which this server refuses.
    plain = check(tmp_path, db + "?sslmode=disable", None)
    assert plain.returncode == 1 and "no encryption" in plain.stderr, plain.stderr
    # An unknown sslmode and a file that is not a certificate are located configuration problems.
    r = check(tmp_path, db + "?sslmode=verify", None)
    assert r.returncode == 1 and "storage.url: sslmode `verify`: expected one of disable, allow, prefer, " \
        "require, verify-ca, verify-full" in r.stderr, r.stderr
    r = check(tmp_path, db + "?sslmode=verify-full", certs / "ext.cnf")
    assert r.returncode == 1 and "storage.tls_ca_file: " in r.stderr and "ext.cnf" in r.stderr, r.stderr


def test_a_host_ingests_and_delivers_over_tls(tls_pg, tmp_path):
    pg, certs = tls_pg
    db = pg.database("tls_host_" + uuid.uuid4().hex[:8])
    token, token_hash = token_pair()
    storage = (f'[storage]\nbackend = "postgres"\nurl = "{db}?sslmode=verify-full"\n'
               f'tls_ca_file = "{certs / "ca.pem"}"\ndata_dir = "data"\n')
    host = Host(tmp_path, {"ops": token_hash}, {}, storage=storage).start()
    try:
        run = str(uuid.uuid4())
        events = [{"uuid": str(uuid.uuid4()), "event": "runner_on_ok", "counter": i, "run_id": run,
                   "created": "2026-12-06T10:00:00+00:00",
                   "event_data": {"playbook": "tls.yml", "host": "h1", "res": {"n": i}}} for i in range(1, 6)]
        status, body = host.post(json.dumps(events).encode(), token)
        assert status == 202, body
        name = db.rsplit("/", 1)[1]
        assert pg.psql(f"SELECT count(*) FROM events WHERE run_id = '{run}'", db=name) == "5"
        # Every connection Herald holds to the database is encrypted.
        # Each role's connection names itself (docs/configuration.md).
        herald = ("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                  "WHERE a.application_name LIKE 'herald%%' AND a.datname = '%s'" % name)
        roles = ("SELECT string_agg(DISTINCT application_name, ',' ORDER BY application_name) "
                 "FROM pg_stat_activity WHERE application_name LIKE 'herald%%' AND datname = '%s'" % name)
        # The outcomes writer connects at its first outcome (this host has no plugin).
        known = {"herald", "herald-ingest", "herald-listen", "herald-outcomes"}
        wait_for(lambda: {"herald", "herald-ingest", "herald-listen"} <= set(pg.psql(roles).split(",")),
                 what="the ingest writer's, the listener's and the pool's connections")
        assert set(pg.psql(roles).split(",")) <= known
        assert pg.psql(herald + " AND NOT s.ssl") == "0"
    finally:
        host.kill()
