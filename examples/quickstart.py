"""selfseg quickstart: tag, segment, visualise, export, using only the public API.

    python examples/quickstart.py                       # smoke config: tiny random models, runs anywhere
    python examples/quickstart.py configs/bcc_voc.yaml  # real checkpoints (see `selfseg download`)
"""
import json
import sys
from pathlib import Path

from selfseg import SelfSeg, load_image

here = Path(__file__).resolve().parent
config = sys.argv[1] if len(sys.argv) > 1 else str(here.parent / "configs" / "smoke.yaml")
out = Path(sys.argv[2]) if len(sys.argv) > 2 else here.parent / "out" / "quickstart"
photo = here / "images" / "ADE_val_00000001.jpg"

seg = SelfSeg.from_config(config)
if seg.meaningless:
    print("(smoke config: tiny random-init models, so the words and masks are noise; the plumbing is real)")

# 1. Tag: what is in the image, with no class names given.
tags = seg.tag(photo)
print("tags:", tags.tags[:10])

# 2. Segment: tags -> Grounding DINO boxes -> SAM2 masks (the default segmenter).
result = seg.segment(photo, tags=tags)  # reuses the tags found above
print(f"{len(result.labels)} instances of {sorted(set(result.labels))[:10]}")
print("label map", result.semantic.shape, "classes", len(result.classes), "merged tags", len(result.merges))

# 3. Visualise and export: label PNG, overlay PNG, JSON with COCO RLE masks; COCO dict in memory.
loaded = load_image(photo)  # upright RGB, as the models saw it; .size is the photo's (H, W)
paths = result.save(out, photo.stem, image=loaded.image, original_size=loaded.size)
coco = result.to_coco()
(out / f"{photo.stem}_coco.json").write_text(json.dumps(coco))
print("wrote", *sorted(str(p) for p in paths.values()), out / f"{photo.stem}_coco.json")
