"""Registration accuracy and speed: MedDL against itk-elastix and ANTs SyN on the same pairs, in one run.

    .venv/bin/python Testing/Benchmarks/bench_register.py              # 3 seeds + the multi-modal pair
    .venv/bin/python Testing/Benchmarks/bench_register.py --seeds 1

The peers are optional packages (not installed by setup.sh): ``.venv/bin/pip install itk-elastix==0.25.4
antspyx==0.6.3`` (antspyx asks for numpy < 2.4 and downgrades it; ``.venv/bin/pip install numpy==2.4.6
scipy==1.17.1`` afterwards restores MedDL's pins, with which antspyx 0.6.3 runs). A missing peer is skipped.

Data (DLCommon.sampledata): the MNI152 T1 at 2 mm and GM / WM labels from its probability maps. Each pair is
two independent random copies (smooth elastic deformation + small rotation / scaling, i.e. a small affine,
and noise): the moving copy with its labels, the fixed copy with its labels. Multi-modal pair: the moving
copy's intensities remapped non-monotonically (a synthetic second contrast); MedDL uses MI there.

Each tool: its documented defaults (elastix: the default affine + B-spline parameter maps, Mattes MI and a
bending-energy penalty; ANTs: ``type_of_transform="SyN"``). MedDL: ``RegistrationConfig()`` defaults.
Reported: Dice of the warped GM / WM labels against the fixed labels, % of voxels with a Jacobian
determinant <= 0 (same finite-difference code for every tool, on the fixed grid), registration wall time
(warping the labels excluded). Goal: Dice above both peers, folding < 0.1 %, time <= elastix's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DLRegister")]

import numpy as np  # noqa: E402
import torch  # noqa: E402


def remapContrast(image: torch.Tensor) -> torch.Tensor:
    """A synthetic second contrast: a non-monotonic intensity remap (GM / WM / CSF change order)."""
    scaled = image / float(image.max())
    return 255.0 * torch.sin(scaled * 2.5) ** 2


def saveNifti(array: np.ndarray, affine: np.ndarray, path: Path) -> str:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(array, affine), str(path))
    return str(path)


def jacobianFolding(displacement: torch.Tensor, affine: torch.Tensor) -> float:
    from DLRegisterLib.quality import foldingFraction, jacobianDeterminant

    return 100.0 * foldingFraction(jacobianDeterminant(displacement, affine))


def runMedDL(fixed, moving, movingLabels, similarity: str) -> dict:
    from DLRegisterLib.optimisation import RegistrationConfig, registerImages
    from DLRegisterLib.warping import denseDisplacement, warpLabels

    started = time.perf_counter()
    result = registerImages(fixed, moving, RegistrationConfig(similarity=similarity, device="cpu"))
    seconds = time.perf_counter() - started
    dense = denseDisplacement(result.displacement, fixed.affine, fixed.shape[1:])
    return {"labels": warpLabels(movingLabels, moving.affine, dense), "seconds": seconds,
            "folding": jacobianFolding(dense, torch.as_tensor(fixed.affine))}


def runElastix(fixedPath: str, movingPath: str, movingLabelsPath: str, folder: Path) -> dict:
    import itk

    fixed = itk.imread(fixedPath, itk.F)
    moving = itk.imread(movingPath, itk.F)
    parameters = itk.ParameterObject.New()
    parameters.AddParameterMap(parameters.GetDefaultParameterMap("affine"))
    parameters.AddParameterMap(parameters.GetDefaultParameterMap("bspline"))
    started = time.perf_counter()
    _, transform = itk.elastix_registration_method(fixed, moving, parameter_object=parameters,
                                                   log_to_console=False, output_directory=str(folder))
    seconds = time.perf_counter() - started
    for index in range(transform.GetNumberOfParameterMaps()):  # labels: nearest neighbour
        transform.SetParameter(index, "FinalBSplineInterpolationOrder", "0")
    # transformix writes its files into the working directory unless told otherwise
    labels = itk.transformix_filter(itk.imread(movingLabelsPath, itk.F), transform, output_directory=str(folder))
    field = itk.transformix_deformation_field(moving, transform, output_directory=str(folder))  # LPS, fixed grid
    return {"labels": torch.from_numpy(np.rint(itk.array_from_image(labels)).astype(np.int64).transpose(2, 1, 0)),
            "seconds": seconds, "lpsField": itk.array_from_image(field)}


def runAnts(fixedPath: str, movingPath: str, movingLabelsPath: str, metric: str) -> dict:
    import ants

    fixed, moving = ants.image_read(fixedPath), ants.image_read(movingPath)
    started = time.perf_counter()
    result = ants.registration(fixed, moving, type_of_transform="SyN", aff_metric=metric, syn_metric=metric)
    seconds = time.perf_counter() - started
    labels = ants.apply_transforms(fixed, ants.image_read(movingLabelsPath), result["fwdtransforms"],
                                   interpolator="genericLabel")
    warp = ants.image_read(result["fwdtransforms"][0])  # displacement field (LPS mm) of the SyN stage
    return {"labels": torch.from_numpy(labels.numpy().astype(np.int64)), "seconds": seconds,
            "lpsField": warp.numpy()}


def foldingOfLpsField(field: np.ndarray, affine: torch.Tensor, itkOrder: bool) -> float:
    """Folding of a peer's displacement field given in LPS mm, on the fixed grid."""
    vectors = torch.from_numpy(np.asarray(field, dtype=np.float32))
    vectors = vectors.permute(3, 2, 1, 0) if itkOrder else vectors.permute(3, 0, 1, 2)  # -> (3, I, J, K)
    vectors = vectors * torch.tensor([-1.0, -1.0, 1.0]).reshape(3, 1, 1, 1)  # LPS -> RAS
    return jacobianFolding(vectors, affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--spacing", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from DLCommon.sampledata import mni152Tissue, randomCopy
    from DLRegisterLib.quality import labelDice

    peers = []
    for name, module in (("elastix", "itk"), ("ANTs SyN", "ants")):
        try:
            __import__(module)
            peers.append(name)
        except ImportError:
            print(f"({name} is not installed: skipped)")
    image, labels = mni152Tissue(args.spacing)
    rows = []
    cases = [(seed, "T1 -> T1", "lncc") for seed in range(args.seeds)] + [(0, "contrast -> T1", "mi")]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for seed, case, similarity in cases:
            moving, movingLabels = randomCopy(image, labels, 2 * seed + 1, bias=False, contrast=False)
            fixed, fixedLabels = randomCopy(image, labels, 2 * seed + 2, bias=False, contrast=False)
            if similarity == "mi":
                moving = remapContrast(moving)
            affine = np.asarray(torch.as_tensor(fixed.affine))
            paths = {key: saveNifti(array, affine, folder / f"{key}.nii.gz") for key, array in (
                ("fixed", fixed[0].numpy()), ("moving", moving[0].numpy()),
                ("movingLabels", movingLabels.numpy().astype(np.int16)))}
            before = labelDice(movingLabels, fixedLabels, [1, 2])
            results = {"MedDL": runMedDL(fixed, moving, movingLabels, similarity)}
            if "elastix" in peers:
                out = runElastix(paths["fixed"], paths["moving"], paths["movingLabels"], folder)
                out["folding"] = foldingOfLpsField(out.pop("lpsField"), torch.as_tensor(fixed.affine), itkOrder=True)
                results["elastix"] = out
            if "ANTs SyN" in peers:
                out = runAnts(paths["fixed"], paths["moving"], paths["movingLabels"], "mattes")
                out["folding"] = foldingOfLpsField(out.pop("lpsField"), torch.as_tensor(fixed.affine), itkOrder=False)
                results["ANTs SyN"] = out
            for tool, out in results.items():
                dice = labelDice(out["labels"], fixedLabels, [1, 2])
                rows.append({"case": case, "seed": seed, "tool": tool, "gm": dice[0], "wm": dice[1],
                             "folding": out["folding"], "seconds": out["seconds"], "before": before})
                print(f"{case} seed {seed} {tool:9s}: GM {dice[0]:.3f} WM {dice[1]:.3f} (before {before[0]:.3f} / "
                      f"{before[1]:.3f}), folding {out['folding']:.3f}%, {out['seconds']:.1f} s", flush=True)
    print("\n| case | tool | Dice GM | Dice WM | folding % | time s |\n|---|---|---|---|---|---|")
    for case in dict.fromkeys(r["case"] for r in rows):
        for tool in dict.fromkeys(r["tool"] for r in rows):
            chosen = [r for r in rows if r["case"] == case and r["tool"] == tool]
            mean = {k: statistics.mean(r[k] for r in chosen) for k in ("gm", "wm", "folding", "seconds")}
            print(f"| {case} ({len(chosen)} pair{'s' if len(chosen) > 1 else ''}) | {tool} | {mean['gm']:.3f} | "
                  f"{mean['wm']:.3f} | {mean['folding']:.3f} | {mean['seconds']:.1f} |")
    print(f"\nmachine: {os.cpu_count()} cores, torch {torch.__version__}, {args.spacing} mm MNI152")


if __name__ == "__main__":
    main()
