"""Can a Qt platform start here? Asked before ``QApplication``, because Qt's answer is an abort.

Without a display, or with a system library of the xcb platform plugin missing, Qt
prints "Could not load the Qt platform plugin" and the process dies of SIGABRT. The
PySide6 wheel bundles Qt but not the X11 libraries its xcb plugin links against, so
a fresh desktop Linux often lacks a few (``libxcb-icccm4``, ``libxcb-keysyms1``,
``libxcb-cursor0``, ...). :func:`diagnose` names the problem and the packages that
fix it; :func:`check` runs it with the real environment, ``ldd`` and the display
socket. Platforms that need no display (``QT_QPA_PLATFORM=offscreen``, ``vnc``, ...)
pass untouched.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "PACKAGES",
    "check",
    "diagnose",
    "display_reachable",
    "install_lines",
    "missing_from_ldd",
    "missing_libraries",
    "xcb_plugin",
]

PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libXau.so.6": ("libxau6", "libXau"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libexpat.so.1": ("libexpat1", "expat"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
}
"""Shared library (soname) -> its package on (Debian/Ubuntu, Fedora): what Qt's xcb plugin needs."""

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)
_DISPLAY = re.compile(r"^(?:(?P<protocol>[^:/]*)/)?(?P<host>[^:/]*):(?P<number>\d+)(?:\.\d+)?$")
_HEADLESS_HINT = (
    "Run it in a desktop session (or over `ssh -X`), under a virtual display "
    "(`xvfb-run ticker-desktop --demo`), or with QT_QPA_PLATFORM=offscreen for no window at all."
)
_GONE_HINT = (
    "Is that session still running (or the `ssh -X` connection open)? Without a screen, use "
    "`xvfb-run ticker-desktop --demo`, or QT_QPA_PLATFORM=offscreen for no window at all."
)


def _requested(env: Mapping[str, str]) -> list[str]:
    """The platform names in QT_QPA_PLATFORM ("wayland;xcb", "xcb:option=1"), in Qt's order."""
    spec = env.get("QT_QPA_PLATFORM", "")
    return [part.split(":", 1)[0].strip() for part in spec.split(";") if part.strip()]


def diagnose(
    env: Mapping[str, str],
    *,
    reachable: Callable[[str], bool],
    missing: Callable[[], Sequence[str] | None],
) -> str | None:
    """What would stop Qt from opening a window, as a message for the user; None if nothing does.

    Only the X11 (xcb) path is examined in depth; Wayland is left to Qt.

    Args:
        env: the environment Qt will read (DISPLAY, WAYLAND_DISPLAY, QT_QPA_PLATFORM,
            XDG_SESSION_TYPE).
        reachable: whether the X server named by a DISPLAY value accepts connections.
        missing: the sonames the xcb plugin needs and cannot load (None: unknown); called
            only when xcb is the platform Qt will use.
    """
    names = _requested(env)
    if any(n != "xcb" and not n.startswith("wayland") for n in names):
        return None  # offscreen, minimal, vnc, eglfs... need no display server
    display = env.get("DISPLAY", "")
    wayland = env.get("WAYLAND_DISPLAY", "")
    if not display and not wayland:
        return (
            "ticker-desktop: no display to open a window on "
            "(DISPLAY and WAYLAND_DISPLAY are not set).\n" + _HEADLESS_HINT
        )
    # Qt tries the listed platforms in order; unset, it follows XDG_SESSION_TYPE (wayland or x11).
    if names:
        use_xcb = names[0] == "xcb" or not wayland
    else:
        use_xcb = not wayland or (bool(display) and env.get("XDG_SESSION_TYPE") != "wayland")
    if not use_xcb:
        return None
    if not display:
        return "ticker-desktop: QT_QPA_PLATFORM asks for xcb (X11) but DISPLAY is not set.\n" + (
            "Unset QT_QPA_PLATFORM to use Wayland, or set DISPLAY."
        )
    if not reachable(display):
        return f"ticker-desktop: no X server answers on DISPLAY={display}.\n" + _GONE_HINT
    absent = missing()
    if not absent:
        return None
    lines = [
        "ticker-desktop: Qt's X11 (xcb) platform plugin needs system libraries it cannot find:"
    ]
    for soname in absent:
        if soname in PACKAGES:
            debian, fedora = PACKAGES[soname]
            lines.append(f"  {soname} (Debian/Ubuntu {debian}, Fedora {fedora})")
        else:
            lines.append(f"  {soname} (package unknown)")
    lines.append("Install them, then run ticker-desktop again:")
    lines.extend(f"  {line}" for line in install_lines(absent))
    unknown = [s for s in absent if s not in PACKAGES]
    if unknown:
        lines.append(
            "To find the package of the others: apt-file search " + unknown[0]
            + f" (Debian/Ubuntu) or dnf provides '*/{unknown[0]}' (Fedora)."
        )  # fmt: skip
    if wayland:
        lines.append("Or use Wayland instead: QT_QPA_PLATFORM=wayland ticker-desktop ...")
    return "\n".join(lines)


def install_lines(sonames: Sequence[str]) -> list[str]:
    """The apt-get and dnf commands that install the packages of ``sonames`` (known ones only)."""
    debian: list[str] = []
    fedora: list[str] = []
    for soname in sonames:
        if soname in PACKAGES:
            deb, fed = PACKAGES[soname]
            debian += [deb] if deb not in debian else []
            fedora += [fed] if fed not in fedora else []
    if not debian:
        return []
    return [
        "Debian/Ubuntu: sudo apt-get install " + " ".join(debian),
        "Fedora:        sudo dnf install " + " ".join(fedora),
    ]


def missing_from_ldd(output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", each once, in ldd's order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def missing_libraries(plugin: Path, timeout: float = 10.0) -> list[str] | None:
    """The libraries ``plugin`` needs (directly or not) that the dynamic loader cannot find.

    ``ldd`` resolves them exactly as the loader will (RUNPATH, ld.so.cache, LD_LIBRARY_PATH).
    Returns None when that cannot be told (no ``ldd``, not an ELF file).
    """
    try:
        done = subprocess.run(
            ["ldd", str(plugin)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return missing_from_ldd(done.stdout)


def display_reachable(display: str, timeout: float = 2.0) -> bool:
    """Whether an X server accepts a connection at ``display`` (":0", "localhost:10.0").

    A display this cannot parse counts as reachable: Qt is left to judge it.
    """
    match = _DISPLAY.match(display)
    if match is None:
        return True
    number, host, protocol = int(match["number"]), match["host"], match["protocol"] or ""
    if host in ("", "unix") and protocol != "tcp":
        path = f"/tmp/.X11-unix/X{number}"
        # Linux X servers listen on an abstract socket too; a container may see only one of them.
        addresses: list[str | bytes] = [b"\0" + path.encode(), path]
        for address in addresses:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(address)
                except OSError:
                    continue
                return True
        if host == "unix":
            return False
        host = "localhost"
    try:
        with socket.create_connection((host, 6000 + number), timeout=timeout):
            return True
    except OSError:
        return False


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the Qt that PySide6 loads, if there is one."""
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    path = plugins / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def check(env: Mapping[str, str] | None = None) -> str | None:
    """:func:`diagnose` for this process: the message to print before exiting, or None to go on."""
    if not sys.platform.startswith("linux"):
        return None

    def missing() -> list[str] | None:
        plugin = xcb_plugin()
        return None if plugin is None else missing_libraries(plugin)

    env = os.environ if env is None else env
    return diagnose(env, reachable=display_reachable, missing=missing)
