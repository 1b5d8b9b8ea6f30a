"""House rules that hold for the whole checkout: ruff's lint (configured in pyproject.toml) and the public
API that `import selfseg` offers."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What the README and the examples hand to users, and what a caller needs to catch selfseg's errors.
PUBLIC = {
    "SelfSeg", "BatchItem", "Config", "load_config", "load_image",
    "TagResult", "NounSupport", "ClusterCaptions", "ClusterMaps", "Segmentation", "Detections",
    "SegmentPlan", "Instances",
    "ensemble_cluster",
    "SelfSegError", "ConfigError", "ImageError", "ResourceMissingError", "DatasetError",
}
# Heavy dependencies that only building a stage may load.
HEAVY = ("torch", "torchvision", "transformers", "numpy", "scipy", "sklearn", "PIL", "spacy", "nltk",
         "sentence_transformers", "pycocotools", "huggingface_hub")


def _python(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter: what this test process already imported must not count."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip(reason="ruff is not installed (it is in the test extra: pip install -e .[test])")
    # --no-cache: a test run leaves nothing in the checkout.
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "selfseg", "tests", "benchmarks",
                          "examples"], capture_output=True, text=True, cwd=REPO, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"ruff check found problems (`ruff check --fix` repairs those marked [*]):\n"
                    f"{out.stdout}{out.stderr}", pytrace=False)


def test_import_selfseg_loads_no_heavy_dependency():
    code = f"import json, sys, selfseg; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_reading_and_checking_configs_loads_no_heavy_dependency():
    """Loading a config validates it against every registry, so it imports every component module: they keep
    torch, transformers and spaCy for when a component is built or run (numpy and PIL may load)."""
    heavy = tuple(m for m in HEAVY if m not in ("numpy", "PIL"))
    code = ("import json, sys; from selfseg.config import checkpoints, config_table, load_config; "
            "c = load_config('configs/union_bcc_vlm.yaml'); checkpoints(c, segment=True, evaluate=True); "
            f"config_table(); print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_every_public_name_resolves():
    code = ("import json, selfseg; names = {n: getattr(selfseg, n).__name__ for n in selfseg.__all__ "
            "if n != '__version__'}; print(json.dumps(names))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)
    assert all(resolved[n] == n for n in resolved), resolved  # each name is the object it says it is
    assert PUBLIC <= set(resolved), f"missing from selfseg.__all__: {sorted(PUBLIC - set(resolved))}"


def test_what_the_docs_import_from_selfseg_is_public():
    import selfseg

    texts = [(REPO / "README.md").read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in sorted((REPO / "examples").glob("*.py"))]
    texts += ["".join(c["source"]) for p in sorted((REPO / "examples").glob("*.ipynb"))
              for c in json.loads(p.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    imported = {name.strip() for text in texts for names in re.findall(r"^\s*from selfseg import ([^\n(]+)", text, re.M)
                for name in names.split("#")[0].split(",") if name.strip()}
    assert imported, "no `from selfseg import` found in README.md or examples/"
    missing = sorted(imported - set(selfseg.__all__))
    assert not missing, f"imported by the docs from selfseg, not in selfseg.__all__: {missing}"
