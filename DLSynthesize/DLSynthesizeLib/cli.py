"""``meddl super-resolve`` and DLSynthesize's part of ``meddl demo``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["addCommands", "demo"]


def addCommands(commands) -> None:
    resolve = commands.add_parser("super-resolve",
                                  help="restore thin slices of a thick-slice volume (self-supervised, no training data)")
    resolve.add_argument("--input", required=True, help="thick-slice volume file")
    resolve.add_argument("--output", required=True, help="super-resolved volume file (.nrrd, .nii.gz)")
    resolve.add_argument("--factor", type=int, help="slice spacing / pixel size (default: from the geometry)")
    resolve.add_argument("--steps", type=int, default=600, help="training iterations")
    resolve.add_argument("--device", default="auto")
    resolve.set_defaults(handler=_superResolve)


def _superResolve(args) -> int:
    import slicer
    from tqdm import tqdm

    from DLCommon import saveNode
    from DLCommon.storage import loadVolume

    from .logic import SynthesisLogic
    from .superresolution import SuperResolutionConfig

    scene = slicer.vtkMRMLScene()
    volume = loadVolume(args.input, scene)
    config = SuperResolutionConfig(factor=args.factor, steps=args.steps, device=args.device)
    with tqdm(total=100, desc="super-resolve", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]") as bar:
        result = SynthesisLogic(scene).superResolve(volume, config, progress=lambda f, m: bar.update(100 * f - bar.n))
    saveNode(result.volume, args.output)
    details = result.details
    print(f"{Path(args.input).name}: slice axis {details['axis']}, x{details['factor']} -> {args.output}")
    scene.Clear(1)
    return 0


def demo(scene, output: Path, progress) -> dict:
    """Super-resolve a 4 mm thick-slice copy of the MNI152 T1 (axial slices); PSNR against cubic interpolation."""
    import math

    import torch
    from monai.data import MetaTensor

    from DLCommon import tensorFromVolume, volumeFromTensor
    from DLCommon.montage import saveMontage
    from DLCommon.sampledata import mni152Paths
    from DLCommon.storage import loadVolume

    from .logic import SynthesisLogic
    from .superresolution import SuperResolutionConfig, degradeAlongAxis, upsampleAlongAxis

    progress(0.02, "synthesize: making a 4 mm thick-slice T1")
    t1 = tensorFromVolume(loadVolume(mni152Paths()["t1"], scene, name="MNI152 T1 (synthesis demo)"))
    count = (t1.shape[3] - 1) // 4 * 4 + 1
    truth = t1.as_tensor()[0, :, :, :count]
    affine = torch.as_tensor(t1.affine).clone()
    affine[:3, 2] *= 4
    thick = volumeFromTensor(MetaTensor(degradeAlongAxis(truth, 2, 4)[None], affine=affine), None, scene,
                             "MNI152 T1 4 mm slices")
    result = SynthesisLogic(scene).superResolve(thick, SuperResolutionConfig(steps=200, device="cpu"),
                                                progress=lambda f, m: progress(0.05 + 0.85 * f, "synthesize: " + m))
    restored = tensorFromVolume(result.volume)[0]
    cubic = upsampleAlongAxis(tensorFromVolume(thick)[0], 2, 4)
    mask = truth > 10

    def psnr(estimate):
        return 10 * math.log10(255.0 ** 2 / float(((estimate - truth)[mask] ** 2).mean()))

    scores = {"cubic": round(psnr(cubic), 2), "superResolved": round(psnr(restored), 2)}
    progress(0.95, "synthesize: writing the montage")
    saveMontage(output / "synthesize_montage.png", torch.cat([cubic, restored], dim=1),
                title=f"DLSynthesize demo: 4 mm slices restored to 1 mm (left cubic {scores['cubic']} dB, "
                      f"right super-resolved {scores['superResolved']} dB)")
    progress(1.0, "synthesize: done")
    summary = {"superResolutionPsnr": scores, "files": ["synthesize_montage.png"]}
    (output / "synthesize_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
