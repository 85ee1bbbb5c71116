"""Master keys in the key file, record keys in the index, rotation and crypto-shredding."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from pipeline.core.keys import FileKeyProvider, KeyFileError, KeyProviderError, add_master_key, keyed_hash, load_key_file, new_key


def test_first_run_creates_a_key_file_readable_only_by_its_owner(tmp_path):
    path = tmp_path / "keys.json"
    load_key_file(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_group_or_world_readable_key_file_is_refused(tmp_path):
    path = tmp_path / "keys.json"
    load_key_file(path, create=True)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


def test_a_missing_key_file_is_an_error_unless_creation_is_asked(tmp_path):
    with pytest.raises(KeyFileError, match="dmp keys init"):
        load_key_file(tmp_path / "absent.json")


def test_a_wrapped_key_only_unwraps_in_its_own_context(tmp_path):
    load_key_file(tmp_path / "keys.json", create=True)
    provider = FileKeyProvider(tmp_path / "keys.json")
    key = new_key()
    wrapped = provider.wrap(key, "record:1|patient:1")
    assert provider.unwrap(wrapped, "record:1|patient:1") == key
    with pytest.raises(KeyProviderError):
        provider.unwrap(wrapped, "record:2|patient:1")


def test_adding_a_master_key_keeps_the_old_one_for_unwrapping(tmp_path):
    path = tmp_path / "keys.json"
    load_key_file(path, create=True)
    provider = FileKeyProvider(path)
    old = provider.wrap(b"k" * 32, "c")
    assert add_master_key(path) == "k2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rotated = FileKeyProvider(path)
    assert rotated.active_id == "k2"
    assert rotated.unwrap(old, "c") == b"k" * 32


def test_a_running_provider_learns_a_new_master_key_from_the_file(tmp_path):
    path = tmp_path / "keys.json"
    load_key_file(path, create=True)
    running = FileKeyProvider(path)  # loaded before the rotation
    add_master_key(path)
    wrapped_elsewhere = FileKeyProvider(path).wrap(b"x" * 32, "c")
    assert running.unwrap(wrapped_elsewhere, "c") == b"x" * 32


def test_the_keyed_hash_depends_on_the_secret(tmp_path):
    one = keyed_hash(load_key_file(tmp_path / "a.json", create=True).hmac_secret)
    two = keyed_hash(load_key_file(tmp_path / "b.json", create=True).hmac_secret)
    one.update(b"document")
    two.update(b"document")
    assert one.hexdigest() != two.hexdigest()


def test_concurrent_first_runs_share_one_key_file(tmp_path):
    path = tmp_path / "keys.json"
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_key_file(path, create=True).hmac_secret)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
