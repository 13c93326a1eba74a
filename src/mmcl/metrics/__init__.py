"""Scores and continual-learning metrics.

- ``continual``: Last, Avg, forgetting, BWT, FWT and plasticity from an accuracy matrix.
- ``qa``: VQA-style answer normalisation, exact match and OK-VQA soft accuracy.
- ``captioning``: CIDEr-D, BLEU-4 and ROUGE-L with pycocoevalcap (Java), one tokenizer call per job.
- ``gradients``: per-tensor cosine between the text-loss and image-loss gradients (gradient conflict).
"""
