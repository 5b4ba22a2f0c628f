"""Errors that a MedDL user can act on.

Every failure a user can cause (wrong node, wrong file, bad checksum, ...) is raised as :class:`DLError`.
Its message answers three questions, in this order: *which* node or file, *what* is wrong, *how* to fix it.
"""

from __future__ import annotations

__all__ = ["DLError", "SettingError", "JobCancelled", "nodeLabel"]


class DLError(Exception):
    """A user-facing error that names the subject, the problem and the fix.

    Args:
        what: what is wrong, e.g. ``"has 3 components; the model expects 1"``.
        node: the MRML node concerned (its name is quoted in the message), if any.
        file: the file or URL concerned, if any.
        fix: how to fix it, e.g. ``"pick a scalar volume or convert it with Vector to Scalar Volume"``.

    Example::

        raise DLError("has no image data", node=volumeNode, fix="load or compute the volume first")
        # -> Volume 'MRHead' has no image data. Fix: load or compute the volume first.
    """

    def __init__(self, what: str, node=None, file: str | None = None, fix: str | None = None):
        self.what = what
        self.nodeName = nodeLabel(node) if node is not None else None
        self.file = None if file is None else str(file)
        self.fix = fix
        super().__init__(self._compose())

    def _compose(self) -> str:
        subject = self.nodeName or (f"File '{self.file}'" if self.file else "")
        text = f"{subject} {self.what}".strip()
        text = text[0].upper() + text[1:] if text else text
        if not text.endswith("."):
            text += "."
        if self.fix:
            text += f" Fix: {self.fix.rstrip('.')}."
        return text


class SettingError(DLError, ValueError):
    """A setting outside what it allows (an engine config's ``validate()``): names the setting, the value and
    what is allowed. Also a ValueError, as MONAI's argument checks are.

    Example::

        raise SettingError("loss", "dicey", "one of ce, wce, dice, dl2, dicece")
        # -> Setting 'loss' is 'dicey'; it must be one of ce, wce, dice, dl2, dicece. Fix: change the setting.
    """

    def __init__(self, setting: str, value, allowed: str):
        self.setting, self.value = setting, value
        super().__init__(f"is {value!r}; it must be {allowed}", node=f"Setting '{setting}'", fix="change the setting")


class JobCancelled(Exception):
    """Raised inside a job (or training / inference loop) when the user asked to cancel it."""


def nodeLabel(node) -> str:
    """``"Volume 'MRHead'"`` for a MRML node; any other subject (e.g. ``"Device 'cuda'"``) as given."""
    getName = getattr(node, "GetName", None)
    if getName is None:
        return str(node)
    className = node.GetClassName() if hasattr(node, "GetClassName") else type(node).__name__
    kind = _NODE_KINDS.get(className, className.replace("vtkMRML", "").replace("Node", ""))
    return f"{kind} '{getName()}'"


_NODE_KINDS = {
    "vtkMRMLScalarVolumeNode": "Volume",
    "vtkMRMLLabelMapVolumeNode": "Labelmap volume",
    "vtkMRMLVectorVolumeNode": "Vector volume",
    "vtkMRMLSegmentationNode": "Segmentation",
    "vtkMRMLLinearTransformNode": "Transform",
    "vtkMRMLGridTransformNode": "Grid transform",
    "vtkMRMLBSplineTransformNode": "B-spline transform",
    "vtkMRMLTransformNode": "Transform",
}
