"""Tag a photo with BLIP-Cluster-Caption from Python and look at every intermediate map.

    python examples/tag_photo.py                      # smoke config: tiny random BLIP, runs anywhere
    python examples/tag_photo.py configs/bcc_voc.yaml # the paper's model (needs the checkpoint)
"""
import sys
from pathlib import Path

from selfseg import SelfSeg

here = Path(__file__).parent
config = sys.argv[1] if len(sys.argv) > 1 else str(here.parent / "configs" / "smoke.yaml")
seg = SelfSeg.from_config(config)
result = seg.tag(here / "images" / "ADE_val_00000001.jpg")

if result.meaningless:
    print("(tiny random-init model: the words below are noise, the plumbing is real)")
print("nouns by support:", [(n.noun, n.support) for n in result.nouns[:10]])
for c in result.clusters:
    print(f"cluster {c.cluster} ({c.size} patches): {c.captions[0]!r} -> {c.nouns[0]}")
m = result.intermediates
print("k-means runs (scale index, k):", m.run_keys, "reference run:", m.reference)
print("final grid", result.cluster_grid.shape, "upsampled", result.cluster_map.shape)
print("stage seconds:", {k: round(v, 3) for k, v in result.timings.items()})
