"""All-or-nothing changes to a MRML scene.

MedDL's guarantee: a failed or cancelled operation leaves the scene as it was. Functions that create
several nodes wrap their work in :func:`sceneTransaction`; on any exception every node added inside the
block is removed again before the exception propagates.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["sceneTransaction", "nodeIds", "SceneLogic"]


def nodeIds(scene) -> list[str]:
    """IDs of all nodes in ``scene``, in scene order."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


@contextlib.contextmanager
def sceneTransaction(scene) -> Iterator[None]:
    """Remove nodes added inside the block if the block raises.

    Example::

        with sceneTransaction(scene):
            node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
            fill(node)  # if this raises, "out" disappears again
    """
    if scene is None:
        raise ValueError("scene must be a vtkMRMLScene, got None.")
    before = set(nodeIds(scene))
    try:
        yield
    except BaseException:
        added = [node for node in (scene.GetNodeByID(i) for i in nodeIds(scene)) if node is not None
                 and node.GetID() not in before]
        # children (display / storage nodes) first, so removal does not re-create references
        for node in reversed(added):
            if scene.IsNodePresent(node):
                scene.RemoveNode(node)
        raise


class SceneLogic:
    """Base of the modules' node-level logic classes: which scene new nodes go to.

    Args:
        scene: the scene to work in; None: the scene of the first input node, else ``slicer.mrmlScene``.
    """

    def __init__(self, scene=None):
        self._scene = scene

    def scene(self, node=None):
        scene = self._scene or (node.GetScene() if node is not None else None)
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        return scene

    def batchJob(self, inputs, makeJob, outputFolder=None, name: str = "Batch"):
        """One :class:`~DLCommon.batch.BatchJob` running ``makeJob(volumeNode) -> Job`` over ``inputs``: volume
        nodes, or a folder of volume files (loaded one at a time; outputs saved to ``outputFolder``)."""
        from .batch import BatchJob, batchItems

        items = batchItems(inputs)
        first = next((item.node for item in items if item.node is not None), None)
        return BatchJob(items, makeJob, self.scene(first), outputFolder, name)
