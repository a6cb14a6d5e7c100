"""Network definitions: registries of encoders and decoders, one factory each, and the task network.

An encoder maps clean RGB in [0, 1] (N, 3, S, S) to a spatial representation (N, C, S/8, S/8): the paper's
16x16x8 at 256 px is 8x8x8 at the default 64 px. A decoder per output kind maps the representation to the
task's output. `TaskNetwork` splits the two (`forward_features` vs `forward_head`): export keeps only the
feature path, transfers train new heads on it.

Everything a consumer needs to rebuild a network is in `NetworkConfig`, which checkpoints and ONNX metadata carry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from taskonomy_db.settings import NORMS
from taskonomy_db.tasks import LUMA_WEIGHTS, TaskSpec, grey

ENCODER_STRIDE = 8
# Inputs are centred and scaled inside the graph, so every exported encoder takes plain RGB in [0, 1].
INPUT_MEAN = 0.5
INPUT_STD = 0.25
VECTOR_DROPOUT = 0.2
SIAMESE_DROPOUT = 0.5  # the original's keep probability 0.5 in its fully connected heads


@dataclass(frozen=True)
class NetworkConfig:
    """The architecture as data: read by train (to build), export (metadata) and extract (input spec)."""

    encoder: str = "resnet_small"
    input_size: int = 64
    width: int = 32
    depth: int = 1  # residual blocks per stage
    representation_channels: int = 8
    decoder_width: int = 64
    norm: str = "batch"  # see NORMS

    @property
    def representation_shape(self) -> tuple[int, int, int]:
        side = self.input_size // ENCODER_STRIDE
        return (self.representation_channels, side, side)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        # Configs stored before `norm` existed (checkpoints, ONNX metadata) describe group-norm networks.
        known.setdefault("norm", "group")
        return cls(**known)


# ---------------------------------------------------------------- registries

_ENCODERS: dict[str, Callable[..., nn.Module]] = {}
_DECODERS: dict[str, Callable[..., nn.Module]] = {}


def _register(table: dict[str, Callable[..., nn.Module]], what: str) -> Callable:
    def decorator(name: str) -> Callable:
        def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            if name in table:
                raise ValueError(f"{what} {name!r} is already registered")
            table[name] = builder
            return builder

        return register

    return decorator


register_encoder = _register(_ENCODERS, "encoder")
register_decoder = _register(_DECODERS, "decoder")


def create_encoder(name: str, **cfg: Any) -> nn.Module:
    """The only way to build an encoder: `create_encoder('resnet_small', width=16, ...)`."""
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; registered: {', '.join(_ENCODERS)}")
    return _ENCODERS[name](**cfg)


def create_decoder(output_kind: str, **cfg: Any) -> nn.Module:
    """The decoder for a task's output kind (dense, dense_classes, embedding, distribution, classes)."""
    if output_kind not in _DECODERS:
        raise ValueError(f"no decoder for output kind {output_kind!r}; registered: {', '.join(_DECODERS)}")
    return _DECODERS[output_kind](**cfg)


# ---------------------------------------------------------------- encoder


# Batch norm by default (as in the paper's ResNet-50 encoders): at inference it is an affine map that the ONNX
# export folds into the convolution before it, leaving a graph of convolutions and ReLUs that onnxruntime runs
# more than twice as fast as the group-norm graph (benchmarks/RESULTS.md). Group norm normalises each image on
# its own, so training and evaluation compute the same function, at the cost of a normalisation pass per layer.
# ([train] norm chooses; its choices, NORMS, live with the other settings.)


def norm_layer(channels: int, kind: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, max(1, channels // 4)), channels)
    raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = norm_layer(channels, norm)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = norm_layer(channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(x + self.norm2(self.conv2(out)))


def _conv_norm(c_in: int, c_out: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        norm_layer(c_out, norm),
        nn.ReLU(inplace=True),
    )


class ResidualEncoder(nn.Module):
    """A small ResNet: a 4x4 patch stem (stride 4, `width` channels), residual blocks, a stride-2 stage with
    2*width channels, residual blocks, and a 1x1 projection to the representation (stride 8 overall).

    Shaped for CPU speed: no convolution runs at full resolution, where thin layers are slowest per FLOP.
    `grey_input` computes luminance inside the graph (colorization's encoder)."""

    def __init__(
        self,
        input_size: int = 64,
        width: int = 32,
        depth: int = 1,
        representation_channels: int = 8,
        grey_input: bool = False,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if input_size % ENCODER_STRIDE:
            raise ValueError(f"input size must be a multiple of {ENCODER_STRIDE}, got {input_size}")
        self.input_size = input_size
        self.grey_input = grey_input
        stem = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=4, bias=False), norm_layer(width, norm), nn.ReLU(inplace=True)
        )
        self.trunk = nn.Sequential(
            stem,
            *(ResidualBlock(width, norm) for _ in range(depth)),
            _conv_norm(width, 2 * width, stride=2, norm=norm),
            *(ResidualBlock(2 * width, norm) for _ in range(depth)),
        )
        self.project = nn.Conv2d(2 * width, representation_channels, 1)
        self.input_folded = False

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.input_folded:
            if self.grey_input:
                image = grey(image)
            image = (image - INPUT_MEAN) / INPUT_STD
        return self.project(self.trunk(image))

    @torch.no_grad()
    def with_input_folded(self) -> ResidualEncoder:
        """A copy computing the same function with the input preprocessing (luminance, centring, scaling) folded
        into the stem convolution's weights and bias: exact, as the stem has no padding. Export uses it, so the
        graph spends no full-resolution passes on per-pixel arithmetic before the first convolution."""
        folded = copy.deepcopy(self)
        stem = folded.trunk[0][0]
        assert stem.padding == (0, 0) and stem.bias is None, "folding is exact only for an unpadded, bias-free stem"
        weight = stem.weight / INPUT_STD
        if self.grey_input:  # every input channel carries the luminance: one kernel, spread by the luma weights
            weight = weight.sum(1, keepdim=True) * torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
        conv = nn.Conv2d(3, stem.out_channels, stem.kernel_size, stride=stem.stride, bias=True)
        conv.weight.copy_(weight)
        conv.bias.copy_(-INPUT_MEAN / INPUT_STD * stem.weight.sum((1, 2, 3)))
        folded.trunk[0][0] = conv
        folded.input_folded = True
        return folded


@register_encoder("resnet_small")
def resnet_small(**cfg: Any) -> nn.Module:
    return ResidualEncoder(**cfg)


# ---------------------------------------------------------------- decoders


class PixelShuffle(nn.Module):
    """nn.PixelShuffle as a view and one permuted copy: the same values, but torch's CPU kernel for it (and for
    its backward, pixel_unshuffle) took ~18% of a transfer readout's training time at a factor of 8."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.factor
        return x.view(b, c // (s * s), s, s, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // (s * s), h * s, w * s)


class DenseDecoder(nn.Module):
    """Representation -> full-resolution map: conv, upsample-and-conv stages, and a final 1x1 conv whose channels
    are rearranged into 4x4 pixel blocks (pixel shuffle), so no convolution runs at full resolution.

    Group norm in the conv stages removes each image's mean activation, so a global branch (average-pooled
    representation -> per-channel offset, like the image-pooling branch of DeepLab's ASPP) carries what is
    constant over the image: how far away the room is, its overall shading."""

    def __init__(
        self, representation_shape: tuple[int, int, int], out_channels: int, output_size: int, width: int = 64
    ) -> None:
        super().__init__()
        channels, side, _ = representation_shape
        factor = output_size // side
        if factor * side != output_size or factor < 4 or factor & (factor - 1):
            raise ValueError(f"output size {output_size} must be a power-of-two multiple (>= 4) of {side}")
        layers: list[nn.Module] = [_conv_norm(channels, width, stride=1, norm="group")]
        c_in = width
        while factor > 4:
            c_out = max(c_in // 2, 16)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv_norm(c_in, c_out, stride=1, norm="group")]
            c_in, factor = c_out, factor // 2
        layers += [nn.Conv2d(c_in, out_channels * 16, 1), PixelShuffle(4)]
        self.layers = nn.Sequential(*layers)
        self.global_offset = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, width), nn.ReLU(), nn.Linear(width, out_channels)
        )

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        return self.layers(representation) + self.global_offset(representation)[:, :, None, None]


class VectorDecoder(nn.Module):
    """Representation -> a vector of logits or numbers: conv, pool to a small grid, dropout, linear.

    No normalisation before the pooling: group norm would remove each image's mean activation, which is
    exactly what an image-level output (scene class, objects in view, room layout) is read from. Dropout, because
    the linear layer sees every grid cell and a few hundred training images are easy to memorise."""

    def __init__(
        self, representation_shape: tuple[int, int, int], out_channels: int, width: int = 64, **_: Any
    ) -> None:
        super().__init__()
        channels, side, _ = representation_shape
        self.conv = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True))
        # Pool to a small grid rather than one cell: jigsaw needs to know *where* each tile's content sits.
        self.pool = nn.AdaptiveAvgPool2d(min(side, 4))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(VECTOR_DROPOUT), nn.Linear(width * min(side, 4) ** 2, out_channels)
        )

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.conv(representation)))


class SiameseHead(nn.Module):
    """The multi-image tasks' head, as the original's `encoder_multilayers_fc_bn` over the flattened, concatenated
    representations of a tuple's views: a fully connected layer with batch norm, ReLU and dropout 0.5, then a
    linear output. Flattened, not pooled: a relative pose is read from where things are in each view."""

    def __init__(
        self, representation_shape: tuple[int, int, int], out_channels: int, width: int = 64, **_: Any
    ) -> None:
        super().__init__()
        channels, side, _ = representation_shape
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, 4 * width),
            nn.BatchNorm1d(4 * width),
            nn.ReLU(),
            nn.Dropout(SIAMESE_DROPOUT),
            nn.Linear(4 * width, out_channels),
        )

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        return self.layers(representation)


for _kind in ("dense", "dense_classes", "embedding"):
    register_decoder(_kind)(DenseDecoder)
for _kind in ("distribution", "classes", "vector"):
    register_decoder(_kind)(VectorDecoder)
register_decoder("siamese")(SiameseHead)


# ---------------------------------------------------------------- the task network


class TaskNetwork(nn.Module):
    """A task's encoder-decoder. `forward_features` is the representation, `forward_head` the task output.

    The head predicts a residual over `prior`, a buffer that training sets to the trivial baseline's prediction
    (training mean, class frequencies): with little data a network that starts from the baseline and only
    learns what the image adds converges in far fewer steps than one that must first learn the mean. The
    residual is in units of `scale`, the training targets' spread per output channel for regression (1 for
    logits), so every task's decoder works at unit scale: log depth varies by a few hundredths, and at that
    scale Adam's steps were larger than the signal and the depth networks barely moved off the mean.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("prior", torch.zeros(1, *output_shape))
        self.register_buffer("scale", torch.ones(1, output_shape[0], *(1 for _ in output_shape[1:])))
        # A small last layer keeps the untrained head close to the prior.
        last = [m for m in decoder.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            if last.bias is not None:
                last.bias.zero_()

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """The representation of images (N, 3, S, S); of tuples of views (N, V, 3, S, S), every view through the
        same encoder (siamese) and the views' representations concatenated along the channels, which is what
        the head of a multi-image task reads (the original concatenated them too)."""
        if image.dim() == 5:
            features = self.encoder(image.flatten(0, 1))
            return features.view(len(image), -1, *features.shape[-2:])
        return self.encoder(image)

    def forward_head(self, representation: torch.Tensor) -> torch.Tensor:
        return self.decoder(representation) * self.scale + self.prior

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image))


def build_encoder(config: NetworkConfig, spec: TaskSpec | None = None) -> nn.Module:
    """The encoder of `config`, with a grey-input layer when the task (colorization) sees luminance only."""
    return create_encoder(
        config.encoder,
        input_size=config.input_size,
        width=config.width,
        depth=config.depth,
        representation_channels=config.representation_channels,
        grey_input=spec is not None and spec.input_kind == "grey",
        norm=config.norm,
    )


def create_task_network(spec: TaskSpec, config: NetworkConfig) -> TaskNetwork:
    """Encoder plus the decoder for the task's output kind, sized from the config (and the task's views)."""
    channels, side, _ = config.representation_shape
    decoder = create_decoder(
        "siamese" if spec.n_views > 1 else spec.output_kind,
        representation_shape=(channels * spec.n_views, side, side),
        out_channels=spec.out_channels,
        output_size=config.input_size,
        width=config.decoder_width,
    )
    spatial = spec.output_kind in ("dense", "dense_classes", "embedding")
    output_shape = (spec.out_channels, config.input_size, config.input_size) if spatial else (spec.out_channels,)
    return TaskNetwork(build_encoder(config, spec), decoder, output_shape)
