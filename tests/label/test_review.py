"""The dataset review page: what ReviewWriter writes, and the page as a real headless Chromium renders it.

The browser tests need the `chromium` package (Debian); without a Chromium on PATH they are skipped."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from selfseg.label.review import ALPHA, ReviewWriter, _colour, page_html

REPO = Path(__file__).resolve().parents[2]
PHOTOS = {
    "a": REPO / "examples/images/ADE_val_00000001.jpg",  # 683 x 512
    "b": REPO / "examples/images/ADE_val_00000003.jpg",  # 400 x 300
    "c": REPO / "examples/ade20k_sample/images/ADE_val_00000002.jpg",  # 500 x 364
}
XSS = "<img src=x onerror=alert(1)>"
BREAKOUT = '</script><script>document.body.dataset.pwned = "class"</script>'
CLASSES = ["car", "person", XSS, BREAKOUT]
TITLE = 'Review <script>document.body.dataset.pwned = "title"</script>'
VIEW = 400
THUMB = 256
# Chromium writes every console message (log, warn and error alike) and every uncaught exception to stderr
# as `[pid:tid:time:INFO:CONSOLE:<line>] "message", source: <url> (<line>)`; older releases wrote
# `CONSOLE(<line>)`. test_console_messages_are_seen keeps this pattern honest.
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught")
TIMEOUT = 60


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _instance(class_id: int, score: float, mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    return {"class_id": class_id, "class": CLASSES[class_id], "score": score, "mask_score": round(score - 0.05, 2),
            "area": int(mask.sum()), "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                              int(ys.max() - ys.min() + 1)]}


def _items(out: Path) -> list[tuple[dict, Image.Image, np.ndarray]]:
    """Three photos: a train image with three classes (stored under out/, so a relative path), a val image
    given by its absolute path, and a train image with no instances."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(PHOTOS["a"], out / "images" / "a.jpg")
    items = []
    specs = [
        ("images/a.jpg", "a", "train", [(0, 0.9, (100, 400, 50, 500)), (1, 0.4, (200, 300, 300, 350)),
                                        (2, 0.7, (10, 80, 10, 600))]),
        (str(PHOTOS["b"]), "b", "val", [(0, 0.6, (50, 250, 20, 220)), (1, 0.8, (100, 280, 250, 330))]),
        (str(PHOTOS["c"]), "c", "train", []),
    ]
    for file, key, split, insts in specs:
        image = Image.open(PHOTOS[key])
        w, h = image.size
        masks = np.array([_rect(h, w, *box) for _, _, box in insts], dtype=bool).reshape(-1, h, w)
        record = {"file": file, "source": str(PHOTOS[key]), "split": split, "width": w, "height": h,
                  "instances": [_instance(c, s, m) for (c, s, _), m in zip(insts, masks)]}
        items.append((record, image, masks))
    return items


@pytest.fixture(scope="module")
def review(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("review")
    writer = ReviewWriter(out, thumb_size=THUMB, view_size=VIEW)
    records = []
    for record, image, masks in _items(out):
        writer.add(record, image, masks)
        records.append(record)
    index = writer.close(CLASSES, title=TITLE, metadata={"config": "configs/<label>.yaml", "min_images": 2})
    assert index == out / "index.html"
    return out, records


def _data(out: Path) -> dict:
    text = (out / "review" / "data.js").read_text(encoding="utf-8")
    prefix = "window.SELFSEG_REVIEW = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    return json.loads(text[len(prefix):].rstrip().rstrip(";"))


# --- what the writer writes ---------------------------------------------------------------------------------


def test_data_js_holds_every_record(review):
    out, records = review
    data = _data(out)
    assert data["title"] == TITLE
    assert [c["name"] for c in data["classes"]] == CLASSES
    assert [c["colour"] for c in data["classes"]] == ["#" + "".join(f"{v:02x}" for v in _colour(i)) for i in
                                                      range(len(CLASSES))]
    assert data["metadata"] == {"config": "configs/<label>.yaml", "min_images": 2}
    assert len(data["images"]) == len(records)
    for i, (im, rec) in enumerate(zip(data["images"], records)):
        assert im["id"] == i
        assert (im["file"], im["split"], im["width"], im["height"]) == (rec["file"], rec["split"], rec["width"],
                                                                         rec["height"])
        assert im["instances"] == [[r["class_id"], r["score"], r["mask_score"], r["area"], *map(float, r["bbox"])]
                                   for r in rec["instances"]]
    assert data["images"][0]["href"] == "images/a.jpg"
    assert data["images"][1]["href"] == PHOTOS["b"].as_uri()


def test_data_js_has_no_raw_markup(review):
    """A class name cannot end the script element even if data.js is ever inlined into the page."""
    out, _ = review
    text = (out / "review" / "data.js").read_text(encoding="utf-8")
    assert "<" not in text and ">" not in text and "&" not in text


def test_thumbnails_and_views_have_their_sizes(review):
    out, _ = review
    data = _data(out)
    # the longer side at most THUMB (VIEW), aspect kept, never enlarged
    thumbs = {"a": (256, 192), "b": (256, 192), "c": (256, 186)}
    views = {"a": (400, 300), "b": (400, 300), "c": (400, 291)}
    for im, key in zip(data["images"], "abc"):
        with Image.open(out / im["thumb"]) as t:
            assert t.size == thumbs[key] == tuple(im["thumb_size"])
            assert t.mode == "RGB"
        with Image.open(out / im["view"]) as v:
            assert v.size == views[key]


def test_masks_are_painted_where_they_are(review):
    """Image b keeps its size in the view: inside its car mask the photo is blended with the car colour,
    outside every mask it is the photo (JPEG-exact to a few levels)."""
    out, records = review
    photo = np.asarray(Image.open(PHOTOS["b"]).convert("RGB"), dtype=np.float32)
    with Image.open(out / _data(out)["images"][1]["view"]) as v:
        view = np.asarray(v.convert("RGB"), dtype=np.float32)
    car = np.array(_colour(0), dtype=np.float32)
    inside = (slice(120, 180), slice(60, 180))  # well inside the car rectangle, clear of its label and outline
    expected = photo[inside] * (1 - ALPHA) + car * ALPHA
    assert np.abs(view[inside] - expected).mean() < 6
    outside = (slice(285, 300), slice(340, 400))
    assert np.abs(view[outside] - photo[outside]).mean() < 6


def test_index_html_escapes_title_and_metadata(review):
    out, _ = review
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<script>document" not in page
    assert "&lt;script&gt;document.body.dataset.pwned = &quot;title&quot;&lt;/script&gt;" in page
    assert "configs/&lt;label&gt;.yaml" in page
    assert 'src="review/data.js"' in page and 'src="review/review.js"' in page
    assert "http://" not in page and "https://" not in page  # nothing from the network
    for name in ("review.js", "review.css", "data.js"):
        assert "https://" not in (out / "review" / name).read_text(encoding="utf-8")
    odd = page_html("{metadata} & co", {"k": "v"})
    assert "<title>{metadata} &amp; co</title>" in odd and odd.count("<dt>k</dt>") == 1


def _all_values(obj, seen=None):
    """Every object reachable from `obj` through containers and plain attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    for c in children:
        yield from _all_values(c, seen)


def test_writer_keeps_no_pixels_and_constant_state(tmp_path):
    writer = ReviewWriter(tmp_path, thumb_size=32, view_size=64)
    rng = np.random.default_rng(0)
    sizes = []
    for i in range(40):
        image = Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8))
        mask = _rect(48, 80, 5, 30, 10, 60)
        record = {"file": f"images/{i}.jpg", "source": f"{i}.jpg", "split": "train", "width": 80, "height": 48,
                  "instances": [_instance(i % 2, 0.5, mask)]}
        writer.add(record, image, mask[None])
        values = list(_all_values(writer))
        assert not any(isinstance(v, (np.ndarray, Image.Image)) for v in values)
        sizes.append(sum(len(v) for v in values if isinstance(v, (list, dict, tuple, set))))
    assert len(set(sizes)) == 1, "the writer's state grows with the images it has seen"
    assert writer.images == 40 and writer.instances == 40
    writer.close(["car", "person"])
    assert len(_data(tmp_path)["images"]) == 40
    assert len(list((tmp_path / "review" / "thumbs").glob("*.jpg"))) == 40


def test_masks_that_do_not_fit_the_record_are_refused(tmp_path):
    writer = ReviewWriter(tmp_path)
    image = Image.new("RGB", (40, 30))
    record = {"file": "x.jpg", "split": "val", "width": 40, "height": 30,
              "instances": [_instance(0, 0.5, _rect(30, 40, 0, 10, 0, 10))]}
    with pytest.raises(ValueError, match="masks of shape"):
        writer.add(record, image, np.zeros((1, 40, 30), dtype=bool))
    with pytest.raises(ValueError, match="40x30"):
        writer.add(record, Image.new("RGB", (30, 40)), np.zeros((1, 30, 40), dtype=bool))
    writer.add(record, image, _rect(30, 40, 0, 10, 0, 10)[None])
    with pytest.raises(ValueError, match="class_id 0"):
        writer.close([])


# --- the page in a real browser ----------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium): the review page is not opened in a browser")
    return found


def _render(url: str, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages Chromium logged while running them."""
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", url]
    # Its own session, so that a hung browser goes down with every helper process it started.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT} s (an alert() that injected markup runs blocks the "
                    f"page):\n{stderr[-3000:]}")
    assert proc.returncode == 0 and "</html>" in stdout, f"chromium failed:\n{stderr[-3000:]}"
    return stdout, [line for line in stderr.splitlines() if CONSOLE.search(line)]


class _Dom(HTMLParser):
    """The start tags (with attributes) and the text of a serialised DOM, text kept per innermost element."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict]:
        return [a for t, a in self.tags if (tag is None or t == tag)
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def counts(self, split: str) -> tuple[int, int]:
        """(images, instances) the counts table shows for a split ("all" for the whole dataset)."""
        cells = {a["data-count"]: int(a["data-value"]) for a in self.find("td", data_split=split)}
        return cells["images"], cells["instances"]


def _check_not_injected(dom: _Dom) -> None:
    assert not dom.find("img", src="x"), "a class name became an element"
    assert not any(k.startswith("on") for _, a in dom.tags for k in a), "an event-handler attribute was injected"
    assert "data-pwned" not in {k for _, a in dom.tags for k in a}
    assert sum(1 for t, _ in dom.tags if t == "script") == 2  # data.js and review.js, nothing more


def test_console_messages_are_seen(tmp_path):
    """The pattern the page tests rely on catches console.error and uncaught exceptions in this Chromium."""
    page = tmp_path / "noisy.html"
    page.write_text('<!doctype html><p id="p">x</p><script>console.error("review-probe");</script>'
                    '<script>setTimeout(function () { throw new Error("probe-thrown"); }, 0);</script>',
                    encoding="utf-8")
    _, console = _render(page.as_uri(), tmp_path / "profile")
    assert any("review-probe" in line for line in console), console
    assert any("Uncaught" in line and "probe-thrown" in line for line in console), console


def test_page_shows_the_dataset_without_console_messages(review, tmp_path):
    out, _ = review
    text, console = _render((out / "index.html").as_uri(), tmp_path / "profile")
    assert console == []
    dom = _Dom(text)
    assert dom.counts("all") == (3, 5)
    assert dom.counts("train") == (2, 3)
    assert dom.counts("val") == (1, 2)
    assert dom.find("strong", id="count-classes")[0]["data-value"] == "4"
    assert {a["data-class-id"]: int(a["data-value"]) for a in dom.find("button", **{"class": "bar"})} == {
        "0": 2, "1": 2, "2": 1, "3": 0}
    blocks = {a["data-block"]: int(a["data-images"]) for a in dom.find("section", **{"class": "class-block"})}
    assert blocks == {"class-0": 2, "class-1": 2, "class-2": 1, "none": 1}
    thumbs = dom.find("img", loading="lazy")
    assert len(thumbs) == 6 and all((out / t["src"]).is_file() and t["alt"] for t in thumbs)
    assert not dom.find("dialog", open="")
    # the hostile names arrive as text, in the histogram, the class select and the grid headings
    assert dom.texts.count(XSS) >= 3 and dom.texts.count(BREAKOUT) >= 2
    assert any("<script>document.body.dataset.pwned" in t for t in dom.texts)  # the title, as text
    _check_not_injected(dom)
    assert all(dom.find("label", **{"for": c}) for c in ("class-filter", "min-score"))


def test_filter_and_image_from_the_address(review, tmp_path):
    out, _ = review
    url = (out / "index.html").as_uri() + "#" + urlencode({"min_score": 0.7, "class": "car", "image": 0})
    text, console = _render(url, tmp_path / "profile")
    assert console == []
    dom = _Dom(text)
    assert dom.counts("all") == (1, 1)  # only image a's car (0.9); b's car scores 0.6
    assert dom.counts("train") == (1, 1)
    assert dom.counts("val") == (0, 0)
    assert dom.find("strong", id="count-classes")[0]["data-value"] == "1"
    summary = dom.find("p", id="filter-summary")[0]
    assert (summary["data-images"], summary["data-instances"]) == ("1", "1")
    assert {a["data-block"]: int(a["data-images"]) for a in dom.find("section", **{"class": "class-block"})} == {
        "class-0": 1}
    assert dom.find("button", data_class_id="0", aria_pressed="true")
    # the histogram counts every class at the minimum score: car 0.9, person 0.8, XSS 0.7
    assert {a["data-class-id"]: int(a["data-value"]) for a in dom.find("button", **{"class": "bar"})} == {
        "0": 1, "1": 1, "2": 1, "3": 0}
    # image 0 is open: its three instances listed, the two the filter hides greyed out
    assert dom.find("dialog", id="viewer", open="")
    rows = [a for a in dom.find("tr") if "data-class-id" in a]
    assert [(r["data-class-id"], r["class"]) for r in rows] == [("0", ""), ("1", "filtered-out"),
                                                                ("2", "filtered-out")]
    assert dom.find("img", id="viewer-image")[0]["src"] == "review/views/000000.jpg"
    assert dom.find("a", href="images/a.jpg")
    _check_not_injected(dom)
