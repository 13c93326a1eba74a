"""The model of the ``unified`` backbone family (``mmcl.models.backbones.unified``) and its image processor.

``UnifiedLM`` wraps a causal LM whose vocabulary holds an image tokenizer's codes and the image start and
end markers as one contiguous block, ``image_token_range``. It has the interface of ``MultimodalLM``
(``llm``, ``tokenizer``, ``num_media_tokens``, ``forward``, ``generate``) with no encoders or projectors:
``ImageTokenProcessor.load`` turns an image file into its token ids ``<img> code ... </img>``, which the
collator puts into the sequence as they are. ``generate_image`` writes one image's codes after a prompt
(decoding restricted to the code tokens) and the processor decodes them back to pixels.

Two image tokenizers: the embedded VQ-VAE (``mmcl.models.vq``), and a Chameleon checkpoint's own VQ-GAN
encoder. transformers' Chameleon has no VQ-GAN decoder, so its generated images cannot be decoded to
pixels here; it still reads images and writes image tokens (learns them, distils on them).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList

from mmcl.data.media import read_image
from mmcl.models.mllm import greedy, supervised_forward

IMAGE_START, IMAGE_END = "<img>", "</img>"
# Chameleon's image markers, as its processor names them (ChameleonProcessor.image_start/end_token)
CHAMELEON_START, CHAMELEON_END = "<racm3:break>", "<eoss>"
PRETRAINED = ("ChameleonForConditionalGeneration",)


def image_vocabulary(codebook_size: int) -> list[str]:
    """The embedded model's image tokens: the start marker, one token per code, the end marker."""
    return [IMAGE_START, *(f"<img_{code}>" for code in range(codebook_size)), IMAGE_END]


class OnlyTokens(LogitsProcessor):
    """Greedy decoding limited to ``ids`` (or, with ``allow=False``, to every token but ``ids``)."""

    def __init__(self, ids: torch.Tensor, allow: bool = True):
        self.ids, self.allow = ids, allow

    def __call__(self, input_ids, scores):
        blocked = torch.full_like(scores, self.allow, dtype=torch.bool)
        blocked[:, self.ids.to(scores.device)] = not self.allow
        return scores.masked_fill(blocked, float("-inf"))


class UnifiedLM(nn.Module):
    architecture = "unified"  # its name in a base directory's manifest (``mmcl.models.checkpoint``)
    # the files its images' cached token ids depend on (Chameleon's VQ-GAN is part of its LLM)
    encoder_parts = ("image_tokenizer/", "llm/")

    def __init__(self, llm, tokenizer, code_ids: list[int], start_id: int, end_id: int, tokens_per_image: int):
        super().__init__()
        self.llm = llm
        self.tokenizer = tokenizer
        # Images are tokens: nothing encodes or projects them (methods that train projectors train none).
        self.encoders = nn.ModuleDict()
        self.projectors = nn.ModuleDict()
        self.freeze_encoders = True
        self.tokens_per_image = tokens_per_image
        self.num_media_tokens = {"image": tokens_per_image + 2}  # with the markers
        ids = sorted([*code_ids, start_id, end_id])
        if len(set(ids)) != len(ids) or ids != list(range(ids[0], ids[-1] + 1)):
            raise ValueError("the image codes and markers must be distinct, contiguous token ids")
        self.image_token_range = range(ids[0], ids[-1] + 1)
        self.start_id, self.end_id = start_id, end_id
        self.register_buffer("code_ids", torch.tensor(code_ids), persistent=False)
        code_of = torch.full((ids[-1] + 1,), -1, dtype=torch.long)
        code_of[self.code_ids] = torch.arange(len(code_ids))
        self.register_buffer("code_of", code_of, persistent=False)

    @property
    def modalities(self) -> list[str]:
        return ["image"]

    def forward(self, input_ids, attention_mask, media=None, labels=None, **kwargs):
        """With ``labels``: ``SupervisedOutputs``; without: the LLM's outputs (logits at every position)."""
        if labels is not None:
            return supervised_forward(self.llm, labels, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return self.llm(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def media_encoders(self, processor: ImageTokenProcessor) -> list[nn.Module]:
        """What ``encode_files`` runs: the image tokenizer's encoder."""
        return [processor.images.encoder]

    @torch.no_grad()
    def encode_files(self, processor: ImageTokenProcessor, modality: str, files: list[Path]) -> torch.Tensor:
        """What the feature cache keeps for these images: their token ids ``<img> code ... </img>``, one row each."""
        if modality != "image":
            raise ValueError(f"a unified backbone reads images only, not {modality}")
        images = processor.images
        codes = images.encode(torch.stack([images.pixels(read_image(file)) for file in files])).cpu()
        ends = torch.tensor([[self.start_id], [self.end_id]]).expand(2, len(files))
        return torch.cat([ends[0, :, None], self.code_ids.cpu()[codes], ends[1, :, None]], dim=1).int()

    def _greedy(self, input_ids, attention_mask, max_new_tokens: int, only: OnlyTokens, **kwargs) -> torch.Tensor:
        prompt = {"input_ids": input_ids, "attention_mask": attention_mask}
        out = greedy(
            self.llm, self.tokenizer, max_new_tokens, **prompt, logits_processor=LogitsProcessorList([only]), **kwargs
        )
        return out[:, input_ids.shape[1] :]

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, media=None, max_new_tokens: int = 24) -> torch.Tensor:
        """Greedy text decoding, never an image token; returns only the new tokens (inputs left-padded)."""
        image = torch.arange(self.image_token_range.start, self.image_token_range.stop)
        return self._greedy(
            input_ids,
            attention_mask,
            max_new_tokens,
            OnlyTokens(image, allow=False),
            eos_token_id=self.tokenizer.eos_token_id,
        )

    @torch.no_grad()
    def generate_image(self, input_ids, attention_mask) -> torch.Tensor:
        """The codes (batch, tokens_per_image) of the image each left-padded prompt asks for: ``<img>`` is
        appended and exactly one image's worth of code tokens is decoded greedily, nothing else allowed."""
        start = torch.full((len(input_ids), 1), self.start_id, dtype=input_ids.dtype, device=input_ids.device)
        input_ids = torch.cat([input_ids, start], 1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(start)], 1)
        new = self._greedy(input_ids, attention_mask, self.tokens_per_image, OnlyTokens(self.code_ids))
        return self.code_of[new]

    # --- its parts of a base directory, beside the LLM and tokenizer (``mmcl.models.checkpoint``) ---

    def save_parts(self, directory: Path, processor: ImageTokenProcessor) -> dict:
        """Write the image tokenizer (``image_tokenizer/``); returns the manifest entry that names its kind."""
        processor.images.save(Path(directory) / "image_tokenizer")
        return {"unified": {"images": processor.images.kind}}

    @classmethod
    def load(
        cls, directory: Path, manifest: dict, tokenizer, dtype=None, attn_implementation: str | None = None
    ) -> tuple[UnifiedLM, ImageTokenProcessor]:
        """The model of a base directory (its ``llm/`` and what ``save_parts`` wrote), with its processor."""
        from transformers import AutoImageProcessor, AutoModelForCausalLM

        from mmcl.models.vq import load_tokenizer

        kwargs = {"dtype": dtype} if dtype is not None else {}
        kwargs |= {"attn_implementation": attn_implementation} if attn_implementation else {}
        llm_dir, kind = Path(directory) / "llm", manifest["unified"]["images"]
        if kind == "vq":
            vq, settings = load_tokenizer(Path(directory) / "image_tokenizer")
            return embedded_model(AutoModelForCausalLM.from_pretrained(llm_dir, **kwargs), tokenizer, vq, settings)
        if kind == "chameleon":
            llm = pretrained_class(llm_dir).from_pretrained(llm_dir, **kwargs)
            image_processor = AutoImageProcessor.from_pretrained(Path(directory) / "image_tokenizer")
            return chameleon_model(llm, tokenizer, image_processor)
        raise ValueError(f"{directory}: unknown image tokenizer {json.dumps(kind)} in its manifest")


class EmbeddedImages:
    """The embedded VQ-VAE as an image tokenizer (pixels in [0, 1])."""

    kind = "vq"

    def __init__(self, vq, settings: dict):
        self.vq, self.settings = vq, settings

    @property
    def encoder(self) -> nn.Module:
        return self.vq

    def pixels(self, image) -> torch.Tensor:
        import numpy as np

        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vq.encode(pixels.to(next(self.vq.parameters()).device))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(codes)

    def save(self, directory: Path) -> None:
        from mmcl.models.image_artifacts import save_artifact

        save_artifact(directory, self.vq, self.settings)


class ChameleonImages:
    """A Chameleon checkpoint's VQ-GAN encoder (part of its LLM) with its image processor."""

    kind = "chameleon"

    def __init__(self, llm, image_processor):
        self.model, self.image_processor = llm.model, image_processor

    @property
    def encoder(self) -> nn.Module:
        return self.model.vqmodel

    def pixels(self, image) -> torch.Tensor:
        return self.image_processor([image], return_tensors="pt")["pixel_values"][0]

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        vq = self.model.vqmodel
        parameter = next(vq.parameters())
        codes = vq.encode(pixels.to(parameter.device, parameter.dtype), return_dict=True).image_tokens
        return codes.view(len(pixels), -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "transformers' Chameleon has no VQ-GAN decoder, so its generated image tokens cannot be turned into "
            "pixels; generation tasks need the embedded unified backbone (model: null)"
        )

    def save(self, directory: Path) -> None:
        self.image_processor.save_pretrained(directory)


class ImageTokenProcessor:
    """A unified backbone's media processor: an image file -> its token ids ``<img> code ... </img>``
    (cached: the tokenizer is frozen), and generated codes -> pixels in [0, 1]."""

    def __init__(self, images: EmbeddedImages | ChameleonImages, model: UnifiedLM):
        self.images = images
        self.code_ids, self.start_id, self.end_id = model.code_ids.cpu(), model.start_id, model.end_id
        self._tokens: dict[str, torch.Tensor] = {}

    def load(self, modality: str, path: Path) -> torch.Tensor:
        if modality != "image":
            raise ValueError(f"a unified backbone reads images only, not {modality}")
        key = str(path)
        if key not in self._tokens:
            codes = self.images.encode(self.images.pixels(read_image(path))[None])[0].cpu()
            self._tokens[key] = torch.cat(
                [torch.tensor([self.start_id]), self.code_ids[codes], torch.tensor([self.end_id])]
            )
        return self._tokens[key]

    def window_share(self, modality: str, path: Path) -> None:
        """An image's tokens are a fixed grid: it fills all of them (``MediaProcessor.window_share``)."""
        return None

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.images.decode(codes)


def embedded_model(llm, tokenizer, vq, settings: dict) -> tuple[UnifiedLM, ImageTokenProcessor]:
    """The embedded model: ``llm`` over a vocabulary holding the VQ-VAE's codes (``image_vocabulary``)."""
    ids = tokenizer.convert_tokens_to_ids(image_vocabulary(settings["codebook_size"]))
    model = UnifiedLM(llm, tokenizer, ids[1:-1], ids[0], ids[-1], vq.tokens_per_image(settings["image_size"]))
    return model, ImageTokenProcessor(EmbeddedImages(vq, settings), model)


def chameleon_model(llm, tokenizer, image_processor) -> tuple[UnifiedLM, ImageTokenProcessor]:
    """A Chameleon/Anole checkpoint's LLM with its own VQ-GAN encoder as the image tokenizer."""
    images = ChameleonImages(llm, image_processor)
    mapping = llm.model.vocabulary_mapping
    codes = [mapping.img2bpe[code] for code in range(llm.config.vq_config.num_embeddings)]
    # transformers' Chameleon sets the image tokens' logits to the minimum in every forward pass (it was
    # released to read images only), which would also make their loss infinite. A unified model writes them
    # (Anole), so the mask is lifted: the list it reads is emptied, once the mappings built from it are cached.
    mapping.img2bpe_mapping_tensor, mapping.bpe2img_search_tensors  # noqa: B018 (cached before emptying)
    mapping.image_tokens = []
    start, end = tokenizer.convert_tokens_to_ids([CHAMELEON_START, CHAMELEON_END])
    size = image_processor.crop_size["height"]
    tokens = images.encode(torch.zeros(1, 3, size, size)).shape[1]
    model = UnifiedLM(llm, tokenizer, codes, start, end, tokens)
    return model, ImageTokenProcessor(images, model)


def pretrained_class(path: str | Path):
    """The transformers class of a unified checkpoint (by its config's architectures)."""
    import transformers

    architectures = transformers.AutoConfig.from_pretrained(path).architectures or []
    if not architectures or architectures[0] not in PRETRAINED:
        found = ", ".join(architectures) or "model"
        raise ValueError(f"{path}: a {found} checkpoint; unified backbones load {', '.join(PRETRAINED)}")
    return getattr(transformers, architectures[0])
