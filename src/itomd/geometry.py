r"""Rigid-body geometry of molecules on flattened positions [B, 3·n_atoms]: centring and superposition.

One home for the two operations the molecular models need: removing each structure's centroid
(translations carry no information about the internal dynamics) and superposing a structure on
another by the best proper rotation (Kabsch). Superposition commutes with rotations of both
structures, so training targets superposed on their condition keep a model rotation-equivariant.
"""

from __future__ import annotations

import torch

from itomd.errors import InvalidInputError


def _positions(x: torch.Tensor, n_atoms: int) -> torch.Tensor:
    if x.ndim != 2 or x.shape[1] != 3 * n_atoms:
        raise InvalidInputError(f"expected structures of shape [B, {3 * n_atoms}], got {tuple(x.shape)}")
    return x.reshape(x.shape[0], n_atoms, 3)


def remove_centroid(x: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Subtract each structure's centroid.

    Parameters
    ----------
    x : torch.Tensor, shape [B, 3·n_atoms]
    n_atoms : int

    Returns
    -------
    torch.Tensor, shape [B, 3·n_atoms], every structure with zero mean position
    """
    positions = _positions(x, n_atoms)
    return (positions - positions.mean(1, keepdim=True)).reshape(x.shape)


def superpose(mobile: torch.Tensor, target: torch.Tensor, n_atoms: int) -> torch.Tensor:
    r"""Rotate each ``mobile`` structure onto the matching ``target`` (Kabsch, proper rotations only).

    Both are centred first; the result is centred. With H = Σ_a m_a t_aᵀ = U S Vᵀ the rotation is
    R = V diag(1, 1, det(V Uᵀ)) Uᵀ, which minimises Σ_a |R m_a − t_a|² over rotations (never a
    reflection, so chirality is untouched). For any rotation Q, superpose(Q m, Q t) = Q superpose(m, t).

    Parameters
    ----------
    mobile, target : torch.Tensor, shape [B, 3·n_atoms]
    n_atoms : int

    Returns
    -------
    torch.Tensor, shape [B, 3·n_atoms]
    """
    m = _positions(remove_centroid(mobile, n_atoms), n_atoms)
    t = _positions(remove_centroid(target, n_atoms), n_atoms)
    h = (m.transpose(1, 2) @ t).to(torch.float64)  # [B, 3, 3]
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    correction = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    rotation = vt.transpose(1, 2) @ correction @ u.transpose(1, 2)  # [B, 3, 3]
    return (m.to(torch.float64) @ rotation.transpose(1, 2)).to(mobile.dtype).reshape(mobile.shape)
