"""The random states a checkpoint carries, so that a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """This process's RNG states; numpy's key array goes in as a tensor so ``torch.load(weights_only=True)`` works."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}}
    if generator.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(generator.device)
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what :func:`capture_rng` took (the CUDA state only onto a CUDA generator)."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    if "cuda" in state and generator.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], generator.device)
