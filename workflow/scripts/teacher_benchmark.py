"""What caching the teacher saves: memory and time of distilling from cached outputs vs a live teacher.

Usage (repository root, environment active, after `dvc repro` built the data and the base model):

    python workflow/scripts/teacher_benchmark.py [--base results/micl-synth/tiny/base/checkpoint]

A MoInCL-style step distils on 4 pseudo samples and 4 text instructions. With a live teacher the
training job holds a second model and runs it on both every step; with the cached outputs of the
`teach` job it holds none and reads top-K logits instead. Prints the memory the second model would
take, the teacher's share of each step, and the one-off cost of the teach job.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mmcl.data import TASK_FAMILIES
from mmcl.data.records import read_jsonl, split_path
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.distill import Distiller, fixed_target, teach
from mmcl.jobs.params import load_params
from mmcl.models.checkpoint import load_base


def model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="results/micl-synth/tiny/base/checkpoint")
    parser.add_argument("--data", default="data/micl-synth")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=64)
    args = parser.parse_args()

    params = load_params()
    suite = params.suite()
    data = Path(args.data)
    teacher, processor = load_base(Path(args.base))
    student, _ = load_base(Path(args.base))
    teacher.eval()
    families = {name: TASK_FAMILIES.get(task.family)() for name, task in suite.tasks.items()}
    collator = Collator(teacher.tokenizer, teacher.num_media_tokens, families)
    sets = {
        "pseudo": read_jsonl(split_path(data, "image_qa", "train"))[:512],
        "ikd": read_jsonl(split_path(data, suite.text_tasks[0], "train"))[:512],
    }
    distillers, started = {}, time.perf_counter()
    for name, samples in sets.items():
        dataset = InstructionDataset([fixed_target(s, s.answers[0]) for s in samples], data, processor)
        cached = teach(teacher, dataset.samples, dataset, collator, args.top_k)
        distillers[name] = Distiller(cached, dataset, collator, seed=name)
    teach_seconds = time.perf_counter() - started
    cache_bytes = sum(d.cached.values.nbytes + d.cached.indices.nbytes for d in distillers.values())

    def run(live: bool) -> float:
        started = time.perf_counter()
        for step in range(args.steps):
            for distiller in distillers.values():
                picks = distiller.picks(step, 4)
                batch = distiller.batch(picks, torch.device("cpu"))
                out = student(batch["input_ids"], batch["attention_mask"], media=batch["media"])
                if live:
                    with torch.no_grad():
                        teacher(batch["input_ids"], batch["attention_mask"], media=batch["media"])
                distiller.kl(out, batch, picks, 5.0).backward()
        return (time.perf_counter() - started) / args.steps

    cached_step, live_step = run(live=False), run(live=True)
    print(f"second model held by a live teacher: {model_bytes(teacher) / 2**20:.1f} MiB (cached: none)")
    print(f"cached teacher outputs read instead: {cache_bytes / 2**20:.1f} MiB on disk, top-{args.top_k}")
    print(
        f"distillation step: {1000 * cached_step:.1f} ms cached vs {1000 * live_step:.1f} ms live "
        f"({100 * (1 - cached_step / live_step):.0f}% less time)"
    )
    print(f"one-off teach job: {teach_seconds:.1f} s for {sum(len(s) for s in sets.values())} sequences")


if __name__ == "__main__":
    main()
