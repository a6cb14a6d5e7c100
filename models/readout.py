"""The transfer readout D_{S->t}: a small network over frozen representations, one per target, several fused
into one bank when they read the same input (`taskonomy_db.readout` trains them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from taskonomy_db.models.networks import PixelShuffle
from taskonomy_db.tasks import TaskSpec

VECTOR_KINDS = ("distribution", "classes", "vector")  # one output per image; the rest are maps


class ReadoutBank(nn.Module):
    """Independent readouts of several targets over one input. Their first 3x3 convolutions are fused into one
    (every head reads the same representation, so one wide convolution replaces many thin ones); after it each
    head has its own layers and parameters, and Adam's updates are elementwise, so each is trained exactly as it
    would be alone.

    Dense targets: conv 3x3, then a 1x1 conv to out_channels x s^2 and a pixel shuffle back to the image size
    (all compute at the representation's resolution). Vector targets: pooled to 2x2, then linear. Each head
    predicts a correction to its target's trivial predictor (`priors`: the fit images' per-pixel mean or class
    frequencies) and starts at exactly that predictor (last layer zero), so its first steps go into what the
    representation adds, not into learning the target's mean. Embedding heads (segment_unsup*) start from a
    random last layer instead.
    """

    def __init__(
        self,
        in_channels: int,
        side: int,
        specs: Sequence[TaskSpec],
        seeds: Sequence[int],
        width: int,
        size: int,
        priors: Sequence[torch.Tensor],
    ) -> None:
        super().__init__()
        self.width = width
        for index, prior in enumerate(priors):
            self.register_buffer(f"prior{index}", prior.detach().float().clone())
        self.first = nn.Conv2d(in_channels, width * len(specs), 3, padding=1)
        heads = []
        for index, (spec, seed) in enumerate(zip(specs, seeds, strict=True)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                first = nn.Conv2d(in_channels, width, 3, padding=1)
                head = _readout_head(spec, width, side, size)
                if spec.output_kind != "embedding":
                    # Not for embeddings: the metric loss has zero gradient where all pixels embed alike, so a
                    # readout started at a constant embedding never leaves it.
                    last = [m for m in head.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
                    nn.init.zeros_(last.weight)
                    nn.init.zeros_(last.bias)
                heads.append(head)
            with torch.no_grad():
                self.first.weight[index * width : (index + 1) * width] = first.weight
                self.first.bias[index * width : (index + 1) * width] = first.bias
        self.heads = nn.ModuleList(heads)

    def forward(
        self,
        representation: torch.Tensor,
        heads: Sequence[int] | None = None,
        pixels: Mapping[int, torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """The predictions of `heads` (every head when None), in that order. Only those heads are computed: the
        readouts of a group stop at different steps, and a stopped head's forward and backward would otherwise
        cost as much as a training one's until the last head stops.

        A dense head named in `pixels` (head -> (B, K) flat pixel indices) is computed at those pixels alone and
        returns (B, C, K, 1): its full map's values there. A metric-loss embedding reads 300 sampled pixels of
        4096, and its full 64-channel map made its training step cost 30 times a dense head's."""
        w = self.width
        if heads is None or len(heads) == len(self.heads):
            heads = range(len(self.heads))
            hidden = F.relu(self.first(representation))
        else:
            channels = torch.cat([torch.arange(i * w, (i + 1) * w) for i in heads])
            weight, bias = self.first.weight[channels], self.first.bias[channels]
            hidden = F.relu(F.conv2d(representation, weight, bias, padding=1))
        pixels = pixels or {}
        outputs = []
        for k, i in enumerate(heads):
            own = hidden[:, k * w : (k + 1) * w]
            prior = getattr(self, f"prior{i}")
            if i in pixels:
                outputs.append(_at_pixels(self.heads[i], own, pixels[i]) + _prior_at(prior, pixels[i]))
            else:
                outputs.append(self.heads[i](own) + prior)
        return outputs

    def head_state(self, index: int) -> list[torch.Tensor]:
        """Copies of every parameter of one head, its slice of the fused convolution included."""
        w = self.width
        span = slice(index * w, (index + 1) * w)
        own = [p.detach().clone() for p in self.heads[index].parameters()]
        return [self.first.weight[span].detach().clone(), self.first.bias[span].detach().clone(), *own]

    @torch.no_grad()
    def load_head_state(self, index: int, state: list[torch.Tensor]) -> None:
        w = self.width
        span = slice(index * w, (index + 1) * w)
        self.first.weight[span] = state[0]
        self.first.bias[span] = state[1]
        for parameter, saved in zip(self.heads[index].parameters(), state[2:], strict=True):
            parameter.copy_(saved)


def _readout_head(spec: TaskSpec, width: int, side: int, size: int) -> nn.Module:
    if spec.output_kind in VECTOR_KINDS:
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(width * 4, spec.out_channels))
    if size % side:
        raise ValueError(f"image size {size} is not a multiple of the representation side {side}")
    scale = size // side
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, spec.out_channels * scale * scale, 1),
        PixelShuffle(scale),
    )


def _at_pixels(head: nn.Module, hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A dense head (conv, ReLU, 1x1 conv, pixel shuffle) at flat pixel indices (B, K) of its output: each pixel
    is one row of the 1x1 convolution (the one its place in its s x s block selects) applied to its cell of the
    hidden map. Pixels are grouped by that row, so the work is one small matmul per row instead of the whole
    map. Returns (B, C, K, 1)."""
    conv, relu, last, shuffle = head
    cells = relu(conv(hidden))
    batch, width, _, cell_width = cells.shape
    s = shuffle.factor
    y, x = index // (cell_width * s), index % (cell_width * s)
    cell = (y // s) * cell_width + (x // s)
    block = ((y % s) * s + (x % s)).reshape(-1)
    chosen = torch.gather(cells.flatten(2), 2, cell[:, None, :].expand(-1, width, -1))
    rows = chosen.permute(0, 2, 1).reshape(-1, width)
    channels = last.weight.shape[0] // (s * s)
    weight = last.weight.view(channels, s * s, width)
    bias = last.bias.view(channels, s * s)
    order = torch.argsort(block, stable=True)
    pieces = torch.split(rows[order], torch.bincount(block, minlength=s * s).tolist())
    grouped = torch.cat([piece @ weight[:, j].T + bias[:, j] for j, piece in enumerate(pieces)])
    return grouped[torch.argsort(order)].view(batch, -1, channels).permute(0, 2, 1).unsqueeze(3)


def _prior_at(prior: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A (1, C, H, W) prior at flat pixel indices (B, K), as (B, C, K, 1)."""
    flat = prior.flatten(2).expand(index.shape[0], -1, -1)
    return torch.gather(flat, 2, index[:, None, :].expand(-1, flat.shape[1], -1)).unsqueeze(3)
