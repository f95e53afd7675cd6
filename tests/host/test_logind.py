"""logind's RemoveIPC read as logind reads it, on fake configuration trees: the main file, drop-ins and their
precedence, sections, comments and values logind ignores."""

from __future__ import annotations

from pathlib import Path

from runners.host.logind import config_files, is_system_user, lingering, remove_ipc, systemd_booted


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_without_configuration_the_compiled_default_removes_ipc(tmp_path: Path) -> None:
    assert config_files(tmp_path) == []
    setting = remove_ipc(tmp_path)
    assert setting.enabled and setting.source == "systemd's compiled default"


def test_a_commented_default_changes_nothing_and_the_last_assignment_of_login_wins(tmp_path: Path) -> None:
    _write(tmp_path, "etc/systemd/logind.conf", "[Login]\n#RemoveIPC=no\n; RemoveIPC=no\n")
    assert remove_ipc(tmp_path).enabled
    _write(tmp_path, "etc/systemd/logind.conf", "[Login]\nRemoveIPC=no\n[Other]\nRemoveIPC=yes\n[Login]\n"
           "RemoveIPC = Off\nRemoveIPC=maybe\n")  # fmt: skip  # "maybe": logind ignores it
    setting = remove_ipc(tmp_path)
    assert not setting.enabled and setting.source == "/etc/systemd/logind.conf:6"


def test_the_first_main_file_found_is_read_and_drop_ins_override_it(tmp_path: Path) -> None:
    _write(tmp_path, "usr/lib/systemd/logind.conf", "[Login]\nRemoveIPC=no\n")
    assert remove_ipc(tmp_path).source == "/usr/lib/systemd/logind.conf:2"
    _write(tmp_path, "etc/systemd/logind.conf", "[Login]\n")  # /etc's main file hides /usr/lib's entirely
    assert remove_ipc(tmp_path).enabled
    _write(tmp_path, "run/systemd/logind.conf.d/50-ipc.conf", "[Login]\nRemoveIPC=no\n")
    assert remove_ipc(tmp_path).source == "/run/systemd/logind.conf.d/50-ipc.conf:2"


def test_drop_ins_sort_by_name_across_directories_and_a_higher_directory_masks_a_name(tmp_path: Path) -> None:
    _write(tmp_path, "etc/systemd/logind.conf.d/10-a.conf", "[Login]\nRemoveIPC=no\n")
    _write(tmp_path, "usr/lib/systemd/logind.conf.d/20-b.conf", "[Login]\nRemoveIPC=yes\n")
    setting = remove_ipc(tmp_path)  # 20-b.conf sorts last, wherever it lives
    assert setting.enabled and setting.source == "/usr/lib/systemd/logind.conf.d/20-b.conf:2"
    _write(tmp_path, "etc/systemd/logind.conf.d/20-b.conf", "[Login]\nRemoveIPC=no\n")  # masks /usr/lib's 20-b
    assert [p.relative_to(tmp_path).as_posix() for p in config_files(tmp_path)] == [
        "etc/systemd/logind.conf.d/10-a.conf", "etc/systemd/logind.conf.d/20-b.conf"
    ]  # fmt: skip
    assert not remove_ipc(tmp_path).enabled
    _write(tmp_path, "etc/systemd/logind.conf.d/30-c.txt", "[Login]\nRemoveIPC=yes\n")  # not *.conf: not read
    assert not remove_ipc(tmp_path).enabled


def test_system_users_booted_and_lingering(tmp_path: Path) -> None:
    assert is_system_user(0) and is_system_user(999) and not is_system_user(1000)
    assert not systemd_booted(tmp_path)
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert systemd_booted(tmp_path)
    assert not lingering("alice", tmp_path) and not lingering(None, tmp_path)
    _write(tmp_path, "var/lib/systemd/linger/alice", "")
    assert lingering("alice", tmp_path)
