"""Training curves as MRML plot nodes (updated in place) and as a PNG."""

from __future__ import annotations

from DLCommon.plots import historyCurves, saveCurvesPng, updateCurvePlot
from DLCommon.training import TrainingHistory


def test_plot_nodes_update_in_place(scene):
    history = TrainingHistory(trainLoss=[1.0, 0.5], validationEpochs=[0, 1], validationLoss=[1.1, 0.6],
                              validationMetric=[0.3, 0.7])
    chart = updateCurvePlot(scene, historyCurves(history), "Seg training")
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    count = scene.GetNumberOfNodes()
    history.trainLoss.append(0.25)
    history.validationEpochs.append(2)
    history.validationLoss.append(0.3)
    history.validationMetric.append(0.9)
    assert updateCurvePlot(scene, historyCurves(history), "Seg training", chart) is chart
    assert scene.GetNumberOfNodes() == count  # no new nodes, same tables
    series = {chart.GetNthPlotSeriesNode(i).GetName(): chart.GetNthPlotSeriesNode(i) for i in range(3)}
    table = series["Seg training: training loss"].GetTableNode().GetTable()
    assert table.GetNumberOfRows() == 3 and table.GetValue(2, 1).ToDouble() == 0.25
    assert table.GetValue(2, 0).ToDouble() == 3.0


def test_png(tmp_path):
    from PIL import Image

    path = saveCurvesPng({"training loss": ([1, 2, 3], [1.0, 0.5, 0.2])}, tmp_path / "c.png")
    with Image.open(path) as picture:
        assert picture.size == (640, 400)
        assert len(set(picture.getdata())) > 3  # lines and text, not a blank canvas
