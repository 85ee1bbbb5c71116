"""Source credentials: API keys made once, kept as keyed hashes, checked, scoped and revoked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.index.models import Source
from pipeline.sources import CredentialError, SourceError, SourceExists, SourceIdentity, add_source, authenticate, revoke_source


def _add(rt, source_id: str = "hospital:CHU-NICE") -> str:
    with rt.sessions() as session:
        return add_source(session, rt.hmac_secret, source_id)


def _auth(rt, key: str) -> SourceIdentity:
    with rt.sessions() as session:
        return authenticate(session, rt.hmac_secret, key)


def test_a_new_key_authenticates_as_its_source(rt):
    key = _add(rt, "lab:BIO-01")
    assert key.startswith("dmpk_")
    assert _auth(rt, key) == SourceIdentity("lab:BIO-01", "lab")


def test_only_a_keyed_hash_of_the_secret_is_stored(rt):
    key = _add(rt)
    secret = key.split("_", 2)[2]
    with rt.sessions() as session:
        row = session.get(Source, "hospital:CHU-NICE")
    assert secret not in (row.secret_hash, row.key_id) and len(row.secret_hash) == 64


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        lambda key: "dmpk_0000000000000000_" + key.split("_", 2)[2],  # unknown key id
        lambda key: key.split("_", 2)[0] + "_" + key.split("_", 2)[1],  # no secret
        lambda key: "eyJhbGciOiJFZERTQSJ9.e30.c2ln",  # a JWT is not an API key
        lambda key: key + "x" * 300,  # absurdly long
    ],
)
def test_a_wrong_key_is_refused(rt, mangle):
    key = _add(rt)
    with pytest.raises(CredentialError):
        _auth(rt, mangle(key))


def test_a_revoked_key_is_refused_and_a_new_one_replaces_it(rt):
    old = _add(rt)
    with rt.sessions() as session:
        assert revoke_source(session, "hospital:CHU-NICE") is True
        assert revoke_source(session, "hospital:CHU-NICE") is False
    with pytest.raises(CredentialError):
        _auth(rt, old)
    new = _add(rt)
    assert _auth(rt, new).id == "hospital:CHU-NICE"
    with pytest.raises(CredentialError):
        _auth(rt, old)


def test_a_source_has_one_active_key_at_a_time(rt):
    _add(rt)
    with pytest.raises(SourceExists):
        _add(rt)


def test_a_source_id_must_be_kind_colon_id(rt):
    with pytest.raises(SourceError):
        _add(rt, "bank:X")


def test_hospitals_and_labs_submit_documents_and_the_insurer_feeds():
    assert SourceIdentity("hospital:A", "hospital").may_submit("documents")
    assert SourceIdentity("lab:A", "lab").may_submit("documents")
    assert not SourceIdentity("lab:A", "lab").may_submit("feeds")
    assert SourceIdentity("insurer:A", "insurer").may_submit("feeds")
    assert not SourceIdentity("insurer:A", "insurer").may_submit("documents")


def test_dmp_sources_add_prints_the_key_once_and_list_never_shows_it(embedded_settings):
    from pipeline.cli import app

    runner = CliRunner()
    env = {"DMP_HOME": str(embedded_settings.home)}
    added = runner.invoke(app, ["sources", "add", "insurer:CNAM"], env=env)
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("dmpk_") and "\n" not in key
    listed = runner.invoke(app, ["sources", "list"], env=env)
    assert "insurer:CNAM" in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    assert runner.invoke(app, ["sources", "add", "insurer:CNAM"], env=env).exit_code == 2
    assert runner.invoke(app, ["sources", "revoke", "insurer:CNAM"], env=env).exit_code == 0
    assert runner.invoke(app, ["sources", "revoke", "insurer:CNAM"], env=env).exit_code == 1
