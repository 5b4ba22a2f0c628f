"""Training curves: live MRML plot chart (table + plot series nodes) in Slicer, a PNG in the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .scene import sceneTransaction

__all__ = ["historyCurves", "updateCurvePlot", "saveCurvesPng"]

Curve = tuple[Sequence[float], Sequence[float]]

_COLORS = [(0.12, 0.47, 0.71), (0.85, 0.37, 0.01), (0.17, 0.63, 0.17), (0.58, 0.40, 0.74), (0.84, 0.15, 0.16),
           (0.55, 0.34, 0.29)]


def historyCurves(history) -> dict[str, Curve]:
    """``{"training loss": (epochs, values), ...}`` from a :class:`~DLCommon.training.TrainingHistory`, or
    the ``curves()`` of another history (e.g. a GAN's two players)."""
    if hasattr(history, "curves"):
        return history.curves()
    curves = {"training loss": (list(range(1, len(history.trainLoss) + 1)), list(history.trainLoss))}
    if history.validationEpochs:
        epochs = [e + 1 for e in history.validationEpochs]
        curves["validation loss"] = (epochs, list(history.validationLoss))
        if history.validationMetric != history.validationLoss:
            curves["validation metric"] = (epochs, list(history.validationMetric))
    return curves


def updateCurvePlot(scene, curves: dict[str, Curve], name: str = "Training curves", chartNode=None,
                    xName: str = "epoch", yName: str = "value"):
    """Create or update a plot chart showing ``curves`` (one table per curve, one series per table).

    Call it from the main thread after each epoch (e.g. from the job's poll timer); pass the returned
    chart node back in to update it in place. Show it with
    ``slicer.modules.plots.logic().ShowChartInLayout(chartNode)`` in the shell.
    """
    import vtk

    if chartNode is None:
        with sceneTransaction(scene):
            chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
            chartNode.SetXAxisTitle(xName)
            chartNode.SetYAxisTitle(yName)
    existing = {chartNode.GetNthPlotSeriesNode(i).GetName(): chartNode.GetNthPlotSeriesNode(i)
                for i in range(chartNode.GetNumberOfPlotSeriesNodes())}
    for index, (curveName, (x, y)) in enumerate(curves.items()):
        series = existing.get(f"{name}: {curveName}")
        if series is None:
            with sceneTransaction(scene):  # table and series come as a pair, or not at all
                table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name}: {curveName} table")
                for column in (xName, curveName):
                    array = vtk.vtkDoubleArray()
                    array.SetName(column)
                    table.AddColumn(array)
                series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name}: {curveName}")
                series.SetAndObserveTableNodeID(table.GetID())
                series.SetXColumnName(xName)
                series.SetYColumnName(curveName)
                series.SetPlotType(series.PlotTypeScatter)
                series.SetColor(*_COLORS[index % len(_COLORS)])
                chartNode.AddAndObservePlotSeriesNodeID(series.GetID())
        table = series.GetTableNode().GetTable()
        table.SetNumberOfRows(len(x))
        for row, (xValue, yValue) in enumerate(zip(x, y)):
            table.SetValue(row, 0, float(xValue))
            table.SetValue(row, 1, float(yValue))
        table.Modified()
        series.GetTableNode().Modified()
    return chartNode


def saveCurvesPng(curves: dict[str, Curve], path: str | Path, title: str = "Training", size=(640, 400),
                  xName: str = "epoch") -> Path:
    """Draw ``curves`` as a line chart PNG (axes, ticks, legend) with Pillow."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 64, 16, 28, 40
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    xs = [v for x, _ in curves.values() for v in x] or [0, 1]
    ys = [v for _, y in curves.values() for v in y if np.isfinite(v)] or [0, 1]
    xLow, xHigh = min(xs), max(max(xs), min(xs) + 1)
    yLow, yHigh = min(ys), max(ys)
    if yHigh - yLow < 1e-12:
        yLow, yHigh = yLow - 0.5, yHigh + 0.5

    def toPixel(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xLow) / (xHigh - xLow) * (width - left - right),
                height - bottom - (y - yLow) / (yHigh - yLow) * (height - top - bottom))

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for tick in np.linspace(yLow, yHigh, 5):
        _, py = toPixel(xLow, tick)
        draw.line((left - 4, py, left, py), fill="black")
        draw.text((4, py - 6), f"{tick:.3g}", fill="black")
    for tick in np.unique(np.linspace(xLow, xHigh, 6).round()):
        px, _ = toPixel(tick, yLow)
        draw.line((px, height - bottom, px, height - bottom + 4), fill="black")
        draw.text((px - 6, height - bottom + 6), f"{int(tick)}", fill="black")
    draw.text((left, 6), title, fill="black")
    draw.text((width // 2 - 3 * len(xName), height - 16), xName, fill="black")
    for index, (curveName, (x, y)) in enumerate(curves.items()):
        color = tuple(int(255 * c) for c in _COLORS[index % len(_COLORS)])
        points = [toPixel(a, b) for a, b in zip(x, y) if np.isfinite(b)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for px, py in points:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=color)
        draw.text((width - right - 150, top + 6 + 14 * index), curveName, fill=color)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path
