"""Item titles and photos for the demo page: an item table (id and title columns) and a zip or
folder of images named by item id. Both optional: without them items show as their ids."""

from __future__ import annotations

import html
import zipfile
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")


class Catalogue:
    def __init__(self, titles: dict[str, str], images: Path | None) -> None:
        self.titles = titles
        self.images = images
        self._image_names: dict[str, str] = {}
        if images is not None and images.is_file():
            with zipfile.ZipFile(images) as archive:
                for name in archive.namelist():
                    stem, dot, suffix = Path(name).name.rpartition(".")
                    if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES:
                        self._image_names[stem] = name
        elif images is not None and images.is_dir():
            for path in images.iterdir():
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    self._image_names[path.stem] = path.name

    @classmethod
    def load(cls, items_path: str | None, images_path: str | None) -> Catalogue:
        titles: dict[str, str] = {}
        if items_path:
            import polars as pl

            from prnn.featurize import read_item_table

            table = read_item_table(items_path, "item_id", ["title"])
            for item, title in zip(
                table["item_id"].cast(pl.Utf8).to_list(), table["title"].to_list()
            ):
                titles[item] = html.unescape(title or "")  # the source has "&amp;"
        return cls(titles, Path(images_path) if images_path else None)

    def has_image(self, item_id: object) -> bool:
        return str(item_id) in self._image_names

    def image(self, item_id: object) -> bytes | None:
        name = self._image_names.get(str(item_id))
        if name is None or self.images is None:
            return None
        if self.images.is_file():
            with zipfile.ZipFile(self.images) as archive:
                return archive.read(name)
        return (self.images / name).read_bytes()

    def describe(self, item_id: object) -> dict:
        key = str(item_id)
        return {
            "item_id": item_id,
            "title": self.titles.get(key, key),
            "image": f"/v1/items/{key}/image" if key in self._image_names else None,
        }

    def search(self, query: str, item_ids: list, offset: int, limit: int) -> list:
        """The model's items whose title (or id) contains ``query``, case-insensitive."""
        query = query.strip().lower()
        if query:
            item_ids = [
                item
                for item in item_ids
                if query in self.titles.get(str(item), str(item)).lower()
                or query in str(item).lower()
            ]
        return item_ids[offset : offset + limit]
