"""The lip-sync network (torch; training only): a dilated temporal conv net.

Every convolution is *valid* (no padding), so the output for input frame ``t``
depends on input frames ``t - (RF - 1) .. t``; the *training alignment* makes it
predict the mouth at frame ``t - LOOKAHEAD`` (i.e. it sees 50 ms of future).

``forward`` runs on a whole window (training). ``StreamStep`` is the streaming form
that is exported to ONNX: new frames plus one state tensor per conv layer (the last
``(k-1)*dilation`` inputs of that layer) in, outputs for the new frames plus the new
states out. Both give the same numbers.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


class LipSyncTCN(nn.Module):
    def __init__(self, n_mels: int = 40, width: int = 64, n_out: int = 5, dilations=(1, 2, 4, 8, 16), kernel: int = 3):
        super().__init__()
        self.n_mels, self.width, self.n_out, self.kernel = n_mels, width, n_out, kernel
        self.dilations = tuple(dilations)
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))
        self.inp = nn.Conv1d(n_mels, width, kernel)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, kernel, dilation=d) for d in self.dilations)
        self.mix = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in self.dilations)
        self.out = nn.Conv1d(width, n_out, 1)

    @property
    def state_sizes(self) -> list[int]:
        return [self.kernel - 1] + [(self.kernel - 1) * d for d in self.dilations]

    @property
    def state_channels(self) -> list[int]:
        return [self.n_mels] + [self.width] * len(self.dilations)

    @property
    def receptive_field(self) -> int:
        return 1 + sum(self.state_sizes)

    def _norm(self, x):
        return (x - self.mean[None, :, None]) / self.std[None, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, n_mels, T] raw log-mel -> logits [B, n_out, T - RF + 1]."""
        h = torch.relu(self.inp(self._norm(x)))
        for conv, mix, d in zip(self.convs, self.mix, self.dilations):
            trim = (self.kernel - 1) * d
            h = h[:, :, trim:] + mix(torch.relu(conv(h)))
            h = torch.relu(h)
        return self.out(h)


class Ensemble(nn.Module):
    """Average of the probabilities of several ``LipSyncTCN`` with the same receptive field."""

    def __init__(self, members: list[LipSyncTCN]):
        super().__init__()
        self.members = nn.ModuleList(members)
        rf = {m.receptive_field for m in members}
        if len(rf) != 1:
            raise ValueError("ensemble members need the same receptive field")
        self.n_mels = members[0].n_mels
        # logit offset per output channel applied after averaging (calibration)
        self.register_buffer("offset", torch.zeros(members[0].n_out))

    @property
    def receptive_field(self) -> int:
        return self.members[0].receptive_field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
        return torch.logit(p.clamp(1e-7, 1 - 1e-7)) + self.offset[None, :, None]


class StreamStep(nn.Module):
    """The exported streaming step of a ``LipSyncTCN`` or an ``Ensemble`` of them (same numbers as ``forward``).

    Inputs: new raw log-mel frames ``[1, n_mels, 1, n]`` and one state per conv layer
    ``[1, state_channels[i], 1, state_sizes[i]]``; outputs: probabilities ``[1, n_out, 1, n]``
    and the new states. A streaming call costs per graph node and per weight byte, so:

    * ensemble members are the groups of grouped convolutions: one network, one state per layer;
    * convolutions are 2-D with height 1: onnxruntime's CPU provider then runs them in its
      blocked NCHWc layout, ~2.5x faster than 1-D im2col for the 1-2 frames of a call;
    * feature normalisation is folded into the first conv, and the ensemble average plus
      its logit offset ``o`` is ``sigmoid(logit(p) + o) = p / (e + (1 - e) p)``, ``e = exp(-o)``.
    """

    def __init__(self, net: LipSyncTCN | Ensemble):
        super().__init__()
        members = cast("list[LipSyncTCN]", list(net.members)) if isinstance(net, Ensemble) else [net]
        m0 = members[0]
        shape = (m0.n_mels, m0.width, m0.n_out, m0.kernel, m0.dilations)
        if any((m.n_mels, m.width, m.n_out, m.kernel, m.dilations) != shape for m in members):
            raise ValueError("ensemble members need the same shape to be exported as one network")
        g, self.n_mels, self.n_out = len(members), m0.n_mels, m0.n_out
        self.state_sizes = m0.state_sizes
        self.state_channels = [m0.n_mels] + [g * m0.width] * len(m0.dilations)
        self.receptive_field = m0.receptive_field
        with torch.no_grad():
            self.inp = self._conv(
                [m.inp.weight / m.std[None, :, None] for m in members],
                [m.inp.bias - (m.inp.weight * (m.mean / m.std)[None, :, None]).sum((1, 2)) for m in members],
                groups=1,
            )
            self.convs = nn.ModuleList(
                self._conv([m.convs[i].weight for m in members], [m.convs[i].bias for m in members], g, d)
                for i, d in enumerate(m0.dilations)
            )
            self.mix = nn.ModuleList(
                self._conv([m.mix[i].weight for m in members], [m.mix[i].bias for m in members], g)
                for i in range(len(m0.dilations))
            )
            self.out = self._conv([m.out.weight for m in members], [m.out.bias for m in members], g)
            offset = net.offset if isinstance(net, Ensemble) else torch.zeros(m0.n_out)
            # mean over members as a 1x1 conv; with the offset's denominator as a second one
            avg = torch.zeros(m0.n_out, g * m0.n_out, 1, 1)
            for k in range(g):
                avg[:, k * m0.n_out : (k + 1) * m0.n_out, 0, 0] = torch.eye(m0.n_out) / g
            e = torch.exp(-offset)
            self.avg = self._conv([avg[:, :, 0]], [torch.zeros(m0.n_out)], groups=1)
            self.den = self._conv([avg[:, :, 0] * (1 - e)[:, None, None]], [e], groups=1)
        self.averaged = g > 1 or bool(offset.any())

    @staticmethod
    def _conv(weights: list[torch.Tensor], biases: list[torch.Tensor], groups: int, dilation: int = 1) -> nn.Conv2d:
        w = torch.cat(weights)  # [out, in / groups, k]
        c = nn.Conv2d(w.shape[1] * groups, w.shape[0], (1, w.shape[2]), dilation=(1, dilation), groups=groups)
        c.weight.copy_(w[:, :, None])
        c.bias.copy_(torch.cat(biases))
        return c

    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        new_states = []
        xin = torch.cat([states[0], x], dim=3)
        new_states.append(xin[..., -self.state_sizes[0] :])
        h = torch.relu(self.inp(xin))
        for i, (conv, mix) in enumerate(zip(self.convs, self.mix)):
            hin = torch.cat([states[i + 1], h], dim=3)
            new_states.append(hin[..., -self.state_sizes[i + 1] :])
            h = torch.relu(mix(torch.relu(conv(hin))) + h)
        q = torch.sigmoid(self.out(h))
        return (self.avg(q) / self.den(q) if self.averaged else q, *new_states)
