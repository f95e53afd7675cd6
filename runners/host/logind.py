"""systemd-logind's `RemoveIPC=` as this host's configuration sets it, read the way logind reads it.

With `RemoveIPC=yes` (systemd's compiled default) logind deletes a user's System V and POSIX shared memory,
semaphores and message queues when that user's last session (an ssh login) closes. vLLM's workers talk
through shared memory: after the removal they block forever while `/health` still answers. Root and other
system users (uid <= SYSTEM_UID_MAX) are exempt, and so is a lingering user (`loginctl enable-linger`),
whom logind never finalizes.

Precedence (systemd.syntax(7), logind.conf(5)): the first main file found among /etc, /run, /usr/local/lib,
/usr/lib (`systemd/logind.conf`), then every `logind.conf.d/*.conf` drop-in of those directories, sorted by
file name, a name in an earlier directory masking the same name in a later one; the last assignment wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_DIRS = ("etc/systemd", "run/systemd", "usr/local/lib/systemd", "usr/lib/systemd")  # highest first
SYSTEM_UID_MAX = 999  # systemd's usual compile-time bound for system users (login.defs SYS_UID_MAX)
COMPILED_DEFAULT = True
_TRUE = {"1", "yes", "y", "true", "t", "on"}
_FALSE = {"0", "no", "n", "false", "f", "off"}


@dataclass(frozen=True)
class RemoveIPC:
    """The effective `RemoveIPC=` and where it came from (`file:line`, or systemd's compiled default)."""

    enabled: bool
    source: str


def config_files(root: Path) -> list[Path]:
    """logind's configuration files under `root` in the order logind parses them (later overrides earlier)."""
    main = next((root / d / "logind.conf" for d in CONFIG_DIRS if (root / d / "logind.conf").is_file()), None)
    drop_ins: dict[str, Path] = {}
    for directory in reversed(CONFIG_DIRS):  # lowest first, so a higher directory's same name replaces it
        folder = root / directory / "logind.conf.d"
        if folder.is_dir():
            drop_ins |= {p.name: p for p in folder.glob("*.conf") if p.is_file()}
    return ([main] if main else []) + [drop_ins[name] for name in sorted(drop_ins)]


def _assignment(path: Path) -> tuple[bool, int] | None:
    """The last valid `RemoveIPC=` of `path`'s [Login] section and its line number; None when it has none."""
    found = None
    section = ""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if section != "Login" or not sep or key.strip() != "RemoveIPC":
            continue
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:  # logind ignores (and logs) a value it cannot parse
            found = (word in _TRUE, number)
    return found


def remove_ipc(root: Path = Path("/")) -> RemoveIPC:
    """The effective `RemoveIPC=` of the logind configuration under `root` (unreadable files count as absent)."""
    setting = RemoveIPC(COMPILED_DEFAULT, "systemd's compiled default")
    for path in config_files(root):
        found = _assignment(path)
        if found is not None:
            setting = RemoveIPC(found[0], f"/{path.relative_to(root)}:{found[1]}")
    return setting


def is_system_user(uid: int) -> bool:
    """Whether logind exempts `uid` from RemoveIPC (root and the system range)."""
    return uid <= SYSTEM_UID_MAX


def systemd_booted(root: Path = Path("/")) -> bool:
    """Whether systemd runs this host (sd_booted(3): /run/systemd/system exists), so logind can be running."""
    return (root / "run/systemd/system").is_dir()


def lingering(user: str | None, root: Path = Path("/")) -> bool:
    """Whether `user` lingers (`loginctl enable-linger`): logind then keeps the user, and its IPC, past logout."""
    return user is not None and (root / "var/lib/systemd/linger" / user).exists()
