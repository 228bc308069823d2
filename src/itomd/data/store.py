"""The trajectory store: a directory of HDF5 files, one per trajectory, plus a JSON manifest.

Layout::

    store/
      manifest.json        what made the store (a campaign's parameters), written once
      traj_000000.h5       dataset ``coordinates`` [n_frames, dim] float64; metadata in attributes
      traj_000001.h5
      ...

Why HDF5 (through h5py)
-----------------------
* **Self-describing and readable everywhere.** A file carries its shapes, dtypes and metadata; h5py,
  mdtraj, MDAnalysis, MATLAB, Julia and the ``h5dump`` tool read it without itomd installed.
* **Metadata next to the numbers.** Every file holds, as HDF5 attributes, what is needed to
  interpret and reproduce it: the system and its specification, kT, friction, timestep, the frame
  interval τ (physical time between frames), the integrator, seeds, start-point information, the
  itomd version and the creation time.
* **Partial reads.** ``h5py.File(path)["coordinates"][a:b]`` reads a slice of frames without loading
  the rest; the dataset is stored contiguous and uncompressed, so no filter plugins are needed.

Why one file per trajectory
---------------------------
Atomic writes and resumable campaigns become trivial: each file is written to a temporary name in
the same directory (``<name>.tmp-<pid>-<random>``), flushed, fsynced and renamed over its final
name with :func:`os.replace`, which is atomic on POSIX file systems. A crash (even ``kill -9``)
leaves either the complete old file, the complete new file, or a stray temporary file that readers
ignore and the next write of the same file removes. A campaign resumes by checking which files
exist and read back valid. Many writers (dask workers) never share a file, so no locking is needed.

Errors: a missing store or file, a corrupt or truncated file, or a file of the wrong layout raises
:class:`~itomd.errors.DataFileError`; NaN or inf coordinates raise
:class:`~itomd.errors.InvalidInputError`. Both name the file in a one-line message.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

from itomd._files import TEMPORARY_MARKER as _TEMPORARY_MARKER
from itomd._files import write_atomically, write_bytes_atomically
from itomd.errors import DataFileError, InvalidInputError
from itomd.validation import as_real_array

#: Name of the coordinates dataset in every trajectory file.
COORDINATES = "coordinates"
#: Name of the manifest file in the store directory.
MANIFEST = "manifest.json"
#: Attribute that lists the metadata keys stored as JSON strings (lists, dicts, None).
_JSON_KEYS_ATTRIBUTE = "itomd_json_keys"
#: Metadata that must agree across all trajectories of a store.
CONSISTENT_KEYS = ("system", "spec", "dim", "kT", "friction", "timestep", "frame_interval", "integrator")

_TRAJECTORY_FILE = re.compile(r"^traj_(\d+)\.h5$")


def trajectory_filename(index: int) -> str:
    """File name of trajectory ``index`` inside a store, e.g. ``traj_000042.h5``."""
    return f"traj_{index:06d}.h5"


class TrajectoryStore:
    """A directory of trajectories, one HDF5 file each, with shared metadata and a manifest.

    Trajectories are addressed by their index (the number in ``traj_<index>.h5``); in a complete
    store the indices are ``0 .. len(store) - 1``. Reading methods raise
    :class:`~itomd.errors.DataFileError` for a missing, corrupt or malformed store or file and
    :class:`~itomd.errors.InvalidInputError` for NaN or inf coordinates.

    Parameters
    ----------
    path : str or os.PathLike
        The store directory. Nothing is read or created until a method needs it.

    Examples
    --------
    >>> store = TrajectoryStore("runs/prinz")            # doctest: +SKIP
    >>> trajectories = store.trajectories()              # list of [n_frames, dim] arrays
    >>> tau = store.metadata["frame_interval"]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._attribute_cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"TrajectoryStore({str(self.path)!r})"

    # -- listing --------------------------------------------------------------------------------
    def _require_directory(self) -> None:
        if not self.path.is_dir():
            raise DataFileError(f"no trajectory store at {self.path}")

    def file_path(self, index: int) -> Path:
        """Path of trajectory ``index``'s file (which may not exist yet)."""
        return self.path / trajectory_filename(_check_index(index))

    @property
    def indices(self) -> list[int]:
        """Indices of the trajectory files present, ascending (temporary files are ignored)."""
        self._require_directory()
        found = []
        for entry in os.scandir(self.path):
            match = _TRAJECTORY_FILE.match(entry.name)
            if match and entry.is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Coordinates of each trajectory in index order, one file at a time."""
        for index in self.indices:
            yield self.read(index)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, (int, np.integer)) and index >= 0 and self.file_path(int(index)).is_file()

    # -- reading --------------------------------------------------------------------------------
    def read(self, index: int) -> np.ndarray:
        """Coordinates of one trajectory.

        Parameters
        ----------
        index : int
            Trajectory index.

        Returns
        -------
        np.ndarray, shape [n_frames, dim], float64
        """
        self._require_directory()
        coordinates, _ = self._read_file(self.file_path(index), with_coordinates=True)
        return coordinates

    def read_metadata(self, index: int) -> dict[str, Any]:
        """All metadata (HDF5 attributes) of one trajectory, decoded to Python values."""
        self._require_directory()
        _, attributes = self._read_file(self.file_path(index), with_coordinates=False)
        return dict(attributes)

    def trajectories(self) -> list[np.ndarray]:
        """Coordinates of all trajectories, in index order.

        Returns
        -------
        list of np.ndarray, each shape [n_frames_i, dim], float64

        Raises
        ------
        DataFileError
            If the store is missing or empty, a file is corrupt, or the trajectories disagree on
            dimension, system or frame interval.
        InvalidInputError
            If a trajectory contains NaN or inf.
        """
        paths = self._trajectory_paths(require_any=True)
        arrays, attributes = [], []
        for path in paths:
            coordinates, attrs = self._read_file(path, with_coordinates=True)
            arrays.append(coordinates)
            attributes.append(attrs)
        self._check_consistent(paths, attributes, [a.shape[1] for a in arrays])
        return arrays

    @property
    def metadata(self) -> dict[str, Any]:
        """Metadata shared by all trajectories: the attributes whose values agree in every file.

        Per-trajectory entries (index, seed of its chunk, start point, creation time) are left out
        where they differ. Empty for a store without trajectories.

        Raises
        ------
        DataFileError
            If the trajectories disagree on system, dimension, kT, friction, timestep, frame
            interval or integrator, or a file is unreadable.
        """
        paths = self._trajectory_paths(require_any=False)
        if not paths:
            return {}
        attributes = [self._read_file(path, with_coordinates=False)[1] for path in paths]
        self._check_consistent(paths, attributes, None)
        shared = dict(attributes[0])
        for attrs in attributes[1:]:
            for key in list(shared):
                if key not in attrs or not _same_value(attrs[key], shared[key]):
                    del shared[key]
        return shared

    @property
    def manifest(self) -> dict[str, Any] | None:
        """Contents of ``manifest.json`` (``None`` when the store has none)."""
        self._require_directory()
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        try:
            content = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataFileError(f"{path}: unreadable manifest ({_one_line(exc)})") from exc
        if not isinstance(content, dict):
            raise DataFileError(f"{path}: the manifest must be a JSON object")
        return content

    @property
    def expected_count(self) -> int | None:
        """How many trajectories the manifest says the complete store holds (``None``: no manifest, or
        one that records no count). Campaigns record ``n_trajectories``, rollouts ``n_walkers``."""
        manifest = self.manifest
        if manifest is None:
            return None
        sections = [manifest] + [value for value in manifest.values() if isinstance(value, dict)]
        for section in sections:
            for key in ("n_trajectories", "n_walkers"):
                count = section.get(key)
                if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                    return count
        return None

    def check_complete(self) -> None:
        """Refuse a store whose files disagree with its manifest: a trajectory missing, or a file whose
        index the manifest does not list (e.g. copied in from another store).

        Raises
        ------
        DataFileError
            Naming the first such file.
        """
        expected = self.expected_count
        if expected is None:
            return
        present = self.indices
        extra = [i for i in present if i >= expected]
        if extra:
            raise DataFileError(
                f"{self.path / trajectory_filename(extra[0])} is not one of the {expected} trajectories that "
                f"{self.path / MANIFEST} lists (copied in from another store?); remove it")
        missing = sorted(set(range(expected)) - set(present))
        if missing:
            raise DataFileError(
                f"{self.path / trajectory_filename(missing[0])} is missing: {self.path / MANIFEST} lists {expected} "
                f"trajectories, {len(present)} are present; re-run the command that wrote the store (it resumes), "
                f"or remove {MANIFEST} to use the trajectories present")

    def _trajectory_paths(self, require_any: bool) -> list[Path]:
        if require_any:
            self.check_complete()
        paths = [self.path / trajectory_filename(i) for i in self.indices]
        if require_any and not paths:
            raise DataFileError(f"no trajectories in the store at {self.path} (no traj_*.h5 files)")
        return paths

    def _read_file(self, path: Path, with_coordinates: bool) -> tuple[np.ndarray | None, dict[str, Any]]:
        """Read (and validate) one file; attributes are cached while the file is unchanged."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataFileError(f"no trajectory file {path.name} in the store at {self.path}") from None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._attribute_cache.get(path.name)
        if cached is not None and cached[0] == key and not with_coordinates:
            return None, cached[1]
        try:
            with h5py.File(path, "r", locking=False) as handle:
                dataset = handle.get(COORDINATES)
                if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 2 or dataset.dtype.kind != "f":
                    raise DataFileError(
                        f"{path}: not an itomd trajectory file (needs a float dataset "
                        f"'{COORDINATES}' of shape [n_frames, dim])")
                shape = dataset.shape
                coordinates = np.asarray(dataset[...], dtype=np.float64) if with_coordinates else None
                attributes = _decode_attributes(handle.attrs)
        except DataFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise DataFileError(f"{path}: corrupt or truncated HDF5 file ({_one_line(exc)})") from exc
        if shape[0] < 1 or shape[1] < 1:
            raise DataFileError(f"{path}: empty trajectory of shape {tuple(shape)}")
        if "dim" in attributes and attributes["dim"] != shape[1]:
            raise DataFileError(f"{path}: coordinates have {shape[1]} columns but the metadata says dim {attributes['dim']}")
        if coordinates is not None:
            bad = ~np.isfinite(coordinates)
            if bad.any():
                frame = int(np.flatnonzero(bad.any(axis=1))[0])
                raise InvalidInputError(f"{path}: coordinates contain NaN or inf (first at frame {frame})")
        self._attribute_cache[path.name] = (key, attributes)
        return coordinates, attributes

    def _check_consistent(self, paths: Sequence[Path], attributes: Sequence[Mapping[str, Any]],
                          dims: Sequence[int] | None) -> None:
        missing = object()
        for key in CONSISTENT_KEYS:
            first = attributes[0].get(key, missing)
            for path, attrs in zip(paths[1:], attributes[1:]):
                value = attrs.get(key, missing)
                if not _same_value(value, first):
                    show = lambda v: "(missing)" if v is missing else repr(v)  # noqa: E731
                    raise DataFileError(
                        f"trajectory store {self.path} mixes trajectories with different {key}: "
                        f"{show(first)} in {paths[0].name}, {show(value)} in {path.name}")
        if dims is not None and len(set(dims)) > 1:
            odd = next(i for i, d in enumerate(dims) if d != dims[0])
            raise DataFileError(
                f"trajectory store {self.path} mixes dimensions: {dims[0]} in {paths[0].name}, "
                f"{dims[odd]} in {paths[odd].name}")

    # -- writing --------------------------------------------------------------------------------
    def write(self, index: int, coordinates: np.ndarray, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write one trajectory atomically (replacing any existing file of the same index).

        Parameters
        ----------
        index : int
            Trajectory index (non-negative).
        coordinates : array_like, shape [n_frames, dim]
            Finite coordinates; stored as float64.
        metadata : mapping of str to value, optional
            Stored as HDF5 attributes. Strings, numbers and booleans are stored as they are; lists,
            dicts and ``None`` as JSON strings (decoded again on reading). ``trajectory`` (the index),
            ``itomd_version`` and ``created`` (UTC, ISO 8601) are added.

        Returns
        -------
        Path
            The file written.
        """
        index = _check_index(index)
        coordinates = as_real_array(coordinates, f"trajectory {index}: coordinates")
        if coordinates.ndim != 2 or coordinates.shape[0] < 1 or coordinates.shape[1] < 1:
            raise InvalidInputError(f"coordinates must have shape [n_frames, dim], got {coordinates.shape}")
        if not np.all(np.isfinite(coordinates)):
            raise InvalidInputError(f"trajectory {index}: coordinates contain NaN or inf; not written")
        attributes = dict(metadata or {})
        if "dim" in attributes and attributes["dim"] != coordinates.shape[1]:
            raise InvalidInputError(
                f"trajectory {index}: coordinates have {coordinates.shape[1]} columns but metadata says dim {attributes['dim']}")
        attributes.update(trajectory=index, itomd_version=_itomd_version(), created=_now())
        native, json_keys = _encode_attributes(attributes)
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.file_path(index)

        # built in memory and written by Python: a full disk is a plain OSError (HDF5's own writes
        # fail inside the C library and can crash the interpreter when it cleans up)
        image = io.BytesIO()
        with h5py.File(image, "w") as handle:
            handle.create_dataset(COORDINATES, data=coordinates)
            for key, value in native.items():
                handle.attrs[key] = value
            handle.attrs[_JSON_KEYS_ATTRIBUTE] = json.dumps(json_keys)
        write_bytes_atomically(target, image.getvalue())
        return target

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        """Write ``manifest.json`` atomically (a JSON object describing how the store was made)."""
        try:
            text = json.dumps(dict(manifest), indent=2, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"manifest is not JSON-serialisable: {exc}") from exc
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / MANIFEST
        write_atomically(target, lambda temporary: temporary.write_text(text))
        return target

    def claim(self, section: str, parameters: Mapping[str, Any]) -> None:
        """Record what writes this store, or check that it is what wrote it before.

        The manifest holds ``{section: parameters}`` (e.g. ``"campaign"`` or ``"rollout"``). A new
        store gets the manifest; a store made with the same section and parameters is accepted (the
        writer resumes); anything else is refused with an :class:`InvalidInputError` naming the
        differences.
        """
        manifest = self.manifest
        if manifest is None:
            if self.indices:
                raise InvalidInputError(
                    f"{self.path} already holds trajectories ({trajectory_filename(self.indices[0])}, ...) but no "
                    f"{section} manifest ({MANIFEST}) that says what wrote them; use a new --out")
            self.write_manifest({"format": "itomd-trajectory-store", "format_version": 1,
                                 "itomd_version": _itomd_version(), "created": _now(), section: dict(parameters)})
            return
        recorded = manifest.get(section)
        if not isinstance(recorded, dict):
            raise InvalidInputError(f"{self.path} holds a trajectory store not made by a {section}; use a new --out")
        differences = parameter_differences(recorded, dict(parameters))
        if differences:
            shown = "; ".join(differences[:4]) + ("; ..." if len(differences) > 4 else "")
            raise InvalidInputError(f"{self.path} was made with different parameters: {shown}; use a new --out")

    def remove_temporary_files(self) -> int:
        """Delete stray temporary files left by interrupted writes; returns how many were removed.

        Call it only while nothing else writes to the store (a campaign does, before it starts).
        """
        self._require_directory()
        removed = 0
        for entry in os.scandir(self.path):
            if _TEMPORARY_MARKER in entry.name and entry.is_file():
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed


def save_trajectories(
    path: str | os.PathLike,
    trajectories: Sequence[np.ndarray],
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> TrajectoryStore:
    """Save arrays as a new trajectory store (e.g. surrogate rollouts of a model).

    Parameters
    ----------
    path : str or os.PathLike
        Store directory; created if needed.
    trajectories : sequence of array_like, each shape [n_frames_i, dim]
        Trajectories with a common dimension; written as ``traj_000000.h5``, ``traj_000001.h5``, ...
    metadata : mapping, optional
        Metadata stored with every trajectory (include ``frame_interval`` so analyses know τ).
    overwrite : bool
        Replace trajectories already in ``path``; otherwise such a directory is an error.

    Returns
    -------
    TrajectoryStore
    """
    arrays = [as_real_array(t, f"trajectory {i}") for i, t in enumerate(trajectories)]
    if not arrays:
        raise InvalidInputError("no trajectories to save")
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise InvalidInputError(f"trajectory {i} must have shape [n_frames, dim], got {a.shape}")
        if a.shape[1] != arrays[0].shape[1]:
            raise InvalidInputError(f"trajectory {i} has dimension {a.shape[1]}, trajectory 0 has {arrays[0].shape[1]}")
    store = TrajectoryStore(path)
    if store.path.is_dir() and store.indices:
        if not overwrite:
            raise InvalidInputError(f"{store.path} already holds trajectories; choose a new path or overwrite=True")
        for index in store.indices:
            store.file_path(index).unlink()
    metadata = dict(metadata or {})
    metadata.setdefault("dim", int(arrays[0].shape[1]))
    store.write_manifest({"format": "itomd-trajectory-store", "format_version": 1,
                          "itomd_version": _itomd_version(), "created": _now(),
                          "n_trajectories": len(arrays), "metadata": metadata})
    for index, array in enumerate(arrays):
        store.write(index, array, metadata)
    return store


def parameter_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Readable ``key recorded != requested`` entries, nested dicts flattened with dots."""
    out = []
    for key in list(recorded) + [k for k in requested if k not in recorded]:
        old, new = recorded.get(key), requested.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += parameter_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key} {_short(old)} != {_short(new)}")
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- helpers ------------------------------------------------------------------------------------
def _encode_attributes(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    native: dict[str, Any] = {}
    json_keys: list[str] = []
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or key == _JSON_KEYS_ATTRIBUTE:
            raise InvalidInputError(f"metadata keys must be non-empty strings (not {_JSON_KEYS_ATTRIBUTE!r}), got {key!r}")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (str, bool, float)) or (isinstance(value, int) and -2**63 <= value < 2**63):
            native[key] = value
            continue  # (larger integers have no HDF5 type: stored as JSON, like lists)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        try:
            native[key] = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata '{key}' cannot be stored: {exc}") from exc
        json_keys.append(key)
    return native, json_keys


def _decode_attributes(attrs: h5py.AttributeManager) -> dict[str, Any]:
    raw = {key: attrs[key] for key in attrs.keys()}
    json_keys = json.loads(_python_value(raw.pop(_JSON_KEYS_ATTRIBUTE, "[]")))
    decoded = {}
    for key, value in raw.items():
        value = _python_value(value)
        decoded[key] = json.loads(value) if key in json_keys else value
    return decoded


def _python_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same_value(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return a == b
    return type(a) is type(b) and a == b


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InvalidInputError(f"trajectory index must be a non-negative integer, got {index!r}")
    return int(index)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _itomd_version() -> str:
    from itomd import __version__

    return __version__


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
