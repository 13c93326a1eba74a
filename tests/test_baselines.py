"""The MoInCL comparison's baselines: the EWC penalty and Fisher against hand computations, weight
fusion's interpolation, what each method trains, and two-stage runs of ewc and eproj through the training job."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from mmcl.config.schema import MethodConfig
from mmcl.core.plan import stage_from_key
from mmcl.core.registry import ConfigError
from mmcl.data.families import suite_families
from mmcl.data.records import read_jsonl, split_path
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.jobs.params import load_params
from mmcl.jobs.stage import StageJob
from mmcl.jobs.train_stage import train_stage
from mmcl.methods.base import StageContext, parameters_under
from mmcl.methods.eproj import EProj
from mmcl.methods.ewc import EWC, EWCConfig
from mmcl.methods.finetune import Finetune
from mmcl.methods.lora import LoRA
from mmcl.methods.weight_fusion import WeightFusion, WeightFusionConfig
from mmcl.models.checkpoint import load_base, load_stage, save_stage


def toy(values) -> torch.nn.Module:
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.tensor(values))
    return module


def ewc(**settings) -> EWC:
    return EWC(EWCConfig(type="ewc", **settings))


def stage_context(model, processor, params, data, key: str, n: int) -> StageContext:
    """The context of stage ``key`` with the first ``n`` training samples of its task."""
    stage = stage_from_key("sequential", key)
    samples = read_jsonl(split_path(data, stage.tasks[-1], "train"))[:n]
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(params.suites["micl-synth"]))
    dataset = InstructionDataset(samples, data, processor)
    return StageContext(stage, dataset, collator, params.suites["micl-synth"], log=lambda _: None)


# --- EWC on hand-set tensors ---


def test_ewc_penalty_by_hand():
    method = ewc(ewc_lambda=4.0)
    model = toy([1.0, 2.0])
    ce = torch.tensor(1.5)
    assert method.loss(model, {}, SimpleNamespace(loss=ce), step=0) is ce, "no Fisher yet: the plain loss"

    method.load_state_dict({"fisher.w": torch.tensor([0.5, 2.0]), "anchor.w": torch.tensor([0.0, 1.5])})
    penalty = method.penalty(model)  # 4/2 * (0.5 * 1² + 2 * 0.5²) = 2
    assert penalty.item() == pytest.approx(2.0)
    assert method.loss(model, {}, SimpleNamespace(loss=ce), step=0).item() == pytest.approx(3.5)
    penalty.backward()
    assert torch.allclose(model.w.grad, torch.tensor([2.0, 4.0]))  # λ F (θ − θ*)

    at_anchor = toy([0.0, 1.5])
    assert method.penalty(at_anchor).item() == 0.0


def test_online_ewc_decays_the_old_fisher_and_moves_the_anchor():
    method = ewc(online=True, gamma=0.25)
    method.consolidate({"w": torch.tensor([4.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])})
    assert torch.equal(method.fisher["w"], torch.tensor([4.0, 0.0]))
    assert torch.equal(method.anchor["w"], torch.tensor([1.0, 1.0]))
    method.consolidate({"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, -1.0])})
    assert torch.equal(method.fisher["w"], torch.tensor([0.25 * 4 + 1, 2.0]))
    assert torch.equal(method.anchor["w"], torch.tensor([3.0, -1.0]))


def test_summed_ewc_is_one_penalty_per_stage_up_to_a_constant():
    fishers = [torch.tensor([1.0, 0.0, 2.0]), torch.tensor([3.0, 0.0, 0.0])]
    anchors = [torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 5.0, -1.0])]
    method = ewc(ewc_lambda=2.0)
    for fisher, anchor in zip(fishers, anchors, strict=True):
        method.consolidate({"w": fisher}, {"w": anchor})
    assert torch.equal(method.fisher["w"], fishers[0] + fishers[1])
    assert torch.equal(method.anchor["w"], torch.tensor([0.75, 5.0, 2.0])), "Fisher-weighted; no NaN where F = 0"

    gaps = []
    for values in ([0.3, -2.0, 1.0], [4.0, 0.5, -3.0]):
        ours, separate = toy(values), toy(values)
        per_stage = sum((f * (separate.w - a) ** 2).sum() for f, a in zip(fishers, anchors, strict=True))
        (penalty := method.penalty(ours)).backward()
        per_stage.backward()
        assert torch.allclose(ours.w.grad, separate.w.grad)
        gaps.append(per_stage.item() - penalty.item())
    assert gaps[0] == pytest.approx(gaps[1]) and gaps[0] > 0


def test_ewc_base_must_be_a_known_method(params_file):
    def misspell(params):
        params["methods"]["ewc"]["base"] = "lroa"

    with pytest.raises(ConfigError, match=r"base 'lroa'.*did you mean 'lora'"):
        load_params(params_file(misspell))


def test_baselines_are_defined_but_not_in_the_default_grid(params_file):
    params = load_params(params_file())
    assert {"ewc", "weight_fusion", "eproj"} <= set(params.methods)
    assert not {"ewc", "weight_fusion", "eproj"} & set(params.grid.methods)
    assert isinstance(params.methods["ewc"], EWCConfig) and params.methods["ewc"].r == params.methods["lora"].r


def test_first_stage_ignores_settings_of_later_stages():
    """Changing λ or α must not re-run the first stage, which neither penalises nor fuses."""
    first, second = stage_from_key("sequential", "image_cap"), stage_from_key("sequential", "image_cap+image_qa")
    for method, later in (
        (ewc(), {"ewc_lambda", "online", "gamma"}),
        (WeightFusion(WeightFusionConfig(type="weight_fusion")), {"fusion_alpha", "fuse_projectors"}),
    ):
        assert later <= set(method.stage_settings(second))
        assert not later & set(method.stage_settings(first)) and "r" in method.stage_settings(first)
    assert "fisher_samples" in ewc().stage_settings(first), "the first stage's Fisher is saved with it"


# --- on the tiny model ---


def test_trainable_parameters(tiny_suite, tiny_base):
    params, data = tiny_suite
    for base, base_class in (("lora", LoRA), ("finetune", Finetune)):  # EWC trains exactly what its base trains
        config = EWCConfig(type="ewc", base=base)
        model, _ = load_base(tiny_base)
        EWC(config).prepare_model(model)
        assert set(EWC(config).trainable_parameters(model)) == set(base_class(config).trainable_parameters(model))
        assert any(".lora_" in name for name, _ in model.named_parameters()) == (base == "lora")

    model, _ = load_base(tiny_base)
    fusion = WeightFusion(params.methods["weight_fusion"])
    fusion.prepare_model(model)
    adapter_and_projectors = {n for n, _ in model.named_parameters() if ".lora_" in n or n.startswith("projectors.")}
    assert set(fusion.trainable_parameters(model)) == adapter_and_projectors

    model, processor = load_base(tiny_base)
    eproj = EProj(MethodConfig(type="eproj"))
    eproj.prepare_model(model)
    assert not any(".lora_" in name for name, _ in model.named_parameters()), "eproj adds no adapter"
    for key, modality in (("image_cap", "image"), ("image_cap+video_qa", "video"), ("audio_cap", "audio")):
        eproj.before_stage(model, stage_context(model, processor, params, data, key, n=1))
        trained = set(eproj.trainable_parameters(model))
        assert trained and trained == set(parameters_under(model, f"projectors.{modality}."))
    with pytest.raises(ConfigError, match=r"eproj trains only projectors.*text_qa"):
        eproj.before_stage(model, stage_context(model, processor, params, data, "image_cap+text_qa", n=1))


def test_ewc_fisher_by_hand_and_through_a_checkpoint(tiny_suite, tiny_base, tmp_path):
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    method = ewc(r=4, dropout=0.0, ewc_lambda=3.0, fisher_samples=4, fisher_batch_size=2)
    method.prepare_model(model)
    names = list(method.trainable_parameters(model))
    params_of = dict(model.named_parameters())
    torch.manual_seed(0)
    with torch.no_grad():  # as if trained: LoRA's B starts at zero, which would zero A's gradients
        for name in names:
            params_of[name].add_(0.02 * torch.randn_like(params_of[name]))
    context = stage_context(model, processor, params, data, "image_cap", n=4)

    expected = {name: torch.zeros_like(params_of[name]) for name in names}
    model.eval()
    for chunk in ([0, 1], [2, 3]):  # 4 samples in batches of 2: the mean of two squared gradients
        model.zero_grad()
        model(**context.collator.train_batch([context.dataset[i] for i in chunk])).loss.backward()
        for name in names:
            if params_of[name].grad is not None:
                expected[name] += params_of[name].grad ** 2 / 2
    model.zero_grad()
    method.after_stage(model, context)

    assert set(method.fisher) == set(names)
    for name in names:
        torch.testing.assert_close(method.fisher[name], expected[name])
    assert method.fisher["projectors.image.0.weight"].sum() > 0
    assert method.fisher["projectors.audio.0.weight"].sum() == 0, "an image stage says nothing about audio"
    assert method.penalty(model).item() == 0.0, "the anchor is the stage's final weights"

    moved = next(name for name in names if ".lora_B" in name)
    with torch.no_grad():
        params_of[moved].add_(0.5)
    expected_penalty = 3.0 / 2 * (method.fisher[moved] * 0.25).sum()
    torch.testing.assert_close(method.penalty(model), expected_penalty)

    save_stage(tmp_path / "ckpt", model, set(names), method.state_dict(), {"stage": "image_cap"})
    fresh, _ = load_base(tiny_base)
    reloaded = ewc(r=4, dropout=0.0, ewc_lambda=3.0)
    reloaded.prepare_model(fresh)
    _, state = load_stage(tmp_path / "ckpt", fresh)
    reloaded.load_state_dict(state)
    assert all(torch.equal(reloaded.fisher[n], method.fisher[n]) for n in names)
    assert all(torch.equal(reloaded.anchor[n], method.anchor[n]) for n in names)
    torch.testing.assert_close(reloaded.penalty(fresh), expected_penalty)


@pytest.mark.parametrize("fuse_projectors", [False, True])
def test_weight_fusion_interpolates_only_the_fused_parameters(tiny_suite, tiny_base, fuse_projectors):
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    alpha = 0.25
    method = WeightFusion(
        WeightFusionConfig(type="weight_fusion", r=4, fusion_alpha=alpha, fuse_projectors=fuse_projectors)
    )
    method.prepare_model(model)
    trainable = set(method.trainable_parameters(model))

    def train_and_fuse(key):
        context = stage_context(model, processor, params, data, key, n=1)
        method.before_stage(model, context)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        with torch.no_grad():  # stands in for the stage's training
            for name, param in model.named_parameters():
                if name in trainable:
                    param.add_(torch.randn_like(param))
        trained = {n: p.detach().clone() for n, p in model.named_parameters()}
        method.after_stage(model, context)
        return before, trained

    torch.manual_seed(0)
    _, trained = train_and_fuse("image_cap")
    assert all(torch.equal(p, trained[n]) for n, p in model.named_parameters()), "the first stage is not fused"

    before, trained = train_and_fuse("image_cap+image_qa")
    fused = {n for n in trainable if ".lora_" in n or (fuse_projectors and n.startswith("projectors."))}
    assert any(".lora_" in n for n in fused) and any(n.startswith("projectors.") for n in fused) == fuse_projectors
    for name, param in model.named_parameters():
        if name in fused:
            torch.testing.assert_close(param, (1 - alpha) * before[name] + alpha * trained[name])
        else:
            assert torch.equal(param, trained[name]), f"{name} is not fused"


# --- through the training job ---


@pytest.mark.parametrize("method", ["eproj", "ewc"])
def test_two_stages_through_the_training_job(tiny_suite, tiny_base, tmp_path, method):
    params, data = tiny_suite
    previous = None
    for key in ("image_cap", "image_cap+audio_cap"):
        out = tmp_path / key / "checkpoint"
        job = StageJob(
            suite="micl-synth", backbone="tiny", method=method, seed=0, stage_key=key,
            data_dir=data, base_dir=tiny_base, prev_dir=previous,
        )  # fmt: skip
        train_stage(params, job, out, log=lambda _: None)
        previous = out

    weights, state = load_file(previous / "model.safetensors"), load_file(previous / "method_state.safetensors")
    if method == "eproj":  # the image projector from stage 1, the audio one from stage 2, and nothing else
        assert all(k.startswith("projectors.") for k in weights)
        assert {k.split(".")[1] for k in weights} == {"image", "audio"} and not state
    else:
        assert {k.removeprefix("fisher.") for k in state if k.startswith("fisher.")} == set(weights)
        first = load_file(tmp_path / "image_cap" / "checkpoint" / "method_state.safetensors")
        audio = "fisher.projectors.audio.0.weight"
        assert first[audio].sum() == 0 < state[audio].sum(), "stage 2 added the audio stage's Fisher"
