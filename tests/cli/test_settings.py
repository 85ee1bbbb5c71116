"""Settings errors as the operator sees them."""

from __future__ import annotations

import pytest

from pipeline.cli import main


def test_an_invalid_setting_stops_dmp_with_one_line_naming_it_and_not_its_value(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DMP_API_THREADS", "-12345")
    with pytest.raises(SystemExit) as stopped:
        main(["notify", "run"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.startswith("error: invalid configuration: DMP_API_THREADS:") and "-12345" not in err and len(err.splitlines()) == 1
