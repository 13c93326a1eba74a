"""The embedded image tokenizer: a small VQ-VAE that turns a 32 px image into a grid of discrete codes
and back, so that a unified model reads and writes images as tokens (Chameleon's VQ-GAN, scaled down).

conv encoder (``downsample`` stride-2 steps: 32 px -> 8x8 codes at 2) -> nearest of ``codebook_size``
code vectors -> conv decoder. The codebook is learnt by exponential moving averages of the vectors
assigned to each code (van den Oord et al. 2017, appendix), with a commitment loss on the encoder;
a code no vector has picked for a while is moved onto a random encoder output, so that the whole
codebook stays in use. ``mmcl train-tokenizer`` trains it once on the suite's training images
(``mmcl.jobs.image_artifacts``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mmcl.models.image_artifacts import as_float, load_artifact

DEAD_BELOW = 0.03  # a code whose moving-average use falls below this many vectors per batch is restarted


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x):
        return x + self.body(x)


class VQVAE(nn.Module):
    def __init__(self, codebook_size: int, code_dim: int, hidden: int, downsample: int, decay: float = 0.99):
        super().__init__()
        self.codebook_size, self.decay = codebook_size, decay
        self.downsample = downsample
        # every convolution at reduced resolution (strided in, transposed out): a CPU trains it in minutes
        encoder: list[nn.Module] = [nn.Conv2d(3, hidden, 4, stride=2, padding=1)]
        for _ in range(downsample - 1):
            encoder += [nn.ReLU(), nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(*encoder, ResBlock(hidden), nn.ReLU(), nn.Conv2d(hidden, code_dim, 1))
        decoder: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 3, padding=1), ResBlock(hidden)]
        for _ in range(downsample - 1):
            decoder += [nn.ReLU(), nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*decoder, nn.ReLU(), nn.ConvTranspose2d(hidden, 3, 4, stride=2, padding=1))
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("usage", torch.zeros(codebook_size))  # moving average of vectors per code
        self.register_buffer("sums", self.codebook.clone())  # moving average of their sum
        self.register_buffer("initialised", torch.tensor(False))

    def tokens_per_image(self, image_size: int) -> int:
        return (image_size >> self.downsample) ** 2

    def _vectors(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (B, h, w, D) of images in [0, 1]."""
        return self.encoder(images * 2 - 1).permute(0, 2, 3, 1)

    def _nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        flat = vectors.reshape(-1, vectors.shape[-1])
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)
        return distances.argmin(1).view(vectors.shape[:-1])

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) -> codes (B, tokens), row by row."""
        return self._nearest(self._vectors(images)).flatten(1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, tokens) of a square grid -> images in [0, 1] (B, 3, H, W)."""
        side = int(codes.shape[1] ** 0.5)
        if side * side != codes.shape[1]:
            raise ValueError(f"{codes.shape[1]} codes do not form a square grid")
        return self._decode(self.codebook[codes.view(-1, side, side)]).clamp(0, 1)

    def _decode(self, quantised: torch.Tensor) -> torch.Tensor:
        return self.decoder(quantised.permute(0, 3, 1, 2))

    def loss(self, images: torch.Tensor, commitment: float) -> torch.Tensor:
        """Reconstruction + commitment loss of a training batch (updating the codebook)."""
        vectors = self._vectors(images)
        flat = vectors.detach().reshape(-1, vectors.shape[-1])
        if not self.initialised:
            self.codebook.copy_(flat[torch.randint(len(flat), (self.codebook_size,))])
            self.sums.copy_(self.codebook)
            self.usage.fill_(1.0)
            self.initialised.fill_(True)
        codes = self._nearest(vectors)
        self._update_codebook(flat, codes.flatten())
        quantised = self.codebook[codes]
        # straight-through: the decoder's gradient flows to the encoder as if no rounding happened
        reconstruction = self._decode(vectors + (quantised - vectors).detach())
        return F.mse_loss(reconstruction, images) + commitment * F.mse_loss(vectors, quantised)

    @torch.no_grad()
    def _update_codebook(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        one_hot = F.one_hot(codes, self.codebook_size).type(flat.dtype)
        self.usage.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
        total = self.usage.sum()
        smoothed = (self.usage + 1e-5) / (total + self.codebook_size * 1e-5) * total  # Laplace: no division by 0
        self.codebook.copy_(self.sums / smoothed.unsqueeze(1))
        dead = self.usage < DEAD_BELOW
        if dead.any():
            picks = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
            self.codebook[dead] = picks
            self.sums[dead] = picks
            self.usage[dead] = 1.0


def build(settings: dict) -> VQVAE:
    return VQVAE(
        settings["codebook_size"], settings["code_dim"], settings["hidden"], settings["downsample"], settings["decay"]
    )


@torch.no_grad()
def measure(model: VQVAE, images: torch.Tensor) -> dict:
    """Reconstruction quality on uint8 images: mean squared error and PSNR (pixels in [0, 1]), and the
    share of the codebook they use."""
    pixels = as_float(images)
    codes = torch.cat([model.encode(chunk) for chunk in pixels.split(256)])
    reconstruction = torch.cat([model.decode(chunk) for chunk in codes.split(256)])
    mse = F.mse_loss(reconstruction, pixels).item()
    return {
        "held_out_images": len(images),
        "mse": round(mse, 6),
        "psnr_db": round(-10 * torch.log10(torch.tensor(mse)).item(), 2),
        "codes_used": round(codes.unique().numel() / model.codebook_size, 4),
    }


def load_tokenizer(directory: Path) -> tuple[VQVAE, dict]:
    return load_artifact(directory, build, "mmcl train-tokenizer")
