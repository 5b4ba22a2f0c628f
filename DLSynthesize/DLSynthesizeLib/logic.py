"""DLSynthesize's node-level API (Qt-free): synthesize volumes from volumes in the scene.

What the Slicer module's logic class exposes in the Python console::

    logic = DLSynthesizeLogic()
    result = logic.superResolve(thickSliceVolume)        # a new volume with thin slices
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from DLCommon import DLError, Job, tensorFromVolume
from DLCommon.scene import SceneLogic
from DLCommon.volumes import checkVolume, updateVolumeFromTensor, volumeFromTensor

from .superresolution import SuperResolutionConfig, SuperResolutionResult, superResolve

__all__ = ["SynthesisLogic", "SynthesisResult"]

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class SynthesisResult:
    """The node a synthesis created (or overwrote), and what the engine reported."""

    volume: object
    details: dict = dataclasses.field(default_factory=dict)


class SynthesisLogic(SceneLogic):
    """Synthesis tasks; methods take nodes and plain values and raise :class:`DLError` on bad input."""

    def superResolveJob(self, inputVolume, config: SuperResolutionConfig | None = None, outputVolume=None) -> Job:
        """A :class:`Job` restoring the through-plane resolution of a thick-slice volume.

        Args:
            inputVolume: scalar volume with one axis of thicker slices (>= 1.5x the pixel size).
            config: :class:`SuperResolutionConfig` (training steps, factor...).
            outputVolume: a volume node to overwrite; None creates ``<input> super-resolved``.
        """
        if inputVolume is None:
            raise DLError("No input volume was selected", fix="select the thick-slice volume to super-resolve")
        checkVolume(inputVolume)
        scene = self.scene(inputVolume)
        if outputVolume is not None and (outputVolume is inputVolume or outputVolume.GetScene() is not scene):
            raise DLError("cannot be the output (it is the input, or in another scene)", node=outputVolume,
                          fix="pick another output volume, or let a new one be created")
        image = tensorFromVolume(inputVolume)  # read before the job: the worker never touches the scene
        config = config or SuperResolutionConfig()
        from .superresolution import throughPlaneAxis

        throughPlaneAxis(image.affine)  # refuse isotropic input now, not after the job started

        def work(context) -> SuperResolutionResult:
            return superResolve(image, config, progress=context.report)

        def apply(result: SuperResolutionResult) -> SynthesisResult:
            details = {"axis": "IJK"[result.axis], "factor": result.factor,
                       "finalLoss": result.history.trainLoss[-1] if result.history else None}
            if outputVolume is None:
                node = volumeFromTensor(result.image, None, scene, f"{inputVolume.GetName()} super-resolved")
            else:
                updateVolumeFromTensor(outputVolume, result.image, useTensorGeometry=True)
                node = outputVolume
            return SynthesisResult(volume=node, details=details)

        return Job(work, apply, scene=scene, name=f"Super-resolve {inputVolume.GetName()}")

    def superResolve(self, inputVolume, config: SuperResolutionConfig | None = None, outputVolume=None,
                     progress: Progress | None = None) -> SynthesisResult:
        """Restore the through-plane resolution of ``inputVolume`` (see :meth:`superResolveJob`)."""
        return self.superResolveJob(inputVolume, config, outputVolume).run(progress)
