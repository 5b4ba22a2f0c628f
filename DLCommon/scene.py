"""All-or-nothing changes to a MRML scene.

MedDL's guarantee: a failed or cancelled operation leaves the scene as it was. Functions that create
several nodes wrap their work in :func:`sceneTransaction`; on any exception every node added inside the
block is removed again before the exception propagates.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["sceneTransaction", "nodeIds"]


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
