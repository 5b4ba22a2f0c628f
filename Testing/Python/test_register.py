"""DLRegister engine and logic: geometry, direction convention, accuracy, outputs and bad input.

Data: the MNI152 T1 at 4 mm and its GM / WM labels, with random smooth deformations (DLCommon.sampledata),
oblique resamplings and intensity remaps made here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import vtk

from DLCommon import DLError, Job, JobCancelled, segmentationFromTensor, tensorFromVolume, volumeFromTensor
from DLCommon.geometry import arrayFromVTKMatrix
from DLCommon.sampledata import TISSUE_NAMES, mni152Tissue, randomCopy
from DLCommon.segmentations import tensorFromSegmentation
from DLCommon.transforms import resampleVolume
from DLRegisterLib.fields import DeformationField, regularisation
from DLRegisterLib.logic import RegistrationLogic
from DLRegisterLib.optimisation import RegistrationConfig, registerImages
from DLRegisterLib.quality import foldingFraction, jacobianDeterminant, labelDice
from DLRegisterLib.space import levelGeometry, sampleAtWorld, worldGrid
from DLRegisterLib.warping import warpLabels

FAST = dict(iterations=(60, 40), levels=(2, 1), affineIterations=40)


@pytest.fixture(scope="module")
def mni4():
    return mni152Tissue(4.0)


@pytest.fixture(scope="module")
def deformedPair(mni4):
    image, labels = mni4
    return randomCopy(image, labels, 1, bias=False, contrast=False), randomCopy(image, labels, 2, bias=False,
                                                                                 contrast=False)


def rigid(angleDegrees: float, axis, translation) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    angle = math.radians(angleDegrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    matrix = np.eye(4)
    matrix[:3, :3] = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    matrix[:3, 3] = translation
    return matrix


def resampledOnGrid(image, affine: np.ndarray, shape, fixedToMoving: np.ndarray):
    """``image`` moved by a known transform onto a new (e.g. oblique) grid.

    A new-grid voxel at world ``y`` shows the original image at ``inverse(fixedToMoving)(y)``, so the
    registration of the result (moving) to ``image`` (fixed) must find ``fixedToMoving``.
    """
    points = worldGrid(torch.from_numpy(affine), shape).double()
    inverse = torch.from_numpy(np.linalg.inv(fixedToMoving))
    source = (points @ inverse[:3, :3].T + inverse[:3, 3]).float()
    values = sampleAtWorld(image.as_tensor()[None].float(), torch.as_tensor(image.affine), source, padding="zeros")[0]
    from monai.data import MetaTensor

    return MetaTensor(values[0], affine=torch.from_numpy(affine))


def obliqueGrid(image, spacing=(3.0, 5.0, 3.5), angle=25.0):
    """An oblique grid with other spacing covering the image's field of view."""
    extent = np.array(image.shape[1:]) * np.asarray(torch.as_tensor(image.affine)).diagonal()[:3]
    shape = tuple(int(math.ceil(abs(e) / s)) + 4 for e, s in zip(extent, spacing))
    rotation = rigid(angle, (1, 2, 0.5), (0, 0, 0))[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    centre = np.asarray(torch.as_tensor(image.affine))[:3] @ np.r_[(np.array(image.shape[1:]) - 1) / 2, 1]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return affine, shape


# --- engine --------------------------------------------------------------------------------------------

def test_level_geometry_shares_corner_voxels():
    affine = torch.from_numpy(obliqueGrid(_fakeImage())[0])
    coarse, shape = levelGeometry(affine, (41, 33, 20), 4)
    fine = worldGrid(affine, (41, 33, 20))
    wide = worldGrid(coarse, shape)
    assert shape == (11, 9, 6)
    for corner in [(0, 0, 0), (-1, -1, -1), (0, -1, 0)]:
        assert torch.allclose(fine[corner], wide[corner], atol=1e-3)


def _fakeImage():
    from monai.data import MetaTensor

    return MetaTensor(torch.zeros(1, 40, 40, 40), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])).double())


def test_jacobian_of_known_fields():
    affine = torch.diag(torch.tensor([2.0, 1.0, 3.0, 1.0])).double()
    shape = (12, 14, 10)
    points = worldGrid(affine, shape).permute(3, 0, 1, 2)
    scale = torch.tensor([0.2, -0.1, 0.3]).reshape(3, 1, 1, 1)
    determinant = jacobianDeterminant(points * scale, affine)  # u = s x  ->  det = prod(1 + s)
    assert torch.allclose(determinant, torch.full(shape, 1.2 * 0.9 * 1.3), atol=1e-5)
    fold = points * torch.tensor([-1.5, 0, 0]).reshape(3, 1, 1, 1)  # x -> -0.5 x: folded everywhere
    assert foldingFraction(jacobianDeterminant(fold, affine)) == 1.0


def test_regularisers_are_physical_and_zero_for_affine():
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])).double()
    points = worldGrid(affine, (16, 16, 16)).permute(3, 0, 1, 2)[None]
    linear = points * 0.1
    assert float(regularisation(linear, affine, "bending")) < 1e-8
    assert float(regularisation(linear, affine, "diffusion")) == pytest.approx(0.1 ** 2 * 3 / 9 * 3, rel=1e-4)
    # the same physical field sampled twice as finely has (nearly) the same bending energy
    wave = lambda p: 3.0 * torch.sin(p[:, :1] / 10.0).repeat(1, 3, 1, 1, 1)  # noqa: E731
    fine = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0])).double()
    coarse = regularisation(wave(points), affine, "bending")
    finer = regularisation(wave(worldGrid(fine, (32, 32, 32)).permute(3, 0, 1, 2)[None]), fine, "bending")
    assert float(finer) == pytest.approx(float(coarse), rel=0.1)


def test_svf_field_is_diffeomorphic_for_a_large_smooth_velocity():
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])).double()
    shape = (24, 24, 24)
    field = DeformationField(affine, shape, "svf")
    p = worldGrid(affine, shape)
    velocity = torch.zeros((1, 3) + shape)
    velocity[0, 0] = 12.0 * torch.sin(p[..., 1] / 6.0)  # would fold as a plain displacement
    velocity[0, 1] = 12.0 * torch.sin(p[..., 0] / 6.0)
    with torch.no_grad():
        field.parameter.copy_(velocity)
    assert foldingFraction(jacobianDeterminant(velocity[0], affine)) > 0.01
    assert foldingFraction(jacobianDeterminant(field()[0], affine)[2:-2, 2:-2, 2:-2]) == 0.0


def test_recovers_a_known_rigid_transform_across_oblique_grids(mni4):
    image, _ = mni4
    known = rigid(8.0, (0.3, 1, 0.2), (6.0, -4.0, 3.0))
    affine, shape = obliqueGrid(image)
    moving = resampledOnGrid(image, affine, shape, known)
    result = registerImages(image, moving, RegistrationConfig(deformable=False, affineIterations=100,
                                                              affineLevels=(2, 1)))
    found = result.affine.numpy()
    # compare where it matters: the positions of points inside the brain (mm)
    points = worldGrid(torch.as_tensor(image.affine), image.shape[1:])[image[0] > 60].double().numpy()[::50]
    homogeneous = np.c_[points, np.ones(len(points))]
    error = np.linalg.norm(homogeneous @ found.T - homogeneous @ known.T, axis=1)
    assert error.mean() < 1.0, error.mean()
    assert result.report["after"] > result.report["before"] + 0.2


def test_deformable_registration_improves_label_overlap(deformedPair):
    (moving, movingLabels), (fixed, fixedLabels) = deformedPair
    result = registerImages(fixed, moving, RegistrationConfig(**FAST))
    warped = warpLabels(movingLabels, moving.affine, result.displacement)
    before, after = labelDice(movingLabels, fixedLabels, [1, 2]), labelDice(warped, fixedLabels, [1, 2])
    assert min(after) > 0.8 and min(a - b for a, b in zip(after, before)) > 0.1, (before, after)
    assert result.report["foldingPercent"] < 1.0
    assert result.report["after"] > result.report["afterAffine"] > result.report["before"]


def test_svf_registration_does_not_fold(deformedPair):
    (moving, movingLabels), (fixed, fixedLabels) = deformedPair
    result = registerImages(fixed, moving, RegistrationConfig(fieldModel="svf", **FAST))
    warped = warpLabels(movingLabels, moving.affine, result.displacement)
    assert min(labelDice(warped, fixedLabels, [1, 2])) > 0.8
    # scaling and squaring clamps at the field of view, so a few border voxels may fold; none inside
    determinant = jacobianDeterminant(result.displacement, result.displacement.affine)
    assert foldingFraction(determinant[2:-2, 2:-2, 2:-2]) == 0.0
    assert result.report["foldingPercent"] < 0.1


def test_mutual_information_registers_another_contrast(mni4):
    image, _ = mni4
    known = rigid(5.0, (1, 0, 0), (5.0, 3.0, -4.0))
    moving = resampledOnGrid(image, np.asarray(torch.as_tensor(image.affine)), image.shape[1:], known)
    remapped = moving.clone()
    remapped[0] = 255.0 * torch.sin(moving[0] / 255.0 * 2.5) ** 2  # a non-monotonic intensity remap
    errors = {}
    for similarity in ("mi", "lncc"):
        found = registerImages(image, remapped, RegistrationConfig(similarity=similarity, deformable=False,
                                                                   affineLevels=(2, 1), affineIterations=80)).affine
        errors[similarity] = float(np.abs(found.numpy()[:3, 3] - known[:3, 3]).max())
    assert errors["mi"] < 1.5, errors


def test_masks_and_label_term(deformedPair):
    (moving, movingLabels), (fixed, fixedLabels) = deformedPair
    mask = (fixedLabels > 0)[None]
    masked = registerImages(fixed, moving, RegistrationConfig(**FAST), fixedMask=mask)
    plain = registerImages(fixed, moving, RegistrationConfig(**FAST))
    assert not torch.allclose(masked.displacement, plain.displacement)  # the mask changes what is measured
    supervised = registerImages(fixed, moving, RegistrationConfig(labelWeight=2.0, **FAST), fixedLabels=fixedLabels,
                                movingLabels=movingLabels)
    dice = lambda r: labelDice(warpLabels(movingLabels, moving.affine, r.displacement), fixedLabels, [1, 2])  # noqa
    assert min(dice(supervised)) > min(dice(plain)) + 0.01


def test_bad_images_are_refused(mni4):
    image, _ = mni4
    from monai.data import MetaTensor

    flat = MetaTensor(torch.rand(1, 30, 30, 1), affine=torch.eye(4).double())
    with pytest.raises(DLError, match="too thin"):
        registerImages(image, flat)
    constant = MetaTensor(torch.ones_like(image.as_tensor()), affine=image.affine)
    with pytest.raises(DLError, match="constant"):
        registerImages(image, constant)
    broken = image.clone()
    broken[0, 3, 3, 3] = float("nan")
    with pytest.raises(DLError, match="NaN"):
        registerImages(broken, image)
    with pytest.raises(DLError, match="empty"):
        registerImages(image, image, fixedMask=torch.zeros_like(image))
    corner, opposite = torch.zeros_like(image.as_tensor()), torch.zeros_like(image.as_tensor())
    corner[0, :8, :8, :8], opposite[0, -8:, -8:, -8:] = 1, 1
    with pytest.raises(DLError, match="do not overlap"):
        registerImages(image, image, RegistrationConfig(initialisation="none"), fixedMask=corner, movingMask=opposite)
    far = MetaTensor(image.as_tensor().clone(), affine=image.affine.clone())
    far.affine[0, 3] += 1000.0  # a volume 1 m away, and no initialisation to bring it back
    with pytest.raises(DLError, match="do not overlap"):
        registerImages(image, far, RegistrationConfig(initialisation="none"))


# --- logic and nodes -----------------------------------------------------------------------------------

@pytest.fixture
def scenePair(scene, deformedPair):
    (moving, movingLabels), (fixed, fixedLabels) = deformedPair
    fixedNode = volumeFromTensor(fixed, None, scene, "fixed")
    movingNode = volumeFromTensor(moving, None, scene, "moving")
    atlas = segmentationFromTensor(movingLabels, movingNode, scene, TISSUE_NAMES, nodeName="atlas")
    return fixedNode, movingNode, atlas, fixedLabels, movingLabels


def test_logic_outputs_follow_slicer_direction_convention(scene, scenePair):
    fixedNode, movingNode, atlas, fixedLabels, movingLabels = scenePair
    result = RegistrationLogic(scene).register(fixedNode, movingNode, RegistrationConfig(**FAST),
                                               warpSegmentation=atlas, jacobianVolume=True, applyToMoving=True)
    assert result.transform.IsA("vtkMRMLGridTransformNode")
    assert movingNode.GetParentTransformNode() is result.transform
    # Slicer's resampling of the moving volume through the node (VTK, not our code) equals our warped volume
    throughSlicer = resampleVolume(movingNode, fixedNode)
    ours = tensorFromVolume(result.warpedVolume)
    assert float((throughSlicer - ours).abs().max()) < 1e-2 * float(ours.max())
    # point test: to-parent maps a moving point y to the fixed point x with x + d(x) = y
    fromParent, toParent = result.transform.GetTransformFromParent(), result.transform.GetTransformToParent()
    for x in ([10.0, -20.0, 15.0], [-30.0, 5.0, 0.0]):
        y = fromParent.TransformPoint(x)
        assert np.allclose(toParent.TransformPoint(y), x, atol=0.05)
    # outputs sit on the fixed grid; the warped atlas overlaps the fixed labels; Jacobian is positive
    assert np.allclose(arrayFromVTKMatrix(_ijkToRas(result.warpedVolume)), arrayFromVTKMatrix(_ijkToRas(fixedNode)))
    warpedLabels, names, _ = tensorFromSegmentation(result.warpedSegmentation, fixedNode)
    assert names == TISSUE_NAMES and min(labelDice(warpedLabels, fixedLabels, [1, 2])) > 0.8
    jacobian = tensorFromVolume(result.jacobian)
    assert float((jacobian > 0).float().mean()) > 0.99 and 0.5 < float(jacobian.median()) < 2.0
    assert {"before", "after", "seconds", "foldingPercent"} <= set(result.report)


def _ijkToRas(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def test_initial_transforms_linear_and_grid(scene, mni4):
    image, _ = mni4
    known = rigid(0.0, (1, 0, 0), (12.0, -9.0, 7.0))
    fixedNode = volumeFromTensor(image, None, scene, "fixed")
    movingNode = volumeFromTensor(resampledOnGrid(image, np.asarray(torch.as_tensor(image.affine)), image.shape[1:],
                                                  known), None, scene, "moving")
    linear = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "start")
    inverse = vtk.vtkMatrix4x4()  # the node's to-parent matrix is the inverse of fixed -> moving
    for r in range(4):
        for c in range(4):
            inverse.SetElement(r, c, np.linalg.inv(known)[r, c])
    linear.SetMatrixTransformToParent(inverse)
    logic = RegistrationLogic(scene)
    noOptimisation = RegistrationConfig(affine=False, deformable=False, initialisation="none")
    started = logic.register(fixedNode, movingNode, noOptimisation, initialTransform=linear, warpedVolume=False)
    assert np.allclose(started.engineResult.affine.numpy(), known, atol=1e-6)
    # a non-linear start (a grid transform) is used as the start displacement
    grid = logic.register(fixedNode, movingNode, noOptimisation, initialTransform=started.transform,
                          warpedVolume=False)
    assert float((grid.engineResult.displacement - started.engineResult.displacement).abs().max()) < 1e-3


def test_overwrites_only_the_outputs_asked_for(scene, scenePair):
    fixedNode, movingNode, _, _, _ = scenePair
    output = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "my transform")
    warped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my warped")
    before = scene.GetNumberOfNodes()
    result = RegistrationLogic(scene).register(fixedNode, movingNode, RegistrationConfig(deformable=False),
                                               outputTransform=output, warpedVolume=warped)
    assert result.transform is output and result.warpedVolume is warped
    assert scene.GetNumberOfNodes() == before and output.GetTransformFromParent() is not None
    assert tuple(warped.GetImageData().GetDimensions()) == tuple(fixedNode.GetImageData().GetDimensions())


def test_bad_input_leaves_the_scene_unchanged(scene, scenePair):
    fixedNode, movingNode, atlas, _, _ = scenePair
    logic = RegistrationLogic(scene)
    before = scene.GetNumberOfNodes()
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty mask")
    empty.GetSegmentation().AddEmptySegment("nothing")
    with pytest.raises(DLError, match="empty"):
        logic.register(fixedNode, movingNode, fixedMask=empty)
    with pytest.raises(DLError, match="both the fixed and the moving"):
        logic.register(fixedNode, fixedNode)
    with pytest.raises(DLError, match="No moving volume"):
        logic.register(fixedNode, None)
    scene.RemoveNode(empty)
    job = logic.registerJob(fixedNode, movingNode, RegistrationConfig(**FAST), warpSegmentation=atlas)
    cancelled = []

    def cancelSoon(fraction, message):
        if fraction > 0.1 and not cancelled:
            cancelled.append(fraction)
            job.cancel()

    with pytest.raises(JobCancelled):
        job.run(cancelSoon)
    assert isinstance(job, Job) and scene.GetNumberOfNodes() == before
    assert movingNode.GetParentTransformNode() is None


# --- trained networks (DeepReg style) --------------------------------------------------------------------

NETWORK_SHAPE = (32, 40, 32)


@pytest.fixture(scope="module")
def trainedModel(mni4, tmp_path_factory):
    """A LocalNet trained (unsupervised, LNCC) for a few epochs on 4 deformed copies, saved as a checkpoint."""
    from DLRegisterLib.trainer import RegistrationTrainingConfig, trainRegistrationModel

    image, labels = mni4
    copies = [randomCopy(image, labels, seed, bias=False, contrast=False) for seed in range(4)]
    config = RegistrationTrainingConfig(shape=NETWORK_SHAPE, features=8, epochs=12, batchSize=4, learningRate=3e-3,
                                        labelWeight=0.0, device="cpu")
    return trainRegistrationModel([c[0] for c in copies], config, tmp_path_factory.mktemp("regmodel"), "reg-test")


def test_trained_network_predicts_a_useful_field(mni4, trainedModel):
    from DLCommon import loadModel
    from DLRegisterLib.network import predictDisplacement

    history = trainedModel.history
    assert history.trainLoss[-1] < history.trainLoss[0] - 0.02
    image, labels = mni4
    (fixed, fixedLabels), (moving, movingLabels) = (randomCopy(image, labels, 100 + s, bias=False, contrast=False)
                                                    for s in range(2))
    start, field = predictDisplacement(trainedModel.model.network, fixed, moving, NETWORK_SHAPE)
    predicted = registerImages(fixed, moving, RegistrationConfig(affine=False, deformable=False),
                               initialAffine=start, initialDisplacement=field)
    warped = warpLabels(movingLabels, moving.affine, predicted.displacement)
    before, after = labelDice(movingLabels, fixedLabels, [1, 2]), labelDice(warped, fixedLabels, [1, 2])
    assert sum(after) > sum(before), (before, after)  # held out: a few CPU epochs already help a little
    # the saved checkpoint reloads (weights_only) to the same prediction
    reloaded = loadModel(trainedModel.modelPath)
    assert reloaded.spec.task == "registration" and list(reloaded.spec.roiSize) == list(NETWORK_SHAPE)
    again = predictDisplacement(reloaded.network, fixed, moving, NETWORK_SHAPE)[1]
    assert torch.allclose(again, field, atol=1e-5)


def test_network_contract_matches_monai_warp():
    """A network's voxel ddf, turned into our world-space map, samples the moving image where MONAI's Warp does."""
    from monai.data import MetaTensor
    from monai.networks.blocks import Warp

    from DLRegisterLib.network import networkGrid, preparePair
    from DLRegisterLib.optimisation import composeDisplacement
    from DLRegisterLib.fields import voxelToWorldVectors

    smooth = lambda p: torch.sin(p[..., 0] / 9.0) * torch.cos(p[..., 1] / 7.0) + 0.3 * torch.sin(p[..., 2] / 5.0)  # noqa
    fixedAffine = torch.from_numpy(obliqueGrid(_fakeImage(), spacing=(1.5, 1.5, 2.0), angle=10.0)[0])
    movingAffine = torch.from_numpy(obliqueGrid(_fakeImage(), spacing=(1.0, 1.2, 1.1), angle=-20.0)[0])
    fixed = MetaTensor(smooth(worldGrid(fixedAffine, (40, 40, 40)))[None] + 2, affine=fixedAffine)
    moving = MetaTensor(smooth(worldGrid(movingAffine, (60, 60, 60)))[None] + 2, affine=movingAffine)
    shape = (24, 24, 24)
    start = torch.from_numpy(rigid(4.0, (0, 1, 1), (2.0, -1.0, 1.0)))
    pair = preparePair(fixed, moving, shape, initialAffine=start)
    assert torch.allclose(pair["gridAffine"], networkGrid(fixedAffine, (40, 40, 40), shape))
    grid = torch.linspace(0, 3.1416, 24)
    ddf = torch.stack([2.0 * torch.sin(grid)[:, None, None].expand(shape), torch.zeros(shape),
                       1.5 * torch.cos(grid)[None, :, None].expand(shape)])[None]
    theirs = Warp(padding_mode="zeros")(pair["input"][None, :1], ddf)[0, 0]
    points = worldGrid(pair["gridAffine"], shape)
    moved = composeDisplacement(points, start, voxelToWorldVectors(ddf, pair["gridAffine"]))
    ours = sampleAtWorld(_normalisedMoving(moving), movingAffine, moved, padding="zeros")[0][0, 0]
    inner = (slice(3, -3),) * 3
    assert float((theirs[inner] - ours[inner]).abs().mean()) < 0.01
    # the same field read with swapped axes or the opposite sign would sample elsewhere
    flipped = composeDisplacement(points, start, voxelToWorldVectors(-ddf, pair["gridAffine"]))
    wrong = sampleAtWorld(_normalisedMoving(moving), movingAffine, flipped, padding="zeros")[0][0, 0]
    assert float((theirs[inner] - wrong[inner]).abs().mean()) > 0.05


def _normalisedMoving(moving):
    from DLRegisterLib.space import robustNormalise

    return robustNormalise(moving.as_tensor()[None].float())


def test_logic_uses_a_catalog_model_and_refines(scene, mni4, trainedModel):
    from DLCommon import ModelCatalog

    image, labels = mni4
    (fixed, fixedLabels), (moving, movingLabels) = (randomCopy(image, labels, 100 + s, bias=False, contrast=False)
                                                    for s in range(2))
    fixedNode = volumeFromTensor(fixed, None, scene, "fixed")
    movingNode = volumeFromTensor(moving, None, scene, "moving")
    atlas = segmentationFromTensor(movingLabels, movingNode, scene, TISSUE_NAMES, nodeName="atlas")
    entry = ModelCatalog().importFile(trainedModel.modelPath, modelId="reg-test", spec=trainedModel.model.spec)
    logic = RegistrationLogic(scene)
    oneShot = logic.register(fixedNode, movingNode, RegistrationConfig(deformable=False), model=entry.id,
                             warpSegmentation=atlas)
    refined = logic.register(fixedNode, movingNode, RegistrationConfig(**FAST), model=entry.id,
                             warpSegmentation=atlas)
    dice = [labelDice(tensorFromSegmentation(r.warpedSegmentation, fixedNode)[0], fixedLabels, [1, 2])
            for r in (oneShot, refined)]
    assert oneShot.report["model"] == "reg-test" and oneShot.report["iterations"] == 0
    assert min(dice[1]) > 0.75 and sum(dice[1]) > sum(dice[0]) + 0.2, dice


@pytest.mark.parametrize("name", ["localnet", "globalnet", "regunet"])
def test_every_network_predicts_a_field_on_the_grid(name, mni4):
    from DLRegisterLib.network import buildRegistrationNetwork, predictDisplacement

    image, _ = mni4
    className, args, network = buildRegistrationNetwork(name, (16, 24, 16), features=4)
    start, field = predictDisplacement(network, image, image, (16, 24, 16))
    assert field.shape == (3, 16, 24, 16) and torch.isfinite(field).all()
    if name != "globalnet":  # dense heads start at the identity
        assert float(field.abs().max()) == 0.0
    with pytest.raises(DLError, match="multiple of 8"):
        buildRegistrationNetwork(name, (20, 24, 16))


def test_models_of_another_task_are_refused(tmp_path, scene, scenePair):
    from monai.networks.nets import UNet

    from DLCommon import ModelSpec, saveCheckpoint

    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]}
    path = saveCheckpoint(UNet(**args), tmp_path / "seg.pt", "UNet", args, ModelSpec(name="seg", task="segmentation"))
    fixedNode, movingNode, _, _, _ = scenePair
    before = scene.GetNumberOfNodes()
    with pytest.raises(DLError, match="segmentation model, not a registration model"):
        RegistrationLogic(scene).register(fixedNode, movingNode, model=str(path))
    assert scene.GetNumberOfNodes() == before


def test_training_from_the_scene_needs_two_volumes(scene, scenePair):
    fixedNode, _, _, _, _ = scenePair
    with pytest.raises(DLError, match="at least two"):
        RegistrationLogic(scene).train([fixedNode])


# --- command line ----------------------------------------------------------------------------------------

def test_cli_register_and_train_register(tmp_path, scene, deformedPair, capsys):
    import json

    from DLCommon import saveNode
    from DLCommon.cli import main
    from DLCommon.storage import loadSegmentation, loadTransform, loadVolume

    (moving, movingLabels), (fixed, fixedLabels) = deformedPair
    files = {}
    for name, image, labels in (("fixed", fixed, fixedLabels), ("moving", moving, movingLabels)):
        node = volumeFromTensor(image, None, scene, name)
        files[name] = saveNode(node, tmp_path / f"{name}.nrrd")
        files[name + "Labels"] = saveNode(segmentationFromTensor(labels, node, scene, TISSUE_NAMES),
                                          tmp_path / f"{name}.seg.nrrd")
    out = tmp_path / "out"
    assert main(["register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]),
                 "--output-transform", str(out / "t.h5"), "--output-warped", str(out / "w.nrrd"),
                 "--moving-labels", str(files["movingLabels"]), "--output-warped-labels", str(out / "wl.seg.nrrd"),
                 "--jacobian", str(out / "j.nrrd"), "--report", str(out / "report.json"),
                 "--iterations", "60", "40"]) == 0
    assert "LNCC" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["after"] > report["before"] and report["foldingPercent"] < 1.0
    fixedNode = loadVolume(files["fixed"], scene)
    movingNode = loadVolume(files["moving"], scene)
    transform = loadTransform(out / "t.h5", scene)
    movingNode.SetAndObserveTransformNodeID(transform.GetID())  # the .h5 aligns the moving volume in Slicer
    throughFile = resampleVolume(movingNode, fixedNode)
    warped = tensorFromVolume(loadVolume(out / "w.nrrd", scene))
    assert float((throughFile - warped).abs().mean()) < 0.01 * float(warped.max())
    warpedLabels = tensorFromSegmentation(loadSegmentation(out / "wl.seg.nrrd", scene), fixedNode)[0]
    assert min(labelDice(warpedLabels, fixedLabels, [1, 2])) > 0.8
    assert tuple(loadVolume(out / "j.nrrd", scene).GetImageData().GetDimensions()) == tuple(fixed.shape[1:])

    import shutil

    (tmp_path / "train").mkdir()
    for key in ("fixed", "moving"):
        shutil.copy(files[key], tmp_path / "train")
    assert main(["train-register", "--images", str(tmp_path / "train"), "--shape", "32", "40", "32",
                 "--features", "4", "--epochs", "2", "--output-model", str(tmp_path / "model"), "--name", "cli-reg",
                 "--register", "--device", "cpu"]) == 0
    assert "catalog id 'cli-reg'" in capsys.readouterr().out
    assert (tmp_path / "model" / "cli-reg_curves.png").is_file()
    assert main(["register", "--fixed", str(files["fixed"]), "--moving", str(files["moving"]), "--model", "cli-reg",
                 "--iterations", "0", "--output-transform", str(out / "net.h5"), "--report", str(out / "net.json")]) == 0
    assert json.loads((out / "net.json").read_text())["model"] == "cli-reg"


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    from DLCommon.cli import main

    assert main(["register", "--fixed", str(tmp_path / "missing.nrrd"), "--moving", str(tmp_path / "m.nrrd"),
                 "--output-transform", str(tmp_path / "t.h5")]) == 2
    err = capsys.readouterr().err
    assert "missing.nrrd" in err and "does not exist" in err and "Fix:" in err


def test_lncc_equals_monai():
    from monai.losses import LocalNormalizedCrossCorrelationLoss

    from DLRegisterLib.similarity import localNormalisedCrossCorrelation

    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 1, 17, 12, 9, generator=generator), torch.rand(2, 1, 17, 12, 9, generator=generator)
    pred.requires_grad_(True)
    ours = localNormalisedCrossCorrelation(pred, target, 5)
    theirs = LocalNormalizedCrossCorrelationLoss(kernel_size=5, reduction="none", smooth_dr=1e-3)(pred, target)
    assert torch.allclose(ours, theirs, atol=1e-5)
    gradient, = torch.autograd.grad(ours.mean(), pred)
    reference, = torch.autograd.grad(theirs.mean(), pred)
    assert torch.allclose(gradient, reference, atol=1e-6)


def test_label_driven_training_selects_by_warped_label_dice(mni4, tmp_path):
    from DLRegisterLib.trainer import RegistrationTrainingConfig, trainRegistrationModel

    image, labels = mni4
    copies = [randomCopy(image, labels, seed, bias=False, contrast=False) for seed in range(3)]
    config = RegistrationTrainingConfig(shape=(16, 24, 16), features=4, epochs=2, batchSize=6, labelWeight=1.0,
                                        device="cpu")
    result = trainRegistrationModel([c[0] for c in copies], config, tmp_path, "labels", labels=[c[1] for c in copies],
                                    validationPairs=[(0, 1)])
    metrics = result.history.validationMetric
    assert len(metrics) == 2 and all(0.3 < m < 1.0 for m in metrics)  # soft Dice of warped GM / WM labels
    assert result.model.spec.labelNames == ["label 1", "label 2"]
