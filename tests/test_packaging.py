"""What a wheel install gets: every module and data file of the package, and the named configs, so
`--config smoke` and `SelfSeg.from_config("configs/bcc_voc.yaml")` work without a checkout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for folder in ("selfseg", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("selfseg-*.whl")
    return found


def test_the_wheel_holds_the_package_and_the_named_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {p.relative_to(REPO).as_posix() for p in (REPO / "selfseg").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert package - names == set()
    configs = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert {"smoke.yaml", "base.yaml", "benchmarks/voc.yaml"} <= configs
    assert {f"selfseg/configs/{c}" for c in configs} - names == set()


def test_a_wheel_install_resolves_named_configs_from_its_own_copy(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"  # no configs/ here, and the checkout is not on the path
    elsewhere.mkdir()
    code = ("import selfseg.config as c; from selfseg import SelfSeg\n"
            "print(c.__file__); print(c.resolve_config('smoke'))\n"
            "print(SelfSeg.from_config('configs/bcc_voc.yaml').config.tagger)\n"
            "print(c.load_config('benchmarks/voc').evaluation.dataset)")
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + code],
                          capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, smoke, tagger, dataset = proc.stdout.split()
    assert Path(module).is_relative_to(site) and Path(smoke) == site / "selfseg" / "configs" / "smoke.yaml"
    assert (tagger, dataset) == ("bcc", "voc")
