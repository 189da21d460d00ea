"""Ranking losses of GRU4Rec over sampled score matrices.

Every loss takes ``scores`` of shape (B, B + S): row b holds the scores of lane b for the
mini-batch targets (column b is its own target, the other B - 1 targets are its negatives) and
for S extra shared negative samples. Each returns the **sum** over the B rows; the trainer
divides by the configured batch size, as the reference does.

Sources: TOP1 and BPR from Hidasi et al. (ICLR 2016); BPR-max, TOP1-max and cross-entropy with
sampling from Hidasi & Karatzoglou (CIKM 2018); details (ELU on BPR-max scores, the score
regularisation ``bpreg``, logQ correction) from hidasib/GRU4Rec_PyTorch_Official.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSSES = ("cross-entropy", "bpr-max", "top1-max", "bpr", "top1")
_EPSILON = 1e-24  # the reference's guard inside log() of the cross-entropy and BPR-max sums
_LOG_EPSILON = math.log(_EPSILON)


def _guarded_log_probability(log_probability: torch.Tensor) -> torch.Tensor:
    """``log(p + 1e-24)`` from ``log(p)``, stably: the reference's cross-entropy guard.

    The reference takes ``-log(softmax_target + 1e-24)``. The guard caps a lane's loss at 55.3
    and, more than that, takes away the gradient of a lane whose target has no chance (p far
    below 1e-24): its scores have exploded (a carried state grown by many kept dropout steps)
    and the plain softmax gradient would push its whole size into the output weights. For
    every other lane it changes nothing (p / (p + 1e-24) rounds to 1 from p ~ 1e-17 on).
    """
    return torch.logaddexp(log_probability, torch.full_like(log_probability, _LOG_EPSILON))


def _target_scores(scores: torch.Tensor) -> torch.Tensor:
    """(B, 1): each row's score of its own target (the diagonal of the first B columns)."""
    return torch.diagonal(scores)[:, None]


def _softmax_over_negatives(scores: torch.Tensor) -> torch.Tensor:
    """Softmax of each row over its negatives only: the target's own column gets weight 0."""
    batch = scores.shape[0]
    # a copy with -inf on the diagonal: a boolean mask over the whole matrix costs ~10x more
    masked = scores.clone()
    masked[:, :batch].diagonal().fill_(float("-inf"))
    return torch.softmax(masked, dim=1)


def cross_entropy(scores: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy of each row's target against the sampled columns, with the
    reference's guard: ``-log(softmax_target + 1e-24)`` per row.

    Args:
        scores: (B, B + S) raw scores.
        log_q: optional (B + S,) ``logq * log(sampling probability)`` of each column; it is
            subtracted from the scores (logQ correction), so frequently sampled items are not
            over-penalised as negatives.
    """
    if log_q is not None:
        scores = scores - log_q[None, :]
    return -_guarded_log_probability(torch.diagonal(F.log_softmax(scores, dim=1))).sum()


def log_row_weights(
    output_columns: torch.Tensor, n_rows: int, log_q: torch.Tensor | None = None
) -> torch.Tensor:
    """(U,) log of the weight each distinct row carries in the sampled softmax's partition.

    A row filling m output columns (with logQ corrections q_j) counts sum_j exp(-q_j) times;
    a row filling none (an input-only item) gets log 0 = -inf, which drops it.
    """
    column_weight = (
        torch.ones(len(output_columns), device=output_columns.device)
        if log_q is None
        else torch.exp(-log_q)
    )
    row_weight = torch.zeros(n_rows, device=output_columns.device)
    row_weight.index_add_(0, output_columns, column_weight)
    return torch.log(row_weight)


def cross_entropy_over_distinct(
    distinct_scores: torch.Tensor,
    output_columns: torch.Tensor,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """``cross_entropy`` computed on the distinct items' scores, without spreading columns.

    Equal to ``cross_entropy(distinct_scores[:, output_columns], log_q)``: an item filling m
    columns (with corrections q_j) adds exp(score) * sum_j exp(-q_j) to the partition function,
    so each distinct row gets the log of that weight once, and no (B, B + S) matrix is built.

    Args:
        distinct_scores: (B, U) scores of the distinct items.
        output_columns: (B + S,) distinct row of each output column; column b is row b's target.
        log_q: optional (B + S,) logQ correction of each output column.
    """
    batch, n_rows = distinct_scores.shape
    log_weight = log_row_weights(output_columns, n_rows, log_q)
    log_partition = torch.logsumexp(distinct_scores + log_weight[None, :], dim=1)
    targets = output_columns[:batch]
    target_scores = distinct_scores.gather(1, targets[:, None]).squeeze(1)
    if log_q is not None:
        target_scores = target_scores - log_q[:batch]
    return -_guarded_log_probability(target_scores - log_partition).sum()


def cross_entropy_with_gradient(
    distinct_scores: torch.Tensor,
    target_columns: torch.Tensor,
    log_row_weight: torch.Tensor,
    target_log_q: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale * cross_entropy_over_distinct(...)`` and its gradient w.r.t. ``distinct_scores``.

    The gradient of softmax cross-entropy is the softmax minus the target's one-hot, so it comes
    out of the forward pass at the cost of one subtraction; the training step then needs no
    autograd for the output layer. Takes what does not depend on the scores ready-made
    (``log_row_weights`` of the output columns; the targets' columns and logQ corrections, zeros
    without correction), so that this part is plain arithmetic, with no scatter-add.

    With the reference's guard, a lane's loss is ``-log(p + 1e-24)`` (p: its target's
    probability), whose gradient is the plain one times ``p / (p + 1e-24)``.
    """
    logits = distinct_scores + log_row_weight[None, :]
    largest = logits.amax(dim=1, keepdim=True)
    softmax = logits.sub_(largest).exp_()
    partition = softmax.sum(dim=1, keepdim=True)
    targets = target_columns[:, None]
    target_scores = distinct_scores.gather(1, targets).squeeze(1) - target_log_q
    log_probability = target_scores - (largest + torch.log(partition)).squeeze(1)
    loss = -_guarded_log_probability(log_probability).sum() * scale
    # p / (p + eps) per lane, stably
    lane_scale = torch.sigmoid(log_probability - _LOG_EPSILON).mul_(scale)[:, None]
    gradient = softmax.mul_(lane_scale / partition)
    # one target per row: no two writes meet, so this scatter is deterministic
    gradient.scatter_add_(1, targets, -lane_scale)
    return loss, gradient


def bpr_max(scores: torch.Tensor, bpreg: float = 1.0, elu_param: float = 0.5) -> torch.Tensor:
    """BPR-max: -log sum_j softmax_j * sigmoid(r_target - r_j) + bpreg * sum_j softmax_j r_j^2.

    The softmax runs over the negatives; ``elu_param > 0`` first passes scores through an ELU
    with that alpha (the reference's final activation for BPR-max; 0 = linear).
    """
    if elu_param > 0:
        scores = F.elu(scores, alpha=elu_param)
    weights = _softmax_over_negatives(scores)
    target = _target_scores(scores)
    ranking = -torch.log((torch.sigmoid(target - scores) * weights).sum(dim=1) + _EPSILON)
    regularisation = bpreg * (weights * scores.square()).sum(dim=1)
    return (ranking + regularisation).sum()


def bpr_max_with_gradient(
    distinct_scores: torch.Tensor,
    output_columns: torch.Tensor,
    bpreg: float,
    elu_param: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale * bpr_max(distinct_scores[:, output_columns])`` and its gradient w.r.t.
    ``distinct_scores``, in closed form (autograd's bookkeeping cost more than this arithmetic).

    With x the (ELU'd) column scores, w the softmax over a row's negatives, s_j =
    sigmoid(x_target - x_j), P = sum_j w_j s_j and R = sum_j w_j x_j^2, a row's loss is
    -log(P + eps) + bpreg R. For a negative j: dP/dx_j = w_j (s_j - P) - w_j s_j (1 - s_j) and
    dR/dx_j = w_j (x_j^2 - R) + 2 w_j x_j; for the target dP/dx_t = sum_j w_j s_j (1 - s_j).
    """
    batch = distinct_scores.shape[0]
    scores = distinct_scores.index_select(1, output_columns)  # (B, B + S)
    x = F.elu(scores, alpha=elu_param) if elu_param > 0 else scores
    weights = _softmax_over_negatives(x)  # 0 at each row's target
    sigmoid = torch.sigmoid(_target_scores(x) - x)
    total = (weights * sigmoid).sum(dim=1, keepdim=True)
    square = x * x
    regularisation = (weights * square).sum(dim=1, keepdim=True)
    loss = (-torch.log(total + _EPSILON) + bpreg * regularisation).sum() * scale
    inverse = -scale / (total + _EPSILON)
    # dP/dx_j - w_j s_j (1 - s_j) = w_j (s_j^2 - P): the ranking and regularisation terms
    # together are w_j * (inverse (s_j^2 - P) + scale bpreg (x_j^2 + 2 x_j - R))
    sigmoid_square = sigmoid.mul_(sigmoid)
    slope_sum = total - (weights * sigmoid_square).sum(dim=1, keepdim=True)
    gradient = sigmoid_square.sub_(total).mul_(inverse)
    gradient += torch.add(square, x, alpha=2).sub_(regularisation).mul_(scale * bpreg)
    gradient.mul_(weights)
    torch.diagonal(gradient[:, :batch]).add_(inverse.squeeze(1) * slope_sum.squeeze(1))
    if elu_param > 0:  # through the ELU: PyTorch's own kernel for its slope
        gradient = torch.ops.aten.elu_backward(gradient, elu_param, 1, 1, True, x)
    distinct = torch.zeros_like(distinct_scores).index_add_(1, output_columns, gradient)
    return loss, distinct


def top1_max(scores: torch.Tensor) -> torch.Tensor:
    """TOP1-max: sum_j softmax_j * (sigmoid(r_j - r_target) + sigmoid(r_j^2)) over negatives."""
    weights = _softmax_over_negatives(scores)
    target = _target_scores(scores)
    per_column = torch.sigmoid(scores - target) + torch.sigmoid(scores.square())
    return (weights * per_column).sum()


def bpr(scores: torch.Tensor) -> torch.Tensor:
    """BPR (2016): mean over columns of -log sigmoid(r_target - r_j), summed over rows."""
    return -F.logsigmoid(_target_scores(scores) - scores).mean(dim=1).sum()


def top1(scores: torch.Tensor) -> torch.Tensor:
    """TOP1 (2016): mean over columns of sigmoid(r_j - r_target) + sigmoid(r_j^2)."""
    target = _target_scores(scores)
    return (torch.sigmoid(scores - target) + torch.sigmoid(scores.square())).mean(dim=1).sum()
