"""itomd — accelerate molecular dynamics with learned transition densities (ITO / BoPITO).

Subpackages
-----------
systems
    Potentials, :class:`~itomd.systems.System`, shipped toy systems and exact references.
simulate
    Batched Langevin integrators and resumable dask campaigns.
data
    The trajectory store (HDF5, atomic writes).
analysis
    MSMs, implied timescales, CK tests, free energies, JS divergence, autocorrelation, HTML report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("itomd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
