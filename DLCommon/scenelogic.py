"""The base of the modules' node-level logic classes: the scene their nodes go to, and batches over volumes.

Imports flow one way: ``scene`` (transactions) <- ``jobs`` <- ``batch`` <- ``scenelogic``; nothing below imports
this module.
"""

from __future__ import annotations

from .batch import BatchJob, batchItems

__all__ = ["SceneLogic"]


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
        items = batchItems(inputs)
        first = next((item.node for item in items if item.node is not None), None)
        return BatchJob(items, makeJob, self.scene(first), outputFolder, name)
