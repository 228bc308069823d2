"""Analysis of trajectories with deeptime: MSMs, implied timescales, CK tests, free energies,
JS divergence, autocorrelation; result objects with ``.plot()`` and ``.to_dict()``; HTML report."""

from itomd.analysis.correlation import AutocorrelationResult, autocorrelation
from itomd.analysis.discretize import Discretization, discretize
from itomd.analysis.divergence import JSDivergence, js_divergence, js_divergence_of_histograms
from itomd.analysis.fes import FreeEnergySurface, free_energy_surface
from itomd.analysis.msm import CKTestResult, ImpliedTimescalesResult, ck_test, implied_timescales
from itomd.analysis.pipeline import AnalysisResult, analyze, default_lags

__all__ = [
    "analyze", "AnalysisResult", "default_lags", "discretize", "Discretization", "implied_timescales",
    "ImpliedTimescalesResult", "ck_test", "CKTestResult", "free_energy_surface", "FreeEnergySurface",
    "js_divergence", "js_divergence_of_histograms", "JSDivergence", "autocorrelation", "AutocorrelationResult",
]
