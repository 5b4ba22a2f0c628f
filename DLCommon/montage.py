"""PNG montages of volumes (with optional label overlay) for reports, demos and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["orthogonalSlices", "saveMontage", "saveComparison", "saveOverview"]


def _toNumpy(tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu()
        tensor = tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor
        return tensor.numpy()
    return np.asarray(tensor)


def orthogonalSlices(volume, index: Sequence[int] | None = None) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through ``index`` (default centre) of an ``(I, J, K)`` volume.

    Each slice is oriented for display (superior / anterior up), assuming a near-RAS voxel grid.
    """
    volume = _toNumpy(volume)
    if volume.ndim == 4:
        volume = volume[0]
    i, j, k = index if index is not None else [s // 2 for s in volume.shape]
    axial = volume[:, :, k].T[::-1]          # rows: anterior at top; columns: right-to-left as I grows
    coronal = volume[:, j, :].T[::-1]        # rows: superior at top
    sagittal = volume[i, :, :].T[::-1]
    return [axial, coronal, sagittal]


def saveMontage(path: str | Path, volume, labels=None, colors: Sequence[Sequence[float]] | None = None,
                title: str | None = None, alpha: float = 0.45) -> Path:
    """Write axial / coronal / sagittal slices of ``(I, J, K)`` ``volume`` side by side as a PNG.

    ``labels`` (same shape, 0 = background) are blended in ``colors`` (RGB 0..1 for label 1, 2, ...).
    """
    from PIL import Image, ImageDraw

    volumeArray = _toNumpy(volume).astype(np.float32)
    low, high = np.percentile(volumeArray, [1, 99.5])
    slices = orthogonalSlices(volumeArray)
    labelSlices = orthogonalSlices(_toNumpy(labels)) if labels is not None else [None] * 3
    height = max(s.shape[0] for s in slices)
    panels = []
    for image, label in zip(slices, labelSlices):
        grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        if label is not None:
            for value, color in enumerate(colors or [], start=1):
                mask = label == value
                rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(color[:3], dtype=np.float32)
        panel = np.zeros((height, rgb.shape[1], 3), dtype=np.float32)
        panel[:rgb.shape[0]] = rgb
        panels.append(panel)
    strip = np.concatenate(panels, axis=1)
    picture = Image.fromarray((255 * strip).astype(np.uint8))
    if picture.height < 256:  # coarse volumes (e.g. 3 mm): enlarge whole voxels so the picture is readable
        factor = -(-256 // picture.height)
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    if title:
        banner = Image.new("RGB", (picture.width, 18), (0, 0, 0))
        ImageDraw.Draw(banner).text((4, 3), title, fill=(255, 255, 255))
        stacked = Image.new("RGB", (picture.width, picture.height + 18))
        stacked.paste(banner, (0, 0))
        stacked.paste(picture, (0, 18))
        picture = stacked
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def _savePicture(picture, path: str | Path, title: str | None, titleY: int) -> Path:
    """Write ``picture`` (PIL, RGB) to ``path`` with ``title`` in its top band, creating the folder."""
    from PIL import ImageDraw

    if title:
        ImageDraw.Draw(picture).text((4, titleY), title, fill=(255, 255, 255))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def saveComparison(path: str | Path, volumes: dict, axis: int = 0, index: int | None = None,
                   title: str | None = None) -> Path:
    """Write the same slice (across ``axis`` at ``index``, default the middle) of several ``(I, J, K)`` volumes
    side by side, captioned with their names, in one intensity window (e.g. interpolation vs restoration)."""
    from PIL import Image, ImageDraw

    arrays = {name: _toNumpy(volume).astype(np.float32) for name, volume in volumes.items()}
    first = next(iter(arrays.values()))
    index = first.shape[axis] // 2 if index is None else index
    low, high = np.percentile(first, [1, 99.5])
    panels = []
    for name, array in arrays.items():
        image = np.take(array, index, axis=axis)
        grey = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
        picture = Image.fromarray((255 * np.flipud(grey.T)).astype(np.uint8)).convert("RGB")  # superior up
        picture = picture.resize((picture.width * 2, picture.height * 2), Image.BICUBIC)
        caption = Image.new("RGB", (picture.width, 16), (0, 0, 0))
        ImageDraw.Draw(caption).text((4, 2), name, fill=(255, 255, 255))
        panel = Image.new("RGB", (picture.width, picture.height + 16))
        panel.paste(caption, (0, 0))
        panel.paste(picture, (0, 16))
        panels.append(panel)
    strip = Image.new("RGB", (sum(p.width for p in panels), max(p.height for p in panels) + (18 if title else 0)))
    x = 0
    for panel in panels:
        strip.paste(panel, (x, 18 if title else 0))
        x += panel.width
    return _savePicture(strip, path, title, 3)


def saveOverview(path: str | Path, panels: dict[str, str | Path], columns: int = 2, width: int = 640,
                 title: str | None = None) -> Path:
    """One PNG of several PNGs (``{caption: file}``), each scaled to ``width`` pixels, in ``columns`` columns."""
    from PIL import Image, ImageDraw

    tiles = []
    for caption, file in panels.items():
        picture = Image.open(file).convert("RGB")
        picture = picture.resize((width, max(1, round(picture.height * width / picture.width))), Image.BICUBIC)
        tile = Image.new("RGB", (width, picture.height + 18), (0, 0, 0))
        ImageDraw.Draw(tile).text((4, 3), caption, fill=(255, 255, 255))
        tile.paste(picture, (0, 18))
        tiles.append(tile)
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    heights = [max(t.height for t in row) for row in rows]
    top = 22 if title else 0
    sheet = Image.new("RGB", (columns * width, top + sum(heights)), (0, 0, 0))
    y = top
    for row, height in zip(rows, heights):
        for index, tile in enumerate(row):
            sheet.paste(tile, (index * width, y))
        y += height
    return _savePicture(sheet, path, title, 5)
