"""`dmp demo` walks through ingestion and the consented-reads scenario over real HTTP."""

import stat

import pytest
from typer.testing import CliRunner

from pipeline.cli import app


@pytest.mark.slow  # ingests a batch and serves the API over real HTTP
def test_the_demo_shows_each_step_of_the_scenario(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--documents", "24", "--patients", "3"], env={"DMP_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    for line in (
        "patient lists the record: 200",
        "physician 10000000001 looks the record up by INS",
        "open, access {'allowed': False, 'reason': 'not_in_care_team'}, attending physician: False",
        "the same lookup now answers: access {'allowed': True, 'reason': None}",
        "the same as for an INS without a record",
        "authorized physician 10000000001 reads a document: 200",
        "blocked professional 10000000002: 403 blocked",
        "an insurer (never allowed, not even to learn the record exists): 404 not_found",
        "emergency access by 10000000003",
        "the patient is told at once (log): Accès d'urgence à votre dossier",
        "patient reads the access log: 200",
        "emergency_read     allowed emergency_override EMERGENCY: patient unconscious after a road accident",
        "replaces its report",
        "(version_action=replace): 202, indexed",
        "version 1: superseded",
        "version 2: current",
        "the patient adds advance directives: 202, indexed as class 90 EXPPAT_3",
        "reads it: 200, blood group O-",
        "Nouveaux documents dans votre dossier",
        "local log sink",
        "Portal: http://127.0.0.1:",
        "physician RPPS 10000000002",
    ):
        assert line in result.output
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700  # it holds the demo's index: owner only
