"""The key file: created 0600, refused when too open, data keys bound to their context."""

import os
import stat

import pytest
from cryptography.exceptions import InvalidTag

from pipeline.keys import KeyFileError, load_keyring


def test_first_run_creates_a_key_file_readable_only_by_its_owner(tmp_path):
    path = tmp_path / "keys.json"
    load_keyring(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_group_or_world_readable_key_file_is_refused(tmp_path):
    path = tmp_path / "keys.json"
    load_keyring(path, create=True)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keyring(path)


def test_a_missing_key_file_is_an_error_unless_creation_is_asked(tmp_path):
    with pytest.raises(KeyFileError):
        load_keyring(tmp_path / "absent.json")


def test_a_wrapped_key_only_unwraps_in_its_own_context(tmp_path):
    keyring = load_keyring(tmp_path / "keys.json", create=True)
    data_key = keyring.new_data_key()
    wrapped = keyring.wrap(data_key, "doc:1")
    assert keyring.unwrap(wrapped, "doc:1") == data_key
    with pytest.raises(InvalidTag):
        keyring.unwrap(wrapped, "doc:2")


def test_the_keyed_hash_depends_on_the_secret(tmp_path):
    one = load_keyring(tmp_path / "a.json", create=True).hasher()
    two = load_keyring(tmp_path / "b.json", create=True).hasher()
    one.update(b"document")
    two.update(b"document")
    assert one.hexdigest() != two.hexdigest()
