"""What every command shares: argument types, the system options, output (text or JSON)."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path

from itomd.errors import InvalidInputError

EXIT_USAGE = 2
#: Exit statuses of a command stopped by SIGINT (Ctrl-C) and SIGTERM (128 + the signal's number).
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


# -- argument types -------------------------------------------------------------------------------
def _integer_at_least(minimum: int, kind: str):
    """An argparse type: an integer ≥ ``minimum`` ("a positive integer", "a non-negative integer")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {value}")
        return value

    return parse


positive_int = _integer_at_least(1, "a positive integer")
nonnegative_int = _integer_at_least(0, "a non-negative integer")
#: Seeds stay below 2**63: torch generators (training, sampling) take no larger ones.
MAX_SEED = 2**63 - 1


def seed_int(text: str) -> int:
    """An argparse type: a seed, an integer in [0, 2**63)."""
    value = nonnegative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a seed in [0, 2**63), got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite comma-separated numbers, got '{text}'")
    return values


def lag_list(text: str) -> list[int]:
    out = []
    for item in text.split(","):
        try:
            lag = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"lags must be comma-separated integers (frames), got '{text}'") from None
        if lag < 1:
            raise argparse.ArgumentTypeError(f"lags must be positive (frames), got {lag}")
        out.append(lag)
    return sorted(set(out))


def box_ranges(values: list[float] | None, dim: int) -> tuple[tuple[float, float], ...] | None:
    if values is None:
        return None
    if len(values) != 2 * dim:
        raise InvalidInputError(f"--box needs {2 * dim} numbers (min,max per dimension) for a {dim}-D system, got {len(values)}")
    return tuple((values[2 * i], values[2 * i + 1]) for i in range(dim))



# -- the system options ----------------------------------------------------------------------------
def add_system_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("system")
    g.add_argument("--system", required=required, metavar="SPEC",
                   help="shipped system (prinz, muller-brown, double-well, harmonic), molecule (ala2, ala2-vacuum, "
                        "ala2-implicit), path/to/file.py:NAME, or your molecule: x.pdb, x.prmtop:x.inpcrd, "
                        "system.xml:x.pdb, peptide:SEQUENCE")
    g.add_argument("--dim", type=positive_int, help="dimension (systems with a choice, user functions)")
    g.add_argument("--kT", type=positive_float, dest="kT", help="thermal energy (default: the system's)")
    g.add_argument("--temperature", type=positive_float, metavar="KELVIN",
                   help="temperature of a molecule in kelvin (default 300; molecules use kT as energy unit)")
    g.add_argument("--friction", type=positive_float, help="friction coefficient gamma (default 1)")
    g.add_argument("--timestep", type=positive_float, help="integration step (default: the system's)")
    g.add_argument("--frame-interval", type=positive_float, dest="frame_interval",
                   help="physical time between stored frames (default: the system's)")
    g.add_argument("--box", type=float_list, metavar="XMIN,XMAX[,YMIN,YMAX]",
                   help="region for the exact reference and plots")
    m = p.add_argument_group("your molecule (x.pdb, x.prmtop:x.inpcrd, system.xml:x.pdb, peptide:SEQUENCE)")
    m.add_argument("--forcefield", nargs="+", metavar="XML",
                   help="OpenMM force-field files for PDB and peptide inputs (default amber14-all.xml)")
    m.add_argument("--implicit-solvent", dest="implicit_solvent", choices=["obc2", "gbn2", "none"],
                   help="Generalized Born model (default obc2; none: vacuum)")
    m.add_argument("--solvent", choices=["implicit", "explicit"],
                   help="explicit: a TIP3P box with ions and PME; frames store the solute only (default implicit)")
    m.add_argument("--termini", choices=["capped", "charged"],
                   help="peptide:SEQUENCE ends: ACE/NME caps (default) or charged NH3+/COO-")


def add_sampler_options(p: argparse.ArgumentParser, sampler_help: str | None = None) -> None:
    """``--sampler`` and ``--n-steps``, both defaulting to the model's own, and ``--device`` (the one
    home of the options that sample: ``sample``, ``speed``, ``check``); ``sampler_named`` checks the
    name, :func:`model_on_device` the device."""
    p.add_argument("--sampler", default=None, help=sampler_help or (
        "heun-churn (stochastic; the default of a trained model), consistency (the default of a distilled model), "
        "dpmpp-2m, heun, euler, euler-maruyama, ancestral (the 1000-step baseline) or flow"))
    p.add_argument("--n-steps", dest="n_steps", type=positive_int, default=None,
                   help="noise levels per jump (default: the model's own, 25, or a distilled model's 1-4; network "
                        "evaluations: 2n-1 for heun/heun-churn, 2(n-1) for flow, n for the others)")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when present, else the CPU), cpu or cuda[:k]")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="molecules: dtype of the equivariant network's pair tensors while sampling (bfloat16: about "
                        "twice the evaluations per second on a CPU; default float32)")
    p.add_argument("--compile", action="store_true",
                   help="molecules: evaluate the equivariant network through torch.compile (the same function, about "
                        "twice the evaluations per second on a CPU; the first call of each batch shape compiles, "
                        "cached on disk; needs a C++ compiler, else it warns and runs eagerly)")


def model_on_device(path: Path, device: str, precision: str = "float32", compiled: bool = False):
    """The model in ``path`` (run directory or model file), moved to ``device`` and set to sample in
    ``precision`` (:meth:`~itomd.models.TransitionModel.set_precision`), compiled or not
    (:meth:`~itomd.models.TransitionModel.set_compiled`); one-line errors."""
    from itomd.models import TransitionModel
    from itomd.training.loop import select_device

    target = select_device(device)
    return TransitionModel.load(path).to(target).set_precision(precision).set_compiled(compiled)


def system_spec(args: argparse.Namespace):
    """The SystemSpec and System the ``--system`` options describe (validated here, one-line errors)."""
    from itomd.systems import SystemSpec

    forcefield = getattr(args, "forcefield", None)
    spec = SystemSpec(spec=args.system, dim=args.dim, kT=args.kT, friction=args.friction,
                      timestep=args.timestep, frame_interval=args.frame_interval,
                      temperature=getattr(args, "temperature", None),
                      forcefield=None if forcefield is None else tuple(forcefield),
                      implicit_solvent=getattr(args, "implicit_solvent", None), solvent=getattr(args, "solvent", None),
                      termini=getattr(args, "termini", None))
    if spec.is_user_molecule():  # recorded in stores and models: later commands find its files from anywhere
        spec = spec.with_absolute_paths()
    system = spec.build()  # validates everything once, here, with one-line errors
    box = box_ranges(args.box, system.dim)
    if box is not None:
        spec = SystemSpec(**{**spec.__dict__, "box": box})
        system = spec.build()
    return spec, system


def recorded_frame_interval(metadata: dict, path: Path) -> float:
    """The frame interval a trajectory store records (one-line error if it records none)."""
    if metadata.get("frame_interval") is None:
        raise InvalidInputError(f"{path} does not record its frame interval")
    return float(metadata["frame_interval"])


# -- output ------------------------------------------------------------------------------------------
def emit(payload: dict, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, default=json_default))
    else:
        print(text)


def json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def write_json(path: Path, payload: dict) -> None:
    from itomd._files import write_text_atomically

    write_text_atomically(path, json.dumps(payload, indent=2, default=json_default))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# -- interrupts and kept work -------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (``main`` installs the handler; exit 143)."""


def raise_terminated(signum: int, frame) -> None:
    """A SIGTERM handler: stop like Ctrl-C."""
    raise Terminated()


class InterruptRequests:
    """Within ``with``: the first SIGINT or SIGTERM is only recorded (:attr:`signal`), so that the work
    stops at its next safe point (training: between steps, with a checkpoint); a second one stops at
    once (KeyboardInterrupt, or :class:`Terminated` for SIGTERM). Outside, the previous handlers."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_status(self) -> int:
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        self.signal = signum

    def __enter__(self) -> "InterruptRequests":
        if threading.current_thread() is threading.main_thread():  # elsewhere signals cannot be handled
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def resume_command(args: argparse.Namespace, flag: str | None = None) -> str:
    """The command line that was run (``args.command_line``, set by ``main``), with ``flag`` added."""
    import shlex

    words = list(getattr(args, "command_line", None) or [args.command, "..."])
    if flag is not None and flag not in words:
        words.append(flag)
    return shlex.join(["itomd", *words])


def report_stop(args: argparse.Namespace, interrupts: InterruptRequests, step: int, max_steps: int) -> int:
    """A run of ``train``/``distill`` stopped by Ctrl-C or SIGTERM at a checkpoint: say where and how to
    continue (stderr); returns the exit status."""
    how = "terminated" if interrupts.exit_status == EXIT_TERMINATED else "interrupted"
    print(f"itomd {args.command}: {how} at step {step} of {max_steps}; checkpoint written to "
          f"{args.out / 'checkpoint.pt'}; continue with: {resume_command(args, '--resume')}", file=sys.stderr)
    return interrupts.exit_status


def checkpoint_kept(args: argparse.Namespace) -> str:
    """What a run of ``train``/``distill`` stopped by a failed write or a second Ctrl-C keeps: its last
    checkpoint in ``args.out``."""
    checkpoint = args.out / "checkpoint.pt"
    if not checkpoint.is_file():
        return "no checkpoint was written yet; re-run the same command to start again"
    return f"the last checkpoint {checkpoint} is kept; continue with: {resume_command(args, '--resume')}"


def trajectories_kept(out: Path, total: int) -> str:
    """What a resumable job into the store ``out`` keeps, for a message after an interruption or a failed
    write: how many of ``total`` trajectories are complete, and that the same command resumes."""
    from itomd.data.store import TrajectoryStore

    try:
        done = len(TrajectoryStore(out).indices) if Path(out).is_dir() else 0
    except Exception:  # noqa: BLE001 - a note about kept work must never fail itself
        return f"completed trajectories in {out} are kept; re-running the same command resumes"
    return f"{done} of {total} trajectories are complete and kept in {out}; re-running the same command resumes"

