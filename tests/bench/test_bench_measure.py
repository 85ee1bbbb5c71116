"""The benchmarks' outside measurements (bench/measure.py) count what they claim to count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import boto3
import psycopg
import pytest

from bench.measure import ProcessTeam, RequestLog, RoundTripProxy, cpu_seconds, statement_kind
from infra.services import MotoServer, PostgresDatabase, free_port

pytestmark = pytest.mark.slow  # starts servers and process teams


@pytest.fixture
def proxied_postgres():
    server = PostgresDatabase().server_url
    try:
        psycopg.connect(server, connect_timeout=5).close()
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server")
    upstream = int(server.rsplit("/", 1)[0].rsplit(":", 1)[1])
    proxy = RoundTripProxy(free_port(), upstream)
    proxy.start()
    yield proxy, server.replace(f":{upstream}/", f":{proxy.port}/")
    proxy.stop()


def test_each_statement_sent_alone_is_one_round_trip_and_a_pipelined_burst_is_one(proxied_postgres):
    proxy, url = proxied_postgres
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
        before = proxy.round_trips
        for n in range(3):
            connection.execute("SELECT %s::int", [n])
        alone = proxy.round_trips - before
        before = proxy.round_trips
        with connection.pipeline():
            for n in range(3):
                connection.execute("SELECT %s::int", [n])
        pipelined = proxy.round_trips - before
    assert (alone, pipelined) == (3, 1)
    assert proxy.connections == 1


def test_request_log_counts_requests_on_one_bucket_by_method(tmp_path):
    moto = MotoServer(log=tmp_path / "moto.log")
    moto.start()
    try:
        client = boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
        for bucket in ("counted", "other"):
            client.create_bucket(Bucket=bucket)
        log = RequestLog(moto.log)  # type: ignore[arg-type]
        since = log.mark()
        client.put_object(Bucket="counted", Key="inbox/a b", Body=b"1")
        client.get_object(Bucket="counted", Key="inbox/a b")["Body"].read()
        client.delete_object(Bucket="counted", Key="inbox/a b")
        with pytest.raises(client.exceptions.ClientError):
            client.head_object(Bucket="counted", Key="missing")
        client.put_object(Bucket="other", Key="x", Body=b"2")
        counts = log.count(since, "counted")
    finally:
        moto.stop()
    assert counts == {"PUT": 1, "GET": 1, "DELETE": 1, "HEAD": 1, "errors": 1}


def test_cpu_of_a_process_tree_includes_children_it_has_reaped():
    child = (
        "import resource, time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(usage.ru_utime + usage.ru_stime)\n"
    )
    parent = (
        "import subprocess, sys\n"
        f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True).stdout, flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", parent], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child_seconds = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        # /proc counts in clock ticks (10 ms), the child's getrusage in microseconds: each of the child's user and
        # system times may read one tick short. Without the reaped child the parent's own ~0.03 s would be read.
        assert cpu_seconds(process.pid) >= child_seconds - 2 / os.sysconf("SC_CLK_TCK")
    finally:
        process.communicate("")


def test_a_statements_kind_is_its_first_keyword_after_comments():
    assert statement_kind("/* pool */ select 1") == "SELECT"
    assert statement_kind("-- x\nWITH t AS (SELECT 1) UPDATE y SET z = 1") == "WITH"
    assert statement_kind(f"COMMIT -- {uuid.uuid4()}") == "COMMIT"


def _doubles(value, ready, go, results, leave) -> None:  # type: ignore[no-untyped-def]
    ready.set()
    go.wait()
    if value < 0:
        raise ValueError("a floor process that fails")
    results.put(value * 2)
    leave.wait()


def test_a_process_team_starts_together_and_gathers_one_result_each():
    team = ProcessTeam(_doubles, [(1,), (2,)])
    try:
        team.start()
        assert team.results.empty()  # nothing before `go`
        team.go.set()
        assert sorted(team.gather(timeout=60)) == [2, 4]
    finally:
        team.close()


def test_a_process_team_fails_as_soon_as_a_process_dies_without_its_result():
    team = ProcessTeam(_doubles, [(1,), (-1,)])
    try:
        team.start()
        team.go.set()
        with pytest.raises(RuntimeError, match="exit code"):
            team.gather(timeout=60)
    finally:
        team.close()
