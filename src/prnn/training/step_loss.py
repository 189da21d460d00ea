"""The loss of a training step as (value, gradient w.r.t. the distinct-row scores).

The network's hand-written step needs only that gradient from the loss. Cross-entropy and BPR-max
give it in closed form; the other losses of GRU4Rec get it from autograd over the loss alone, a
graph small next to the network's.
"""

from __future__ import annotations

import torch

from prnn import losses
from prnn.eager import eager_only
from prnn.errors import ConfigError
from prnn.network import StepBatch


def sampled_loss(config, distinct_scores, output_columns, log_q=None) -> torch.Tensor:
    """The configured loss (summed over the lanes) of a step's distinct-row scores (B, U);
    output column j is distinct row ``output_columns[j]``. logQ applies to cross-entropy."""
    if config.loss == "cross-entropy":
        return losses.cross_entropy_over_distinct(distinct_scores, output_columns, log_q)
    per_column = distinct_scores.index_select(1, output_columns)  # (B, B + S)
    if config.loss == "bpr-max":
        return losses.bpr_max(per_column, config.bpreg, config.elu_param)
    if config.loss == "top1-max":
        return losses.top1_max(per_column)
    if config.loss == "bpr":
        return losses.bpr(per_column)
    if config.loss == "top1":
        return losses.top1(per_column)
    raise ConfigError(f"unknown loss {config.loss!r}; choose from {', '.join(losses.LOSSES)}")


class CrossEntropyStepLoss:
    """Cross-entropy (with logQ) in closed form.

    What depends only on the sampled columns (each distinct row's weight in the partition
    function, the targets' corrections) comes ready-made with the planned step;
    ``value_and_gradient`` is then plain arithmetic on the scores, which ``torch.compile``
    takes whole and deterministically.
    """

    needs_row_weights = True
    compiles_whole = True
    """Its gradient is plain arithmetic: a compiled step takes it in one graph."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def prepared(self, step: StepBatch) -> tuple[torch.Tensor, ...]:
        return step.rows.output_columns[: step.batch], step.log_row_weight, step.target_log_q

    def value_and_gradient(self, distinct_scores: torch.Tensor, *prepared: torch.Tensor):
        """(scale * loss, its gradient w.r.t. the distinct scores)."""
        return losses.cross_entropy_with_gradient(distinct_scores, *prepared, self.scale)


class BprMaxStepLoss:
    """BPR-max in closed form (``losses.bpr_max_with_gradient``)."""

    needs_row_weights = False
    compiles_whole = False
    """Its gradient sums repeated columns with a scatter, which compiled code would do with
    order-dependent atomics: it stays eager inside a compiled step."""

    def __init__(self, config, scale: float) -> None:
        self.bpreg = config.bpreg
        self.elu_param = config.elu_param
        self.scale = scale

    def prepared(self, step: StepBatch) -> tuple[torch.Tensor, ...]:
        return (step.rows.output_columns,)

    @eager_only
    def value_and_gradient(self, distinct_scores: torch.Tensor, output_columns: torch.Tensor):
        """(scale * loss, its gradient w.r.t. the distinct scores)."""
        return losses.bpr_max_with_gradient(
            distinct_scores, output_columns, self.bpreg, self.elu_param, self.scale
        )


class AutogradStepLoss:
    """Any loss: its gradient w.r.t. the scores by autograd over the loss alone."""

    needs_row_weights = False
    compiles_whole = False

    def __init__(self, config, scale: float) -> None:
        self.config = config
        self.scale = scale

    def prepared(self, step: StepBatch) -> tuple[torch.Tensor, ...]:
        return (step.rows.output_columns,)

    # runs eagerly inside a compiled step: autograd within torch.compile is not worth it here
    @eager_only
    def value_and_gradient(self, distinct_scores: torch.Tensor, output_columns: torch.Tensor):
        with torch.enable_grad():
            leaf = distinct_scores.detach().requires_grad_()
            loss = sampled_loss(self.config, leaf, output_columns) * self.scale
            (gradient,) = torch.autograd.grad(loss, leaf)
        return loss.detach(), gradient


def make_step_loss(config) -> CrossEntropyStepLoss | BprMaxStepLoss | AutogradStepLoss:
    """The loss of a GRU4Rec-style config for ``train_step``, divided by the batch size (as
    the reference does)."""
    scale = 1.0 / config.batch_size
    if config.loss == "cross-entropy":
        return CrossEntropyStepLoss(scale)
    if config.loss == "bpr-max":
        return BprMaxStepLoss(config, scale)
    return AutogradStepLoss(config, scale)
