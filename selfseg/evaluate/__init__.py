"""Evaluation: benchmark datasets, metrics (mIoU, cmIoU, tag precision/recall), label mappers that turn
free-form nouns into dataset classes, and whole benchmark runs.

    datasets.py   VOC / ADE20K-150 / ADE20K-847 / Cityscapes / folder loaders and class lists
    metrics.py    confusion-matrix mIoU (detectron2 or mmseg convention), cmIoU, tag P/R, LAC area
    mappers/      lexical (WordNet levels), embedding (sentence-transformers), llm (LOVE)
    score.py      score folders of predictions (label maps in dataset classes, or open-vocabulary ones)
    benchmark.py  pipeline -> predictions -> mapping -> scores, resumable and torchrun-sharded
    result.py     what they report: SemSegScores, TagScores, EvaluationReport
"""
