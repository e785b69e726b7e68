"""The check before Qt starts: no display, an X server that is gone, and the xcb plugin's missing libraries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker_desktop.preflight import (
    PACKAGES,
    diagnose,
    display_reachable,
    install_lines,
    missing_from_ldd,
    missing_libraries,
    xcb_plugin,
)

ROOT = Path(__file__).resolve().parents[2]

# `ldd PySide6/Qt/plugins/platforms/libqxcb.so` (PySide6 6.11.3) on Debian 12 without
# libxcb-icccm4 and libxcb-keysyms1, shortened: the first lines, the misses, the last line.
LDD_DEBIAN_FRESH = """\
\tlinux-vdso.so.1 (0x00007fdcb9f42000)
\tlibQt6XcbQpa.so.6 => /venv/lib/python3.11/site-packages/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007fdcb9e74000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007fdcb9de4000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007fdcb9d91000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007fdcb9d8a000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007fdcb9d82000)
\tlibxcb-image.so.0 => /lib/x86_64-linux-gnu/libxcb-image.so.0 (0x00007fdcb9d7c000)
\tlibxcb-keysyms.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fdcb801e000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibEGL.so.1 => /lib/x86_64-linux-gnu/libEGL.so.1 (0x00007fdcb91a0000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007fdcb9f44000)
"""


def never(*_: object) -> NoReturn:
    raise AssertionError("the check looked further than it needed to")


def missing_none() -> Sequence[str]:
    return []


def test_ldd_misses_become_packages_and_install_lines() -> None:
    """Recorded ldd output of a fresh Debian names two libraries once each, with their apt-get and dnf packages."""
    missing = missing_from_ldd(LDD_DEBIAN_FRESH)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    message = diagnose({"DISPLAY": ":0"}, reachable=lambda _: True, missing=lambda: missing)
    assert message is not None
    assert "libxcb-icccm.so.4 (Debian/Ubuntu libxcb-icccm4, Fedora xcb-util-wm)" in message
    lines = message.splitlines()
    assert "  Debian/Ubuntu: sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in lines
    assert "  Fedora:        sudo dnf install xcb-util-wm xcb-util-keysyms" in lines
    assert "QT_QPA_PLATFORM=wayland" not in message  # no Wayland to fall back on here


def test_install_lines_name_each_package_once() -> None:
    """Libraries of one package (libxcb's extensions on Fedora) give that package once; unknown sonames none."""
    lines = install_lines(["libxcb-randr.so.0", "libxcb-shm.so.0", "libunknown.so.9"])
    assert lines == [
        "Debian/Ubuntu: sudo apt-get install libxcb-randr0 libxcb-shm0",
        "Fedora:        sudo dnf install libxcb",
    ]
    assert install_lines(["libunknown.so.9"]) == []


def test_unknown_library_gets_a_search_hint_and_wayland_a_way_out() -> None:
    """A soname without a known package is named with the command that finds its package."""
    env = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}
    message = diagnose(env, reachable=lambda _: True, missing=lambda: ["libfoo.so.3"])
    assert message is not None
    assert "  libfoo.so.3 (package unknown)" in message
    assert "apt-file search libfoo.so.3" in message and "dnf provides '*/libfoo.so.3'" in message
    assert "QT_QPA_PLATFORM=wayland" in message


@pytest.fixture
def real_plugin() -> Path:
    plugin = xcb_plugin()
    assert plugin is not None, "PySide6 ships libqxcb.so on Linux"
    return plugin


def fake_plugin(real: Path, root: Path, rename: bytes) -> Path:
    """A copy of the real xcb plugin, laid out so its RUNPATH finds Qt, that needs ``rename`` in lower case.

    The dynamic string table keeps the needed names; upper-casing one letter of one
    keeps every offset and makes a library no system has.
    """
    platforms = root / "Qt" / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    (root / "Qt" / "lib").symlink_to(real.parents[2] / "lib")
    data = real.read_bytes()
    needle = b"\0" + rename + b"\0"
    assert data.count(needle) == 1, rename
    fake = platforms / real.name
    fake.write_bytes(
        data.replace(needle, b"\0" + rename[:3] + rename[3:4].upper() + rename[4:] + b"\0")
    )
    return fake


def test_resolver_finds_a_library_missing_from_a_real_plugin(
    tmp_path: Path, real_plugin: Path
) -> None:
    """ldd on a copy of libqxcb.so that needs one absent library reports it, plus whatever this machine lacks."""
    here = missing_libraries(real_plugin)
    assert here is not None
    assert set(here) <= set(PACKAGES), f"this machine lacks {here}: add them to PACKAGES"
    # libc: present wherever this runs, and still needed (so found) through the plugin's other libraries.
    fake = fake_plugin(real_plugin, tmp_path, b"libc.so.6")
    found = missing_libraries(fake)
    assert found is not None
    assert sorted(found) == sorted([*here, "libC.so.6"])
    message = diagnose({"DISPLAY": ":0"}, reachable=lambda _: True, missing=lambda: found)
    assert message is not None and "  libC.so.6 (package unknown)" in message


def test_resolver_cannot_tell_for_a_file_that_is_no_library(tmp_path: Path) -> None:
    """A file ldd cannot read gives None (unknown), so the check lets Qt decide rather than guess."""
    text = tmp_path / "libqxcb.so"
    text.write_text("not ELF\n")
    assert missing_libraries(text) is None
    assert diagnose({"DISPLAY": ":0"}, reachable=lambda _: True, missing=lambda: None) is None


HEADLESS = ["offscreen", "minimal", "vnc", "eglfs", "linuxfb", "offscreen;xcb", "vnc:size=800x600"]
WAYLAND_OR_XCB = ["", "xcb", "wayland", "wayland;xcb", "xcb;wayland", "wayland-egl", "xcb:dpi=96"]
envs = st.fixed_dictionaries(
    {},
    optional={
        "DISPLAY": st.sampled_from([":0", "localhost:10.0", "unix:1", ""]),
        "WAYLAND_DISPLAY": st.sampled_from(["wayland-0", ""]),
        "XDG_SESSION_TYPE": st.sampled_from(["wayland", "x11", "tty"]),
    },
)


@given(envs, st.sampled_from(HEADLESS))
def test_platforms_without_a_display_always_pass(env: dict[str, str], platform: str) -> None:
    """QT_QPA_PLATFORM=offscreen (the tests), vnc, eglfs... start whatever else is set, and nothing is probed."""
    assert diagnose({**env, "QT_QPA_PLATFORM": platform}, reachable=never, missing=never) is None


@given(envs, st.sampled_from(WAYLAND_OR_XCB))
def test_no_display_at_all_is_said_before_anything_is_probed(
    env: dict[str, str], platform: str
) -> None:
    """Without DISPLAY and WAYLAND_DISPLAY, X11 and Wayland both fail: one message, no socket, no ldd."""
    env = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    message = diagnose({**env, "QT_QPA_PLATFORM": platform}, reachable=never, missing=never)
    assert message is not None and "no display" in message and "xvfb-run" in message


@given(envs)
def test_x11_is_probed_exactly_when_qt_will_use_it(env: dict[str, str]) -> None:
    """Unset QT_QPA_PLATFORM: X11 is checked without Wayland or outside a Wayland session, else left alone."""
    asked: list[str] = []

    def reachable(display: str) -> bool:
        asked.append(display)
        return False

    message = diagnose(env, reachable=reachable, missing=never)
    display, wayland = env.get("DISPLAY"), env.get("WAYLAND_DISPLAY")
    uses_x11 = bool(display) and (not wayland or env.get("XDG_SESSION_TYPE") != "wayland")
    if not display and not wayland:
        assert message is not None and "no display" in message and not asked
    elif uses_x11:
        assert message is not None and f"DISPLAY={display}" in message and asked == [display]
    else:
        assert message is None and not asked


def test_reachable_display_with_all_libraries_passes() -> None:
    """An X server that answers and a plugin with nothing missing: no message."""
    assert diagnose({"DISPLAY": ":0"}, reachable=lambda _: True, missing=missing_none) is None
    message = diagnose(
        {"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, reachable=never, missing=never
    )
    assert message is not None and "DISPLAY is not set" in message


def test_display_reachable_over_tcp() -> None:
    """host:N is port 6000+N: reachable while a listener is there, not once it is gone."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        if port <= 6000:
            pytest.skip(f"the kernel gave port {port}, below X's 6000")
        display = f"127.0.0.1:{port - 6000}.0"
        assert display_reachable(display)
    assert not display_reachable(display, timeout=1.0)


def test_display_reachable_over_the_abstract_unix_socket() -> None:
    """:N is the X server's abstract socket @/tmp/.X11-unix/XN, as Xorg and Xvfb listen on Linux."""
    number = 60000 + os.getpid() % 5000  # beyond any TCP port, so only the unix sockets count
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(f"\0/tmp/.X11-unix/X{number}".encode())
        server.listen()
        assert display_reachable(f":{number}")
        assert display_reachable(f"unix:{number}.0")
    assert not display_reachable(f":{number}")
    assert display_reachable("not a display")  # Qt judges what this cannot parse


def run_desktop(home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """The command as a user starts it: no Qt platform chosen, no display but ``extra``'s."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "ticker_desktop", "--demo"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_command_without_a_display_exits_2_with_the_message(tmp_path: Path) -> None:
    """`python -m ticker_desktop --demo` with no display says so and exits 2 instead of Qt's SIGABRT."""
    done = run_desktop(tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ticker-desktop: no display to open a window on")
    assert "Fatal Python error" not in done.stderr and "qt.qpa" not in done.stderr
    assert done.stdout == ""


def test_command_with_a_gone_x_server_exits_2_with_the_message(tmp_path: Path) -> None:
    """A DISPLAY nobody serves (a closed session, a dropped ssh -X) is named instead of Qt aborting."""
    number = 60000 + os.getpid() % 5000
    done = run_desktop(tmp_path, DISPLAY=f":{number}")
    assert done.returncode == 2, done.stderr
    assert f"no X server answers on DISPLAY=:{number}" in done.stderr


def test_readme_install_lines_are_the_ones_the_check_prints() -> None:
    """The Quickstart's note installs what the check would name for the libraries fresh desktops lack."""
    often_missing = [
        "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-image.so.0",
        "libxcb-render-util.so.0", "libxkbcommon-x11.so.0", "libEGL.so.1",
    ]  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    note = readme[readme.index("> **System packages.**") :].split("\n\n")[0]
    text = " ".join(line.removeprefix("> ") for line in note.splitlines())
    for line in install_lines(often_missing):
        command = line.split(":", 1)[1].strip()
        assert f"`{command}`" in text, command
