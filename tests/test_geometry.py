"""Rigid-body geometry of flattened structures: centring and Kabsch superposition (proper rotations only)."""

from __future__ import annotations

import pytest
import torch

from itomd.errors import InvalidInputError
from itomd.geometry import remove_centroid, superpose

N_ATOMS = 7


def _structures(generator: torch.Generator, batch: int = 5, n_atoms: int = N_ATOMS,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random (non-planar) structures, flattened [batch, 3·n_atoms], off-centre."""
    positions = torch.randn(batch, n_atoms, 3, generator=generator, dtype=torch.float64)
    offset = 5.0 * torch.randn(batch, 1, 3, generator=generator, dtype=torch.float64)
    return (positions + offset).reshape(batch, 3 * n_atoms).to(dtype)


def _rotations(generator: torch.Generator, batch: int) -> torch.Tensor:
    """Random proper rotations [batch, 3, 3] (QR of Gaussian matrices, det fixed to +1)."""
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    det = torch.linalg.det(q)
    q[:, :, 0] *= det[:, None]  # a reflection times −1 on one axis is a rotation
    assert torch.allclose(torch.linalg.det(q), torch.ones(batch, dtype=torch.float64))
    return q


def _rotate(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Apply rotation[b] to every atom of structure b."""
    positions = x.reshape(x.shape[0], -1, 3)
    return (positions @ rotation.transpose(1, 2).to(x.dtype)).reshape(x.shape)


def _centroids(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1, 3).mean(1)


def _pair_distances(x: torch.Tensor) -> torch.Tensor:
    positions = x.reshape(x.shape[0], -1, 3)
    return torch.cdist(positions, positions)


def _applied_transform(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """The linear map [B, 3, 3] taking each centred ``before`` structure to ``after`` (least squares)."""
    a = remove_centroid(before, before.shape[1] // 3).reshape(before.shape[0], -1, 3)
    b = after.reshape(after.shape[0], -1, 3)
    return torch.linalg.lstsq(a, b).solution.transpose(1, 2)


def _signed_volumes(x: torch.Tensor) -> torch.Tensor:
    """Triple products (r1 − r0)·((r2 − r0) × (r3 − r0)): their signs are the handedness."""
    p = x.reshape(x.shape[0], -1, 3)
    return torch.linalg.det(torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], dim=1))


# -- remove_centroid ----------------------------------------------------------------------------------
def test_remove_centroid_gives_zero_centroid_and_keeps_the_shape(generator):
    x = _structures(generator)
    centred = remove_centroid(x, N_ATOMS)
    assert centred.shape == x.shape and centred.dtype == x.dtype
    assert torch.allclose(_centroids(centred), torch.zeros(len(x), 3, dtype=x.dtype), atol=1e-12)
    # a pure translation of every atom: the differences between atoms are unchanged
    shift = (x - centred).reshape(len(x), N_ATOMS, 3)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-12)
    assert torch.allclose(_pair_distances(centred), _pair_distances(x), atol=1e-12)


def test_remove_centroid_is_idempotent(generator):
    centred = remove_centroid(_structures(generator), N_ATOMS)
    assert torch.allclose(remove_centroid(centred, N_ATOMS), centred, atol=1e-14)


def test_remove_centroid_treats_structures_independently(generator):
    x = _structures(generator)
    together = remove_centroid(x, N_ATOMS)
    one_by_one = torch.cat([remove_centroid(row[None], N_ATOMS) for row in x])
    assert torch.equal(together, one_by_one)


def test_remove_centroid_refuses_the_wrong_shape(generator):
    with pytest.raises(InvalidInputError, match=r"\[B, 21\]"):
        remove_centroid(torch.zeros(2, 20), N_ATOMS)
    with pytest.raises(InvalidInputError):
        remove_centroid(torch.zeros(21), N_ATOMS)


# -- superpose ----------------------------------------------------------------------------------------
def test_superpose_recovers_a_random_proper_rotation_exactly(generator):
    target = _structures(generator, batch=6)
    rotation = _rotations(generator, 6)
    translation = 3.0 * torch.randn(6, 1, 3, generator=generator, dtype=torch.float64)
    mobile = (_rotate(remove_centroid(target, N_ATOMS), rotation).reshape(6, N_ATOMS, 3) + translation).reshape(6, -1)
    aligned = superpose(mobile, target, N_ATOMS)
    assert aligned.shape == mobile.shape and aligned.dtype == mobile.dtype
    assert torch.allclose(aligned, remove_centroid(target, N_ATOMS), atol=1e-10)
    # the rotation it applied is the inverse of the one we applied
    applied = _applied_transform(mobile, aligned)
    assert torch.allclose(applied, rotation.transpose(1, 2), atol=1e-10)


def test_superpose_leaves_an_aligned_structure_unchanged(generator):
    target = _structures(generator)
    assert torch.allclose(superpose(target, target, N_ATOMS), remove_centroid(target, N_ATOMS), atol=1e-12)
    shifted = target + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).repeat(N_ATOMS)
    assert torch.allclose(superpose(shifted, target, N_ATOMS), remove_centroid(target, N_ATOMS), atol=1e-12)


def test_superpose_is_a_rigid_motion_and_the_best_rotation(generator):
    target = _structures(generator, batch=4)
    mobile = _structures(generator, batch=4)  # unrelated shapes: no exact fit exists
    aligned = superpose(mobile, target, N_ATOMS)
    assert torch.allclose(_centroids(aligned), torch.zeros(4, 3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(_pair_distances(aligned), _pair_distances(mobile), atol=1e-10)  # rigid
    applied = _applied_transform(mobile, aligned)
    assert torch.allclose(applied @ applied.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3),
                          atol=1e-10)
    assert torch.allclose(torch.linalg.det(applied), torch.ones(4, dtype=torch.float64), atol=1e-10)
    # no other rotation brings the centred mobile closer to the centred target
    centred_mobile, centred_target = remove_centroid(mobile, N_ATOMS), remove_centroid(target, N_ATOMS)
    best = ((aligned - centred_target) ** 2).sum(1)
    for _ in range(50):
        other = _rotate(centred_mobile, _rotations(generator, 4))
        assert torch.all(((other - centred_target) ** 2).sum(1) >= best - 1e-10)


def test_superpose_never_returns_a_reflection(generator):
    target = _structures(generator, batch=6)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)).expand(6, 3, 3)
    # the mirror image of the target, rotated: the best *orthogonal* map back would be a reflection
    mobile = _rotate(_rotate(target, mirror), _rotations(generator, 6))
    aligned = superpose(mobile, target, N_ATOMS)
    applied = _applied_transform(mobile, aligned)
    assert torch.allclose(torch.linalg.det(applied), torch.ones(6, dtype=torch.float64), atol=1e-10)
    assert torch.equal(torch.sign(_signed_volumes(aligned)), torch.sign(_signed_volumes(mobile)))
    assert torch.all(torch.sign(_signed_volumes(aligned)) != torch.sign(_signed_volumes(target)))
    # so it cannot reach the target, unlike for a proper copy of it
    assert torch.all((aligned - remove_centroid(target, N_ATOMS)).abs().amax(1) > 1e-3)


def test_superpose_commutes_with_rotating_both_structures(generator):
    mobile, target = _structures(generator, batch=4), _structures(generator, batch=4)
    rotation = _rotations(generator, 4)
    both_rotated = superpose(_rotate(mobile, rotation), _rotate(target, rotation), N_ATOMS)
    assert torch.allclose(both_rotated, _rotate(superpose(mobile, target, N_ATOMS), rotation), atol=1e-10)


def test_superpose_keeps_float32_and_fits_each_structure_separately(generator):
    target = _structures(generator, batch=3)
    rotation = _rotations(generator, 3)  # a different rotation per structure
    mobile = _rotate(target, rotation)
    aligned32 = superpose(mobile.to(torch.float32), target.to(torch.float32), N_ATOMS)
    assert aligned32.dtype == torch.float32
    assert torch.allclose(aligned32.double(), remove_centroid(target, N_ATOMS), atol=1e-4)


def test_superpose_refuses_the_wrong_shape():
    with pytest.raises(InvalidInputError):
        superpose(torch.zeros(2, 3 * N_ATOMS), torch.zeros(2, 3 * N_ATOMS + 3), N_ATOMS)
