"""The access matrix file (pipeline/access/matrix.py, data/access_matrix.csv): what loads, what is refused
with its line number, which row wins, and the shipped file's choices that docs/domain.md rule 7 names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.access.matrix import MATRIX_PATH, default_matrix, load_matrix

HEADER = "profession,specialty,class_code,type_code,effect,note\n"


def matrix_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "matrix.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def test_shipped_matrix_loads_and_covers_every_profession() -> None:
    matrix = load_matrix(MATRIX_PATH)
    assert {"physician", "pharmacist", "nurse", "physiotherapist", "dentist", "midwife", "podiatrist", "lab_biologist"} <= matrix.subjects
    assert "radiographer" in matrix.subjects
    assert default_matrix() is default_matrix()


def test_shipped_matrix_dentist_does_not_read_advance_directives() -> None:
    assert default_matrix().allows("dentist", None, "90", "EXPPAT_3") is False


def test_shipped_matrix_podiatrist_does_not_read_stay_reports() -> None:
    assert default_matrix().allows("podiatrist", None, "10", "34112-3") is False


def test_matrix_unknown_profession_names_the_line(tmp_path: Path) -> None:
    path = matrix_file(tmp_path, "physician,,10,,allow,\nastrologer,,10,,allow,\n")
    with pytest.raises(ValueError, match=r":3: unknown profession 'astrologer'"):
        load_matrix(path)


def test_matrix_unknown_class_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r":2: unknown class '77'"):
        load_matrix(matrix_file(tmp_path, "nurse,,77,,allow,\n"))


def test_matrix_type_of_another_class_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r":2: unknown type 'EXPPAT_3' for class 10"):
        load_matrix(matrix_file(tmp_path, "nurse,,10,EXPPAT_3,deny,\n"))


def test_matrix_duplicate_row_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r":3: duplicate row"):
        load_matrix(matrix_file(tmp_path, "nurse,,10,,allow,\nnurse,,10,,deny,\n"))


def test_matrix_bad_effect_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r":2: effect must be allow or deny"):
        load_matrix(matrix_file(tmp_path, "nurse,,10,,maybe,\n"))


def test_matrix_bad_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("who,class\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r":1: header"):
        load_matrix(path)


def test_matrix_type_row_overrides_class_row(tmp_path: Path) -> None:
    matrix = load_matrix(matrix_file(tmp_path, "nurse,,10,,allow,\nnurse,,10,34874-8,deny,\n"))
    assert matrix.allows("nurse", None, "10", "11488-4") is True
    assert matrix.allows("nurse", None, "10", "34874-8") is False


def test_matrix_specialty_row_overrides_profession_row(tmp_path: Path) -> None:
    matrix = load_matrix(matrix_file(tmp_path, "physician,,11,,allow,\nphysician,sports_medicine,11,34133-9,deny,\n"))
    assert matrix.allows("physician", "psychiatry", "11", "34133-9") is True
    assert matrix.allows("physician", "sports_medicine", "11", "34133-9") is False
    assert matrix.allows("physician", "sports_medicine", "11", "60591-5") is True


def test_matrix_without_a_row_denies(tmp_path: Path) -> None:
    matrix = load_matrix(matrix_file(tmp_path, "nurse,,10,,allow,\n"))
    assert matrix.allows("nurse", None, "42", "57833-6") is False


def test_shipped_matrix_dentist_does_not_read_psychiatric_summaries() -> None:
    assert default_matrix().allows("dentist", None, "11", "59259-2") is False


def test_shipped_matrix_podiatrist_does_not_read_delivery_reports() -> None:
    assert default_matrix().allows("podiatrist", None, "10", "15508-5") is False


def test_shipped_matrix_midwife_reads_delivery_reports() -> None:
    assert default_matrix().allows("midwife", None, "10", "15508-5") is True
