"""The building blocks of every recurrent network: GRU4Rec's GRU layer, its initialisation, dropout.

The GRU follows hidasib/GRU4Rec_PyTorch_Official: the reset gate multiplies the recurrent
product, every matrix is initialised Glorot-uniform, dropout is inverted and drawn from an
explicit generator (library code never touches the global RNG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int, generator) -> torch.Tensor:
    """Uniform in +-sqrt(6 / (fan_in + fan_out)), GRU4Rec's initialisation of every matrix."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


@dataclass
class GRUGates:
    """Activations of one GRU step, kept for the hand-written backward pass."""

    r: torch.Tensor
    z: torch.Tensor
    candidate: torch.Tensor
    recurrent_candidate: torch.Tensor
    """U_c h + b_c, the recurrent product the reset gate multiplies."""


class GRULayer(nn.Module):
    """One GRU layer; the reset gate multiplies the recurrent product (as in the reference).

    r = sigmoid(W_r x + U_r h), z = sigmoid(W_z x + U_z h), h' = tanh(W x + r * (U h)),
    h_new = (1 - z) * h + z * h'. Gate blocks are stacked as [r | z | candidate].
    """

    PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    """Parameter names, in registration order (``weight_ih`` is absent without a dense input)."""

    def __init__(self, input_size: int | None, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        # input_size None: the input projection comes precomputed from item tables (one-hot ID,
        # sparse features), so the layer has no input weights of its own
        self.weight_ih = (
            nn.Parameter(torch.empty(input_size, 3 * hidden_size)) if input_size else None
        )
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 3 * hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))

    def reset_parameters(self, generator: torch.Generator) -> None:
        h = self.hidden_size
        if self.weight_ih is not None:
            glorot_uniform_(self.weight_ih, self.weight_ih.shape[0], h, generator)
        glorot_uniform_(self.weight_hh, h, h, generator)
        with torch.no_grad():
            self.bias_ih.zero_()
            self.bias_hh.zero_()

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, 3H): the input's contribution to the three gate blocks.

        Without ``weight_ih`` ``x`` is already the projection (item-table rows) and only the
        bias is added.
        """
        if self.weight_ih is None:
            return x + self.bias_ih
        return torch.addmm(self.bias_ih, x, self.weight_ih)

    def gates(self, projected_input: torch.Tensor, h: torch.Tensor) -> GRUGates:
        """The gate activations of one step. projected_input: (B, 3H); h: (B, H)."""
        recurrent = torch.addmm(self.bias_hh, h, self.weight_hh)  # (B, 3H)
        x_r, x_z, x_c = projected_input.chunk(3, dim=1)
        h_r, h_z, h_c = recurrent.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        return GRUGates(r, z, torch.tanh(x_c + r * h_c), h_c)

    @staticmethod
    def output(h: torch.Tensor, gates: GRUGates) -> torch.Tensor:
        """The new hidden state: (1 - z) * h + z * candidate."""
        return h + gates.z * (gates.candidate - h)

    def forward(self, projected_input: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step. projected_input: (B, 3H) from ``project_input``; h: (B, H)."""
        return self.output(h, self.gates(projected_input, h))

    @staticmethod
    def backward(
        grad_out: torch.Tensor, h: torch.Tensor, gates: GRUGates
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients w.r.t. the projected input and the recurrent product, both (B, 3H).

        The gradient w.r.t. ``h`` itself is ``hidden_gradient``'s, needed only when training
        back-propagates through more than one step.
        """
        r, z, candidate = gates.r, gates.z, gates.candidate
        grad_z = grad_out * (candidate - h) * z * (1 - z)
        grad_candidate = grad_out * z * (1 - candidate * candidate)
        grad_r = grad_candidate * gates.recurrent_candidate * r * (1 - r)
        grad_projected = torch.cat([grad_r, grad_z, grad_candidate], dim=1)
        grad_recurrent = torch.cat([grad_r, grad_z, grad_candidate * r], dim=1)
        return grad_projected, grad_recurrent

    def hidden_gradient(
        self, grad_out: torch.Tensor, gates: GRUGates, grad_recurrent: torch.Tensor
    ) -> torch.Tensor:
        """Gradient w.r.t. the carried state ``h`` of a step: through the update gate's
        ``(1 - z) * h`` and through the recurrent product (``backward``'s ``grad_recurrent``)."""
        return torch.addmm(grad_out * (1 - gates.z), grad_recurrent, self.weight_hh.T)

    @staticmethod
    def backward_factors(
        h: torch.Tensor, gates: GRUGates, mask: torch.Tensor | None
    ) -> BackwardFactors:
        """What ``backward`` and ``hidden_gradient`` multiply the output's gradient by, for a
        step that truncated back-propagation through time revisits (once per later step)."""
        r, z, candidate = gates.r, gates.z, gates.candidate
        update = (candidate - h) * z * (1 - z)
        new = z * (1 - candidate * candidate)
        reset = new * gates.recurrent_candidate * r * (1 - r)
        keep = 1 - z
        if mask is not None:
            update, new, reset, keep = update * mask, new * mask, reset * mask, keep * mask
        projected = torch.stack([reset, update, new], dim=1)  # (B, 3, H), the gate blocks
        recurrent = torch.cat([torch.ones_like(r), torch.ones_like(z), r], dim=1)
        return BackwardFactors(projected, recurrent, keep)

    def backward_through(
        self, grad: torch.Tensor, factors: BackwardFactors, with_hidden: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``backward`` (and ``hidden_gradient`` if ``with_hidden``) from the gradient w.r.t.
        the step's dropped-out output, by its ``backward_factors``: (grad_projected,
        grad_recurrent, gradient w.r.t. the carried state or None)."""
        grad_projected = (grad[:, None, :] * factors.projected).flatten(1)
        grad_recurrent = grad_projected * factors.recurrent
        grad_hidden = None
        if with_hidden:
            grad_hidden = torch.addmm(grad * factors.keep, grad_recurrent, self.weight_hh.T)
        return grad_projected, grad_recurrent, grad_hidden


@dataclass
class BackwardFactors:
    """A GRU step's local derivatives, with its output dropout mask folded in."""

    projected: torch.Tensor
    """(B, 3, H): gradient w.r.t. the projected input's [r | z | candidate] blocks per unit of
    the output's gradient."""
    recurrent: torch.Tensor
    """(B, 3H): [1 | 1 | r], from the projected input's gradient to the recurrent product's."""
    keep: torch.Tensor
    """(B, H): (1 - z) times the mask, the carried state's direct share."""


def dropout_mask(
    shape: tuple[int, ...],
    p: float,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor | None:
    """Inverted-dropout multipliers (0 or 1 / (1 - p)) of ``shape``; None = no dropout."""
    if p <= 0 or generator is None:
        return None
    # uniform + compare: cheaper than bernoulli_ with a generator on CPU
    uniform = torch.rand(shape, generator=generator, device=device)
    return uniform.ge_(p).float().mul_(1.0 / (1.0 - p))


@dataclass(frozen=True)
class DropoutSpec:
    """One dropout mask a training step draws: its width and drop probability (> 0)."""

    width: int
    p: float
