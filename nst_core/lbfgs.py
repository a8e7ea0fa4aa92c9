"""L-BFGS that never reads a value back to the host: for GPUs, where every read is a sync.

The same algorithm as ``torch.optim.LBFGS(lr=1, max_iter=1)`` with its tolerances off (what the
CPU path uses): one evaluation per step, a fixed step of 1 (the first one scaled by 1 / |g|_1),
curvature pairs kept only when ``y.s > 1e-10``. torch's version decides those conditions in
Python, so each step waits for the GPU three times; here they are masks on the device:

- the history is a ring of ``history`` preallocated slots (no allocation after the first step);
  a rejected pair leaves its slot as it was, so an accepted one never gets evicted by it;
- the two-loop recursion always runs over every slot, newest first; a slot not yet filled has
  rho = 0, which makes it a no-op.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CURVATURE_EPS = 1e-10  # torch.optim.LBFGS's threshold on y.s


class DeviceLBFGS:
    def __init__(self, numel: int, history: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.history = history
        self.steps = torch.zeros(history, numel, device=device, dtype=dtype)  # s = t d
        self.dirs = torch.zeros(history, numel, device=device, dtype=dtype)  # y = g - g_prev
        self.rho = torch.zeros(history, device=device, dtype=dtype)  # 1 / y.s, 0 when empty
        self.head = torch.zeros((), dtype=torch.long, device=device)  # the slot the next pair goes to
        self.h_diag = torch.ones((), device=device, dtype=dtype)
        self.prev_grad = torch.zeros(numel, device=device, dtype=dtype)
        self.prev_step = torch.zeros(numel, device=device, dtype=dtype)  # t d of the last step
        self.iteration = 0
        self._slots = torch.arange(history, device=device)

    def direction(self, grad: Tensor) -> Tensor:
        """The step to take from the point where the (flat) gradient is ``grad``: ``t d``."""
        self.iteration += 1
        if self.iteration == 1:
            d = grad.neg()
            t = torch.clamp(1.0 / grad.abs().sum(), max=1.0)
        else:
            self._remember(grad - self.prev_grad, self.prev_step)
            d = self._two_loop(grad)
            t = torch.ones((), device=grad.device, dtype=grad.dtype)
        # torch skips the update when d is not a descent direction (g.d > -tolerance_change = 1);
        # the step it remembers for the next pair is still t d.
        step = d * t
        self.prev_step.copy_(step)
        self.prev_grad.copy_(grad)
        return step * (grad.dot(d) <= 1.0)

    def _remember(self, y: Tensor, s: Tensor) -> None:
        ys = y.dot(s)
        accept = ys > _CURVATURE_EPS
        slot = self._slots == self.head  # one-hot: the slot this pair would take
        write = (slot & accept)[:, None]
        self.dirs.copy_(torch.where(write, y[None, :], self.dirs))
        self.steps.copy_(torch.where(write, s[None, :], self.steps))
        self.rho.copy_(torch.where(slot & accept, 1.0 / torch.where(accept, ys, torch.ones_like(ys)), self.rho))
        self.h_diag.copy_(torch.where(accept, ys / y.dot(y), self.h_diag))
        self.head.copy_((self.head + accept.long()) % self.history)

    def _two_loop(self, grad: Tensor) -> Tensor:
        # Slots are picked with index_select on device indices: indexing with a tensor scalar
        # would convert it to a Python int, a sync.
        newest_first = ((self.head - 1 - self._slots) % self.history).split(1)
        q = grad.neg()
        alphas = []
        for i in newest_first:
            alpha = self._row(self.steps, i).dot(q) * self.rho.index_select(0, i)[0]
            q = q - alpha * self._row(self.dirs, i)
            alphas.append(alpha)
        r = q * self.h_diag
        for i, alpha in zip(reversed(newest_first), reversed(alphas), strict=True):
            beta = self._row(self.dirs, i).dot(r) * self.rho.index_select(0, i)[0]
            r = r + (alpha - beta) * self._row(self.steps, i)
        return r

    @staticmethod
    def _row(table: Tensor, index: Tensor) -> Tensor:
        return table.index_select(0, index)[0]
