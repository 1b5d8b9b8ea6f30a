"""The static review page of a labelled dataset: `DIR/index.html`, opened straight from disk (no server).

`ReviewWriter.add` takes one image at a time with its instances and masks, writes two overlays under
`DIR/review/` (a thumbnail in `thumbs/`, a larger view with labels in `views/`) and appends a small summary
line to `review/images.jsonl`; it keeps no pixels or masks, so memory does not grow with the dataset beyond
two counters. `close` turns the summaries into `review/data.js` (one global, `window.SELFSEG_REVIEW`: a page
opened from file:// may run a script it links to, while Chromium refuses it `fetch` of a local file) and
writes `index.html` with its script and style sheet, `review/review.js` and `review/review.css`.

The page shows the counts (images and instances, overall and per split), a histogram of instances per class,
a grid of thumbnails per class and, on a click, the larger view with its list of instances. A class select
and a minimum-score slider filter everything; the filter lives in the address's fragment
(`index.html#class=car&min_score=0.5`, `&image=3` opens an image), so a filtered view can be bookmarked or
shared. Class names come from captions: the script only ever sets them as text, never as markup.

Each summary line: `{"id", "file", "href", "source", "split", "width", "height", "thumb", "thumb_size",
"view", "instances"}`, every instance a list `[class_id, score, mask_score, area, x, y, w, h]` (compact,
since data.js holds one per instance of the whole dataset).
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: The folder under the output directory that holds everything the page loads besides index.html.
REVIEW_DIR = "review"
#: The per-image summaries, one JSON object a line, in the order the images were added.
SUMMARY_FILE = "images.jsonl"
#: The global data.js assigns.
DATA_GLOBAL = "SELFSEG_REVIEW"
#: How strongly a mask's class colour covers the photo.
ALPHA = 0.45
JPEG_QUALITY = 85


class ReviewWriter:
    """Writes the review page of a dataset, one image at a time (see the module's description)."""

    def __init__(self, out_dir: Path, thumb_size: int = 256, view_size: int = 1024):
        if thumb_size < 16 or view_size < thumb_size:
            raise ValueError(f"ReviewWriter: expected 16 <= thumb_size <= view_size, got thumb_size={thumb_size}, "
                             f"view_size={view_size}")
        self.out_dir = Path(out_dir)
        self.thumb_size = int(thumb_size)
        self.view_size = int(view_size)
        self.review_dir = self.out_dir / REVIEW_DIR
        for sub in ("thumbs", "views"):
            (self.review_dir / sub).mkdir(parents=True, exist_ok=True)
        self.summary_path = self.review_dir / SUMMARY_FILE
        # A writer starts a fresh review: summaries of an earlier run in the same folder must not leak in.
        self.summary_path.write_text("", encoding="utf-8")
        self.images = 0
        self.instances = 0

    def add(self, record: dict, image: Image.Image, masks: np.ndarray) -> None:
        """Write the overlays of one image and append its summary. `record` is the exporter's record
        ({"file", "source", "split", "width", "height", "instances": [{"class_id", "class", "score",
        "mask_score", "area", "bbox"}]}), `image` the photo as stored (W x H, or a copy shrunk to at least
        the view's size: only that much is drawn), `masks` (N, h, w) bool at the image's size, one per instance
        in the record's order."""
        import numpy as np

        width, height = int(record["width"]), int(record["height"])
        instances = list(record.get("instances") or [])
        w, h = image.size
        if abs(w * height - h * width) > max(width, height):  # a shrunk copy keeps the aspect, to a pixel
            raise ValueError(f"{record.get('file')}: the record says {width}x{height}, the image is {w}x{h}")
        masks = np.asarray(masks)
        if masks.size == 0 and not instances:
            masks = np.zeros((0, h, w), dtype=bool)
        if masks.shape != (len(instances), h, w):
            raise ValueError(f"{record.get('file')}: expected masks of shape {(len(instances), h, w)} "
                             f"(instances, height, width), got {masks.shape}")
        index = self.images
        name = f"{index:06d}.jpg"
        class_ids = [int(inst["class_id"]) for inst in instances]
        colours = np.array([_colour(c) for c in class_ids], dtype=np.uint8).reshape(-1, 3)
        labels = [f"{inst.get('class', c)} {float(inst['score']):.2f}" for inst, c in zip(instances, class_ids)]
        masks = masks.astype(bool, copy=False)
        # Larger masks are painted first so the small ones on top of them stay visible.
        order = sorted(range(len(instances)), key=lambda i: -int(masks[i].sum()))
        rgb = image.convert("RGB")

        view_wh = _fit(width, height, self.view_size)
        view_labels = _label_map(masks, order, view_wh)
        view = _paint(rgb, view_labels, colours)
        _write_labels(view, instances, labels, colours, order, view_wh[0] / width)
        view.save(self.review_dir / "views" / name, quality=JPEG_QUALITY)

        thumb_wh = _fit(width, height, self.thumb_size)
        thumb = _paint(rgb, _resample(view_labels, thumb_wh), colours)
        thumb.save(self.review_dir / "thumbs" / name, quality=JPEG_QUALITY)

        summary = {
            "id": index,
            "file": str(record["file"]),
            "href": _href(record["file"]),
            "source": str(record.get("source", record["file"])),
            "split": str(record.get("split", "")),
            "width": width,
            "height": height,
            "thumb": f"{REVIEW_DIR}/thumbs/{name}",
            "thumb_size": list(thumb_wh),
            "view": f"{REVIEW_DIR}/views/{name}",
            "instances": [[c, round(float(inst["score"]), 4), round(float(inst.get("mask_score", 0.0)), 4),
                           int(inst.get("area", 0)), *[round(float(v), 1) for v in inst["bbox"]]]
                          for inst, c in zip(instances, class_ids)],
        }
        # Appending per image (rather than holding the file open) leaves nothing to clean up if a run stops.
        with self.summary_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(summary, ensure_ascii=True) + "\n")
        self.images += 1
        self.instances += len(instances)

    def close(self, class_names: list[str], title: str = "selfseg dataset", metadata: dict | None = None) -> Path:
        """Write `review/data.js` from the summaries, the page's script and style, and `index.html`; return
        the path of index.html. May be called again (after more `add`s, or with another title)."""
        class_names = [str(c) for c in class_names]
        data_path = self.review_dir / "data.js"
        head = {
            "title": str(title),
            "classes": [{"id": i, "name": n, "colour": "#" + "".join(f"{v:02x}" for v in _colour(i))}
                        for i, n in enumerate(class_names)],
            "metadata": _jsonable(metadata or {}),
        }
        with data_path.open("w", encoding="utf-8") as out:
            out.write(f"window.{DATA_GLOBAL} = ")
            opening = _script_safe(json.dumps(head, ensure_ascii=True))
            out.write(opening[:-1] + ', "images": [\n')
            first = True
            for line in _summary_lines(self.summary_path, len(class_names)):
                out.write(("" if first else ",\n") + _script_safe(line))
                first = False
            out.write("\n]};\n")
        (self.review_dir / "review.js").write_text(SCRIPT, encoding="utf-8")
        (self.review_dir / "review.css").write_text(STYLE, encoding="utf-8")
        index = self.out_dir / "index.html"
        index.write_text(page_html(title, metadata), encoding="utf-8")
        return index


def page_html(title: str, metadata: dict | None = None) -> str:
    """The page's skeleton: everything the data fills in is left empty for review.js."""
    t = html.escape(str(title))
    rows = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_text(v))}</dd>"
                   for k, v in (metadata or {}).items())
    details = (f'<details class="metadata"><summary>How this dataset was made</summary><dl>{rows}</dl></details>'
               if rows else "")
    values = {"title": t, "metadata": details}
    # One pass, so a title that happens to contain "{metadata}" stays text.
    return re.sub(r"\{(title|metadata)\}", lambda m: values[m.group(1)], PAGE)


def _summary_lines(path: Path, n_classes: int) -> Iterable[str]:
    """The summary lines, checked against the class list as they stream past."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            for inst in json.loads(line)["instances"]:
                if not 0 <= inst[0] < n_classes:
                    raise ValueError(f"review: an instance has class_id {inst[0]}, but there are {n_classes} "
                                     f"class names")
            yield line


def _script_safe(text: str) -> str:
    """JSON that stays inert even if inlined into a <script> element: no '<', '>' or '&' left raw."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _href(file: Any) -> str:
    """A link from index.html to the image: relative paths stay relative, absolute ones become file: URLs."""
    p = Path(str(file))
    return p.as_uri() if p.is_absolute() else quote(p.as_posix())


@lru_cache(maxsize=4096)
def _colour(class_id: int) -> tuple[int, int, int]:
    """The class's colour: the project's palette, whose i-th colour does not depend on how many are drawn."""
    from ..viz import palette

    r, g, b = palette(class_id + 1)[class_id]
    return int(r), int(g), int(b)


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) with the longer side at most `longest`, aspect kept; never enlarged."""
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _sample_index(n_from: int, n_to: int) -> np.ndarray:
    import numpy as np

    return np.minimum(((np.arange(n_to) + 0.5) * n_from / n_to).astype(np.intp), n_from - 1)


def _resample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of the last two axes to (w, h)."""
    w, h = size
    rows, cols = _sample_index(a.shape[-2], h), _sample_index(a.shape[-1], w)
    return a[..., rows[:, None], cols[None, :]]


def _label_map(masks: np.ndarray, order: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """(h, w) int32: the index of the instance on top at each pixel, -1 where there is none. Each mask is
    sampled down before painting, so a large photo never needs a full-size label array."""
    import numpy as np

    w, h = size
    out = np.full((h, w), -1, dtype=np.int32)
    for i in order:
        out[_resample(masks[i], size)] = i
    return out


def _paint(rgb: Image.Image, labels: np.ndarray, colours: np.ndarray) -> Image.Image:
    """The photo at the label map's size with each instance's colour blended in and its outline drawn solid."""
    import numpy as np
    from PIL import Image

    h, w = labels.shape
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if len(colours) == 0:
        return rgb.copy()
    base = np.asarray(rgb, dtype=np.float32)
    inside = labels >= 0
    colour = colours[np.maximum(labels, 0)].astype(np.float32)
    out = np.where(inside[..., None], base * (1 - ALPHA) + colour * ALPHA, base)
    edge = np.zeros_like(inside)
    down = labels[1:, :] != labels[:-1, :]
    right = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    edge &= inside
    out[edge] = colour[edge]
    return Image.fromarray(out.astype(np.uint8))


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # a Pillow without FreeType has only its fixed bitmap font
        return ImageFont.load_default()


def _write_labels(view: Image.Image, instances: list[dict], labels: list[str], colours: np.ndarray,
                  order: Sequence[int], scale: float) -> None:
    """Each instance's "class score" in a box of its colour at its bounding box's top-left corner."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(view)
    font = _font(max(11, round(max(view.size) / 64)))
    for i in order:
        x, y = (float(v) * scale for v in instances[i]["bbox"][:2])
        r, g, b = (int(v) for v in colours[i])
        ink = (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
        text = labels[i]
        try:
            box = draw.textbbox((0, 0), text, font=font)
        except UnicodeEncodeError:  # the bitmap font knows Latin-1 only
            text = text.encode("ascii", "replace").decode()
            box = draw.textbbox((0, 0), text, font=font)
        tw, th = box[2] - box[0] + 4, box[3] - box[1] + 4
        x = min(max(0.0, x), max(0.0, view.width - tw))
        y = min(max(0.0, y), max(0.0, view.height - th))
        draw.rectangle((x, y, x + tw, y + th), fill=(r, g, b))
        draw.text((x + 2 - box[0], y + 2 - box[1]), text, fill=ink, font=font)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="review/review.css">
</head>
<body>
<header>
<h1>{title}</h1>
<table id="counts">
<caption>Counts <span id="counts-note"></span></caption>
<thead><tr><th scope="col">Split</th><th scope="col">Images</th><th scope="col">Instances</th></tr></thead>
<tbody id="counts-body"></tbody>
</table>
<p>Classes: <strong id="count-classes" data-count="classes"></strong></p>
{metadata}
</header>
<main>
<section id="filters" aria-labelledby="filters-title">
<h2 id="filters-title">Filter</h2>
<div class="controls">
<label for="class-filter">Class</label>
<select id="class-filter"><option value="">All classes</option></select>
<label for="min-score">Minimum score</label>
<input type="range" id="min-score" min="0" max="1" step="0.05" value="0">
<output id="min-score-value" for="min-score">0.00</output>
<button type="button" id="reset-filters">Show everything</button>
</div>
<p id="filter-summary" role="status" aria-live="polite"></p>
</section>
<section id="histogram" aria-labelledby="histogram-title">
<h2 id="histogram-title">Instances per class</h2>
<p class="hint">Select a class to show only its images.</p>
<ol id="histogram-bars"></ol>
</section>
<section id="grid" aria-labelledby="grid-title">
<h2 id="grid-title">Images by class</h2>
<div id="grid-blocks"></div>
</section>
</main>
<dialog id="viewer" aria-labelledby="viewer-title">
<div class="viewer-head">
<h2 id="viewer-title"></h2>
<button type="button" id="viewer-close">Close</button>
</div>
<img id="viewer-image" alt="">
<dl id="viewer-facts"></dl>
<table id="viewer-instances">
<caption>Instances (those the filter hides are greyed out)</caption>
<thead><tr><th scope="col">#</th><th scope="col">Class</th><th scope="col">Score</th>
<th scope="col">Mask score</th><th scope="col">Area (px)</th><th scope="col">Box (x, y, w, h)</th></tr></thead>
<tbody></tbody>
</table>
</dialog>
<noscript><p>This page needs JavaScript to show the dataset.</p></noscript>
<script src="review/data.js"></script>
<script src="review/review.js"></script>
</body>
</html>
"""

STYLE = """:root { color-scheme: light dark; --bar: #4a78b5; --muted: #777; --line: #8884; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 1rem 3rem; }
h1 { font-size: 1.5rem; margin: 1rem 0 .5rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; display: flex; align-items: center; gap: .4rem; }
table { border-collapse: collapse; }
th, td { padding: .15rem .6rem; text-align: right; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: 600; padding-bottom: .2rem; }
#counts-note, .hint, .muted { color: var(--muted); font-weight: normal; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
.controls output { min-width: 3em; font-variant-numeric: tabular-nums; }
#histogram-bars { list-style: none; padding: 0; margin: 0; }
#histogram-bars li { margin: 2px 0; }
.bar { display: grid; grid-template-columns: minmax(8rem, 16rem) 1fr 4rem; gap: .5rem; align-items: center;
  width: 100%; background: none; border: 1px solid transparent; color: inherit; font: inherit; text-align: left;
  padding: 2px 4px; cursor: pointer; border-radius: 3px; }
.bar:hover, .bar[aria-pressed="true"] { border-color: var(--bar); }
.bar .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar .track { height: .9rem; }
.bar .fill { height: 100%; min-width: 1px; border-radius: 2px; }
.bar .value { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: .9em; height: .9em; border-radius: 2px; flex: none;
  vertical-align: -.1em; border: 1px solid #0006; }
.thumbs { list-style: none; padding: 0; margin: 0; display: grid; gap: .5rem;
  grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); }
.thumb { display: block; width: 100%; padding: 0; border: 1px solid var(--line); background: none;
  color: inherit; font: inherit; cursor: pointer; border-radius: 3px; overflow: hidden; }
.thumb:hover, .thumb:focus-visible { outline: 2px solid var(--bar); }
.thumb img { display: block; width: 100%; height: auto; }
.thumb .caption { display: block; padding: .2rem .4rem; font-size: .8rem; text-align: left;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.more { margin: .5rem 0; }
dialog { max-width: min(1100px, 96vw); max-height: 96vh; overflow: auto; padding: 1rem;
  border: 1px solid var(--line); }
dialog::backdrop { background: #000a; }
.viewer-head { display: flex; justify-content: space-between; gap: 1rem; align-items: start; }
.viewer-head h2 { margin: 0 0 .5rem; overflow-wrap: anywhere; }
#viewer-image { display: block; max-width: 100%; height: auto; }
#viewer-facts { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; }
#viewer-facts dd { margin: 0; overflow-wrap: anywhere; }
.metadata dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; }
.metadata dd { margin: 0; overflow-wrap: anywhere; }
tr.filtered-out { opacity: .45; }
#viewer-instances th:nth-child(2), #viewer-instances td:nth-child(2) { text-align: left; }
"""

SCRIPT = r"""// Renders the review page from window.SELFSEG_REVIEW (review/data.js). Every string from the data is set
// with textContent or setAttribute, never parsed as markup: class names come from free-form captions.
(function () {
  "use strict";
  const data = window.SELFSEG_REVIEW;
  if (!data) {
    const p = document.createElement("p");
    p.textContent = "review/data.js did not load: keep index.html next to its review folder.";
    document.querySelector("main").prepend(p);
    console.error("review: window.SELFSEG_REVIEW is missing (review/data.js did not load)");
    return;
  }
  const PAGE_ALL = 24;
  const PAGE_ONE = 96;
  const classes = data.classes;
  const images = data.images.map(function (im) {
    im.instances = im.instances.map(function (a) {
      return {cls: a[0], score: a[1], maskScore: a[2], area: a[3], bbox: a.slice(4, 8)};
    });
    return im;
  });
  const byId = new Map(images.map(function (im) { return [im.id, im]; }));
  const splits = Array.from(new Set(images.map(function (im) { return im.split; }))).sort();
  const state = {cls: -1, minScore: 0, image: null};
  const pages = new Map();  // class block -> how many thumbnails it shows

  const $ = function (id) { return document.getElementById(id); };
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function swatch(c) {
    const s = el("span", {"class": "swatch", "aria-hidden": "true"});
    s.style.background = classes[c].colour;
    return s;
  }
  function baseName(path) { return path.split(/[\\/]/).pop(); }
  function count(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function readLocation() {
    const params = new URLSearchParams(location.search.slice(1));
    new URLSearchParams(location.hash.slice(1)).forEach(function (v, k) { params.set(k, v); });
    const name = params.get("class");
    state.cls = -1;
    if (name !== null && name !== "") {
      const found = classes.find(function (c) { return c.name === name; });
      if (found) state.cls = found.id;
      else if (/^\d+$/.test(name) && Number(name) < classes.length) state.cls = Number(name);
    }
    const s = parseFloat(params.get("min_score"));
    state.minScore = isFinite(s) ? Math.min(1, Math.max(0, s)) : 0;
    const i = parseInt(params.get("image"), 10);
    state.image = byId.has(i) ? i : null;
  }
  function writeLocation() {
    const params = new URLSearchParams();
    if (state.cls >= 0) params.set("class", classes[state.cls].name);
    if (state.minScore > 0) params.set("min_score", String(state.minScore));
    if (state.image !== null) params.set("image", String(state.image));
    const hash = params.toString();
    if (location.hash.slice(1) !== hash) {
      history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
    }
  }

  const active = function () { return state.cls >= 0 || state.minScore > 0; };
  const passes = function (inst) {
    return inst.score >= state.minScore && (state.cls < 0 || inst.cls === state.cls);
  };
  function shown(im) { return !active() || im.instances.some(passes); }

  function renderCounts() {
    const body = $("counts-body");
    body.replaceChildren();
    const rows = [["all", "All"]].concat(splits.map(function (s) { return [s, s || "(no split)"]; }));
    rows.forEach(function (row) {
      const ims = images.filter(function (im) { return row[0] === "all" || im.split === row[0]; });
      const total = {images: ims.length, instances: 0};
      const now = {images: 0, instances: 0};
      ims.forEach(function (im) {
        total.instances += im.instances.length;
        const n = im.instances.filter(passes).length;
        now.instances += n;
        if (shown(im)) now.images += 1;
      });
      const tr = el("tr", {"data-split": row[0]});
      tr.append(el("th", {scope: "row"}, row[1]));
      ["images", "instances"].forEach(function (key) {
        const text = active() ? now[key] + " of " + total[key] : String(total[key]);
        tr.append(el("td", {"data-count": key, "data-split": row[0], "data-value": now[key],
                            "data-total": total[key]}, text));
      });
      body.append(tr);
    });
    const used = new Set();
    images.forEach(function (im) { im.instances.forEach(function (a) { if (passes(a)) used.add(a.cls); }); });
    const c = $("count-classes");
    c.dataset.value = active() ? used.size : classes.length;
    c.dataset.total = classes.length;
    c.textContent = active() ? used.size + " of " + classes.length + " with instances shown" : classes.length;
    $("counts-note").textContent = active() ? "(filtered)" : "";
  }

  function renderHistogram() {
    const counts = classes.map(function () { return 0; });
    images.forEach(function (im) {
      im.instances.forEach(function (a) { if (a.score >= state.minScore) counts[a.cls] += 1; });
    });
    const top = Math.max(1, Math.max.apply(null, counts.concat([0])));
    const list = $("histogram-bars");
    list.replaceChildren();
    classes.forEach(function (c) {
      const b = el("button", {type: "button", "class": "bar", "data-class-id": c.id, "data-value": counts[c.id],
                              "aria-pressed": String(state.cls === c.id),
                              "aria-label": c.name + ": " + count(counts[c.id], "instance")});
      const name = el("span", {"class": "name"});
      name.append(swatch(c.id), " ", el("span", {}, c.name));
      const track = el("span", {"class": "track"});
      const fill = el("span", {"class": "fill"});
      fill.style.display = "block";
      fill.style.width = (100 * counts[c.id] / top) + "%";
      fill.style.background = c.colour;
      track.append(fill);
      b.append(name, track, el("span", {"class": "value"}, String(counts[c.id])));
      b.addEventListener("click", function () {
        state.cls = state.cls === c.id ? -1 : c.id;
        update();
      });
      const li = el("li");
      li.append(b);
      list.append(li);
    });
  }

  function thumb(im, cls) {
    const names = Array.from(new Set(im.instances.map(function (a) { return classes[a.cls].name; })));
    const alt = baseName(im.file) + ": " + (names.length ? names.join(", ") : "no instances");
    const b = el("button", {type: "button", "class": "thumb", "data-image-id": im.id});
    const img = el("img", {src: im.thumb, alt: alt, loading: "lazy", width: im.thumb_size[0],
                           height: im.thumb_size[1]});
    const best = cls === null ? null : Math.max.apply(null, im.instances.filter(function (a) {
      return a.cls === cls && passes(a);
    }).map(function (a) { return a.score; }));
    const caption = baseName(im.file) + (best === null ? "" : " \u00b7 " + best.toFixed(2));
    b.append(img, el("span", {"class": "caption"}, caption));
    b.addEventListener("click", function () { openImage(im.id); });
    const li = el("li");
    li.append(b);
    return li;
  }

  function block(key, heading, ims, cls, nInstances) {
    const section = el("section", {"class": "class-block", "data-block": key, "data-images": ims.length,
                                   "data-instances": nInstances});
    const h = el("h3");
    if (cls !== null) h.append(swatch(cls));
    h.append(el("span", {}, heading),
             el("span", {"class": "muted"}, " " + count(ims.length, "image") + ", " + count(nInstances, "instance")));
    const list = el("ul", {"class": "thumbs"});
    section.append(h, list);
    const step = state.cls >= 0 ? PAGE_ONE : PAGE_ALL;
    function fill() {
      const upto = Math.min(ims.length, pages.get(key) || step);
      for (let i = list.children.length; i < upto; i++) list.append(thumb(ims[i], cls));
      const old = section.querySelector(".more");
      if (old) old.remove();
      if (upto < ims.length) {
        const more = el("button", {type: "button", "class": "more"},
                        "Show " + Math.min(step, ims.length - upto) + " more of " + (ims.length - upto));
        more.addEventListener("click", function () { pages.set(key, upto + step); fill(); });
        section.append(more);
      }
    }
    fill();
    return section;
  }

  function renderGrid() {
    const blocks = $("grid-blocks");
    blocks.replaceChildren();
    const perClass = classes.map(function () { return {ims: [], best: [], n: 0}; });
    const empty = [];
    images.forEach(function (im) {
      const best = new Map();
      im.instances.forEach(function (a) {
        if (!passes(a)) return;
        perClass[a.cls].n += 1;
        best.set(a.cls, Math.max(best.get(a.cls) || 0, a.score));
      });
      if (best.size === 0) empty.push(im);
      best.forEach(function (score, c) { perClass[c].ims.push([score, im]); });
    });
    classes.forEach(function (c) {
      const entry = perClass[c.id];
      if (entry.ims.length === 0) return;
      entry.ims.sort(function (a, b) { return b[0] - a[0] || a[1].id - b[1].id; });
      blocks.append(block("class-" + c.id, c.name, entry.ims.map(function (e) { return e[1]; }), c.id, entry.n));
    });
    if (state.cls < 0 && empty.length) {
      const heading = state.minScore > 0 ? "No instance at or above this score" : "No instances";
      blocks.append(block("none", heading, empty, null, 0));
    }
    if (!blocks.children.length) blocks.append(el("p", {"class": "muted"}, "No image matches the filter."));
  }

  function renderControls() {
    $("class-filter").value = state.cls >= 0 ? String(state.cls) : "";
    $("min-score").value = String(state.minScore);
    $("min-score-value").textContent = state.minScore.toFixed(2);
    const parts = [];
    if (state.cls >= 0) parts.push("class " + classes[state.cls].name);
    if (state.minScore > 0) parts.push("score \u2265 " + state.minScore.toFixed(2));
    const nImages = images.filter(shown).length;
    let nInstances = 0;
    images.forEach(function (im) { nInstances += im.instances.filter(passes).length; });
    const summary = $("filter-summary");
    summary.dataset.images = nImages;
    summary.dataset.instances = nInstances;
    summary.textContent = (parts.length ? "Showing " + parts.join(", ") + ": " : "Showing everything: ") +
      count(nImages, "image") + ", " + count(nInstances, "instance") + ".";
  }

  function renderViewer() {
    const dialog = $("viewer");
    if (state.image === null) {
      if (dialog.open) dialog.close();
      return;
    }
    const im = byId.get(state.image);
    $("viewer-title").textContent = baseName(im.file);
    const img = $("viewer-image");
    img.src = im.view;
    img.alt = "Masks of " + baseName(im.file) + ", drawn in their class colours with class and score";
    const facts = $("viewer-facts");
    facts.replaceChildren();
    const link = el("a", {href: im.href}, im.file);
    [["File", link], ["Source", im.source], ["Split", im.split || "(none)"],
     ["Size", im.width + " \u00d7 " + im.height]].forEach(function (f) {
      const dd = el("dd");
      dd.append(f[1]);
      facts.append(el("dt", {}, f[0]), dd);
    });
    const body = $("viewer-instances").querySelector("tbody");
    body.replaceChildren();
    im.instances.forEach(function (a, k) {
      const tr = el("tr", {"data-class-id": a.cls, "class": passes(a) ? "" : "filtered-out"});
      const name = el("td");
      name.append(swatch(a.cls), " ", el("span", {}, classes[a.cls].name));
      tr.append(el("td", {}, String(k + 1)), name, el("td", {}, a.score.toFixed(2)),
                el("td", {}, a.maskScore.toFixed(2)), el("td", {}, String(a.area)),
                el("td", {}, a.bbox.map(function (v) { return Math.round(v); }).join(", ")));
      body.append(tr);
    });
    if (!im.instances.length) {
      const tr = el("tr");
      tr.append(el("td", {colspan: "6"}, "No instances."));
      body.append(tr);
    }
    if (!dialog.open) dialog.showModal();
  }

  function openImage(id) {
    state.image = id;
    writeLocation();
    renderViewer();
  }

  function update() {
    writeLocation();
    renderCounts();
    renderControls();
    renderHistogram();
    renderGrid();
    renderViewer();
  }

  const select = $("class-filter");
  classes.forEach(function (c) { select.append(el("option", {value: String(c.id)}, c.name)); });
  select.addEventListener("change", function () {
    state.cls = select.value === "" ? -1 : Number(select.value);
    pages.clear();
    update();
  });
  let pending = false;
  $("min-score").addEventListener("input", function (e) {
    state.minScore = parseFloat(e.target.value) || 0;
    $("min-score-value").textContent = state.minScore.toFixed(2);
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; update(); });
  });
  $("reset-filters").addEventListener("click", function () {
    state.cls = -1;
    state.minScore = 0;
    pages.clear();
    update();
  });
  $("viewer-close").addEventListener("click", function () { $("viewer").close(); });
  $("viewer").addEventListener("close", function () {
    if (state.image !== null) {
      state.image = null;
      writeLocation();
    }
  });
  window.addEventListener("hashchange", function () { readLocation(); update(); });
  readLocation();
  update();
})();
"""
