"""L-BFGS in a handful of kernels that never read a value back to the host: for GPUs, where
every read is a sync and every small kernel a launch.

The same algorithm as ``torch.optim.LBFGS(lr=1, max_iter=1)`` with its tolerances off (what the
CPU path uses): one evaluation per step, a fixed step of 1 (the first one scaled by
``1 / |g|_1``), curvature pairs kept only when ``y.s > 1e-10``, and ``H0 = gamma I`` with
``gamma = s.y / y.y`` of the newest kept pair. torch computes ``H g`` with the two-loop recursion:
2m dot products and 2m axpys per step, ~400 small kernels at m = 50, each a launch on a GPU.

Here ``H g`` comes from the compact representation (Byrd, Nocedal & Schnabel 1994, Theorem 2.2):

    H = gamma I + [S  gamma Y] [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S^T; gamma Y^T]

with S, Y the (n, m) pairs oldest first, R the upper triangle of S^T Y and D its diagonal. The
history is one preallocated (2m, n) ring ``W = [S; Y]``; ``S^T Y`` and ``Y^T Y`` are m x m
matrices kept up to date one row and column per step. A step is then three passes over the
history (``W g``; the new pair against ``W``; ``[u; gamma v]^T W``), a row write, and m x m
algebra in float64 (two triangular solves): about 15 kernels whatever m is, no allocation
after the first steps, no branch on a value, so a CUDA graph can capture it.

A rejected pair is masked, not branched on: the ring does not advance, and the slot the next
pair would take is rewritten with what it held. Slots never filled are zero; their rows and
columns of R are set to the identity's, which decouples them (the system stays regular) and
makes their contribution exactly zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CURVATURE_EPS = 1e-10  # torch.optim.LBFGS's threshold on y.s


class DeviceLBFGS:
    def __init__(self, numel: int, history: int, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.history = m = history
        self.ring = torch.zeros(2 * m, numel, device=device, dtype=dtype)  # rows 0..m-1: s; m..2m-1: y
        self.sy = torch.zeros(m, m, device=device, dtype=torch.float64)  # s_i . y_j, ring order
        self.yy = torch.zeros(m, m, device=device, dtype=torch.float64)  # y_i . y_j, ring order
        self.valid = torch.zeros(m, device=device, dtype=torch.bool)  # slots holding a kept pair
        self.head = torch.zeros(1, dtype=torch.long, device=device)  # the slot the next pair goes to
        self.gamma = torch.ones((), device=device, dtype=torch.float64)
        self.prev_grad = torch.zeros(numel, device=device, dtype=dtype)
        self.prev_step = torch.zeros(numel, device=device, dtype=dtype)  # t d of the last step
        self.iteration = 0
        self._slots = torch.arange(m, device=device)

    def reset(self) -> None:
        """An empty history, in the same tensors (a CUDA graph captured on them reads them)."""
        for t in (self.ring, self.sy, self.yy, self.valid, self.head, self.prev_grad, self.prev_step):
            t.zero_()
        self.gamma.fill_(1.0)
        self.iteration = 0

    def direction(self, grad: Tensor) -> Tensor:
        """The step to take from the point where the (flat) gradient is ``grad``: ``t d``."""
        self.iteration += 1
        if self.iteration == 1:
            d = grad.neg()
            t = torch.clamp(1.0 / grad.abs().sum(), max=1.0)
        else:
            self._remember(grad - self.prev_grad, self.prev_step)
            d = self._direction(grad)
            t = torch.ones((), device=grad.device, dtype=grad.dtype)
        # torch skips the update when d is not a descent direction (g.d > -tolerance_change = 1);
        # the step it remembers for the next pair is still t d.
        step = d * t
        self.prev_step.copy_(step)
        self.prev_grad.copy_(grad)
        return step * (grad.dot(d) <= 1.0)

    def _remember(self, y: Tensor, s: Tensor) -> None:
        m = self.history
        ys = y.dot(s)
        accept = ys > _CURVATURE_EPS
        # The head slot gets (s, y) if the pair is kept, else what it held: one row each, no branch.
        for offset, new in ((0, s), (m, y)):
            row = self.head + offset
            self.ring.index_copy_(0, row, torch.where(accept, new, self.ring.index_select(0, row)[0])[None])
        s_h, y_h = self.ring.index_select(0, self.head)[0], self.ring.index_select(0, self.head + m)[0]
        # The head's row and column of S^T Y and Y^T Y, from one pass over the history.
        cross = (self.ring @ torch.stack([s_h, y_h], dim=1)).double()  # (2m, 2): S s_h, S y_h; Y s_h, Y y_h
        col = self._slots == self.head  # one-hot
        s_y_h, y_s_h, y_y_h = cross[:m, 1], cross[m:, 0], cross[m:, 1]
        self.sy.copy_(torch.where(col[None, :], s_y_h[:, None], torch.where(col[:, None], y_s_h[None, :], self.sy)))
        self.yy.copy_(torch.where(col[None, :], y_y_h[:, None], torch.where(col[:, None], y_y_h[None, :], self.yy)))
        self.valid.copy_(self.valid | (col & accept))
        self.gamma.copy_(torch.where(accept, ys.double() / y.dot(y).double().clamp_min(1e-300), self.gamma))
        self.head.copy_((self.head + accept.long()) % m)

    def _direction(self, grad: Tensor) -> Tensor:
        """``-H grad`` by the compact representation (see the module's docstring)."""
        m = self.history
        order = (self.head + self._slots) % m  # oldest first: the head is the oldest slot (or an empty one)
        ab = (self.ring @ grad).double()  # S g and Y g, ring order
        a, b = ab[:m].index_select(0, order), ab[m:].index_select(0, order)
        sy = self.sy.index_select(0, order).index_select(1, order)
        yy = self.yy.index_select(0, order).index_select(1, order)
        empty = (~self.valid).index_select(0, order).double()
        r = torch.triu(sy) * (1 - empty)[:, None] * (1 - empty)[None, :] + torch.diag(empty)
        d = torch.diag(torch.diagonal(sy) * (1 - empty))
        gamma = self.gamma
        x = torch.linalg.solve_triangular(r, a[:, None], upper=True)  # R^-1 S^T g
        w = (d + gamma * yy) @ x - gamma * b[:, None]
        u = torch.linalg.solve_triangular(r.T, w, upper=False)[:, 0]  # R^-T (...)
        v = -x[:, 0]
        coefficients = torch.zeros(2 * m, device=grad.device, dtype=torch.float64)
        coefficients = coefficients.index_copy(0, order, u).index_copy(0, order + m, gamma * v)
        hg = gamma.to(grad.dtype) * grad + coefficients.to(grad.dtype) @ self.ring
        return hg.neg()
