"""Registering a record's legal representatives (`dmp representatives`)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.identity import with_key

CHILD = with_key("2150575123456")


def _dmp(settings, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["representatives", *args], env={"DMP_HOME": str(settings.home)})


@pytest.mark.slow  # several dmp commands on a fresh index
def test_a_representative_is_registered_listed_and_withdrawn(embedded_settings):
    assert _dmp(embedded_settings, "add", CHILD, "parent-1").exit_code == 0
    assert _dmp(embedded_settings, "add", CHILD, "parent-2").exit_code == 0
    assert _dmp(embedded_settings, "add", CHILD, "parent-1").exit_code == 0  # again: nothing changes
    assert _dmp(embedded_settings, "list", CHILD).stdout.split() == ["parent-1", "parent-2"]
    assert _dmp(embedded_settings, "remove", CHILD, "parent-1").exit_code == 0
    assert _dmp(embedded_settings, "list", CHILD).stdout.split() == ["parent-2"]
    assert _dmp(embedded_settings, "remove", CHILD, "parent-1").exit_code == 1


def test_a_malformed_ins_or_id_is_refused_with_its_reason(embedded_settings):
    bad_ins = _dmp(embedded_settings, "add", CHILD[:13] + "00", "parent-1")
    assert bad_ins.exit_code == 2 and "INS" in bad_ins.output
    bad_id = _dmp(embedded_settings, "add", CHILD, "parent\n1")
    assert bad_id.exit_code == 2 and "representative id" in bad_id.output


def test_a_representative_finds_the_records_they_represent_and_no_other(rt):
    from pipeline.access.representatives import add_representative, represented_records

    other = with_key("1850575123456")
    with rt.sessions() as session:
        child = add_representative(session, CHILD, "parent-1")
        add_representative(session, other, "parent-2")
        assert represented_records(session, "parent-1") == [(child, CHILD)]
        assert represented_records(session, "nobody") == []
