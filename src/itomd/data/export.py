"""Export a molecule's trajectory store to the MD formats other tools read (through mdtraj).

``export_store(store, out, "dcd")`` writes ``out/traj_NNNNNN.dcd`` per trajectory (the store's
indices) and ``out/topology.pdb`` (the molecule with the first frame's positions); ``join=True``
writes all trajectories, in index order, into one ``out/trajectories.dcd``. Positions are the
store's nm (mdtraj converts to each format's unit: Å in DCD and PDB, nm in XTC and HDF5); the time
axis is the frame index × the frame interval τ in ps. DCD and XTC hold float32 positions (XTC
rounds to 10⁻³ nm), HDF5 float32 (mdtraj's format, needs PyTables), PDB 10⁻⁴ nm (three decimals in Å).
Every file is written to a temporary name and renamed, so an interrupted export leaves no half file.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np

from itomd._files import write_atomically
from itomd.data.store import TrajectoryStore, trajectory_filename
from itomd.errors import DataFileError, InvalidInputError

#: Formats :func:`export_store` writes: name -> mdtraj ``Trajectory`` method.
EXPORT_FORMATS = {"dcd": "save_dcd", "xtc": "save_xtc", "h5": "save_hdf5", "pdb": "save_pdb"}
#: File name of the joined export (``--join``), without the extension.
JOINED_NAME = "trajectories"


def export_store(store_dir: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "dcd",
                 join: bool = False) -> list[Path]:
    """Write the trajectories of a molecule's store as ``fmt`` files plus ``topology.pdb``.

    Parameters
    ----------
    store_dir : path
        A trajectory store of a molecule (a campaign or rollout of ``ala2``, ...): its metadata name
        the system.
    out_dir : path
        Output directory (created if needed; files of the same names are replaced).
    fmt : {"dcd", "xtc", "h5", "pdb"}
    join : bool
        One file ``trajectories.<fmt>`` with all trajectories in index order, instead of one file
        per trajectory.

    Returns
    -------
    list of Path
        The trajectory files written, then the topology file.

    Raises
    ------
    DataFileError
        For a missing, empty or corrupt store.
    InvalidInputError
        For a store that is not of a molecule, an unknown format, or ``h5`` without PyTables.
    """
    import mdtraj

    from itomd.systems.registry import SystemSpec

    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"unknown export format '{fmt}': choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "h5" and importlib.util.find_spec("tables") is None:
        raise InvalidInputError("the h5 format (mdtraj's HDF5) needs PyTables: pip install tables, or choose dcd or xtc")
    store = TrajectoryStore(store_dir)
    indices = store.indices
    if not indices:
        raise DataFileError(f"no trajectories in the store at {store.path} (no traj_*.h5 files)")
    store.check_complete()
    metadata = store.metadata
    spec = SystemSpec.from_metadata(metadata, store.path)
    topology = None if spec is None else spec.build().topology()
    if topology is None:
        name = metadata.get("system") or (spec.spec if spec else "unknown")
        raise InvalidInputError(f"{store.path} holds trajectories of '{name}', not of a molecule; export writes "
                                "molecular stores only (ala2, ...)")
    system = spec.build()
    frame_interval = float(metadata.get("frame_interval", system.frame_interval))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"cannot create the output directory {out}: {exc.strerror or exc}") from exc

    def save(coordinates: np.ndarray, target: Path) -> Path:
        xyz = np.asarray(coordinates, dtype=np.float32).reshape(len(coordinates), topology.n_atoms, 3)
        trajectory = mdtraj.Trajectory(xyz, topology, time=np.arange(len(xyz)) * frame_interval)
        method = getattr(trajectory, EXPORT_FORMATS[fmt])
        with warnings.catch_warnings():  # the temporary name does not end in .h5; the final one does
            warnings.filterwarnings("ignore", message="The .h5 extension is recommended")
            write_atomically(target, lambda temporary: method(str(temporary), force_overwrite=True))
        return target

    written = []
    first = store.read(indices[0])
    if join:
        parts = [first] + [store.read(index) for index in indices[1:]]
        written.append(save(np.concatenate(parts), out / f"{JOINED_NAME}.{fmt}"))
    else:
        for index in indices:
            coordinates = first if index == indices[0] else store.read(index)
            written.append(save(coordinates, out / Path(trajectory_filename(index)).with_suffix(f".{fmt}")))
    written.extend(system.write_store_files(out, frame=first[0]))  # topology.pdb with the first frame
    return written


__all__ = ["export_store", "EXPORT_FORMATS"]
