"""The lip-sync network (torch; training only): a dilated temporal conv net.

Every convolution is *valid* (no padding), so the output for input frame ``t``
depends on input frames ``t - (RF - 1) .. t``; the *training alignment* makes it
predict the mouth at frame ``t - LOOKAHEAD`` (i.e. it sees 50 ms of future).

``forward`` runs on a whole window (training). ``step`` is the streaming form that
is exported to ONNX: new frames plus one state tensor per conv layer (the last
``(k-1)*dilation`` inputs of that layer) in, outputs for the new frames plus the new
states out. Both give the same numbers.
"""

from __future__ import annotations

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

    def step(self, x: torch.Tensor, *states: torch.Tensor):
        """x: [1, n_mels, n] new frames; states as ``state_sizes`` -> (probs [1, n_out, n], *new_states)."""
        new_states = []
        xin = torch.cat([states[0], x], dim=2)
        new_states.append(xin[:, :, -self.state_sizes[0] :])
        h = torch.relu(self.inp(self._norm(xin)))
        for i, (conv, mix) in enumerate(zip(self.convs, self.mix)):
            s = states[i + 1]
            hin = torch.cat([s, h], dim=2)
            new_states.append(hin[:, :, -self.state_sizes[i + 1] :])
            h = torch.relu(h + mix(torch.relu(conv(hin))))
        return (torch.sigmoid(self.out(h)), *new_states)


class StepWrapper(nn.Module):
    def __init__(self, net: LipSyncTCN):
        super().__init__()
        self.net = net

    def forward(self, x, *states):
        return self.net.step(x, *states)


class Ensemble(nn.Module):
    """Average of the probabilities of several ``LipSyncTCN`` with the same receptive field.

    ``step`` takes / returns the members' states one after the other, so the exported
    graph is still a plain step function.
    """

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
    def state_sizes(self) -> list[int]:
        return [s for m in self.members for s in m.state_sizes]

    @property
    def state_channels(self) -> list[int]:
        return [c for m in self.members for c in m.state_channels]

    @property
    def receptive_field(self) -> int:
        return self.members[0].receptive_field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
        return torch.logit(p.clamp(1e-7, 1 - 1e-7)) + self.offset[None, :, None]

    def step(self, x: torch.Tensor, *states: torch.Tensor):
        outs, new = [], []
        k = 0
        for m in self.members:
            n = len(m.state_sizes)
            res = m.step(x, *states[k : k + n])
            outs.append(res[0])
            new.extend(res[1:])
            k += n
        p = torch.stack(outs).mean(0).clamp(1e-7, 1 - 1e-7)
        p = torch.sigmoid(torch.log(p) - torch.log1p(-p) + self.offset[None, :, None])
        return (p, *new)
