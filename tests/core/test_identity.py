"""NIR format and control key, including Corsican départements."""

import pytest

from pipeline.core.identity import INS_OIDS, InsError, is_valid_nir, nir_key, parse_ins, with_key


def test_a_nir_with_its_computed_key_is_valid():
    assert is_valid_nir(with_key("1850575123456"))


def test_the_key_is_97_minus_the_body_mod_97():
    assert nir_key("1850575123456") == 97 - (1850575123456 % 97)


def test_a_wrong_key_is_invalid():
    nir = with_key("2900113055123")
    wrong = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    assert not is_valid_nir(wrong)


@pytest.mark.parametrize(("dept", "as_number"), [("2A", "19"), ("2B", "18")])
def test_corsican_departements_count_as_19_and_18_for_the_key(dept, as_number):
    body = f"18506{dept}004012"
    assert nir_key(body) == 97 - (int(body.replace(dept, as_number)) % 97)
    assert is_valid_nir(with_key(body))


def test_spaces_between_groups_are_ignored():
    nir = with_key("1850575123456")
    assert is_valid_nir(f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}")


@pytest.mark.parametrize("value", ["", "123", "385057512345612", "1850575123456AB", "18513751234567"])
def test_malformed_values_are_invalid(value):
    assert not is_valid_nir(value)


def test_parse_ins_accepts_a_nir_under_each_ins_oid_and_normalizes_it() -> None:
    nir = with_key("1800175123456")
    for oid in (None, *INS_OIDS):
        assert parse_ins(f" {nir[:1]} {nir[1:7]} {nir[7:]}".lower(), oid) == nir


def test_parse_ins_refuses_an_unknown_oid_and_a_wrong_key_with_their_codes() -> None:
    nir = with_key("1800175123456")
    with pytest.raises(InsError) as unknown:
        parse_ins(nir, "1.2.250.1.213.1.4.2")
    wrong_key = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    with pytest.raises(InsError) as invalid:
        parse_ins(wrong_key)
    assert (unknown.value.code, invalid.value.code) == ("unknown_ins_oid", "invalid_ins")
