"""The built wheel installs into a fresh virtual environment and works there, under one import namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, make_dataset


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools builds in place and keeps build/ between builds, so a view file renamed
    # since the last build would ship twice, under both names.
    source = tmp_path_factory.mktemp("source") / "taskonomy-db"
    skipped = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "dist")
    shutil.copytree(REPO, source, ignore=skipped)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("taskonomy_db-*.whl")
    return wheel


def test_wheel_holds_only_the_taskonomy_db_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"taskonomy_db"}
    for module in ("taskonomy_db/cli/__init__.py", "taskonomy_db/models/__init__.py", "taskonomy_db/sql/__init__.py"):
        assert module in names
    assert "taskonomy_db/sql/migrations/0001_init.sql" in names
    assert any(name.startswith("taskonomy_db/sql/10_") for name in names)


def test_wheel_installs_into_a_fresh_venv_and_runs(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Dependencies come from this environment through a path entry (torch alone is ~1 GB to reinstall); the
    # project itself is installed fresh from the wheel. Path entries added by a .pth file are not site dirs,
    # so this environment's editable install of taskonomy_db is not visible there.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    tdb = env_dir / "bin" / "tdb"
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], cwd=work, capture_output=True, text=True, timeout=120)

    located = run(python, "-c", "import taskonomy_db; print(taskonomy_db.__file__)")
    assert str(site) in located.stdout, located.stderr
    for generic in ("cli", "models", "sql"):
        assert run(python, "-c", f"import {generic}").returncode != 0

    assert run(tdb, "init", "ws").returncode == 0
    for layout in ("taskonomy", "omnidata"):
        root = make_dataset(tmp_path / layout, [f"{layout}_a", f"{layout}_b", f"{layout}_c"], layout=layout)
        ingested = run(tdb, "ingest", root, "-w", "ws")
        assert ingested.returncode == 0, ingested.stderr
        assert f"[{layout}]" in ingested.stdout
    counted = run(tdb, "query", "select count(*) as n from images", "-w", "ws", "--format", "csv")
    assert counted.stdout.split() == ["n", "24"], counted.stderr
