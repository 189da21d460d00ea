"""Regenerate the Amazon Toys sample bundled in src/prnn/example_data/toys_sample/.

Reads ../shared/data/amazon_toys_mm (real Amazon "Toys & Games" user histories with CLIP ViT-B/32
image vectors; research use) and keeps the 2,000 most interacted items, the histories restricted
to them with at least 3 events left, at most 4,000 of those (seed 0), their CLIP image vectors
(float16) and their titles. Run from the repository root:

    python tools/make_example_data.py
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl

SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon_toys_mm"
TARGET = Path(__file__).resolve().parents[1] / "src" / "prnn" / "example_data" / "toys_sample"
N_ITEMS, N_SEQUENCES, MIN_LENGTH = 2000, 4000, 3


def main() -> None:
    sequences = pl.read_csv(SOURCE / "sequences.csv.gz")
    popular = (
        sequences.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
        .head(N_ITEMS)["item_id"]
    )
    images = np.load(SOURCE / "clip_vitb32_image.npz")
    with_image = set(images["item_id"].tolist())
    popular = [item for item in popular.to_list() if item in with_image]
    kept = sequences.filter(pl.col("item_id").is_in(popular)).sort(["seq_id", "position"])
    lengths = kept.group_by("seq_id").len().filter(pl.col("len") >= MIN_LENGTH)
    rng = np.random.default_rng(0)
    chosen = rng.choice(lengths["seq_id"].to_numpy(), size=min(N_SEQUENCES, lengths.height),
                        replace=False)
    kept = kept.filter(pl.col("seq_id").is_in(chosen.tolist()))
    items = sorted(set(kept["item_id"].to_list()))
    TARGET.mkdir(parents=True, exist_ok=True)
    (TARGET / "sequences.csv.gz").write_bytes(
        gzip.compress(kept.select("seq_id", "position", "item_id").write_csv().encode(), 9, mtime=0)
    )
    row_of = {item: i for i, item in enumerate(images["item_id"].tolist())}
    rows = [row_of[item] for item in items]
    np.savez_compressed(TARGET / "clip_image.npz", item_id=np.array(items),
                        emb=images["emb"][rows])
    titles = pl.read_csv(SOURCE / "items.csv.gz").filter(pl.col("item_id").is_in(items))
    (TARGET / "items.csv.gz").write_bytes(
        gzip.compress(titles.select("item_id", "title").write_csv().encode(), 9, mtime=0)
    )
    print(f"{kept.height} events, {len(chosen)} sequences, {len(items)} items -> {TARGET}")


if __name__ == "__main__":
    main()
