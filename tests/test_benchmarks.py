"""The benchmark harnesses run end to end on the tiny random models and write the JSON they promise.

No timing assertions (timings flake; benchmarks measure, tests check structure and counts). Each harness
runs as a subprocess, the way users run it (`python benchmarks/<script>.py ...`), with the checkout on
PYTHONPATH so it works without `pip install -e .`.
"""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run_bench(script: str, args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / f"{Path(script).stem}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out), "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "RANDOM" in proc.stdout  # the table says the weights are random
    return json.loads(out.read_text(encoding="utf-8"))


def finite_nonneg(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def test_bench_bcc_tiny(tmp_path):
    rep = run_bench("bench_bcc.py", ["--config", "configs/smoke.yaml", "--size", "tiny", "--images", "1",
                                     "--warmup", "0", "--repeats", "1", "--bound-size", "256"], tmp_path)
    assert rep["random_weights"] is True
    assert rep["model"]["size"] == "tiny"
    assert rep["model"]["params_vision"] > 0 and rep["model"]["params_text_decoder"] > 0
    assert {"cpu_count", "torch", "transformers", "device_name"} <= set(rep["machine"])

    tg = rep["tagger"]
    assert tg["images"] == 1 and tg["batches"] == 1
    med = tg["median_seconds_per_batch"]
    scales = rep["settings"]["scales"]
    expected = {f"encode_{s}" for s in scales} | {"kmeans", "align", "crf", "filter", "caption", "nouns",
                                                  "other", "total"}
    assert expected <= set(med), f"missing stages: {expected - set(med)}"
    assert all(finite_nonneg(v) for v in med.values())
    assert med["total"] > 0 and tg["images_per_second"] > 0
    assert 0 <= tg["share_outside_model_forwards"] <= 1
    assert len(tg["clusters_per_image"]) == 1 and tg["clusters_per_image"][0] > 0
    gen = tg["caption_generation"]
    assert gen["generate_calls"] >= 1 and gen["rows"] > 0

    cb = rep["caption_baseline"]
    assert cb["rows"] == cb["clusters"] * cb["cycles"] > 0
    assert cb["batched_generation"]["generate_calls"] == cb["repeats"] == 1      # one call for all rows
    assert cb["batched_generation"]["rows"] == cb["rows"]
    assert cb["per_cluster_generation"]["generate_calls"] == cb["rows"]          # one call per row
    assert cb["batched_median"] > 0 and cb["per_cluster_median"] > 0
    assert cb["speedup_per_cluster_over_batched"] > 0
    assert rep["memory"]["peak_rss_mib_after_tagger"] > 0
    # the batched call against the machine's bound: an architecture FLOP count and a measured matmul rate
    assert cb["batched_call_gflop"] > 0 and cb["matmul_bound_gflops"] > 0 and cb["share_of_matmul_bound"] > 0
    for bound in (cb["matmul_bound_before"], cb["matmul_bound_after"]):          # measured on both sides
        assert bound["n"] == 256 and bound["repeats"] >= 3 and bound["dtype"] == "float32"
        assert bound["gflops"] >= bound["median_gflops"] >= bound["min_gflops"] > 0  # the bound is the best
    assert cb["matmul_bound_gflops"] == max(cb["matmul_bound_before"]["gflops"], cb["matmul_bound_after"]["gflops"])
    assert cb["batched_spread"]["n"] == cb["per_cluster_spread"]["n"] == 1
    # each variant's peak is its own (peak reset before it), reported above the RSS before it
    if cb["peak_reset"]:
        assert isinstance(cb["batched_peak_above_before_mib"], float)
        assert isinstance(cb["per_cluster_peak_above_before_mib"], float)
    assert rep["settings"]["sampling"]["repetition_penalty"] == 1.1  # the released profile by default


def test_caption_flop_count_matches_a_hand_count():
    """bench_bcc's FLOP count on a one-layer decoder small enough to count by hand."""
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("bench_bcc", REPO / "benchmarks" / "bench_bcc.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = types.SimpleNamespace(hidden_size=2, intermediate_size=3, num_hidden_layers=1, vocab_size=5,
                                encoder_hidden_size=4)
    cap = types.SimpleNamespace(model=types.SimpleNamespace(config=types.SimpleNamespace(text_config=cfg)))
    import torch
    a, b = torch.zeros(10, 4), torch.zeros(6, 4)
    rows, prompt, steps = [a, b, a], 2, 3
    kv = (10 + 6) * 1 * 2 * 4 * 2                                  # each distinct set's keys and values, once
    layer = 4 * 4 + 2 * 4 + 2 * 2 * 3                              # a row's projections and FFN, per position
    head = 4 + 2 * 5                                               # LM head: once per forward (last position)
    cross = 2 * 2 * (10 + 6 + 10)                                  # scores + values over each row's own set
    forwards = [(prompt, prompt)] + [(1, 3), (1, 4)]               # (positions, self-attention span)
    macs = kv + sum(n * (3 * (layer + 2 * 2 * span) + cross) + 3 * head for n, span in forwards)
    assert bench.caption_call_flops(cap, rows, prompt, steps) == 2 * macs


def test_bench_segment_tiny(tmp_path):
    rep = run_bench("bench_segment.py", ["--size", "tiny", "--images", "1", "--warmup", "0", "--tags", "20",
                                         "--boxes", "3", "--chunk-check", "voc,ade150,ade847",
                                         "--filter-scaling", "50,400", "--repeats", "2", "--baseline-tags", "5",
                                         "--filter-repeats", "2"], tmp_path)
    assert rep["random_weights"] is True and "meaningless" in rep["note"]
    m = rep["model"]
    assert m["size"] == "tiny" and m["gdino"]["params"] > 0 and m["sam2"]["params"] > 0
    assert m["gdino"]["max_text_len"] == 256
    assert {"cpu_count", "torch", "transformers", "device_name"} <= set(rep["machine"])
    assert len(rep["settings"]["tags"]) == 20

    st = rep["stages"]
    assert st["images"] == 1 and st["tags"] == 20
    med = st["median_seconds_per_image"]
    assert set(med) == {"locate", "filter", "segment", "total"}
    assert all(finite_nonneg(v) for v in med.values()) and med["total"] > 0
    assert st["images_per_second"] > 0
    (img,) = st["per_image"]
    assert img["locate_forward_rows"] == img["locate_passes"] == 1               # 20 short tags: one chunk
    assert img["locate_forward_calls"] == 1
    assert img["boxes_segmented"] == 3 == img["boxes_from_detector"] + img["boxes_synthetic"]
    assert img["segment_encoder_calls"] == 1                                     # image encoded once
    assert img["segment_decoder_calls"] == 1 and img["segment_decoder_forward"] > 0  # SAM 2's forward hooked too
    # the time outside the forwards excludes SAM 2's decoder forward as well as its encoder
    outside = (img["timings"]["total"] - img["locate_model_forward"] - img["segment_image_encoder"]
               - img["segment_decoder_forward"]) / img["timings"]["total"]
    assert st["share_outside_model_forwards"] == pytest.approx(outside)
    assert img["masks_shape"] == [3, *img["image_size"]]

    ck = {r["name"]: r for r in rep["chunking"]}
    assert set(ck) == {"voc", "ade150", "ade847"}
    assert ck["voc"]["tags"] == 20 and ck["ade150"]["tags"] == 150 and ck["ade847"]["tags"] == 847
    for r in ck.values():
        assert r["chunks"] > 0
        assert r["chunks"] == r["min_chunks_contiguous"] >= r["lower_bound_chunks"]   # fewest possible
        assert r["longest_chunk_tokens"] <= r["max_text_len"]
        assert r["forward_rows"] == r["chunks"] == r["passes"]                         # rows = chunks, not tags
        assert r["forward_calls"] == r["expected_forward_calls"] == math.ceil(r["chunks"] / 4)
        assert r["chunks_equal_minimum"] and r["rows_equal_chunks"] and r["calls_as_expected"]
        assert sum(r["chunk_tags"]) == r["tags_prompted"]
    assert ck["ade847"]["chunks"] > 1 and ck["ade847"]["forward_rows"] < ck["ade847"]["tags"]

    gb = rep["gdino_baseline"]
    assert gb["tags"] == 5
    assert gb["per_tag_forward"]["calls"] == 5 and gb["chunked_forward"]["rows"] == 1
    assert gb["chunked_median"] > 0 and gb["per_tag_median"] > 0 and gb["speedup_per_tag_over_chunked"] > 0

    sb = rep["sam2_baseline"]
    assert sb["boxes"] == 3
    assert sb["calls"]["batched"]["encoder_calls"] == 1 and sb["calls"]["batched"]["decoder_calls"] == 1
    assert sb["calls"]["per_box_call"]["encoder_calls"] == 3 and sb["calls"]["per_box_call"]["decoder_calls"] == 3
    assert sb["calls"]["per_box_decoder"]["encoder_calls"] == 1
    assert sb["calls"]["per_box_decoder"]["decoder_calls"] == 3
    assert all(v > 0 for v in sb["median"].values())
    assert sb["repeats"] == gb["repeats"] == 2 and all(len(v) == 2 for v in sb["seconds"].values())
    assert rep["memory"]["peak_rss_mib_end"] > 0

    fs = {r["boxes"]: r for r in rep["filter_scaling"]}
    assert set(fs) == {50, 400}
    pytest.importorskip("torchvision")
    for r in fs.values():
        assert r["baseline"] == "torchvision.ops.nms"
        assert r["same_result"] is True                     # selfseg keeps exactly torchvision's boxes, in order
        assert 0 < r["selfseg"]["kept"] == r["torchvision"]["kept"] <= rep["settings"]["max_detections"]
        for side in (r["selfseg"], r["torchvision"]):
            assert side["n"] == 2 and side["min_seconds"] <= side["seconds"] <= side["max_seconds"]
            assert finite_nonneg(side["peak_traced_mib"])


def test_bench_clipseg_tiny(tmp_path):
    rep = run_bench("bench_clipseg.py", ["--size", "tiny", "--tags", "7", "--per-call", "3,0", "--side", "96",
                                         "--repeats", "2"], tmp_path)
    assert rep["random_weights"] is True and {"cpu_count", "device_name"} <= set(rep["machine"])
    rows = {r["tags_per_call"]: r for r in rep["rows"]}
    assert set(rows) == {3, 0} and all(r["tags"] == 7 for r in rows.values())
    assert rows[3]["decoder_calls"] == 3 and rows[0]["decoder_calls"] == 1     # ceil(7 / 3) chunks vs one
    for r in rows.values():
        assert r["seconds"] > 0 and finite_nonneg(r["working_mib"]) and r["peak_rss_mib"] > 0
        assert len(r["seconds_all"]) == 2 and r["text_calls"] == 2  # a list unseen by each timed call
    fixed = run_bench("bench_clipseg.py", ["--size", "tiny", "--tags", "7", "--per-call", "3", "--side", "96",
                                           "--repeats", "2", "--vocabulary", "fixed", "--image-batch", "3"], tmp_path)
    assert fixed["vocabulary"] == "fixed" and fixed["rows"][0]["text_calls"] == 1  # one list, encoded once
    ways = {r["way"]: r for r in fixed["image_batch"]}
    assert set(ways) == {"batched", "per_image"} and all(r["images"] == 3 for r in ways.values())
    for r in ways.values():  # each photo's own ceil(7 / 3) decoder chunks, the list's text once, either way
        assert r["decoder_calls"] == 9 and r["text_calls"] == 1 and r["seconds"] > 0


def test_bench_postprocess_small(tmp_path):
    """No model, so no "RANDOM" banner: run directly. Two runs give the same digests (what the harness offers
    for checking that a change kept the outputs)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    reports = []
    for k in range(2):
        out = tmp_path / f"post{k}.json"
        proc = subprocess.run([sys.executable, str(BENCH / "bench_postprocess.py"), "--side", "96", "--photo-side",
                               "150", "--repeats", "2", "--quiet", "--json", str(out)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports.append(json.loads(out.read_text(encoding="utf-8")))
    rows = reports[0]["rows"]
    assert set(rows) == {"clipseg_instances", "instances_json", "yolo_trace", "yolo_trace_supervision", "yolo_join",
                         "coco_polygons", "export_add", "export_for_view"}
    for row in rows.values():
        assert row["n"] == 2 and 0 <= row["min_s"] <= row["median_s"] <= row["max_s"] and row["instances"] > 0
    assert rows["instances_json"]["instances"] == rows["clipseg_instances"]["instances"]
    digests = [{k: r.get("digest") for k, r in rep["rows"].items()} for rep in reports]
    assert digests[0] == digests[1] and all(digests[0][k] for k in ("clipseg_instances", "export_add", "yolo_trace",
                                                                      "yolo_join", "coco_polygons"))


def test_independent_minimum_matches_the_locators_packing():
    """The benchmark's own minimum (a dynamic programme) agrees with selfseg's greedy packing, and the
    lower bound and first-fit-decreasing bracket it."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_segment
    finally:
        sys.path.remove(str(BENCH))
    from selfseg.locate.grounding_dino import pack_greedy

    rng = random.Random(0)
    for _ in range(300):
        cap = rng.randint(3, 40)
        weights = [rng.randint(1, cap) for _ in range(rng.randint(0, 60))]
        dp = bench_segment.min_contiguous_chunks(weights, cap)
        assert dp == len(pack_greedy(weights, cap))
        bound = math.ceil(sum(weights) / cap)
        assert bound <= dp and bound <= bench_segment.first_fit_decreasing(weights, cap)
    assert bench_segment.min_contiguous_chunks([], 10) == 0
    assert bench_segment.min_contiguous_chunks([5, 6, 5, 4], 10) == 3      # 5 | 6 | 5 4
    assert bench_segment.first_fit_decreasing([5, 6, 5, 4], 10) == 2       # 6 4 | 5 5 when reordering is allowed


@pytest.mark.parametrize("text,expected", [("voc", [("voc", 20)]), ("5,ade150", [("ade847[:5]", 5), ("ade150", 150)])])
def test_chunk_check_specs(text, expected):
    sys.path.insert(0, str(BENCH))
    try:
        import bench_segment
    finally:
        sys.path.remove(str(BENCH))
    assert [(n, len(t)) for n, t in bench_segment.chunk_check_specs(text)] == expected


@pytest.mark.parametrize("command", ["tag", "segment"])
def test_bench_memory_child_measures_a_peak(tmp_path, command):
    """The memory harness's child process (tag, or the whole `selfseg segment` command) runs and reports
    its peak RSS; the 8000x6000 cases themselves are left to the benchmark run."""
    from PIL import Image

    sys.path.insert(0, str(BENCH))
    try:
        import bench_memory
    finally:
        sys.path.remove(str(BENCH))
    img = tmp_path / "small.jpg"
    Image.effect_noise((96, 64), 64).convert("RGB").save(img)
    kib = bench_memory.peak_kib(str(REPO / "configs" / "smoke.yaml"), img, command)
    assert kib > 50 * 1024  # torch alone is more than 50 MiB; a parse slip would give nonsense


def test_bert_vocab_named_by_the_environment(tmp_path, monkeypatch, capsys):
    """SELFSEG_BENCH_BERT_VOCAB (set by the GPU kit, which cannot carry the 90 MB package that ships the
    vocab) is used when it is a bert-base-uncased vocab, and ignored with a note when it is not."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_bcc
    finally:
        sys.path.remove(str(BENCH))
    good = tmp_path / "vocab.txt"
    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    good.write_text("\n".join(words + [f"w{i}" for i in range(30522 - len(words))]), encoding="utf-8")
    monkeypatch.setenv("SELFSEG_BENCH_BERT_VOCAB", str(good))
    assert bench_bcc._installed_bert_vocab() == good
    bad = tmp_path / "short.txt"
    bad.write_text("[PAD]\nhello\n", encoding="utf-8")
    monkeypatch.setenv("SELFSEG_BENCH_BERT_VOCAB", str(bad))
    assert bench_bcc._installed_bert_vocab() != bad
    assert "ignored" in capsys.readouterr().err
