"""Elastic Weight Consolidation (Kirkpatrick et al. 2017; online EWC: Schwarz et al. 2018).

EWC trains what its ``base`` method trains (``mmcl.methods.on_base``): ``lora`` (the adapter and the
projectors, as in MoInCL's baselines) or ``finetune`` (the whole LLM and the projectors). It adds a
penalty that keeps each trainable parameter near its value after earlier stages, weighted by its
diagonal empirical Fisher::

    loss = CE + (λ/2) Σ_i F_i (θ_i − θ*_i)²

After each stage, F_new is the squared gradient of the batch loss, averaged over the batches of
``fisher_samples`` training samples of the stage, taken at the stage's final weights θ_new. The
Fisher and the anchor θ* are the method's ``state_dict``, so they are saved with the checkpoint and
never recomputed. Stages combine as follows:

- ``online: true``: F ← γ·F + F_new and θ* ← θ_new (one anchor, and older stages fade).
- ``online: false``: one penalty per stage, Σ_k F_k (θ − θ*_k)². It is kept in constant memory as a
  single penalty with F = Σ_k F_k and θ* = Σ_k F_k θ*_k / F (the Fisher-weighted mean of the
  anchors). That equals the sum of the penalties up to an additive constant, so it gives the same
  gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.config.ranges import positive
from mmcl.methods import METHODS
from mmcl.methods.on_base import OnBase, OnBaseConfig


@dataclass
class EWCConfig(OnBaseConfig):
    # Penalty weight λ (`lambda` is a Python keyword). On micl-synth's tiny backbone, 5000 makes the
    # penalty for the drift of plain LoRA over one stage about 0.7, the size of the task loss.
    ewc_lambda: float = 5000.0
    online: bool = False
    gamma: float = 0.9  # online EWC: decay of the older stages' Fisher
    fisher_samples: int = positive(256)  # training samples of the stage that the Fisher is estimated on
    fisher_batch_size: int = positive(8)  # 1: the per-sample empirical Fisher; larger is faster and smaller in scale


@METHODS.register("ewc", EWCConfig)
class EWC(OnBase):
    config: EWCConfig
    PENALTY_SETTINGS = ("ewc_lambda", "online", "gamma")  # used from the second stage on

    def __init__(self, config: EWCConfig):
        super().__init__(config)
        self.fisher: dict = {}  # parameter name -> consolidated Fisher F
        self.anchor: dict = {}  # parameter name -> anchor θ*

    def stage_settings(self, stage):
        settings = super().stage_settings(stage)
        return settings if stage.previous else {k: v for k, v in settings.items() if k not in self.PENALTY_SETTINGS}

    def loss(self, model, batch, outputs, step):
        return outputs.loss + self.penalty(model) if self.fisher else outputs.loss

    def penalty(self, model):
        """(λ/2) Σ F (θ − θ*)² over the parameters that have a Fisher."""
        params = dict(getattr(model, "module", model).named_parameters())  # under DDP, loss() gets the wrapper
        total = 0.0
        for name in self.fisher:
            param = params[name]
            # Loaded on the CPU; moved once to where training runs (.to is a no-op after that).
            fisher = self.fisher[name] = self.fisher[name].to(param.device)
            anchor = self.anchor[name] = self.anchor[name].to(param.device)
            total = total + (fisher * (param - anchor) ** 2).sum()
        return self.config.ewc_lambda / 2 * total

    def after_stage(self, model, context):
        names = list(self.trainable_parameters(model))
        samples = min(self.config.fisher_samples, len(context.dataset))
        fisher = empirical_fisher(model, names, context, samples, self.config.fisher_batch_size)
        params = dict(model.named_parameters())
        self.consolidate(fisher, {name: params[name].detach().to("cpu", copy=True) for name in names})
        context.log(f"ewc: Fisher of {len(names)} tensors over {samples} training samples")

    def consolidate(self, fisher: dict, weights: dict) -> None:
        """Merge a stage's Fisher and final weights into the penalty the next stages pay."""
        import torch

        for name, new in fisher.items():
            theta = weights[name]
            old = self.fisher.get(name, torch.zeros_like(new)).cpu()
            anchor = self.anchor.get(name, theta).cpu()
            if self.config.online:
                self.fisher[name], self.anchor[name] = self.config.gamma * old + new, theta
            else:
                # Fisher-weighted mean of the anchors, written as θ_new + shift: exactly θ_new when old is 0.
                total = old + new
                shift = torch.where(total > 0, old * (anchor - theta) / total, 0.0)
                self.fisher[name], self.anchor[name] = total, theta + shift

    def state_dict(self):
        return {f"fisher.{n}": t for n, t in self.fisher.items()} | {f"anchor.{n}": t for n, t in self.anchor.items()}

    def load_state_dict(self, state):
        stores = {"fisher": self.fisher, "anchor": self.anchor}
        for key, tensor in state.items():
            kind, name = key.split(".", 1)
            stores[kind][name] = tensor


def empirical_fisher(model, names: list[str], context, samples: int, batch_size: int) -> dict:
    """Diagonal empirical Fisher of the named parameters: the squared gradient of each batch's loss,
    averaged over the batches of ``samples`` (at most all) evenly spaced training samples of the stage."""
    import torch

    params = dict(model.named_parameters())
    tensors = [params[name] for name in names]
    fisher = [torch.zeros_like(t) for t in tensors]
    dataset = context.dataset
    picks = torch.linspace(0, len(dataset) - 1, samples).round().long().tolist()  # deterministic subset
    chunks = [picks[i : i + batch_size] for i in range(0, len(picks), batch_size)]
    was_training = model.training
    model.eval()  # the Fisher of the trained model itself, without dropout noise
    for chunk in chunks:
        batch = to_device(context.collator.train_batch([dataset[i] for i in chunk]), tensors[0].device)
        grads = torch.autograd.grad(model(**batch).loss, tensors, allow_unused=True)
        for total, grad in zip(fisher, grads, strict=True):
            if grad is not None:  # e.g. the projectors of modalities absent from the stage
                total.add_(grad.detach() ** 2)
    model.train(was_training)
    return {name: (total / len(chunks)).cpu() for name, total in zip(names, fisher, strict=True)}


def to_device(batch: dict, device) -> dict:
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}
