"""MoELoRA and MoDE: where each token goes, that disabled or fresh adapters leave the base model exactly,
the top-K distillation against a hand computation, what is trained, and the gradient-conflict diagnostic.

The model is a tiny Llama whose top 20 vocabulary ids are image tokens (the image start and end
markers at both ends), called with token ids as a unified backbone calls its LLM.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import batch_of
from torch import nn
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from mmcl.config.schema import Params, SuiteConfig, TaskConfig
from mmcl.core.plan import stage_from_key
from mmcl.data.families import DRAW_CAPTIONS_TASK, TaskFamily, suite_families
from mmcl.data.records import Sample, split_path, write_jsonl
from mmcl.data.vocab import build_word_tokenizer
from mmcl.engine.batching import Collator, InstructionDataset, Item
from mmcl.methods.base import StageContext, parameters_under
from mmcl.methods.experts import (
    ExpertLinear,
    adapter_parameters,
    adapters_disabled,
    every_token_image,
    expert_layers,
)
from mmcl.methods.mode import MoDE, MoDEConfig, ModeKDConfig, image_kd
from mmcl.methods.moelora import MoELoRA, MoELoRAConfig
from mmcl.metrics.gradients import gradient_conflicts
from mmcl.models.checkpoint import load_base

VOCAB, IMAGE = 100, range(80, 100)  # 8 special tokens, 72 words, then <img>, 18 codes, </img>
TEXT_WORDS = [f"w{i}" for i in range(72)]
IMAGE_WORDS = ["<img>", *(f"c{i}" for i in range(18)), "</img>"]
MLP = ("gate_proj", "up_proj", "down_proj")


class Unified(nn.Module):
    """A tiny causal LM whose images are tokens of its vocabulary, called with ``input_ids``."""

    image_token_range = IMAGE

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3,
            initializer_range=0.2,  # logits wide enough for MLP adapters alone to fit a few answers
        )  # fmt: skip
        self.llm = LlamaForCausalLM(config)

    def forward(self, input_ids, attention_mask=None, media=None, labels=None):
        return self.llm(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def moelora(**settings) -> MoELoRA:
    return MoELoRA(MoELoRAConfig(type="moelora", train_projectors=False, **settings))


def mode(**settings) -> MoDE:
    return MoDE(MoDEConfig(type="mode", **settings))


def adapted(method, seed: int = 0, random_b: bool = True) -> Unified:
    """The model with the method's adapters; with ``random_b`` their B is non-zero, so they act."""
    model = Unified()
    method.prepare_model(model)
    if random_b:
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("lora_B"):
                    param.normal_(0, 0.5)
    return model.eval()


def ids(*rows):
    return torch.tensor(rows)


MIXED = ids([2, 5, 80, 81, 90, 99, 7, 12], [2, 79, 80, 95, 99, 40, 41, 3])  # text, <img> codes </img>, text


def logits(model, input_ids=MIXED):
    return model(input_ids).logits


# --- routing ---


def test_the_modality_mask_sends_each_token_through_exactly_one_family():
    model = adapted(mode())
    layers = expert_layers(model)
    assert len(layers) == 2 * len(MLP)
    seen = {}
    for i, layer in enumerate(layers):
        layer.register_forward_pre_hook(lambda m, args, i=i: seen.setdefault(i, {}).update(x=args[0]))
        for family in ("experts", "visual"):
            getattr(layer, family).register_forward_pre_hook(
                lambda m, args, i=i, family=family: seen[i].update({family: args[0]})
            )
    logits(model)
    image = (MIXED >= 80) & (MIXED < 100)
    assert image.sum() == 7 and image[0, 2] and image[0, 5], "the markers (80, 99) are image tokens"
    for rows in seen.values():
        assert torch.equal(rows["experts"], rows["x"][~image]), "text tokens, and only they, go to the T-MoE"
        assert torch.equal(rows["visual"], rows["x"][image]), "image tokens, and only they, go to the V-Adapter"

    seen.clear()
    with every_token_image(model):
        logits(model)
    for rows in seen.values():
        assert rows["experts"].shape[0] == 0 and torch.equal(rows["visual"], rows["x"].flatten(0, 1))

    moe = adapted(moelora())
    hooked = expert_layers(moe)[0]
    inputs = {}
    hooked.register_forward_pre_hook(lambda m, args: inputs.update(x=args[0]))
    hooked.experts.register_forward_pre_hook(lambda m, args: inputs.update(experts=args[0]))
    logits(moe)
    assert hooked.visual is None and torch.equal(inputs["experts"], inputs["x"]), "MoELoRA: every token"


def test_routing_follows_incremental_decoding():
    """Each decoding step's new tokens are routed by their own ids: cached and uncached decoding agree."""
    model = adapted(mode())
    prompt = MIXED[:, :5]
    cached = model.llm.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=True)
    uncached = model.llm.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_token_ids_are_required_to_route():
    model = adapted(mode())
    embeds = model.llm.get_input_embeddings()(MIXED)
    with pytest.raises(ValueError, match="inputs_embeds only"):
        model.llm(inputs_embeds=embeds)
    with every_token_image(model):  # nothing to read: every token is an image token
        model.llm(inputs_embeds=embeds)
    without_image_tokens = nn.Module()
    without_image_tokens.llm = Unified().llm
    with pytest.raises(ValueError, match="no image_token_range"):
        mode().prepare_model(without_image_tokens)


# --- adapters off, adapters fresh ---


@pytest.mark.parametrize("make", [moelora, mode])
def test_disabled_adapters_give_the_base_logits_exactly(make):
    base = logits(Unified())
    model = adapted(make())
    assert not torch.allclose(logits(model), base), "the adapters act"
    with adapters_disabled(model):
        assert torch.equal(logits(model), base)
    assert not torch.allclose(logits(model), base), "and act again after"


@pytest.mark.parametrize("make", [moelora, mode])
def test_fresh_adapters_start_at_the_base_model(make):
    model = adapted(make(), random_b=False)
    model.train()  # dropout on the adapters' inputs changes nothing while B = 0
    assert torch.equal(logits(model), logits(Unified()))
    a = next(p for n, p in model.named_parameters() if n.endswith("lora_A"))
    assert a.abs().max() > 0 and a[0].abs().max() <= 1 / math.sqrt(a.shape[-1]), "Kaiming-uniform A (bound 1/√in)"


def test_router_weights_sum_to_one_per_token_in_fp32():
    model = adapted(moelora(experts=4))
    layer = expert_layers(model)[0]
    x = torch.randn(2, 5, layer.base.in_features)
    for inputs in (x, x.bfloat16()):
        gates = layer.experts.gates(inputs)
        assert gates.shape == (2, 5, 4) and gates.dtype == torch.float32
        torch.testing.assert_close(gates.sum(-1), torch.ones(2, 5))
    assert gates.std() > 0, "the router weighs experts differently"


def test_trainable_parameters():
    config = Unified().llm.config
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    sizes = [(hidden, inner), (hidden, inner), (inner, hidden)]  # gate, up, down: (in, out)
    e, r = 4, 8
    routed = sum(e * r * (i + o) + e * i for i, o in sizes)  # A, B per expert, and the router
    visual = sum(r * (i + o) for i, o in sizes)
    for method, expected in ((moelora(experts=e, r=r), routed), (mode(experts=e, r=r), routed + visual)):
        model = Unified()
        method.prepare_model(model)
        names = set(method.trainable_parameters(model))
        params = dict(model.named_parameters())
        assert sum(params[n].numel() for n in names) == layers * expected
        assert not any(".base." in n for n in names)
        assert sum(isinstance(m, ExpertLinear) for m in model.modules()) == layers * len(MLP)


def test_on_a_llava_style_backbone(tiny_suite, tiny_base):
    """MoELoRA needs no token ids (it trains with the projectors); MoDE refuses a model without image tokens."""
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    method = MoELoRA(params.methods["moelora"])
    method.prepare_model(model)
    names = set(method.trainable_parameters(model))
    assert names == set(adapter_parameters(model)) | set(parameters_under(model, "projectors."))
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    model(**batch_of(model, processor, params, data, "image_qa")).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if ".experts.lora_B" in n)
    with pytest.raises(ValueError, match="no image_token_range: use a unified backbone"):
        MoDE(params.methods["mode"]).prepare_model(load_base(tiny_base)[0])


# --- distillation ---


def softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [v / sum(exps) for v in exps]


def test_image_kd_by_hand():
    # Vocabulary of 6, image ids 3..5; two sequences, the second padded after its first position.
    teacher = torch.tensor([[[9.0, 0.0, 0.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 3.0]],
                            [[0.0, 0.0, 0.0, 1.0, 4.0, 2.0], [50.0, 0.0, 0.0, 0.0, 0.0, 9.0]]])  # fmt: skip
    student = torch.tensor([[[0.0, 7.0, 0.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 2.0, 0.0, 1.0]],
                            [[3.0, 0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 9.0, 0.0, 0.0]]])  # fmt: skip
    mask = torch.tensor([[1, 1], [1, 0]])
    T = 2.0
    # Teacher's top-2 image tokens (text ids never count, however large): (3, 4), (5, 4), (4, 5).
    expected = 0.0
    for b, t, tokens in ((0, 0, [3, 4]), (0, 1, [5, 4]), (1, 0, [4, 5])):
        p = softmax([teacher[b, t, v].item() / T for v in tokens])
        q = softmax([student[b, t, v].item() / T for v in tokens])
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = T**2 * expected / 3
    assert image_kd(student, teacher, mask, range(3, 6), 2, T).item() == pytest.approx(expected, rel=1e-6)
    assert image_kd(teacher, teacher, mask, range(3, 6), 2, T).item() == pytest.approx(0.0, abs=1e-7)
    full = image_kd(student, teacher, mask, range(3, 6), 256, T)  # K capped at the 3 image tokens
    assert full.item() == pytest.approx(image_kd(student, teacher, mask, range(3, 6), 3, T).item())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A word tokenizer laid out like the model's vocabulary, and two tasks: `chat` (understanding,
    image tokens in its prompts) and `draw` (generation: a prompt, then image tokens as the target)."""
    root = tmp_path_factory.mktemp("mode")
    (root / "vocab.txt").write_text("\n".join(TEXT_WORDS + IMAGE_WORDS) + "\n")
    build_word_tokenizer(root / "vocab.txt", root / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    assert len(tokenizer) == VOCAB and tokenizer.convert_tokens_to_ids("<img>") == IMAGE.start
    chat = [
        Sample(f"chat{i}", "chat", "text", f"w{i} <img> c{i} c{i + 1} </img> w{i + 2}", [f"w{i + 3} w{i + 4}"])
        for i in range(8)
    ]
    draw = [Sample(f"draw{i}", "draw", "text", f"w{i} w{i + 9}", [f"<img> c{i} c{17 - i} </img>"]) for i in range(8)]
    data = root / "data"
    for samples in (chat, draw):
        path = split_path(data, samples[0].task, "train")
        path.parent.mkdir(parents=True)
        write_jsonl(path, samples)
    tasks = {"chat": TaskConfig(family="qa", modality="text"), "draw": TaskConfig(family="generation", modality="text")}
    collator = Collator(tokenizer, {}, {"chat": TaskFamily(), "draw": TaskFamily()}, seed=0)
    context = StageContext(
        stage_from_key("sequential", "chat"),
        InstructionDataset(chat, data, processor=None),
        collator,
        SuiteConfig(generator="mode_synth", tasks=tasks),
        log=lambda _: None,
    )
    return context


def test_distillation_follows_only_the_visual_adapter(world):
    method = mode(kd=ModeKDConfig(top_k=8, per_step=3))
    model = adapted(method, random_b=False)
    method.before_stage(model, world)
    assert len(method.pool.samples) == 8 and method.vocabulary == IMAGE
    assert method.distillation(model, 1, "cpu").item() == 0.0, "fresh adapters: the student is the teacher"

    def perturb(family):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if f".{family}.lora_B" in name:
                    param.normal_(0, 0.5)

    perturb("experts")
    assert method.distillation(model, 1, "cpu").item() == 0.0, "the T-MoE never sees a distilled sequence"
    perturb("visual")
    assert method.distillation(model, 1, "cpu").item() > 0.0
    assert method.pool.picks(7, 3) == method.pool.picks(7, 3) != method.pool.picks(8, 3)

    without = copy.copy(world)
    without.suite = SuiteConfig(tasks={"chat": world.suite.tasks["chat"]})
    with pytest.raises(ValueError, match=r"generation.*has none.*kd.weight: 0"):
        method.before_stage(model, without)
    switched_off = mode(kd=ModeKDConfig(weight=0.0))
    switched_off.before_stage(model, without)
    assert switched_off.pool is None


def test_distillation_on_a_captioning_dataset_draws_its_captions(world):
    """`kd.dataset`: a converted captioning dataset beside the suite's (data/<dataset>), read the other way
    round: its caption is the prompt, its image (a unified backbone's tokens) the target."""
    pairs = world.dataset.data_dir.parent / "pairs"
    (pairs / "media").mkdir(parents=True, exist_ok=True)
    (pairs / "media" / "p0.png").touch()  # read as tokens only when a batch is built (below: given)
    caption = Sample("p0", "pairs", "image", "describe the image.", ["w1 w2"], ["media/p0.png"])
    write_jsonl(pairs / "train.jsonl", [caption])
    method = mode(kd=ModeKDConfig(dataset="pairs"))
    assert method.datasets() == {"pairs": ("captioning", "image")}  # checked at load, converted before the stage
    assert method.stage_settings(world.stage)["kd"]["dataset"] == "pairs"
    assert "dataset" not in mode().stage_settings(world.stage)["kd"]  # earlier stages keep their fingerprint
    method.before_stage(adapted(method, random_b=False), world)
    [sample] = method.pool.samples
    assert (sample.task, sample.instruction, sample.media) == (DRAW_CAPTIONS_TASK, "w1 w2", ["../pairs/media/p0.png"])
    tokenizer = world.collator.tokenizer
    collator = Collator(tokenizer, {}, suite_families(Params(suites={"none": SuiteConfig()}).suites["none"]))
    image = torch.tensor([80, 85, 99])  # <img> c4 </img>
    batch = collator.train_batch([Item(sample, image, 0)])
    target = [*image.tolist(), tokenizer.eos_token_id]
    assert batch["input_ids"][0, -4:].tolist() == target == batch["labels"][0, -4:].tolist()
    assert tokenizer.convert_ids_to_tokens(batch["input_ids"][0, 1:3].tolist()) == ["w1", "w2"]


@pytest.mark.parametrize("make", [moelora, mode])
def test_a_few_steps_reduce_the_loss(make, world):
    method = make()
    model = adapted(method, random_b=False)
    method.before_stage(model, world)
    names = set(method.trainable_parameters(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = world.collator.train_batch([world.dataset[i] for i in range(4)])
    model.train()
    losses = []
    for step in range(1, 11):
        outputs = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
        loss = method.loss(model, batch, outputs, step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    if isinstance(method, MoDE):
        assert method.distillation(model, 99, "cpu").item() > 0, "the prompts' image tokens moved the V-Adapter"


# --- gradient conflict ---


def conflicts_of(method):
    """Per adapter tensor, the conflict between the loss on pure text and on pure image token sequences."""
    text = ids([2, 5, 9, 14, 30, 3], [2, 41, 7, 7, 60, 3])
    image = ids([80, 85, 90, 91, 88, 99], [80, 81, 97, 82, 83, 99])
    model = adapted(method)
    names = set(method.trainable_parameters(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    conflicts = gradient_conflicts(model, {"input_ids": text, "labels": text}, {"input_ids": image, "labels": image})
    assert set(conflicts) == names
    return conflicts


def test_modes_text_and_visual_adapters_have_no_gradient_in_common():
    for name, c in conflicts_of(mode()).items():
        assert math.isnan(c.cosine), "each tensor is reached by one loss only: no first-order conflict"
        assert (c.text_norm > 0, c.image_norm > 0) == ((".experts." in name), (".visual." in name)), name


def test_moeloras_shared_experts_get_both_gradients():
    conflicts = conflicts_of(moelora())
    for name, c in conflicts.items():
        assert c.text_norm > 0 and c.image_norm > 0 and -1 <= c.cosine <= 1, name
    assert len({round(c.cosine, 6) for c in conflicts.values()}) > 1
