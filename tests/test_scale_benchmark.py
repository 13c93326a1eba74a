"""workflow/scripts/scale_benchmark.py: it runs on every preset and prints every figure, and its FLOPs count
splits the parameters as its docstring says."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "workflow" / "scripts" / "scale_benchmark.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the Markdown table under the section whose title starts with ``heading``."""
    section = text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past the header and rule
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def positive(cell: str) -> float:
    value = float(cell.split()[0].rstrip("x%"))
    assert value > 0, cell
    return value


@pytest.mark.slow
def test_every_figure_printed(tmp_path):
    out = tmp_path / "scale.md"
    command = [sys.executable, str(SCRIPT), "--preset", "all", "--layers", "1", "--steps", "2", "--rounds", "1"]
    command += ["--files", "1", "--quick", "--out", str(out)]  # --quick: one-layer encoders, quarter-side images
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = out.read_text()
    assert text in run.stdout  # the results block is printed, and --out holds the same
    assert re.search(r"wall time of the run: \d+ s", text)

    training = table(text, "Training step")
    assert [row[0] for row in training] == ["moincl-real", "llava-real", "mode-real"]
    assert [row[1] for row in training] == ["MultimodalLM", "MultimodalLM", "UnifiedLM"]
    for row in training:
        for cell in row[5:9] + row[10:12] + row[13:]:  # samples/s, tokens/s, both step times, memory, FLOPs, eval
            positive(cell)
        assert re.fullmatch(r"\d+\.\d{3} \(\d+\.\d\d-\d+\.\d\d\) (PASS|FAIL)", row[9]), row[9]
        assert re.fullmatch(r"n/a|\d+\.\d %", row[12]), row[12]  # MFU: n/a on a CPU or an unknown GPU

    path = table(text, "Data path")
    assert [row[0] for row in path] == ["image 224 px", "image 336 px", "video 8x224 px"]
    for _, decoded, cached, ratio in path:
        assert re.fullmatch(r"\d+x (PASS|FAIL)", ratio), ratio
        assert abs(positive(ratio) - positive(cached) / positive(decoded)) <= 0.01 * positive(ratio) + 1

    head = table(text, "LM-head FLOPs")
    assert [row[0] for row in head] == ["moincl-real", "llava-real", "mode-real"]
    for _, every, supervised, removed, prompt in head:
        assert positive(every) > positive(supervised)
        assert 0 < positive(prompt) <= positive(removed) < 100


def test_flops_split(tmp_path):
    """Frozen decoder weights below the first trained one run forward only (2); above it, or whenever the
    inputs need a gradient (trained projectors), they pass it back (4); the LM head counts at supervised rows."""
    import torch
    import transformers

    from mmcl.models.mllm import ImageEncoder, MultimodalLM

    bench = load_script()
    (tmp_path / "words").mkdir()
    tokenizer = bench.word_tokenizer(tmp_path / "words")
    config = transformers.LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, vocab_size=len(tokenizer)
    )
    vision = transformers.CLIPVisionConfig(
        hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    model = MultimodalLM(
        transformers.LlamaForCausalLM(config), tokenizer, ImageEncoder(transformers.CLIPVisionModel(vision)), None
    )
    layers = model.llm.model.layers
    decoder = sum(p.numel() for p in model.llm.parameters()) - 2 * config.vocab_size * config.hidden_size
    model.requires_grad_(False)
    layers[1].requires_grad_(True)  # nothing below layer 1 trains: layer 0 (and nothing else) runs forward only
    counts = bench.counts_of(model)
    first = sum(p.numel() for p in layers[0].parameters())
    assert (counts.trained, counts.frozen_forward) == (sum(p.numel() for p in layers[1].parameters()), first)
    assert counts.frozen_grad == decoder - counts.trained - first  # the final norm, above layer 1
    assert not counts.head_trained and counts.projectors == {}

    model.projectors.requires_grad_(True)  # now the inputs need a gradient: every frozen weight passes it back
    counts = bench.counts_of(model)
    assert counts.frozen_forward == 0 and counts.frozen_grad == decoder - counts.trained
    assert set(counts.projectors) == {"image", "video"}

    ids = torch.tensor([[2, 9, 10, 11, 3, 0], [2, 12, 13, 3, 0, 0]])
    labels = torch.tensor([[-100, -100, -100, 11, 3, -100], [-100, -100, 13, 3, -100, -100]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels}
    figures = bench.batch_figures(batch, model, counts)
    supervised, head = 4, 2 * config.hidden_size * config.vocab_size  # rows predicting 11, 3 | 13, 3
    assert figures["head_supervised"] == head * supervised and figures["head_all"] == head * 12
    tokens, squares = 9, 5**2 + 4**2
    expected = (6 * counts.trained + 4 * counts.frozen_grad) * tokens + 4 * head / 2 * supervised
    expected += 12 * 2 * config.hidden_size * squares  # no media positions: the projectors cost nothing here
    assert figures["flops"] == pytest.approx(expected)
    assert figures["removed"] == pytest.approx(1 - supervised / 12)  # of which padding (12 - 9) / 12
    assert figures["prompt_share"] == pytest.approx((tokens - supervised) / 12)
