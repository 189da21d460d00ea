"""Adagrad with momentum, GRU4Rec's optimiser, with row-wise updates for item tables.

The reference (``IndexedAdagradM`` in hidasib/GRU4Rec_PyTorch_Official) keeps, per parameter,
an accumulator of squared gradients and a momentum buffer:

    acc += g^2;   step = -lr * g / sqrt(acc + eps);   mom = momentum * mom + step;   p += mom

Item tables (one row per item) are updated only on the rows a mini-batch touched: untouched
rows keep their value, accumulator and momentum unchanged. Here the trainer gathers the touched
rows of a table into a small dense leaf tensor, so the gradient arrives already compact as
(rows, grad) and no sparse tensor, coalescing or full-table pass is needed.
"""

from __future__ import annotations

import torch

EPSILON = 1e-6  # the reference's eps


class AdagradMomentum:
    """Adagrad + momentum over dense parameters and row-indexed tables.

    Args:
        dense: parameters updated as a whole every step.
        tables: 2-D tensors updated row-wise through ``step_rows``.
        learning_rate: Adagrad's learning rate.
        momentum: 0 disables the momentum buffers.
    """

    def __init__(
        self,
        dense: list[torch.nn.Parameter],
        tables: list[torch.Tensor],
        learning_rate: float,
        momentum: float = 0.0,
    ) -> None:
        self.dense = list(dense)
        self.learning_rate = learning_rate
        self.momentum = momentum
        self._dense_acc = [torch.zeros_like(p) for p in self.dense]
        self._dense_mom = [torch.zeros_like(p) for p in self.dense] if momentum > 0 else []
        # A table's accumulator and momentum rows sit side by side in one (I, 2, D) tensor, so
        # a row-wise step reads and writes both with one gather and one scatter.
        self._table_state = {
            id(table): torch.zeros(table.shape[0], 2, table.shape[1], device=table.device)
            for table in tables
        }

    def state_of(self, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(accumulator, momentum buffer or None) of a dense parameter or a table (views)."""
        if id(tensor) in self._table_state:
            state = self._table_state[id(tensor)]
            return state[:, 0], state[:, 1] if self.momentum > 0 else None
        index = next(i for i, p in enumerate(self.dense) if p is tensor)
        return self._dense_acc[index], self._dense_mom[index] if self.momentum > 0 else None

    @torch.no_grad()
    def step_dense(self) -> None:
        """Update every dense parameter that has a gradient (frozen ones have none)."""
        chosen = [i for i, p in enumerate(self.dense) if p.grad is not None]
        if not chosen:
            return
        params = [self.dense[i] for i in chosen]
        grads = [self.dense[i].grad for i in chosen]
        accs = [self._dense_acc[i] for i in chosen]
        torch._foreach_addcmul_(accs, grads, grads)
        denominators = torch._foreach_add(accs, EPSILON)
        torch._foreach_sqrt_(denominators)
        if self.momentum > 0:
            moms = [self._dense_mom[i] for i in chosen]
            torch._foreach_mul_(moms, self.momentum)
            torch._foreach_addcdiv_(moms, grads, denominators, value=-self.learning_rate)
            torch._foreach_add_(params, moms)
        else:
            torch._foreach_addcdiv_(params, grads, denominators, value=-self.learning_rate)

    @torch.no_grad()
    def step_rows(
        self,
        table: torch.Tensor,
        rows: torch.Tensor,
        grad: torch.Tensor,
        touched: torch.Tensor | None = None,
    ) -> None:
        """Update rows ``rows`` (unique, (U,)) of ``table`` with their gradient ``grad`` (U, D).

        ``touched`` (bool, (U,)) excludes some of the rows: they keep value and state.
        """
        state = self._table_state[id(table)]
        row_state = state.index_select(0, rows)  # (U, 2, D)
        accumulator, momentum = row_state[:, 0], row_state[:, 1]
        accumulator.addcmul_(grad, grad)
        step = grad / (accumulator + EPSILON).sqrt_()
        step.mul_(-self.learning_rate)
        if self.momentum > 0:
            step = momentum.mul_(self.momentum).add_(step)
        if touched is not None:
            # rows outside `touched` have zero grad; only momentum could move them: undo that
            row_state = torch.where(touched[:, None, None], row_state, state.index_select(0, rows))
            step = step * touched[:, None]
        state.index_copy_(0, rows, row_state)
        table.index_add_(0, rows, step)
