"""Writes the product photos of the bundled Amazon Toys sample's items, for the demo page of
``prnn serve``: ``src/prnn/example_data/toys_sample/photos.zip``, one ``<item id>.jpg`` per item
of the sample's ``items.csv.gz``, from amazon_toys_mm's 64 px thumbnails re-encoded at 48 px
(JPEG quality 80) to keep the repository small.

    python tools/make_example_photos.py [--images ../shared/data/amazon_toys_mm/images_64px.zip]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import zipfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "prnn" / "example_data" / "toys_sample"
IMAGES = REPO.parent / "shared" / "data" / "amazon_toys_mm" / "images_64px.zip"
SIZE = 48


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--out", type=Path, default=SAMPLE / "photos.zip")
    args = parser.parse_args()
    with gzip.open(SAMPLE / "items.csv.gz", "rt", encoding="utf-8") as handle:
        item_ids = [row["item_id"] for row in csv.DictReader(handle)]
    source = zipfile.ZipFile(args.images)
    by_item = {Path(name).stem: name for name in source.namelist() if not name.endswith("/")}
    temporary = args.out.with_suffix(".tmp")
    written = 0
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as out:
        for item in item_ids:
            if item not in by_item:
                continue
            image = Image.open(io.BytesIO(source.read(by_item[item]))).convert("RGB")
            image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80, optimize=True)
            out.writestr(f"{item}.jpg", buffer.getvalue())
            written += 1
    temporary.replace(args.out)
    size = args.out.stat().st_size / 1e6
    print(f"{written} of {len(item_ids)} items' photos, {size:.2f} MB: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
