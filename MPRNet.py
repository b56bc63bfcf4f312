"""MPRNet: Multi-Stage Progressive Image Restoration (Zamir et al., CVPR 2021).

One module for all three tasks. The module and parameter names follow the
released checkpoints exactly, so ``model_deblurring.pth``,
``model_deraining.pth`` and ``model_denoising.pth`` load with ``strict=True``.

Layout of one forward pass on an image of H x W (both multiples of 8)::

    stage 1: four H/2 x W/2 quadrants -> U-Net encoder -> decoder per half -> SAM
    stage 2: two H/2 x W halves (+ stage-1 features) -> U-Net -> SAM
    stage 3: the whole image (+ stage-2 features) -> original-resolution subnetwork
    returns [stage3 + input, stage2_img, stage1_img]

Two switches change how the pass runs, never what it computes:
``batch_patches`` runs the four quadrants (and the two halves) as one batched
call instead of one call each; ``grad_checkpointing`` recomputes each
channel-attention block's inner activations in the backward pass instead of
storing them.

The file needs only torch: copy it on its own to use the network elsewhere.
"""
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ['MPRNet', 'PRESETS']

# Widths of the released models; every preset has num_cab=8, kernel_size=3,
# reduction=4, bias=False.
PRESETS: Dict[str, Dict[str, int]] = {
    'Deblurring': dict(n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32),
    'Deraining': dict(n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16),
    'Denoising': dict(n_feat=80, scale_unetfeats=48, scale_orsnetfeats=32),
}


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """'Same'-padded convolution, stride 1."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class CALayer(nn.Module):
    """Channel attention: x * sigmoid(W2 relu(W1 avgpool(x))). (N, C, H, W) -> same."""

    def __init__(self, channels: int, reduction: int, bias: bool):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.conv_du(self.avg_pool(x))
        return x * attention


class CAB(nn.Module):
    """Channel-attention block: x + CA(conv(act(conv(x)))). (N, C, H, W) -> same.

    ``act`` is one PReLU shared by every block of the network (as published).
    """

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(conv(n_feat, n_feat, kernel_size, bias), act,
                                  conv(n_feat, n_feat, kernel_size, bias))
        self.CA = CALayer(n_feat, reduction, bias)
        self.checkpointed = False  # set by MPRNet.set_grad_checkpointing

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        return self.CA(res) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed and torch.is_grad_enabled():
            return checkpoint(self._residual, x, use_reentrant=False)
        return self._residual(x)


class SAM(nn.Module):
    """Supervised attention module between stages.

    From features x (N, C, H, W) and the degraded image (N, 3, H, W) it makes
    the stage's restored image img = conv2(x) + x_img and attention-gated
    features conv1(x) * sigmoid(conv3(img)) + x. Returns (features, img).
    """

    def __init__(self, n_feat: int, kernel_size: int, bias: bool):
        super().__init__()
        self.conv1 = conv(n_feat, n_feat, kernel_size, bias)
        self.conv2 = conv(n_feat, 3, kernel_size, bias)
        self.conv3 = conv(3, n_feat, kernel_size, bias)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor):
        img = self.conv2(x) + x_img
        attention = torch.sigmoid(self.conv3(img))
        return self.conv1(x) * attention + x, img


class DownSample(nn.Module):
    """Bilinear x0.5 then 1x1 conv: (N, C, H, W) -> (N, C + s, H/2, W/2)."""

    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.down = nn.Sequential(nn.Upsample(scale_factor=0.5, mode='bilinear', align_corners=False),
                                  nn.Conv2d(in_channels, in_channels + s_factor, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """Bilinear x2 then 1x1 conv: (N, C + s, H, W) -> (N, C, 2H, 2W)."""

    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                                nn.Conv2d(in_channels + s_factor, in_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class SkipUpSample(UpSample):
    """UpSample(x) + skip: the decoder's way up one level."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.up(x) + skip


def _cat_tree(items: Sequence, dim: int = 0):
    """Concatenate matching tensors of several equally structured (nested list/tuple) items."""
    if isinstance(items[0], torch.Tensor):
        return torch.cat(list(items), dim)
    return type(items[0])(_cat_tree(group, dim) for group in zip(*items))


def _split_tree(tree, parts: int, dim: int = 0) -> list:
    """Inverse of _cat_tree: one nested structure -> `parts` structures."""
    if isinstance(tree, torch.Tensor):
        return list(tree.chunk(parts, dim))
    return [type(tree)(branch) for branch in zip(*(_split_tree(t, parts, dim) for t in tree))]


def _cab_level(channels: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module, n: int = 2):
    return nn.Sequential(*[CAB(channels, kernel_size, reduction, bias, act) for _ in range(n)])


class Encoder(nn.Module):
    """Three-level U-Net encoder with widths C, C+s, C+2s at scales 1, 1/2, 1/4.

    With ``csff`` (stage 2) it adds 1x1-projected encoder and decoder features
    of the previous stage at each level (cross-stage feature fusion).
    Returns [enc1, enc2, enc3].
    """

    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.encoder_level1 = _cab_level(widths[0], kernel_size, reduction, bias, act)
        self.encoder_level2 = _cab_level(widths[1], kernel_size, reduction, bias, act)
        self.encoder_level3 = _cab_level(widths[2], kernel_size, reduction, bias, act)
        self.down12 = DownSample(widths[0], scale_unetfeats)
        self.down23 = DownSample(widths[1], scale_unetfeats)
        if csff:
            for kind in ('enc', 'dec'):
                for i, c in enumerate(widths, start=1):
                    setattr(self, f'csff_{kind}{i}', nn.Conv2d(c, c, 1, bias=bias))

    def forward(self, x, encoder_outs=None, decoder_outs=None) -> List[torch.Tensor]:
        fuse = encoder_outs is not None and decoder_outs is not None
        outs = []
        levels = [(self.encoder_level1, self.down12), (self.encoder_level2, self.down23),
                  (self.encoder_level3, None)]
        for i, (level, down) in enumerate(levels):
            enc = level(x)
            if fuse:
                enc = (enc + getattr(self, f'csff_enc{i + 1}')(encoder_outs[i])
                       + getattr(self, f'csff_dec{i + 1}')(decoder_outs[i]))
            outs.append(enc)
            if down is not None:
                x = down(enc)
        return outs


class Decoder(nn.Module):
    """Three-level U-Net decoder; skips pass through a CAB first. Returns [dec1, dec2, dec3]."""

    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.decoder_level1 = _cab_level(widths[0], kernel_size, reduction, bias, act)
        self.decoder_level2 = _cab_level(widths[1], kernel_size, reduction, bias, act)
        self.decoder_level3 = _cab_level(widths[2], kernel_size, reduction, bias, act)
        self.skip_attn1 = CAB(widths[0], kernel_size, reduction, bias, act)
        self.skip_attn2 = CAB(widths[1], kernel_size, reduction, bias, act)
        self.up21 = SkipUpSample(widths[0], scale_unetfeats)
        self.up32 = SkipUpSample(widths[1], scale_unetfeats)

    def forward(self, outs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        enc1, enc2, enc3 = outs
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class ORB(nn.Module):
    """Original-resolution block: x + conv(CAB^num_cab(x)). (N, C, H, W) -> same."""

    def __init__(self, n_feat, kernel_size, reduction, act, bias, num_cab):
        super().__init__()
        blocks = [CAB(n_feat, kernel_size, reduction, bias, act) for _ in range(num_cab)]
        # The published tail conv of an ORB has no bias whatever `bias` says.
        self.body = nn.Sequential(*blocks, conv(n_feat, n_feat, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by the stage-2
    encoder/decoder features of one U-Net level, upsampled and projected.
    (N, C + s_ors, H, W) -> same."""

    def __init__(self, n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias, scale_unetfeats, num_cab):
        super().__init__()
        width = n_feat + scale_orsnetfeats
        self.orb1 = ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.orb2 = ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.orb3 = ORB(width, kernel_size, reduction, act, bias, num_cab)
        self.up_enc1 = UpSample(n_feat, scale_unetfeats)
        self.up_dec1 = UpSample(n_feat, scale_unetfeats)
        self.up_enc2 = nn.Sequential(UpSample(n_feat + scale_unetfeats, scale_unetfeats),
                                     UpSample(n_feat, scale_unetfeats))
        self.up_dec2 = nn.Sequential(UpSample(n_feat + scale_unetfeats, scale_unetfeats),
                                     UpSample(n_feat, scale_unetfeats))
        for kind in ('enc', 'dec'):
            for i in (1, 2, 3):
                setattr(self, f'conv_{kind}{i}', nn.Conv2d(n_feat, width, 1, bias=bias))

    def forward(self, x, encoder_outs, decoder_outs):
        x = self.orb1(x)
        x = x + self.conv_enc1(encoder_outs[0]) + self.conv_dec1(decoder_outs[0])
        x = self.orb2(x)
        x = x + self.conv_enc2(self.up_enc1(encoder_outs[1])) + self.conv_dec2(self.up_dec1(decoder_outs[1]))
        x = self.orb3(x)
        x = x + self.conv_enc3(self.up_enc2(encoder_outs[2])) + self.conv_dec3(self.up_dec2(decoder_outs[2]))
        return x


class MPRNet(nn.Module):
    """The three-stage network. Input (N, 3, H, W) with H, W multiples of 8 (pad
    with ``utils.padding.pad_to_multiple``); returns [stage3, stage2, stage1]
    restored images, each (N, 3, H, W)."""

    def __init__(self, in_c=3, out_c=3, n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32, num_cab=8,
                 kernel_size=3, reduction=4, bias=False, *, batch_patches: bool = False,
                 grad_checkpointing: bool = False):
        super().__init__()
        # Constructor arguments, saved with our checkpoints so a file says what it holds.
        self.config = dict(in_c=in_c, out_c=out_c, n_feat=n_feat, scale_unetfeats=scale_unetfeats,
                           scale_orsnetfeats=scale_orsnetfeats, num_cab=num_cab, kernel_size=kernel_size,
                           reduction=reduction, bias=bias)
        self.batch_patches = batch_patches
        act = nn.PReLU()  # one slope, shared by every channel-attention block (as published)
        # The published code hard-wires 3 image channels here (in_c/out_c are unused there too).
        self.shallow_feat1 = nn.Sequential(conv(3, n_feat, kernel_size, bias),
                                           CAB(n_feat, kernel_size, reduction, bias, act))
        self.shallow_feat2 = nn.Sequential(conv(3, n_feat, kernel_size, bias),
                                           CAB(n_feat, kernel_size, reduction, bias, act))
        self.shallow_feat3 = nn.Sequential(conv(3, n_feat, kernel_size, bias),
                                           CAB(n_feat, kernel_size, reduction, bias, act))
        self.stage1_encoder = Encoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff=False)
        self.stage1_decoder = Decoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage2_encoder = Encoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats, csff=True)
        self.stage2_decoder = Decoder(n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage3_orsnet = ORSNet(n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias,
                                    scale_unetfeats, num_cab)
        self.sam12 = SAM(n_feat, kernel_size=1, bias=bias)
        self.sam23 = SAM(n_feat, kernel_size=1, bias=bias)
        self.concat12 = conv(n_feat * 2, n_feat, kernel_size, bias)
        self.concat23 = conv(n_feat * 2, n_feat + scale_orsnetfeats, kernel_size, bias)
        self.tail = conv(n_feat + scale_orsnetfeats, 3, kernel_size, bias)
        self.set_grad_checkpointing(grad_checkpointing)

    @classmethod
    def for_task(cls, task: str, **overrides) -> 'MPRNet':
        """The released architecture of 'Deblurring', 'Deraining' or 'Denoising'."""
        return cls(**{**PRESETS[task], **overrides})

    def preset_name(self):
        """Name of the preset this model's widths match, or None for a custom model."""
        defaults = dict(in_c=3, out_c=3, num_cab=8, kernel_size=3, reduction=4, bias=False)
        for name, widths in PRESETS.items():
            if self.config == {**defaults, **widths}:
                return name
        return None

    def set_grad_checkpointing(self, enabled: bool = True) -> 'MPRNet':
        """Recompute every channel-attention block's inner activations during backward."""
        self.grad_checkpointing = enabled
        for m in self.modules():
            if isinstance(m, CAB):
                m.checkpointed = enabled
        return self

    def _each(self, fn: Callable, pieces: List[tuple]) -> list:
        """fn(*args) for every args tuple in `pieces`; one batched call when batch_patches is set."""
        if not self.batch_patches or len(pieces) == 1:
            return [fn(*args) for args in pieces]
        return _split_tree(fn(*_cat_tree(pieces)), len(pieces))

    def _stage2_encode(self, x_img, sam_feats, enc_prev, dec_prev):
        x = self.concat12(torch.cat([self.shallow_feat2(x_img), sam_feats], 1))
        return self.stage2_encoder(x, enc_prev, dec_prev)

    def forward(self, x3_img: torch.Tensor) -> List[torch.Tensor]:
        H, W = x3_img.shape[-2:]
        if H % 8 or W % 8:
            raise ValueError(f'MPRNet needs height and width divisible by 8, got {H}x{W}: '
                             'pad first (utils.padding.pad_to_multiple) and crop the result back')
        h, w = H // 2, W // 2
        halves = [x3_img[:, :, :h], x3_img[:, :, h:]]
        quads = [(halves[0][..., :w],), (halves[0][..., w:],), (halves[1][..., :w],), (halves[1][..., w:],)]

        # Stage 1: encode the quadrants, join left and right, decode each half.
        feat1 = self._each(lambda q: self.stage1_encoder(self.shallow_feat1(q)), quads)
        feat1 = [[torch.cat(lr, 3) for lr in zip(feat1[i], feat1[i + 1])] for i in (0, 2)]
        res1 = self._each(self.stage1_decoder, [(f,) for f in feat1])
        sam1 = self._each(self.sam12, [(r[0], x) for r, x in zip(res1, halves)])
        stage1_img = torch.cat([img for _, img in sam1], 2)

        # Stage 2: encode the halves with stage-1 features, join top and bottom, decode.
        feat2 = self._each(self._stage2_encode,
                           [(x, s[0], f, r) for x, s, f, r in zip(halves, sam1, feat1, res1)])
        feat2 = [torch.cat(tb, 2) for tb in zip(*feat2)]
        res2 = self.stage2_decoder(feat2)
        x3_samfeats, stage2_img = self.sam23(res2[0], x3_img)

        # Stage 3: the whole image at full resolution.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x3_img), x3_samfeats], 1))
        x3 = self.stage3_orsnet(x3, feat2, res2)
        return [self.tail(x3) + x3_img, stage2_img, stage1_img]
