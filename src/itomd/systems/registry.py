"""Turn a system specification string into a :class:`System` — the one place strings become systems.

A specification is either a shipped system name (see :data:`SHIPPED_SYSTEMS`) or
``path/to/file.py:NAME`` naming an object in a user's Python file. ``NAME`` may be

* a :class:`System` instance,
* a :class:`Potential` instance or subclass (instantiated without arguments, or with ``dim``),
* a plain function ``f(x) -> U`` on torch tensors of shape ``[*batch, dim]`` returning ``[*batch]``
  (give the dimension with ``dim=`` / ``--dim``, or as an attribute ``f.dim``).

Temperature, friction, timestep, frame interval and box can be overridden for any system.

Molecules (``ala2``, ``ala2-vacuum``, ``ala2-implicit``; see :mod:`itomd.systems.openmm`) are
:class:`~itomd.systems.openmm.MolecularSystem` objects: their energy unit is kT at ``temperature``
kelvin, so they take a ``temperature`` override instead of ``kT`` and have no box; ``friction`` is
the Langevin collision rate in 1/ps, ``timestep`` and ``frame_interval`` are in ps. OpenMM itself is
imported only when a molecule is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from itomd.errors import InvalidInputError, ItomdError, UnknownSystemError
from itomd.systems.potential import CallablePotential, Potential
from itomd.systems.molecules import is_molecule_spec, molecule_input_files, molecule_spec_kind
from itomd.systems.openmm import MOLECULES
from itomd.systems.system import Box, System
from itomd.systems.toy import DoubleWellPotential, HarmonicPotential, MullerBrownPotential, PrinzPotential


def _prinz(dim: int | None) -> System:
    _require_dim(dim, 1, "prinz")
    # deeptime's frame: 500 steps of 1e-5 = 5e-3. We integrate with 1e-4 (EM bias on the slowest
    # timescale < 1%, measured against the exact SqRA reference in the tests).
    return System(PrinzPotential(), kT=1.0, friction=1.0, timestep=1e-4, frame_interval=5e-3,
                  box=((-1.2, 1.2),))


def _muller_brown(dim: int | None) -> System:
    _require_dim(dim, 2, "muller-brown")
    return System(MullerBrownPotential(), kT=10.0, friction=1.0, timestep=5e-5, frame_interval=1e-2,
                  box=((-1.7, 1.3), (-0.4, 2.1)))


def _double_well(dim: int | None) -> System:
    dim = 1 if dim is None else dim
    box = ((-2.0, 2.0),) + ((-2.5, 2.5),) * (dim - 1)
    return System(DoubleWellPotential(dim=dim), kT=1.0, friction=1.0, timestep=1e-3,
                  frame_interval=1e-2, box=box)


def _harmonic(dim: int | None) -> System:
    dim = 1 if dim is None else dim
    return System(HarmonicPotential(dim=dim), kT=1.0, friction=1.0, timestep=1e-3,
                  frame_interval=1e-2, box=((-6.0, 6.0),) * dim)


#: Shipped systems: name -> factory(dim) -> System.
SHIPPED_SYSTEMS: dict[str, Callable[[int | None], System]] = {
    "prinz": _prinz,
    "muller-brown": _muller_brown,
    "double-well": _double_well,
    "harmonic": _harmonic,
}
_ALIASES = {"mueller-brown": "muller-brown", "muller_brown": "muller-brown", "mb": "muller-brown",
            "double_well": "double-well", "doublewell": "double-well"}


def _require_dim(dim: int | None, expected: int, name: str) -> None:
    if dim is not None and dim != expected:
        raise InvalidInputError(f"system '{name}' is {expected}-dimensional; --dim {dim} is not possible")


@dataclass(frozen=True)
class SystemSpec:
    """A picklable recipe for a :class:`System` (what workers and stored metadata carry).

    Parameters
    ----------
    spec : str
        Shipped name or ``path/to/file.py:NAME``.
    dim, kT, friction, timestep, frame_interval, box
        Optional overrides; ``None`` keeps the system's own value.
    temperature : float, optional
        Temperature in kelvin (molecules only; ``None``: 300 K).
    forcefield, implicit_solvent, solvent, termini, structure : optional
        A user's molecule (``x.pdb``, ``x.prmtop:x.inpcrd``, ``system.xml:x.pdb``,
        ``peptide:SEQUENCE``): see :class:`~itomd.systems.molecules.MoleculeInput`; ``None`` keeps
        its defaults (amber14-all.xml, OBC2, implicit, capped). ``structure`` is the prepared
        structure (a store's ``structure.pdb``) that workers and later commands simulate.
    """

    spec: str
    dim: int | None = None
    kT: float | None = None
    friction: float | None = None
    timestep: float | None = None
    frame_interval: float | None = None
    box: Box | None = None
    temperature: float | None = None
    forcefield: tuple[str, ...] | None = None
    implicit_solvent: str | None = None
    solvent: str | None = None
    termini: str | None = None
    structure: str | None = None

    def build(self) -> System:
        """Build the system (loads the user's file where the spec names one)."""
        return resolve_system(self.spec, dim=self.dim, kT=self.kT, friction=self.friction,
                              timestep=self.timestep, frame_interval=self.frame_interval, box=self.box,
                              temperature=self.temperature, molecule=self.molecule_options())

    def molecule_options(self) -> dict[str, Any]:
        """The molecule options that are set (forcefield, implicit_solvent, solvent, termini, structure)."""
        return {k: getattr(self, k) for k in _MOLECULE_OPTIONS if getattr(self, k) is not None}

    def is_user_molecule(self) -> bool:
        """Whether the spec names a user's molecule (files or ``peptide:SEQUENCE``)."""
        return is_molecule_spec(self.spec)

    def with_absolute_paths(self) -> "SystemSpec":
        """The spec with the files it names made absolute (a user's ``file.py:NAME``, a molecule's input
        files), so that workers and later commands in other directories find them."""
        text = self.spec.strip()
        if self.is_user_molecule():
            files = molecule_input_files(text)  # none for a peptide
            return dataclasses.replace(self, spec=":".join(files)) if files else self
        if ":" in text:
            path, name = text.rsplit(":", 1)
            if path.endswith(".py"):
                return dataclasses.replace(self, spec=f"{os.path.abspath(path)}:{name}")
        return self

    def with_structure(self, directory: str | os.PathLike) -> "SystemSpec":
        """The spec simulating the prepared ``structure.pdb`` of a store ``directory``, where it has one
        and the spec records none or one that is no longer there (a store that was moved); else the
        spec itself."""
        from itomd.systems.molecules import STRUCTURE_FILE

        path = os.path.join(os.fspath(directory), STRUCTURE_FILE)
        recorded = self.structure is not None and os.path.isfile(self.structure)
        if self.is_user_molecule() and not recorded and os.path.isfile(path):
            return dataclasses.replace(self, structure=os.path.abspath(path))
        return self

    def molecule_files(self) -> tuple[str, ...]:
        """Every file a user's molecule is read from — its input files, force-field files given as
        paths, the prepared structure — as absolute paths (none for other specs): what a model file
        embeds so that it samples wherever it is copied (:meth:`with_moved_files`)."""
        if not self.is_user_molecule():
            return ()
        forcefield = tuple(os.path.abspath(f) for f in self.forcefield or () if os.path.isfile(f))
        structure = (os.path.abspath(self.structure),) if self.structure else ()
        return molecule_input_files(self.spec) + forcefield + structure

    def with_moved_files(self, moved: Mapping[str, str]) -> "SystemSpec":
        """The spec reading its files (:meth:`molecule_files`) from the new paths in ``moved``
        (recorded absolute path → path now), e.g. copies restored from a model file."""
        if not moved:
            return self

        def new(path: str) -> str:
            return moved.get(os.path.abspath(path), path)

        files = molecule_input_files(self.spec)
        return dataclasses.replace(
            self, spec=":".join(new(f) for f in files) if files else self.spec,
            forcefield=None if self.forcefield is None else tuple(
                new(f) if os.path.abspath(f) in moved else f for f in self.forcefield),
            structure=None if self.structure is None else new(self.structure))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.box is not None:
            d["box"] = [list(b) for b in self.box]
        if self.temperature is None:  # dicts (and stored metadata) of earlier versions had no temperature
            del d["temperature"]
        for key in _MOLECULE_OPTIONS:  # nor molecule options
            if d[key] is None:
                del d[key]
            elif key == "forcefield":
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SystemSpec":
        d = dict(d)
        if d.get("box") is not None:
            d["box"] = tuple(tuple(b) for b in d["box"])
        if d.get("forcefield") is not None:
            d["forcefield"] = tuple(str(f) for f in d["forcefield"])
        return cls(**{k: d.get(k) for k in ("spec", "dim", "kT", "friction", "timestep", "frame_interval", "box",
                                            "temperature", *_MOLECULE_OPTIONS)})

    @classmethod
    def from_metadata(cls, metadata: dict, directory: str | os.PathLike | None = None) -> "SystemSpec | None":
        """The spec recorded in trajectory metadata (its ``spec`` entry, a dict or its JSON text), or None.

        With the store's ``directory``, a user's molecule simulates the store's prepared structure
        (:meth:`with_structure`).
        """
        spec = metadata.get("spec")
        if not spec:
            return None
        spec = cls.from_dict(json.loads(spec) if isinstance(spec, str) else spec)
        return spec if directory is None else spec.with_structure(directory)

    @classmethod
    def from_store(cls, metadata: Mapping[str, Any], directory: str | os.PathLike | None = None) -> System | None:
        """The system a trajectory store's metadata describe, or None — the one parser of store metadata.

        Tries the recorded spec first (:meth:`from_metadata`, then :meth:`build`); if there is none
        or it cannot be rebuilt, the ``molecule``/``solvent``/``temperature`` entries that molecules
        record (:meth:`~itomd.systems.openmm.MolecularSystem.metadata`).

        Parameters
        ----------
        metadata : mapping
            A store's metadata (``TrajectoryStore.metadata``).
        directory : path, optional
            The store's directory (its ``structure.pdb``, see :meth:`from_metadata`).

        Returns
        -------
        System or None
            None where the metadata name no system that can be built here.
        """
        try:
            spec = cls.from_metadata(dict(metadata), directory)
            if spec is not None:
                return spec.build()
        except (ItomdError, ValueError, TypeError):
            pass  # unreadable or unbuildable spec (e.g. a user file that moved): try the molecule entries
        molecule, solvent = metadata.get("molecule"), metadata.get("solvent", "vacuum")
        for name, entry in MOLECULES.items():
            if entry == (molecule, solvent):
                from itomd.systems.openmm import molecular_system

                temperature = metadata.get("temperature")
                return molecular_system(name, None if temperature is None else float(temperature))
        return None


_MOLECULE_OPTIONS = ("forcefield", "implicit_solvent", "solvent", "termini", "structure")


def resolve_system(
    spec: str,
    dim: int | None = None,
    kT: float | None = None,
    friction: float | None = None,
    timestep: float | None = None,
    frame_interval: float | None = None,
    box: Box | None = None,
    temperature: float | None = None,
    molecule: Mapping[str, Any] | None = None,
) -> System:
    """Build a :class:`System` from a specification string.

    Parameters
    ----------
    spec : str
        A shipped system name (``prinz``, ``muller-brown``, ``double-well``, ``harmonic``), a
        shipped molecule (``ala2``, ``ala2-vacuum``, ``ala2-implicit``) or ``path/to/file.py:NAME``.
    dim : int, optional
        Dimension, for systems that have a choice or user functions that need it.
    kT, friction, timestep, frame_interval : float, optional
        Overrides of the system's defaults.
    box : tuple of (low, high), optional
        Override of the system's box.
    temperature : float, optional
        Kelvin; molecules only (default 300 K). Molecules refuse ``kT`` and ``box``.
    molecule : mapping, optional
        Options of a user's molecule (``forcefield``, ``implicit_solvent``, ``solvent``,
        ``termini``, ``structure``; see :class:`~itomd.systems.molecules.MoleculeInput`).

    Returns
    -------
    System

    Raises
    ------
    UnknownSystemError
        If ``spec`` names no shipped system and no loadable file object.
    InvalidInputError
        For a wrong dimension or a non-positive parameter.
    """
    if dim is not None and (int(dim) != dim or dim < 1):
        raise InvalidInputError(f"--dim must be a positive integer, got {dim!r}")
    key = spec.strip().lower()
    key = _ALIASES.get(key, key)
    molecule = dict(molecule or {})
    if is_molecule_spec(spec):
        return _user_molecule(spec, molecule, dim=dim, kT=kT, friction=friction, timestep=timestep,
                              frame_interval=frame_interval, box=box, temperature=temperature)
    if molecule:
        options = ", ".join("--" + k.replace("_", "-") for k in molecule)
        raise InvalidInputError(f"{options} apply to molecules given as files (x.pdb, x.prmtop:x.inpcrd, "
                                f"system.xml:x.pdb) or peptide:SEQUENCE, not to '{spec}'")
    if key in MOLECULES:
        return _molecule(spec, key, dim=dim, kT=kT, friction=friction, timestep=timestep,
                         frame_interval=frame_interval, box=box, temperature=temperature)
    if temperature is not None:
        raise InvalidInputError(f"a temperature in kelvin applies to molecules ({', '.join(MOLECULES)}); "
                                f"give '{spec}' its thermal energy with kT (--kT)")
    if key in SHIPPED_SYSTEMS:
        system = SHIPPED_SYSTEMS[key](dim)
    elif ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        system = _load_user_system(spec, dim, kT)
    else:
        raise UnknownSystemError(
            f"unknown system '{spec}': choose one of {', '.join([*SHIPPED_SYSTEMS, *MOLECULES])}, "
            "give path/to/file.py:NAME, a molecule (x.pdb, x.prmtop:x.inpcrd, system.xml:x.pdb) or peptide:SEQUENCE"
        )
    overrides = {k: v for k, v in dict(kT=kT, box=box).items() if v is not None}
    overrides.update(_frame_overrides(system, friction, timestep, frame_interval))
    if dim is not None and system.dim != dim:
        raise InvalidInputError(f"system '{spec}' is {system.dim}-dimensional; --dim {dim} is not possible")
    system = dataclasses.replace(system, spec=spec, **overrides)
    _check_energy_callable(system)
    return system


def _check_molecule_overrides(spec: str, kT: float | None, box: Box | None, temperature: float | None) -> None:
    if kT is not None:
        raise InvalidInputError(f"'{spec}' is a molecule whose energy unit is kT: set its temperature in kelvin "
                                "(--temperature), not kT")
    if box is not None:
        raise InvalidInputError(f"'{spec}' is a molecule in Cartesian coordinates and has no box; drop --box")
    if temperature is not None and not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                                        and temperature > 0):
        raise InvalidInputError(f"temperature must be a positive number of kelvin, got {temperature!r}")


def _frame_overrides(system: System, friction: float | None, timestep: float | None,
                     frame_interval: float | None) -> dict[str, float]:
    """The set overrides of friction, timestep and frame interval; a frame interval alone keeps the
    system's integration step unless it does not divide the interval (then the largest step that does)."""
    overrides = {k: v for k, v in dict(friction=friction, timestep=timestep,
                                        frame_interval=frame_interval).items() if v is not None}
    if "frame_interval" in overrides and "timestep" not in overrides:
        ratio = overrides["frame_interval"] / system.timestep
        if abs(ratio - round(ratio)) > 1e-6 * max(ratio, 1.0) or round(ratio) < 1:
            overrides["timestep"] = overrides["frame_interval"] / max(1, math.ceil(ratio))
    return overrides


def _user_molecule(spec: str, options: dict[str, Any], dim: int | None, kT: float | None, friction: float | None,
                   timestep: float | None, frame_interval: float | None, box: Box | None,
                   temperature: float | None) -> System:
    """A user's molecule (files or a peptide sequence) with its overrides."""
    from itomd.systems.molecules import MoleculeInput
    from itomd.systems.openmm import user_molecular_system

    _check_molecule_overrides(spec, kT, box, temperature)
    if options.get("forcefield") is not None:
        options["forcefield"] = tuple(options["forcefield"])
    if options.get("termini") is not None and molecule_spec_kind(spec) != "peptide":
        raise InvalidInputError("--termini applies to peptide:SEQUENCE only")
    source = MoleculeInput(spec.strip(), **options)
    system = user_molecular_system(source, temperature=temperature)
    if dim is not None and dim != system.dim:
        raise InvalidInputError(f"system '{spec}' has {system.n_atoms} atoms, i.e. {system.dim} coordinates; "
                                f"--dim {dim} is not possible")
    return dataclasses.replace(system, **_frame_overrides(system, friction, timestep, frame_interval))


def _molecule(spec: str, key: str, dim: int | None, kT: float | None, friction: float | None,
              timestep: float | None, frame_interval: float | None, box: Box | None,
              temperature: float | None) -> System:
    """A shipped molecule with its overrides (no energy probe: OpenMM's energy is known to work)."""
    from itomd.systems.openmm import molecular_system

    _check_molecule_overrides(spec, kT, box, temperature)
    system = molecular_system(key, temperature=temperature)
    if dim is not None and dim != system.dim:
        raise InvalidInputError(f"system '{spec}' has {system.n_atoms} atoms, i.e. {system.dim} coordinates; "
                                f"--dim {dim} is not possible")
    return dataclasses.replace(system, spec=spec, **_frame_overrides(system, friction, timestep, frame_interval))


def _load_user_system(spec: str, dim: int | None, kT: float | None) -> System:
    path, name = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise UnknownSystemError(f"system file not found: {path}")
    module_name = "itomd_user_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UnknownSystemError(f"cannot import {path} as a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # user code: report in one line
            raise UnknownSystemError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        sys.modules[module_name] = module
    if not hasattr(module, name):
        raise UnknownSystemError(f"{path} defines no object named '{name}'")
    obj = getattr(module, name)
    if isinstance(obj, System):
        return obj
    if inspect.isclass(obj) and issubclass(obj, Potential):
        try:
            obj = obj() if dim is None else obj(dim=dim)
        except TypeError as exc:
            raise InvalidInputError(f"cannot instantiate {name} from {path}: {exc}") from exc
    if isinstance(obj, Potential):
        potential = obj
    elif callable(obj):
        fdim = dim if dim is not None else getattr(obj, "dim", None)
        if fdim is None:
            raise InvalidInputError(f"{spec} is an energy function: give its dimension with --dim")
        potential = CallablePotential(obj, dim=int(fdim), name=name)
    else:
        raise UnknownSystemError(f"{spec} is neither a System, a Potential nor an energy function")
    return System(potential, kT=float(kT if kT is not None else getattr(obj, "kT", 1.0)),
                  name=name, box=getattr(obj, "box", None))


def _check_energy_callable(system: System) -> None:
    """Evaluate the energy once on a small batch so a broken function fails early, in one line."""
    x = torch.zeros(2, system.dim, dtype=torch.float64)
    try:
        u = system.potential.energy(x)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(
            f"energy of system '{system.spec or system.name}' fails on a batch of shape [2, {system.dim}] "
            f"({type(exc).__name__}: {exc}); is the dimension right?"
        ) from exc
    if not torch.is_floating_point(u):
        raise InvalidInputError(f"energy of system '{system.spec}' must be a floating-point tensor")
