"""noisecraft: diffusion models for images, text, molecules and tables on one exact engine.

Python API (mirrors the CLI)::

    import noisecraft
    noisecraft.train({"data": "digits", "out_dir": "runs/digits", "train": {"steps": 2000}})
    images, parameters = noisecraft.load("runs/digits").sample(16, labels=[7] * 16, guidance=2.0, seed=0)
"""

__version__ = "0.1.0"

from noisecraft.api import load, train  # noqa: E402  (after __version__, which the pipeline records)

__all__ = ["__version__", "load", "train"]
