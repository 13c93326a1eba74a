"""Captioning scores (CIDEr-D, BLEU-4, ROUGE-L) with pycocoevalcap, one Java call per evaluation job.

pycocoevalcap's ``PTBTokenizer`` starts a JVM per call (about a second), so ``caption_scores`` tokenizes
every corpus of a job together and then scores each corpus on its own. Pitfalls handled here:

- CIDEr-D computes its document frequencies from the references of the scored set, so each corpus
  (task) is scored separately; a corpus of one item, or one where every item has the same
  references, scores CIDEr 0.
- The tokenizer maps input lines to items one to one: any line break inside a caption (``\\n``,
  ``\\r``, U+2028, ...) would shift every later caption, so all whitespace runs become one space.
  ``|||`` (METEOR's field separator) is removed too.
- Empty predictions, and predictions that are only punctuation, are replaced by a placeholder word
  that no reference contains, so they score like any wrong caption.
- The tokenizer writes a temporary file into the installed package directory, which must be writable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from mmcl.metrics.qa import check_same_ids

METRICS = ("cider", "bleu4", "rouge_l")
EMPTY_PREDICTION = "emptypredictionplaceholder"

Corpus = tuple[Mapping[Hashable, str], Mapping[Hashable, Sequence[str]]]


def _clean(text: str) -> str:
    return " ".join(text.replace("|||", " ").split())


@contextmanager
def _environment(**overrides: str) -> Iterator[None]:
    """Set environment variables for subprocesses started inside the block, then restore them.

    Not thread-safe: ``os.environ`` is process-wide.
    """
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _validated(corpora: Mapping[str, Corpus], metrics: Iterable[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty selection of {METRICS}, got {metrics}")
    for name, (predictions, references) in corpora.items():
        if not references and not predictions:
            raise ValueError(f"corpus '{name}' has no items")
        check_same_ids(predictions, references, what=f"corpus '{name}'")
        for item, refs in references.items():
            if isinstance(refs, str) or not refs:
                raise ValueError(f"corpus '{name}', id {item!r}: needs a non-empty list of references")
            if not all(_clean(ref) for ref in refs):
                raise ValueError(f"corpus '{name}', id {item!r}: has an empty reference caption")
    return metrics


def _tokenize(corpora: Mapping[str, Corpus]) -> dict[tuple, list[str]]:
    """Tokenize every caption of every corpus in one PTBTokenizer (Java) call.

    Keys of the result are ``(corpus, "pred" | "ref", id)`` tuples, so ids never collide across corpora.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if shutil.which("java") is None:
        raise RuntimeError(
            "pycocoevalcap's PTBTokenizer needs Java >= 8, and no 'java' is on PATH. Install a JRE, "
            "e.g. `apt-get install default-jre-headless` or `conda install conda-forge::openjdk`."
        )
    captions: dict[tuple, list[dict[str, str]]] = {}
    for name, (predictions, references) in corpora.items():
        for item, prediction in predictions.items():
            captions[(name, "pred", item)] = [{"caption": _clean(prediction) or EMPTY_PREDICTION}]
        for item, refs in references.items():
            captions[(name, "ref", item)] = [{"caption": _clean(ref)} for ref in refs]

    # A Java default charset other than UTF-8 would garble non-ASCII captions.
    with _environment(LC_ALL="C.UTF-8"):
        tokenized = PTBTokenizer().tokenize(captions)

    misaligned = [key for key, caps in captions.items() if len(tokenized.get(key, ())) != len(caps)]
    if misaligned:
        raise RuntimeError(
            "PTBTokenizer returned a different number of captions than it was given "
            f"(first: {misaligned[0]}): check that `java -version` works and that the "
            "pycocoevalcap package directory is writable"
        )
    return tokenized


def _score(gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]], metric: str) -> float:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if metric == "cider":
        score, _ = Cider().compute_score(gts, res)
    elif metric == "bleu4":
        bleu_1_to_4, _ = Bleu(4).compute_score(gts, res, verbose=0)
        score = bleu_1_to_4[3]
    else:
        score, _ = Rouge().compute_score(gts, res)
    return 100.0 * float(score)


def caption_scores(corpora: Mapping[str, Corpus], metrics: Iterable[str] = METRICS) -> dict[str, dict[str, float]]:
    """Score each corpus's predictions against its references, all corpora tokenized in one Java call.

    ``corpora`` maps a corpus (task) name to ``(predictions, references)``: ``predictions`` maps an
    id to one caption, ``references`` maps the same ids to a non-empty list of reference captions.
    Returns ``{corpus: {metric: score}}`` for the requested metrics among ``cider`` (pycocoevalcap's
    ``Cider``, i.e. CIDEr-D, document frequencies from that corpus's references), ``bleu4`` (BLEU-4,
    "closest" reference length) and ``rouge_l`` (ROUGE-L F, beta 1.2), each ×100 as papers report them.
    Raises ValueError (naming the corpus) when ids differ or references are empty.
    """
    metrics = _validated(corpora, metrics)
    if not corpora:
        return {}
    tokenized = _tokenize(corpora)
    scores: dict[str, dict[str, float]] = {}
    for name, (_, references) in corpora.items():
        gts = {item: tokenized[(name, "ref", item)] for item in references}
        # Punctuation-only predictions tokenize to nothing; score them like empty ones.
        res = {item: [tokenized[(name, "pred", item)][0] or EMPTY_PREDICTION] for item in references}
        scores[name] = {metric: _score(gts, res, metric) for metric in metrics}
    return scores
