"""The multimodal model: every modality trains end to end, methods pick the right parameters, and
checkpoints round-trip and refuse corrupt files (real backbones: test_hf_backbones.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import batch_of

from mmcl.core.integrity import CheckpointError
from mmcl.data.records import perception_path, read_jsonl, split_path
from mmcl.data.vocab import IGNORE
from mmcl.engine.loop import train_only
from mmcl.engine.precision import place_weights
from mmcl.methods import METHODS
from mmcl.models.checkpoint import load_base, load_stage, save_stage
from mmcl.models.mllm import enable_gradient_checkpointing

TASKS = ["image_cap", "image_qa", "audio_qa", "video_cap", "video_qa", "text_qa"]


def test_media_token_counts(tiny_base):
    model, _ = load_base(tiny_base)
    # 32 px images in 8 px patches: 16 patches + class token; 4 video frames concatenated;
    # 1 s of audio at hop 320 = 50 mel frames, halved by Whisper's stride-2 convolution.
    assert model.num_media_tokens == {"image": 17, "video": 68, "audio": 25}


@pytest.mark.parametrize("task", TASKS)
def test_forward_backward_reaches_only_the_right_parts(tiny_suite, tiny_base, task):
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    batch = batch_of(model, processor, params, data, task)
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    modality = read_jsonl(split_path(data, task, "train"))[0].modality
    for name, projector in model.projectors.items():
        touched = projector[0].weight.grad is not None and projector[0].weight.grad.abs().sum() > 0
        assert touched == (name == modality), f"projector {name} gradient for a {modality} batch"
    assert model.llm.get_input_embeddings().weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoders.parameters()), "frozen encoders got gradients"


def trainable(params, method, model):
    config = params.methods[method]
    cl_method = METHODS.get(config.type)(config)
    cl_method.prepare_model(model)
    return set(cl_method.trainable_parameters(model))


def test_method_trainable_parameters(tiny_suite, tiny_base):
    params, _ = tiny_suite
    model, _ = load_base(tiny_base)
    finetune = trainable(params, "finetune", model)
    assert finetune == {n for n, _ in model.named_parameters() if n.startswith(("llm.", "projectors."))}
    assert trainable(params, "joint", load_base(tiny_base)[0]) == finetune
    assert trainable(params, "zeroshot", load_base(tiny_base)[0]) == set()

    lora_model, _ = load_base(tiny_base)
    lora = trainable(params, "lora", lora_model)
    adapters = {n for n in lora if ".lora_" in n}
    # r=16 adapters (A and B) on q, k, v, o of both layers
    assert len(adapters) == 2 * 4 * 2
    assert lora - adapters == {n for n, _ in lora_model.named_parameters() if n.startswith("projectors.")}
    assert not any(n.startswith("llm.") and ".lora_" not in n for n in lora), "LoRA must not train base LLM weights"


def test_stage_checkpoint_round_trip_and_corruption(tiny_suite, tiny_base, tmp_path):
    params, _ = tiny_suite
    model, _ = load_base(tiny_base)
    keys = set(trainable(params, "lora", model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in keys:
                p.add_(0.5)
    save_stage(tmp_path / "ckpt", model, keys, {"fisher": torch.ones(3)}, {"stage": "image_cap"})

    fresh, _ = load_base(tiny_base)
    trainable(params, "lora", fresh)
    loaded_keys, method_state = load_stage(tmp_path / "ckpt", fresh)
    assert loaded_keys == keys and torch.equal(method_state["fisher"], torch.ones(3))
    state, fresh_state = model.state_dict(), fresh.state_dict()
    assert all(torch.equal(state[k], fresh_state[k]) for k in keys)

    with pytest.raises(CheckpointError, match="tensors do not exist in this model"):
        load_stage(tmp_path / "ckpt", load_base(tiny_base)[0])  # no LoRA adapters in this model

    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="does not match its recorded SHA-256"):
        load_stage(tmp_path / "ckpt", fresh)
    assert not (tmp_path / "ckpt").exists(), "a damaged checkpoint is moved aside, so the workflow recomputes it"
    assert len(list(tmp_path.glob("ckpt.corrupt-*/model.safetensors"))) == 1, "and kept for inspection"


def test_base_directory_reloads_identically(tiny_suite, tiny_base):
    params, data = tiny_suite
    first, processor = load_base(tiny_base)
    second, _ = load_base(tiny_base)
    batch = batch_of(first, processor, params, data, "video_qa")
    with torch.no_grad():
        assert torch.equal(first(**batch).logits, second(**batch).logits)


def test_perception_pretraining_teaches_the_encoder_its_tags_and_freezes_it(tiny_suite, tiny_base):
    from mmcl.engine.perception import pretrain_encoders
    from mmcl.models.backbones.base import PerceptionSettings

    _, data = tiny_suite
    model, processor = load_base(tiny_base)
    encoder_before = {k: v.clone() for k, v in model.encoders["image"].state_dict().items()}
    projectors_before = {k: v.clone() for k, v in model.projectors.state_dict().items()}
    torch.manual_seed(0)  # the throw-away tag head's initialisation
    stats = pretrain_encoders(
        model,
        processor,
        data,
        {"image": PerceptionSettings(steps=400, batch_size=8, lr=2e-3)},
        seed=0,
        log=lambda _: None,
    )
    # A predictor that ignores the image can do no better than each tag's base rate: its binary entropy.
    samples = read_jsonl(perception_path(data, "image"))
    tags = sorted({tag for s in samples for tag in s.answers})
    rates = [sum(tag in s.answers for s in samples) / len(samples) for tag in tags]
    blind = sum(-r * math.log(r) - (1 - r) * math.log(1 - r) for r in rates if 0 < r < 1) / len(tags)
    assert stats["image"]["final_loss"] < 0.75 * blind, "the encoder must learn the tags of its perception set"
    encoder = model.encoders["image"]
    assert any(not torch.equal(v, encoder_before[k]) for k, v in encoder.state_dict().items())
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training, "frozen again"
    assert all(torch.equal(v, projectors_before[k]) for k, v in model.projectors.state_dict().items()), (
        "projectors stay untrained: each continual stage aligns its modality itself"
    )


def test_logits_only_at_supervised_positions_give_the_full_loss(tiny_suite, tiny_base):
    """The LM head runs only where a target token is predicted; the loss is the one over every position."""
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    batch = batch_of(model, processor, params, data, "audio_cap")
    with torch.no_grad():
        outputs = model(**batch)
        embeds = model.embed(batch["input_ids"], batch["media"])
        full = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"])
    supervised = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert outputs.logits.shape == (supervised, full.logits.shape[-1])
    assert supervised < batch["attention_mask"].sum() / 2, "the prompt and media are most positions"
    assert outputs.loss.item() == pytest.approx(full.loss.item(), rel=1e-6)
    torch.testing.assert_close(outputs.logits, full.logits[outputs.rows])


def test_gradient_checkpointing_gives_the_same_gradients(tiny_suite, tiny_base):
    params, data = tiny_suite
    grads = []
    for checkpointing in (False, True):
        model, processor = load_base(tiny_base)
        if checkpointing:
            enable_gradient_checkpointing(model.llm)
        model.train()
        batch = batch_of(model, processor, params, data, "image_qa")
        torch.manual_seed(0)
        model(**batch).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert model.llm.is_gradient_checkpointing
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7)


def test_frozen_weights_take_the_compute_dtype_and_trained_ones_stay_fp32(tiny_base, tiny_suite):
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    trained = {n for n, _ in model.named_parameters() if n.startswith("projectors.image.")}
    carried = {n for n, _ in model.named_parameters() if n.startswith("projectors.audio.")}
    train_only(model, trained)
    place_weights(model, "bf16", keep=carried)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert {dtypes[n] for n in trained | carried} == {torch.float32}
    assert {d for n, d in dtypes.items() if n not in trained | carried} == {torch.bfloat16}
    batch = batch_of(model, processor, params, data, "image_qa")
    with torch.autocast("cpu", torch.bfloat16):
        model(**batch).loss.backward()
    assert all(model.get_parameter(n).grad.dtype == torch.float32 for n in trained)
    place_weights(model, "fp32")
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
