"""Few-step generation by distillation: consistency distillation (Song et al. 2023) and progressive distillation
(Salimans & Ho 2022) of a trained image model into a 1- to 4-step student that keeps a guidance knob (LCM).

`noisecraft.distill.distill(teacher, out_dir, method=..., steps=... | minutes=...)`, or `noisecraft distill`.
"""

from noisecraft.distill.run import METHODS, DistillConfig, distill

__all__ = ["METHODS", "DistillConfig", "distill"]
