"""Item feature rows as tensors, for the network's feature inputs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prnn.features import AlignedFeatures


class FeatureLookup(nn.Module):
    """Feature rows of items as tensors: a dense (I, D) buffer, or a CSR held as three buffers."""

    def __init__(
        self,
        aligned: AlignedFeatures | None = None,
        *,
        dim: int = 0,
        sparse: bool = False,
        n_items: int = 0,
        nnz: int = 0,
    ) -> None:
        super().__init__()
        if aligned is not None:
            sparse, dim = aligned.is_sparse, aligned.dim
        self.sparse = sparse
        self.dim = dim
        if aligned is None:  # shapes only; values come from a saved state dict
            if sparse:
                self.register_buffer("indptr", torch.zeros(n_items + 1, dtype=torch.int64))
                self.register_buffer("indices", torch.zeros(nnz, dtype=torch.int64))
                self.register_buffer("values", torch.zeros(nnz))
            else:
                self.register_buffer("matrix", torch.zeros(n_items, dim))
            return
        items = np.arange(len(aligned.source_row))
        if sparse:
            rows = aligned.sparse_rows(items).astype(np.float32)
            self.register_buffer("indptr", torch.from_numpy(rows.indptr.astype(np.int64)))
            self.register_buffer("indices", torch.from_numpy(rows.indices.astype(np.int64)))
            self.register_buffer("values", torch.from_numpy(rows.data.astype(np.float32)))
        else:
            self.register_buffer("matrix", torch.from_numpy(aligned.dense_rows(items)))

    def dense(self, items: torch.Tensor) -> torch.Tensor:
        return self.matrix.index_select(0, items)

    def bag(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flattened non-zeros of the items' rows: (columns, values, offsets per item)."""
        starts, ends = self.indptr[items], self.indptr[items + 1]
        lengths = ends - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(
            int(lengths.sum()), device=items.device
        )
        return self.indices[flat], self.values[flat], offsets
