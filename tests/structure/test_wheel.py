"""The built wheel installs one import name, `loragen`, and every module of the source tree imports from it.

Builds the wheel from this checkout (no network: `--no-deps --no-build-isolation`), installs it with `--no-deps`
into a fresh venv that sees the test environment's packages, and imports every module from there (not from the
checkout). A package folder missing from pyproject's explicit list would be missing from the wheel and fail here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.structure._tree import ROOT, modules, package_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy of what the wheel is made of: a build/ folder left in the checkout could carry stale
    # modules into the wheel and hide a package missing from pyproject's list.
    src = out / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bank", "hypernet", "meta", "api"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, cwd=out)
    [whl] = out.glob("loragen-*.whl")
    return whl


def test_wheel_has_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as zf:
        [top] = [n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt")]
        assert zf.read(top).decode().split() == ["loragen"]
        roots = {n.split("/")[0] for n in zf.namelist() if not n.split("/")[0].endswith(".dist-info")}
        assert roots == {"loragen"}
        shipped = {n for n in zf.namelist() if n.endswith(".py")}
    expected = {"loragen/" + str(p.relative_to(ROOT)) for _, p in modules()}
    assert expected <= shipped, f"missing from the wheel: {sorted(expected - shipped)}"


def test_shipped_generators_are_package_data(wheel):
    """The shipped folder's README always, and every shipped checkpoint and manifest when the release put any there."""
    shipped = ROOT / "bank" / "shipped"
    expected = {"loragen/bank/shipped/README.md"}
    for config in shipped.glob("*/*/config.json"):
        folder = "loragen/" + str(config.parent.relative_to(ROOT))
        expected |= {f"{folder}/config.json", f"{folder}/model.safetensors",
                     f"{folder.rsplit('/', 1)[0]}/manifest.json"}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"


def test_every_module_imports_from_the_installed_wheel(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # system_site_packages gives the base interpreter's packages; add the test environment's site-packages too.
    site = [p for p in sys.path if p.endswith("site-packages")]
    pth = next((env_dir / "lib").glob("python*/site-packages"))
    (pth / "test-env.pth").write_text("\n".join(site) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    names = [m for m, _ in modules() if not m.endswith("__main__")]
    script = (
        "import importlib, json, sys\n"
        f"names = {json.dumps(names)}\n"
        "origins = {n: importlib.import_module(n).__file__ for n in names}\n"
        "print(json.dumps(origins))\n"
    )
    # Run outside the checkout so the folders bank/, api/ ... cannot shadow anything.
    proc = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    origins = json.loads(proc.stdout)
    assert all(str(env_dir) in path for path in origins.values()), "a module came from outside the wheel"
    assert sorted(package_dirs()) == sorted(n for n, p in origins.items() if p.endswith("__init__.py"))
