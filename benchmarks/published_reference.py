"""MPRNet computed the way the published code computes it: the benchmarks' baseline.

``PublishedOrderMPRNet`` has the same constructor, modules, parameters and
state-dict keys as ``MPRNet.MPRNet``; only the forward methods differ. They
follow the published network code (``swz30/MPRNet/Deraining/MPRNet.py``; the
three task folders share it) in order of operations, in allocations and in
module calls, so the Python overhead is the published one too:

- a channel-attention block runs its body (conv, PReLU, conv: three new
  tensors) and its attention module (a new tensor for the product), then adds
  its input into that product in place; an original-resolution block adds its
  input into its body's output in place;
- every other sum and product (cross-stage fusion, the decoder's skip
  connections, the supervised attention module, the stage-3 fusions, the
  final ``stage3 + input``) makes a new tensor;
- stage 1 computes the four quadrants' shallow features first, then encodes
  them one call each; stage 2 handles its two halves one call each.

Each block of the built network is turned into its published-order subclass
(``_PUBLISHED``: same attributes, only ``forward`` differs) and the shared
PReLU into a plain ``nn.PReLU``, so no forward of this project's blocks runs.
The outputs equal the exact path's bit for bit
(``tests/test_published_reference.py``): both make the same float operations
on the same operands.

Benchmark use only; models for real use are ``MPRNet.MPRNet``.
"""
import os
import sys
from typing import List

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MPRNet import CAB, ORB, SAM, CALayer, Encoder, MPRNet, ORSNet, SharedPReLU, SkipUpSample  # noqa: E402

__all__ = ['PublishedOrderMPRNet']


class _CALayer(CALayer):
    def forward(self, x):
        weights = self.conv_du(self.avg_pool(x))
        return x * weights  # a new tensor


class _CAB(CAB):
    def forward(self, x):
        out = self.CA(self.body(x))
        out += x  # in place, into the attention product
        return out


class _SAM(SAM):
    def forward(self, x, x_img):
        feats = self.conv1(x)
        img = self.conv2(x) + x_img
        gate = torch.sigmoid(self.conv3(img))
        feats = feats * gate
        return feats + x, img


class _Encoder(Encoder):
    def forward(self, x, encoder_outs=None, decoder_outs=None):
        fuse = encoder_outs is not None and decoder_outs is not None
        level1 = self.encoder_level1(x)
        if fuse:
            level1 = level1 + self.csff_enc1(encoder_outs[0]) + self.csff_dec1(decoder_outs[0])
        level2 = self.encoder_level2(self.down12(level1))
        if fuse:
            level2 = level2 + self.csff_enc2(encoder_outs[1]) + self.csff_dec2(decoder_outs[1])
        level3 = self.encoder_level3(self.down23(level2))
        if fuse:
            level3 = level3 + self.csff_enc3(encoder_outs[2]) + self.csff_dec3(decoder_outs[2])
        return [level1, level2, level3]


class _SkipUpSample(SkipUpSample):
    def forward(self, x, skip):
        return self.up(x) + skip


class _ORB(ORB):
    def forward(self, x):
        out = self.body(x)
        out += x  # in place, into the tail conv's output
        return out


class _ORSNet(ORSNet):
    def forward(self, x, encoder_outs, decoder_outs):
        enc, dec = encoder_outs, decoder_outs
        x = self.orb1(x)
        x = x + self.conv_enc1(enc[0]) + self.conv_dec1(dec[0])
        x = self.orb2(x)
        x = x + self.conv_enc2(self.up_enc1(enc[1])) + self.conv_dec2(self.up_dec1(dec[1]))
        x = self.orb3(x)
        x = x + self.conv_enc3(self.up_enc2(enc[2])) + self.conv_dec3(self.up_dec2(dec[2]))
        return x


# This project's block -> its published-order twin. Decoder, DownSample and UpSample already
# call their modules as published; the shared PReLU becomes torch's own.
_PUBLISHED = {CALayer: _CALayer, CAB: _CAB, SAM: _SAM, Encoder: _Encoder, SkipUpSample: _SkipUpSample,
              ORB: _ORB, ORSNet: _ORSNet, SharedPReLU: nn.PReLU}


class PublishedOrderMPRNet(MPRNet):
    """An MPRNet (same constructor, modules and state dict) that runs as the published code does.

    ``PublishedOrderMPRNet.like(model)`` copies a model's configuration and weights.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for module in self.modules():
            twin = _PUBLISHED.get(type(module))
            if twin is not None:
                module.__class__ = twin  # same attributes; only forward differs

    @classmethod
    def like(cls, model: MPRNet) -> 'PublishedOrderMPRNet':
        twin = cls(**model.config)
        twin.load_state_dict(model.state_dict(), strict=True)
        return twin.to(next(model.parameters()).device).train(model.training)

    def forward(self, img: torch.Tensor) -> List[torch.Tensor]:
        rows, cols = img.size(2), img.size(3)
        h, w = int(rows / 2), int(cols / 2)
        top, bottom = img[:, :, 0:h, :], img[:, :, h:rows, :]
        quadrants = [top[:, :, :, 0:w], top[:, :, :, w:cols], bottom[:, :, :, 0:w], bottom[:, :, :, w:cols]]

        # Stage 1: shallow features of all four quadrants first, then their encodings, one call each.
        shallow = [self.shallow_feat1(q) for q in quadrants]
        encoded = [self.stage1_encoder(s) for s in shallow]
        enc1_top = [torch.cat(pair, 3) for pair in zip(encoded[0], encoded[1])]
        enc1_bottom = [torch.cat(pair, 3) for pair in zip(encoded[2], encoded[3])]
        dec1_top = self.stage1_decoder(enc1_top)
        dec1_bottom = self.stage1_decoder(enc1_bottom)
        sam_top, img1_top = self.sam12(dec1_top[0], top)
        sam_bottom, img1_bottom = self.sam12(dec1_bottom[0], bottom)
        stage1_img = torch.cat([img1_top, img1_bottom], 2)

        # Stage 2: the two halves, one call each, joined before the decoder.
        shallow_top = self.shallow_feat2(top)
        shallow_bottom = self.shallow_feat2(bottom)
        fused_top = self.concat12(torch.cat([shallow_top, sam_top], 1))
        fused_bottom = self.concat12(torch.cat([shallow_bottom, sam_bottom], 1))
        enc2_top = self.stage2_encoder(fused_top, enc1_top, dec1_top)
        enc2_bottom = self.stage2_encoder(fused_bottom, enc1_bottom, dec1_bottom)
        enc2 = [torch.cat(pair, 2) for pair in zip(enc2_top, enc2_bottom)]
        dec2 = self.stage2_decoder(enc2)
        sam_feats, stage2_img = self.sam23(dec2[0], img)

        # Stage 3: the whole image.
        x = self.concat23(torch.cat([self.shallow_feat3(img), sam_feats], 1))
        x = self.stage3_orsnet(x, enc2, dec2)
        return [self.tail(x) + img, stage2_img, stage1_img]
