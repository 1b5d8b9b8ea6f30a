"""A COCO 2017 tree in its real layout, shared by the dataset and benchmark tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

# The COCO panoptic 2017 categories by id, as panopticapi's panoptic_coco_categories.json lists them: the 80
# thing classes (ids 1..90 with gaps) and the 53 stuff classes.
COCO_THING_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
COCO_THINGS = (
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,"
    "parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,handbag,tie,"
    "suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,"
    "tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,"
    "hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,keyboard,"
    "cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,hair drier,"
    "toothbrush").split(",")
COCO_STUFF = {
    92: "banner", 93: "blanket", 95: "bridge", 100: "cardboard", 107: "counter", 109: "curtain", 112: "door-stuff",
    118: "floor-wood", 119: "flower", 122: "fruit", 125: "gravel", 128: "house", 130: "light", 133: "mirror-stuff",
    138: "net", 141: "pillow", 144: "platform", 145: "playingfield", 147: "railroad", 148: "river", 149: "road",
    151: "roof", 154: "sand", 155: "sea", 156: "shelf", 159: "snow", 161: "stairs", 166: "tent", 168: "towel",
    171: "wall-brick", 175: "wall-stone", 176: "wall-tile", 177: "wall-wood", 178: "water-other", 180: "window-blind",
    181: "window-other", 184: "tree-merged", 185: "fence-merged", 186: "ceiling-merged", 187: "sky-other-merged",
    188: "cabinet-merged", 189: "table-merged", 190: "floor-other-merged", 191: "pavement-merged",
    192: "mountain-merged", 193: "grass-merged", 194: "dirt-merged", 195: "paper-merged", 196: "food-other-merged",
    197: "building-other-merged", 198: "rock-merged", 199: "wall-other-merged", 200: "rug-merged"}


def coco_categories() -> list[dict]:
    things = [{"id": i, "name": n, "isthing": 1, "supercategory": "thing"} for i, n in zip(COCO_THING_IDS, COCO_THINGS)]
    return things + [{"id": i, "name": n, "isthing": 0, "supercategory": "stuff"} for i, n in COCO_STUFF.items()]


def _rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts: alternating runs of 0 and 1 down the columns, starting with 0."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return ([0] + runs) if flat[0] else runs


def make_coco_tree(root: Path, n_images: int = 3, size: tuple[int, int] = (96, 64)) -> Path:
    """COCO 2017 val in its real layout: real photos (the ADE20K sample's, mirrored past three) as
    val2017/*.jpg, panoptic_val2017.json + PNGs and instances_val2017.json (polygons, crowds as uncompressed
    RLE) that agree. Each image: sky and grass (stuff), two people, a dog over the grass, a crowd of people,
    void; a tree in even images and a dining table in odd ones."""
    w, h = size
    (root / "val2017").mkdir(parents=True)
    pan_dir = root / "annotations" / "panoptic_val2017"
    pan_dir.mkdir(parents=True)
    photos = sorted((REPO / "examples" / "ade20k_sample" / "images").glob("*.jpg"))
    images, pan_anns, inst_anns = [], [], []
    for k in range(n_images):
        image_id = 139 + 100 * k
        stem = f"{image_id:012d}"
        im = Image.open(photos[k % len(photos)]).convert("RGB").resize(size)
        if k >= len(photos):
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im.save(root / "val2017" / f"{stem}.jpg")
        ids = np.zeros((h, w), np.int64)
        segs = []  # (segment id, category id, iscrowd, box in (y0, y1, x0, x1))
        for seg_id, cat, crowd, (y0, y1, x0, x1) in [
            (1001, 187, 0, (0, 16, 0, w)),         # sky
            (1002, 193, 0, (40, h, 0, w)),         # grass
            (1003, 1, 0, (16, 40, 10, 25)),        # a person
            (1004, 1, 0, (16, 40, 30, 45)),        # another
            (1005, 18, 0, (30, 50, 60, 80)),       # a dog, over the grass
            (1006, 1, 1, (16, 30, 85, w)),         # a crowd of people
            (1007, 184 if k % 2 == 0 else 67, 0, (50, h, 5, 20)),  # a tree, or a dining table
        ]:
            ids[y0:y1, x0:x1] = seg_id
            segs.append((seg_id, cat, crowd))
        Image.fromarray(_rgb(ids)).save(pan_dir / f"{stem}.png")
        infos = []
        for seg_id, cat, crowd in segs:
            m = ids == seg_id
            ys, xs = np.nonzero(m)
            box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            infos.append({"id": seg_id, "category_id": cat, "iscrowd": crowd, "area": int(m.sum()), "bbox": box})
            if cat in COCO_THING_IDS:
                # As COCO stores them: a crowd as uncompressed RLE, an object as polygons (here its outline).
                x0, y0, bw, bh = box
                seg = ({"counts": _runs(m), "size": [h, w]} if crowd else
                       [[x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]])
                inst_anns.append({"id": len(inst_anns) + 1, "image_id": image_id, "category_id": cat,
                                  "iscrowd": crowd, "area": int(m.sum()), "bbox": box, "segmentation": seg})
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": w, "height": h})
        pan_anns.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": infos})
    cats = coco_categories()
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": pan_anns, "categories": cats}))
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": inst_anns,
         "categories": [{k: c[k] for k in ("id", "name", "supercategory")} for c in cats if c["isthing"]]}))
    return root


@pytest.fixture
def coco_tree():
    """make_coco_tree, for tests to call on a folder of theirs."""
    return make_coco_tree


@pytest.fixture
def coco_category_list() -> list[dict]:
    """The 133 COCO panoptic categories (id, name, isthing), in id order."""
    return coco_categories()
