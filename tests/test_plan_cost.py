"""``mmcl plan``: architecture shapes, the memory estimate against a measured training step, the plan of each
real preset, and the GPU-memory check of validation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from mmcl.cli import main
from mmcl.core.registry import ConfigError
from mmcl.jobs import cost
from mmcl.jobs.cost import GIB, Estimator, Precision, Rows, Training, check_memory, plan, training_memory
from mmcl.jobs.params import load_params
from mmcl.models.shapes import KNOWN_CONFIGS, BackboneShape, config_kwargs, hub_shape, shape_from_config

PRESETS = ("moincl-real", "llava-real", "mode-real")


def preset(repo_root, name: str):
    return load_params(repo_root / f"workflow/presets/{name}.yaml")


def test_known_shapes_count_what_transformers_builds():
    """Every known id's parameter count is the one of transformers' own model of that config (built on the
    meta device: no weights, no download); Chameleon's VQ-GAN is counted apart."""
    import torch
    import transformers

    for hub_id, known in KNOWN_CONFIGS.items():
        config = transformers.AutoConfig.for_model(known.model_type, **config_kwargs(hub_id).kwargs)
        with torch.device("meta"):
            if known.model_type in ("clip", "whisper"):
                model = transformers.AutoModel.from_config(config)
            elif known.model_type == "chameleon":
                config.vocabulary_map = {"<image>": 8711}  # the checkpoint's tokenizer map; shapes do not depend on it
                model = transformers.ChameleonForConditionalGeneration(config)
            else:
                model = transformers.AutoModelForCausalLM.from_config(config)
        count = sum(p.numel() for p in model.parameters())
        if known.model_type == "chameleon":
            count -= sum(p.numel() for p in model.model.vqmodel.parameters())
        assert hub_shape(hub_id, "test").params == count, hub_id


def test_published_shapes():
    """The counts their model cards publish, and the media tokens the cost model reads."""
    assert hub_shape("meta-llama/Llama-3.2-1B-Instruct", "t").params == 1_235_814_400
    assert hub_shape("EleutherAI/pythia-410m", "t").params == 405_334_016
    assert hub_shape("openai/clip-vit-large-patch14", "t").tokens == 257
    assert hub_shape("openai/clip-vit-large-patch14-336", "t").tokens == 577
    assert hub_shape("openai/whisper-base", "t").tokens == 1500
    llama = config_kwargs("meta-llama/Llama-3.2-1B")
    assert (llama.model_type, llama.kwargs["num_key_value_heads"]) == ("llama", 8)


def test_local_config_is_read(tmp_path):
    """A local directory's config.json wins over the table (here: a model no table knows)."""
    from transformers import LlamaConfig

    LlamaConfig(
        hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, vocab_size=500
    ).save_pretrained(tmp_path)
    shape = hub_shape(str(tmp_path), "backbones.x.llm")
    assert (shape.layers, shape.hidden, shape.vocab) == (3, 96, 500)


def test_unknown_hub_id_names_the_setting_and_the_fix(repo_root):
    with pytest.raises(ConfigError) as err:
        hub_shape("nobody/unknown-model", "params.yaml: backbones.mine.llm")
    message = str(err.value)
    assert "backbones.mine.llm" in message and "download its config.json" in message and "local path" in message


def run_training(spec: dict) -> int:
    """Peak RSS growth (bytes) of a few AdamW steps of a random-init Llama, in a fresh process, over its RSS
    after the imports. The peak is the process's own high-water mark (VmHWM), reset after the imports (their
    transient peak varies); not ru_maxrss, which Linux carries over from the forking parent (pytest, large
    late in a full run). glibc's mmap threshold is fixed so that freed tensors go back to the system: RSS then
    follows live tensors, not a retained heap."""
    code = r"""
import json, os, sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM

spec = json.loads(sys.argv[1])
torch.set_num_threads(1)
torch.manual_seed(0)
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
model = LlamaForCausalLM(LlamaConfig(**spec["config"], attn_implementation=spec["attn"]))
if spec["checkpointing"]:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(0, model.config.vocab_size, (spec["batch"], spec["positions"]))
for _ in range(2):  # the second step holds AdamW's moments too
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps((peak - base) * 1024))
"""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


CALIBRATION = {  # each case weighs another part: logits, eager attention's s² term, checkpointing
    "sdpa-gqa": dict(kv_heads=2, vocab=12000, attn="sdpa", checkpointing=False, layers=2, batch=4, positions=256),
    "eager": dict(kv_heads=6, vocab=2000, attn="eager", checkpointing=False, layers=2, batch=4, positions=384),
    "checkpointing": dict(kv_heads=6, vocab=2000, attn="sdpa", checkpointing=True, layers=3, batch=8, positions=256),
}


@pytest.mark.parametrize("case", CALIBRATION)
def test_memory_estimate_matches_a_measured_step(case):
    """The estimate of a full fine-tune (fp32 on CPU: weights, gradients, AdamW, activations, logits) is within
    20% of the measured peak RSS growth of the same model and batch. Measured with torch 2.13: 1% below to 15%
    above (the estimate is conservative: without a padding mask sdpa keeps K and V unrepeated, and with
    checkpointing the logits' and the recomputed block's peaks do not coincide); the margin leaves room for
    allocator and torch-version differences."""
    from transformers import LlamaConfig

    c = CALIBRATION[case]
    config = dict(
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=c["layers"],
        num_attention_heads=6,
        num_key_value_heads=c["kv_heads"],
        vocab_size=c["vocab"],
    )
    measured = run_training(
        dict(
            config=config, attn=c["attn"], checkpointing=c["checkpointing"], batch=c["batch"], positions=c["positions"]
        )
    )
    shape = shape_from_config("llama", LlamaConfig(**config).to_dict())
    rows = Rows(c["batch"], c["positions"], c["positions"])
    estimate = training_memory(
        BackboneShape(shape),
        Training(llm=True, projectors="none"),
        [rows],
        Precision(frozen=4, activation=4),
        eager=c["attn"] == "eager",
        checkpointing=c["checkpointing"],
    )
    assert estimate.total == pytest.approx(measured, rel=0.20), (estimate, measured)


def test_training_flops_are_the_documented_formula(repo_root):
    """Text rows (no media): 6·N·tokens trained, 4·N·tokens frozen under an adapter (plus the adapter's
    6·A), attention 12·L·s·h per token, and one more forward with checkpointing."""
    est = Estimator(load_params(repo_root / "params.yaml"), "tiny")
    llm, rows = est.shape.llm, est.rows("text_qa", 4)
    attention = 12 * llm.layers * rows.positions * llm.hidden * rows.tokens
    assert est.training_flops(Training(llm=True), rows, False) == 6 * llm.active_params * rows.tokens + attention
    lora = cost.training_of(est.params, "lora", est.shape)
    frozen = 4 * llm.active_params * rows.tokens + 6 * lora.adapter.params * rows.tokens + attention
    assert est.training_flops(lora, rows, False) == frozen
    forward = 2 * llm.active_params * rows.tokens + attention / 3
    assert est.training_flops(lora, rows, True) == pytest.approx(frozen + forward)


JOB = re.compile(r"^(train_base|align|train_stage|teach|evaluate|lm_eval|encode_media)\s+(\S+)\s+(\S+)\s+(\d+)\s+(.*)$")


@pytest.mark.parametrize("name", PRESETS)
def test_plan_of_each_real_preset_lists_every_job_kind(repo_root, name):
    """One row per kind of job, backbone and method, each with its count, memory and GPU-hours; with the
    presets' settings every job fits their 80 GB GPUs."""
    params = preset(repo_root, name)
    text = plan(params).text()
    rows = {}
    for line in text.splitlines():
        if match := JOB.match(line):
            kind, backbone, method, count, rest = match.groups()
            numbers = rest.split()
            rows[(kind, backbone, method)] = (int(count), float(numbers[8]), numbers[10], float(numbers[11]))
    grid = params.grid
    expected = {("evaluate", b, "-") for b in grid.backbones} | {("train_base", b, "-") for b in grid.backbones}
    expected |= {("train_stage", b, m) for b in grid.backbones for m in grid.methods}
    if params.suite().alignment:
        expected |= {("align", b, "-") for b in grid.backbones}
    if "lwf" in grid.methods:
        expected |= {("teach", b, "lwf") for b in grid.backbones}
    expected |= {("lm_eval", b, "-") for b in grid.backbones if params.backbones[b].lm_eval}
    # the feature cache, once per backbone with frozen encoders (a unified backbone's images are tokens)
    expected |= {("encode_media", b, "-") for b in grid.backbones if params.backbones[b].family == "hf"}
    assert expected <= set(rows), expected - set(rows)
    for key, (count, peak, fits, hours) in rows.items():
        assert count > 0 and fits == "yes", key
        if key[0] != "train_base":  # the hf and hub unified backbones' base model is assembled, not trained
            assert peak > 1.0 and hours > 0, key
    assert "6·N·tokens" in text and "40% of the bf16 peak" in text and "do not fit: none" in text


def test_plan_counts_the_grid(repo_root):
    """moincl-real: 12 distinct stages per sequential method and seed, one joint stage, a base evaluation;
    one prediction job per method and seed and the base model's, on the cells the metrics read."""
    jobs = {(job.kind, job.method): job for job in plan(preset(repo_root, "moincl-real")).jobs}
    assert jobs[("train_stage", "finetune")].count == 12 * 3
    assert jobs[("train_stage", "joint")].count == 3
    assert jobs[("teach", "lwf")].count == 10 * 3  # every stage but each order's first
    assert jobs[("evaluate", None)].count == 1 + 8 * 3
    # per sequential run of each of the 2 orders of 6 tasks: T(T+1)/2 + T - 1 = 26 cells; the joint stage and
    # the base model every task; evaluation.cells: all, every checkpoint on every task
    assert "1116 (checkpoint, task) cells" in jobs[("evaluate", None)].note  # 7*3*2*26 + 3*6 + 6
    params = preset(repo_root, "moincl-real")
    every = plan(replace(params, evaluation=replace(params.evaluation, cells="all"))).jobs
    (evaluate,) = [job for job in every if job.kind == "evaluate"]
    assert "1536 (checkpoint, task) cells" in evaluate.note  # 6 * (1 + (7*12 + 1)*3)
    assert evaluate.gpu_hours > jobs[("evaluate", None)].gpu_hours


def test_check_names_the_fix_and_the_micro_batch_that_fits(repo_root, tmp_path):
    """Without a micro-batch, moincl-real's stages need ~160 GB: the error names the file, the job, the
    setting and the largest micro-batch that fits; that one passes, the next larger one does not."""
    params = preset(repo_root, "moincl-real")
    whole = replace(params, train=replace(params.train, micro_batch_size=None))
    with pytest.raises(ConfigError) as err:
        check_memory(whole)
    message = str(err.value)
    assert message.startswith(f"{params.path}: resources.train_stage.gpu_mem_gb: train_stage moincl-llama-3.2-1b")
    fitting = int(re.search(r"set train\.micro_batch_size <= (\d+)", message).group(1))
    assert "train.gradient_checkpointing: true" in message
    check_memory(replace(params, train=replace(params.train, micro_batch_size=fitting)))
    with pytest.raises(ConfigError):
        check_memory(replace(params, train=replace(params.train, micro_batch_size=2 * fitting)))


def test_plan_command_fails_where_a_checked_job_does_not_fit(repo_root, tmp_path, capsys):
    """mode-real without gradient checkpointing: the plan is printed, then the error, exit code 2."""
    settings = yaml.safe_load((repo_root / "workflow/presets/mode-real.yaml").read_text())
    settings["extends"] = str(repo_root / "params.yaml")
    settings["train"]["gradient_checkpointing"] = False
    config = tmp_path / "mode-real.yaml"
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit) as exit_code:
        main(["plan", "--params", str(config)])
    out, err = capsys.readouterr()
    assert exit_code.value.code == 2
    assert "train_stage anole-7b mode" in out and "NO" in out  # the plan is printed first
    assert "resources.train_stage.gpu_mem_gb" in err and "train.gradient_checkpointing: true" in err


def test_unchecked_jobs_are_reported_not_failed(repo_root):
    """gpu_mem_gb unset: the plan compares with the assumed GPU's memory but validation passes."""
    params = preset(repo_root, "moincl-real")
    unset = replace(params.resources.train_stage, gpu_mem_gb=None)
    params = replace(params, train=replace(params.train, micro_batch_size=None))
    params = replace(params, resources=replace(params.resources, train_stage=unset))
    result = plan(params)
    assert any(job.kind == "train_stage" and not job.fits for job in result.misfits())
    result.check()


def test_a_lora_target_the_llm_lacks_is_named(repo_root):
    params = preset(repo_root, "llava-real")
    params.methods["lora"] = replace(params.methods["lora"], target_modules=["q_proj", "v_proj"])
    with pytest.raises(ConfigError, match=r"methods\.lora\.target_modules: none of \['q_proj', 'v_proj'\]"):
        plan(params)


def test_default_params_validate_without_shapes(repo_root, monkeypatch):
    """No gpu_mem_gb in params.yaml: nothing is estimated, so no hub model's shape is ever looked up."""

    def no_lookup(*args):
        raise AssertionError("a shape was looked up")

    monkeypatch.setattr(cost, "backbone_shape", no_lookup)
    check_memory(load_params(repo_root / "params.yaml"))


def test_plan_of_hub_backbones_imports_no_torch(repo_root, tmp_path):
    """The known ids' shapes come from the table: planning a real preset stays as light as validation."""
    code = (
        "import sys; from mmcl.jobs.params import load_params; from mmcl.jobs.cost import check_memory, plan; "
        "params = load_params('workflow/presets/llava-real.yaml'); check_memory(params); plan(params).text(); "
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}  # nothing cached to read
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"


def test_estimate_follows_the_settings(repo_root):
    """Gradient checkpointing and smaller micro-batches lower the activations; supervised-only logits lower the
    logits; fp32 doubles frozen weights."""
    params = preset(repo_root, "mode-real")
    est = Estimator(params, "anole-7b")
    training = cost.training_of(params, "lora", est.shape)
    rows = [est.rows("scienceqa", 8)]
    full = est.training_memory(training, rows, checkpointing=False)
    assert est.training_memory(training, rows, checkpointing=True).activations < full.activations / 5
    assert est.training_memory(training, [est.rows("scienceqa", 2)], False).activations == pytest.approx(
        full.activations / 4
    )
    every_position = Estimator(params, "anole-7b", supervised_only=False).training_memory(training, rows, False)
    assert full.logits < every_position.logits / 100  # the answer is under 1% of the positions
    fp32 = replace(params, train=replace(params.train, precision="fp32"))
    assert Estimator(fp32, "anole-7b").training_memory(training, rows, False).weights > 1.9 * full.weights
    assert full.total > 60 * GIB
