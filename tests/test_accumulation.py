"""Scaling the loop up without changing what it computes: micro-batches, losses read only at log steps,
resumable states by wall time, DataLoader workers, length-grouped batches, the strategies' settings."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import mmcl.engine.loop as loop
from mmcl.config.fingerprint import fingerprint, to_plain
from mmcl.core.plan import plan_stages
from mmcl.core.registry import ConfigError
from mmcl.engine.loop import NonFiniteLoss, check_micro_batch, declared_layers, fit, loader_workers, train_only
from mmcl.engine.resume import META
from mmcl.engine.sampling import GroupedStepSampler, StepSampler
from mmcl.jobs.stage import StageJob, open_stage

# The accumulated gradient is the big batch's to float rounding (measured: 3e-7 of its largest entry; the
# micro-batches sum in another order and pad to their own widths). AdamW then divides each entry by its own
# magnitude, so entries near its eps (1e-8) turn that rounding into up to ~1% of a step of lr 1e-3: the
# weights differ by up to 1.1e-5 after the first step, and no more after 6. Averaging the micro-batches'
# losses with 1/k instead of their token shares changes the gradient by 27% and the weights by 6.6e-3.
GRAD_RTOL = 2e-6
ATOL = 5e-5
STEPS = 6


def quiet(_: str) -> None:
    pass


def open_joint(tiny_suite, tiny_base, tasks=("image_qa", "audio_cap")):
    """The tiny backbone's joint stage on a one-word QA task and a captioning task: the samples' supervised
    token counts differ, and so do those of the micro-batches of a batch."""
    params, data = tiny_suite
    stage = plan_stages("joint", list(tasks))[0]
    job = StageJob("micl-synth", "tiny", "joint", 0, stage.key, data, tiny_base, None)
    cl_method, model, _, settings, context = open_stage(params, job, {}, quiet)
    train_only(model, set(cl_method.trainable_parameters(model)))
    settings = replace(settings, steps=STEPS, batch_size=4, log_every=2, checkpoint_minutes=0.0)
    return cl_method, model, settings, context


def train(tiny_suite, tiny_base, loss_fn=None, resume_dir=None, log=quiet, **changes) -> dict[str, torch.Tensor]:
    cl_method, model, settings, context = open_joint(tiny_suite, tiny_base)
    result = fit(
        model, context.dataset, context.collator, replace(settings, **changes), loss_fn or cl_method.loss, log,
        resume_dir=resume_dir,
    )  # fmt: skip
    return {name: p.detach().clone() for name, p in result["model"].named_parameters() if p.requires_grad}


def first_gradient(tiny_suite, tiny_base, forwards: list | None = None, **changes) -> dict[int, torch.Tensor]:
    """The gradient the first optimizer step applies (unclipped), by parameter index; ``forwards`` gets the
    number of samples of each forward."""
    seen = {}

    def loss(model, batch, outputs, step):
        if forwards is not None:
            forwards.append(len(batch["input_ids"]))
        return outputs.loss

    def before_step(optimizer, args, kwargs):
        if not seen:
            params = (p for group in optimizer.param_groups for p in group["params"])
            seen.update({i: p.grad.clone() for i, p in enumerate(params) if p.grad is not None})

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        train(tiny_suite, tiny_base, loss_fn=loss, steps=1, grad_clip=0.0, **changes)
    finally:
        handle.remove()
    return seen


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def big_batch(tiny_suite, tiny_base):
    """The stage trained on one whole batch per forward: its weights, where they started, its first gradient."""
    _, model, _, _ = open_joint(tiny_suite, tiny_base)
    start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return SimpleNamespace(
        weights=train(tiny_suite, tiny_base), start=start, gradient=first_gradient(tiny_suite, tiny_base)
    )


def gradient_error(gradient: dict, big_batch) -> float:
    return max_diff(gradient, big_batch.gradient) / max(g.abs().max().item() for g in big_batch.gradient.values())


@pytest.mark.parametrize("micro", [1, 2])
def test_micro_batches_accumulate_the_big_batch_gradient_and_weights(tiny_suite, tiny_base, big_batch, micro):
    forwards = []
    error = gradient_error(first_gradient(tiny_suite, tiny_base, forwards, micro_batch_size=micro), big_batch)
    assert forwards == [micro] * (4 // micro)  # one optimizer step over the batch of 4
    accumulated = train(tiny_suite, tiny_base, micro_batch_size=micro)
    moved, diff = max_diff(big_batch.weights, big_batch.start), max_diff(accumulated, big_batch.weights)
    print(f"micro-batches of {micro}: gradient off by {error:.1e} of its largest entry (tolerance {GRAD_RTOL:.0e}),")
    print(f"weights after {STEPS} steps by {diff:.2e} (tolerance {ATOL:.0e}); training moved them {moved:.2e}")
    assert error <= GRAD_RTOL
    assert moved > 50 * ATOL
    assert diff <= ATOL


def test_micro_batches_weigh_their_share_of_the_supervised_tokens(tiny_suite, tiny_base, big_batch, monkeypatch):
    """Without the token shares (each micro-batch's mean loss weighing 1/k), the gradient is not the batch's."""
    monkeypatch.setattr(loop, "token_shares", lambda batches, _: torch.full((len(batches),), 1 / len(batches)))
    error = gradient_error(first_gradient(tiny_suite, tiny_base, micro_batch_size=1), big_batch)
    diff = max_diff(train(tiny_suite, tiny_base, micro_batch_size=1), big_batch.weights)
    print(f"1/k weighting: gradient off by {error:.1e} of its largest entry, weights by {diff:.2e}")
    assert error > 1000 * GRAD_RTOL
    assert diff > 10 * ATOL


def test_a_micro_batch_that_does_not_divide_the_share_is_refused():
    settings = loop.FitSettings(steps=1, batch_size=12, lr=1e-3, micro_batch_size=4)
    check_micro_batch(settings, processes=3)  # 4 samples per process: one micro-batch each
    with pytest.raises(ConfigError) as error:
        check_micro_batch(settings, processes=2)
    assert "train.micro_batch_size 4 does not divide the 6 samples" in str(error.value)
    assert "set it to one of [1, 2, 3, 6]" in str(error.value)


def test_a_non_finite_loss_is_read_at_the_log_step_and_reported_at_its_own(tiny_suite, tiny_base):
    """The host reads the losses only at log steps (every 2 here): the step-3 NaN surfaces after step 4 ran,
    and the message names step 3 and the last finite loss, at step 2."""
    seen = []

    def nan_from_step_3(model, batch, outputs, step):
        seen.append(step)
        return outputs.loss * (math.nan if step >= 3 else 1.0)

    with pytest.raises(NonFiniteLoss) as error:
        train(tiny_suite, tiny_base, loss_fn=nan_from_step_3)
    assert seen == [1, 2, 3, 4], "the losses were read before the log step"
    message = str(error.value)
    assert message.startswith("non-finite loss (nan) at step 3; last finite loss ") and " at step 2:" in message


def test_resumable_states_are_saved_by_wall_time_and_resume(tiny_suite, tiny_base, tmp_path, monkeypatch):
    """A clock that advances a minute per reading, 2.5 minutes between states: states at steps 3 and 6 of 8
    (read at the start, at every step and after each save), and a rerun resumes from the last to the bits
    of an uninterrupted run."""
    uninterrupted = train(tiny_suite, tiny_base, steps=8)
    minutes = iter(range(1000))
    monkeypatch.setattr(loop, "clock", lambda: 60.0 * next(minutes))
    saved = []
    original = loop.save_state
    monkeypatch.setattr(
        loop, "save_state", lambda path, **state: (saved.append(state["step"]), original(path, **state))
    )
    state = tmp_path / "checkpoint.resume"
    train(tiny_suite, tiny_base, resume_dir=state, steps=8, checkpoint_minutes=2.5)
    assert saved == [3, 6]
    assert json.loads((state / META).read_text())["step"] == 6

    logged = []
    resumed = train(tiny_suite, tiny_base, resume_dir=state, log=logged.append, steps=8)
    assert f"resuming at step 6 from {state}" in logged
    assert max_diff(resumed, uninterrupted) == 0


def test_no_state_is_saved_by_time_when_checkpoint_minutes_is_0(tiny_suite, tiny_base, tmp_path, monkeypatch):
    minutes = iter(range(1000))
    monkeypatch.setattr(loop, "clock", lambda: 600.0 * next(minutes))
    train(tiny_suite, tiny_base, resume_dir=tmp_path / "state", steps=3, checkpoint_minutes=0.0)
    assert not (tmp_path / "state").exists()


def test_workers_by_default_use_the_process_share_of_the_cpus_on_cuda_only(monkeypatch):
    monkeypatch.setattr(loop.os, "sched_getaffinity", lambda _: set(range(32)))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert loader_workers(None, cuda) == 31 and loader_workers(None, cpu) == 0 and loader_workers(3, cpu) == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "16")  # the job's allocation, smaller than the node's
    assert loader_workers(None, cuda) == 15
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four processes on this node share those 16
    assert loader_workers(None, cuda) == 3


def test_worker_processes_load_the_same_batches(tiny_suite, tiny_base, big_batch):
    assert max_diff(train(tiny_suite, tiny_base, num_workers=2), big_batch.weights) == 0


# --- train.group_by_length ---


def mixed_keys(n_image: int, n_audio: int) -> list[tuple[str, int]]:
    lengths = torch.randint(5, 60, (n_image + n_audio,), generator=torch.Generator().manual_seed(0)).tolist()
    modalities = ["image"] * n_image + ["audio"] * n_audio
    order = torch.randperm(len(modalities), generator=torch.Generator().manual_seed(1)).tolist()
    return [(modalities[i], lengths[i]) for i in order]


def test_grouped_batches_depend_only_on_seed_and_step():
    keys = mixed_keys(70, 45)
    sampler = GroupedStepSampler(keys, batch_size=8, steps=40, seed=3)
    batches = list(sampler)
    assert batches == list(GroupedStepSampler(keys, batch_size=8, steps=40, seed=3))
    assert list(GroupedStepSampler(keys, batch_size=8, steps=40, seed=3, start=17)) == batches[17:]  # a resume
    assert batches != list(GroupedStepSampler(keys, batch_size=8, steps=40, seed=4))
    assert all(len(batch) == 8 for batch in batches)
    per_epoch = StepSampler(len(keys), 8, 40, 3).per_epoch
    for epoch in range(2):  # every sample at most once per epoch, all but fewer than a batch drawn
        drawn = [p for batch in batches[epoch * per_epoch : (epoch + 1) * per_epoch] for p in batch]
        assert len(drawn) == len(set(drawn)) > len(keys) - 8
        assert all(epoch * len(keys) <= p < (epoch + 1) * len(keys) for p in drawn)


def test_grouped_batches_hold_one_modality_and_similar_lengths():
    keys = mixed_keys(64, 40)  # whole batches of each modality: no mixed tail
    batches = list(GroupedStepSampler(keys, batch_size=8, steps=26, seed=0))
    modalities = [{keys[p % len(keys)][0] for p in batch} for batch in batches]
    assert all(len(m) == 1 for m in modalities) and {"image", "audio"} == set().union(*modalities)

    def spread(batches) -> float:
        return sum(max(keys[p % len(keys)][1] for p in b) - min(keys[p % len(keys)][1] for p in b) for b in batches)

    assert spread(batches) < spread(list(StepSampler(len(keys), 8, 26, 0))) / 3

    # Tails of 3 and 5 samples: per epoch one batch joins them, the rest is of one modality.
    keys = mixed_keys(67, 45)
    per_epoch = StepSampler(len(keys), 8, 1, 0).per_epoch
    batches = list(GroupedStepSampler(keys, batch_size=8, steps=2 * per_epoch, seed=0))
    mixed = [len({keys[p % len(keys)][0] for p in batch}) > 1 for batch in batches]
    assert sum(mixed[:per_epoch]) == sum(mixed[per_epoch:]) == 1


def test_group_by_length_trains_and_re_runs_no_finished_stage(tiny_suite, tiny_base, big_batch):
    params, _ = tiny_suite
    train_section = to_plain(params.train)
    assert train_section["group_by_length"] is False
    before = {key: value for key, value in train_section.items() if key != "group_by_length"}  # as it was
    assert fingerprint({"train": train_section}, "train") == fingerprint({"train": before}, "train")
    assert fingerprint({"train": train_section | {"group_by_length": True}}, "train") != fingerprint(
        {"train": before}, "train"
    )
    grouped = train(tiny_suite, tiny_base, group_by_length=True)
    assert max_diff(grouped, big_batch.weights) > 10 * ATOL  # other samples share the batches


# --- what DeepSpeed and FSDP are told before `prepare` (their runs: tests/test_distributed.py) ---


def test_deepspeed_gets_the_micro_batch_accumulation_and_clipping():
    config = {"train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto", "gradient_clipping": 1.0}
    state = SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config=config))
    accelerator = SimpleNamespace(distributed_type=loop.DistributedType.DEEPSPEED, num_processes=4, state=state)
    settings = loop.FitSettings(steps=1, batch_size=32, lr=1e-3, grad_clip=0.5, micro_batch_size=2)
    loop.configure_strategy(accelerator, torch.nn.Linear(1, 1), settings)
    assert config == {
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 4,
        "train_batch_size": 32,
        "gradient_clipping": 0.5,
    }


def test_fsdp_wraps_the_layers_the_model_declares(tiny_suite, tiny_base):
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    _, model, settings, _ = open_joint(tiny_suite, tiny_base)
    declared = list(model.llm._no_split_modules)
    assert declared_layers(model) == declared and declared  # the LLM's decoder layer, not the encoders'
    plugin = SimpleNamespace(auto_wrap_policy=transformer_auto_wrap_policy, transformer_cls_names_to_wrap=None)
    accelerator = SimpleNamespace(distributed_type=loop.DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))
    loop.configure_strategy(accelerator, model, settings)
    assert plugin.transformer_cls_names_to_wrap == declared
    with pytest.raises(
        ConfigError, match=r"Sequential declares no layer classes .* --fsdp_transformer_layer_cls_to_wrap"
    ):
        declared_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))
