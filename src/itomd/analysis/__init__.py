"""Analysis of trajectories: MSMs with deeptime (implied timescales with Bayesian intervals, CK tests,
mean first passage times between basins),
free-energy surfaces, JS divergence (nats), autocorrelation, and a self-contained HTML report.

Inputs are plain arrays: a list of trajectories [n_frames_i, dim] and the physical time per frame.
Every result has ``.to_dict()`` (JSON-serialisable) and, where it makes sense, ``.plot()``.

:func:`analyze` is the one pipeline; a :class:`Featurizer` (from :meth:`itomd.representation.Representation.featurizer`: raw
coordinates, a molecule's φ/ψ grid or the TICA plane of its torsions) decides what it looks at and which
:class:`Section` objects (e.g. a molecule's chemical validity) the result gets.
"""

from itomd.analysis.correlation import AutocorrelationResult, autocorrelation, first_coordinate
from itomd.analysis.discretize import Discretization, discretize
from itomd.analysis.divergence import JSDivergence, js_divergence, js_divergence_of_distributions
from itomd.analysis.features import (BackboneTorsionFeaturizer, CoordinateFeaturizer, Featurizer,
                                     TorsionTICAFeaturizer, torsion_featurizer)
from itomd.analysis.fes import FreeEnergySurface, free_energy_surface
from itomd.analysis.mfpt import Basins, MFPTResult, mean_first_passage_times
from itomd.analysis.molecular import (MolecularSection, TorsionSet, ValidityResult, backbone_dihedrals,
                                      backbone_torsions, chemical_validity, torsion_set)
from itomd.analysis.msm import CKTestResult, ImpliedTimescalesResult, ck_test, implied_timescales
from itomd.analysis.pipeline import AnalysisResult, Comparison, analyze, compare, default_lags
from itomd.analysis.report import write_report
from itomd.analysis.sections import Section

__all__ = [
    "analyze", "AnalysisResult", "compare", "Comparison", "default_lags", "write_report",
    "Featurizer", "CoordinateFeaturizer", "BackboneTorsionFeaturizer", "TorsionTICAFeaturizer",
    "torsion_featurizer", "Section",
    "discretize", "Discretization",
    "implied_timescales", "ImpliedTimescalesResult", "ck_test", "CKTestResult",
    "mean_first_passage_times", "MFPTResult", "Basins",
    "free_energy_surface", "FreeEnergySurface",
    "js_divergence", "js_divergence_of_distributions", "JSDivergence",
    "autocorrelation", "AutocorrelationResult", "first_coordinate",
    "backbone_dihedrals", "backbone_torsions", "torsion_set", "TorsionSet", "chemical_validity",
    "ValidityResult", "MolecularSection",
]
