"""The wheel ships ticker_bench and no top-level ``benchmarks``; the load generator needs nothing left behind."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def setuptools_config() -> dict[str, Any]:
    """pyproject.toml as setuptools reads it when it builds the wheel, package discovery done."""
    from setuptools.config.pyprojecttoml import read_configuration  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # setuptools' notes on its own config format
        config: dict[str, Any] = read_configuration(ROOT / "pyproject.toml", expand=True)
    return config


def test_wheel_packages_are_ours_only() -> None:
    """setuptools finds ticker_server, ticker_desktop and ticker_bench with their subpackages, nothing else."""
    packages = setuptools_config()["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {
        "ticker_server",
        "ticker_desktop",
        "ticker_bench",
    }
    assert not any(p.split(".")[0] in ("benchmarks", "tests", "examples") for p in packages)


def test_console_scripts_point_into_shipped_packages() -> None:
    """Each console script names a callable in a package the wheel contains (ticker-bench in ticker_bench)."""
    config = setuptools_config()
    shipped = set(config["tool"]["setuptools"]["packages"])
    scripts = config["project"]["scripts"]
    assert scripts["ticker-bench"] == "ticker_bench.bench:main"
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert module.rpartition(".")[0] in shipped, name
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_load_generator_imports_without_the_repository_benchmarks() -> None:
    """ticker_bench and its spawned workers import with ``benchmarks`` unimportable, as from an installed wheel."""
    code = (
        "import sys; sys.modules['benchmarks'] = None\n"
        "import ticker_bench.__main__, ticker_bench.bench, ticker_bench.loadgen, ticker_bench.report\n"
        "print(ticker_bench.loadgen.run_worker.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ticker_bench.loadgen"


def test_suite_runs_on_versions_the_pins_allow() -> None:
    """Every runtime dependency has a lower bound, the ones a major may break an upper one, and this run is inside."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = setuptools_config()["project"]
    requirements = [
        Requirement(r)
        for r in project["dependencies"] + project["optional-dependencies"]["desktop"]
    ]
    capped = {"websockets", "pydantic", "numpy", "redis", "pyside6-essentials"}
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators, req
        if req.name.lower() in capped:
            assert "<" in operators, req
        assert req.specifier.contains(version(req.name)), (
            f"{req.name} {version(req.name)} is outside {req}"
        )
