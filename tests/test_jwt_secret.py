"""The data dir's JWT secret is readable by its owner only: created 0600 (never briefly wider),
its folder closed to group and others, an older world-readable file tightened when read."""

from __future__ import annotations

import stat
import threading

from driftline.jwt_secret import file_secret, secret_file


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_secret_is_owner_only_and_so_is_its_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    secret = file_secret(data)
    assert secret and len(secret) == 64
    assert _mode(secret_file(data)) == 0o600
    assert _mode(data) & 0o077 == 0
    assert file_secret(data) == secret  # read back, not rewritten


def test_a_missing_data_dir_is_created_closed(tmp_path):
    data = tmp_path / "fresh" / "data"
    file_secret(data)
    assert _mode(secret_file(data)) == 0o600 and _mode(data) & 0o077 == 0


def test_an_older_world_readable_secret_is_tightened(tmp_path):
    path = secret_file(tmp_path)
    path.write_text("old-secret\n")
    path.chmod(0o644)
    assert file_secret(tmp_path, create=False) == "old-secret"
    assert _mode(path) == 0o600


def test_no_secret_without_create(tmp_path):
    assert file_secret(tmp_path, create=False) is None
    assert not secret_file(tmp_path).exists()


def test_processes_racing_to_create_agree_on_one_secret(tmp_path):
    seen: list[str | None] = []
    threads = [threading.Thread(target=lambda: seen.append(file_secret(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and seen[0] == secret_file(tmp_path).read_text()
