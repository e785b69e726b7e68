"""Where the dashboard keeps its bearer token: a file only the user can read.

QSettings writes its file with the umask's mode (0644 on most systems), so a
token kept there is readable by every local user. The token lives instead in
its own file beside the settings (``ticker-desktop.token`` next to
``ticker-desktop.conf``), created with mode 0600 in a directory that is made
0700 if it does not exist, and replaced atomically. A token found in the
settings file by an older version is moved there and erased from the settings.
A token file that others can read is tightened to 0600, with a warning.

On Windows (untested) the file goes to ``%APPDATA%`` and gets the ACL of the
user's profile (only the user and administrators), the platform's equivalent. A keyring would add a
dependency and a desktop-session service for one string; this does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from pathlib import Path

from PySide6.QtCore import QSettings

__all__ = ["LEGACY_KEY", "load_token", "save_token", "saved_token", "token_path"]

log = logging.getLogger("ticker_desktop.credentials")

LEGACY_KEY = "connection/token"
"""Where versions before this one kept the token, in clear, in the settings file."""


def token_path(settings: QSettings) -> Path:
    """The token file of ``settings``: beside its file, with the suffix ``.token``.

    Windows keeps native settings in the registry, which is no place for a file:
    there the token goes to ``%APPDATA%\\ORGANIZATION\\APPLICATION.token``.
    """
    if sys.platform == "win32" and settings.format() == QSettings.Format.NativeFormat:
        base = Path(os.environ.get("APPDATA") or Path.home())
        return base / settings.organizationName() / f"{settings.applicationName()}.token"
    return Path(settings.fileName()).with_suffix(".token")


def save_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` readable by the user only (never, even briefly, by others)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(token)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def load_token(path: Path) -> str | None:
    """The token saved at ``path``, or None; a file others could read is made private first."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s was readable by others (mode %o); made it private", path, mode & 0o777)
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip() or None


def saved_token(settings: QSettings, given: str | None = None) -> str | None:
    """Save a token ``given`` on the command line, and return the saved one.

    A token an older version left in the settings file is moved to the token file.
    """
    path = token_path(settings)
    legacy = str(settings.value(LEGACY_KEY, "") or "")
    if settings.contains(LEGACY_KEY):
        settings.remove(LEGACY_KEY)
        settings.sync()
        if legacy and given is None and not path.exists():
            given = legacy
        log.info("removed the token from %s; it is kept in %s", settings.fileName(), path)
    if given:
        save_token(path, given)
        return given
    return load_token(path)
