"""Text-to-image conditioning: prompts -> one guided denoiser, through the engine's classifier-free guidance.

A prompt is parsed into weighted concepts (``noisecraft.text.prompts``), every concept and the negative prompt are
encoded in one padded batch (so all conditions share one token length and can be stacked), and
:func:`noisecraft.diffusion.guidance.composed_denoiser` evaluates them in one batched forward pass:

    D = D_u + g sum_i (w_i / W) (D_i - D_u),    W = sum of the positive w_i

with g the guidance scale and w_i the concept weights: Composable Diffusion's conjunction (Liu et al., 2022,
eq. 10) of classifier-free-guided terms (Ho & Salimans, 2022, eq. 6), its weights (the paper's w_i, here
g w_i / W) summing to g over the concepts to draw. The concepts share the guidance instead of each taking all of
it (``noisecraft.text.prompts.guidance_shares``): with ``g w_i`` a two-concept prompt was guided at 2g, a README
example at 2.5g, far past the scale the model draws clean images at. One concept (of any positive weight) is
therefore exactly classifier-free guidance with scale g, and so is a conjunction of concepts that all say the same.
The unconditional D_u is the fully masked context the model was trained with (condition dropout), or the negative
prompt, which replaces it as in Stable Diffusion.

Composition can only draw what each concept's conditional allows: a model whose captions always name every object
of the scene (the shapes world's) reads "a red circle" as "a red circle and nothing else", so the conjunction of two
such concepts asks for a scene that is in neither; such a model draws "a red circle and a blue square" as one
plain prompt (see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

from torch import Tensor, nn

from noisecraft.diffusion.guidance import composed_denoiser
from noisecraft.text.encoders import validate_prompt
from noisecraft.text.prompts import Concept, guidance_shares, is_composed, parse_composition

Denoiser = Callable[[Tensor, "float | Tensor"], Tensor]


def prompt_concepts(prompt: str | Sequence[str], n: int) -> list[Concept] | list[str]:
    """A single prompt (for all ``n`` images) as weighted concepts, or a list of ``n`` plain prompts as-is.

    Composition needs one prompt shared by the batch: per-image prompts may not use ``AND`` or weights.
    """
    if isinstance(prompt, str):
        return parse_composition(validate_prompt(prompt))
    prompts = [validate_prompt(p) for p in prompt]
    if len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts for {n} images; give one prompt per image, or a single one")
    if any(is_composed(p) for p in prompts):
        raise ValueError("per-image prompts cannot use AND or ':weight'; pass a single composed prompt for the "
                         "whole batch instead")
    return prompts


def text_guided_denoiser(model: nn.Module, prompt: str | Sequence[str], n: int, *, guidance: float = 1.0,
                         negative_prompt: str | None = None) -> tuple[Denoiser, int, dict]:
    """The denoiser ``D(x, sigma)`` for ``n`` images of ``prompt`` (see the module docstring).

    ``model`` is an :class:`~noisecraft.images.pipeline.ImageDiffusionModel` with a text encoder. Returns the
    denoiser, the number of network evaluations it makes per call (1 for the plain conditional model), and a
    record of the concepts, weights and unknown words for the image metadata. Words outside a learned encoder's
    vocabulary give a warning that names them (they would otherwise be dropped silently, as ``<unk>``).
    """
    concepts = prompt_concepts(prompt, n)
    shared = isinstance(prompt, str)
    texts = [c.text for c in concepts] if shared else list(concepts)
    negative = [validate_prompt(negative_prompt)] if negative_prompt is not None else []
    unknown = model.unknown_words(texts + negative)
    if unknown:
        warnings.warn(unknown_words_message(unknown, model.spec.text_encoder.get("vocab")), stacklevel=3)
    context, mask = model.encode_text(texts + negative)  # one padded batch: every condition has the same length
    if negative:
        uncond = {"context": context[-1:], "context_mask": mask[-1:]}
        context, mask = context[:-1], mask[:-1]
    else:
        uncond = {key: value.unsqueeze(0) for key, value in model.null_text(context.shape[1]).items()}
    if shared:
        conds = [{"context": context[i:i + 1], "context_mask": mask[i:i + 1]} for i in range(len(texts))]
        weights = [guidance * share for share in guidance_shares(concepts)]
    else:
        conds, weights = [{"context": context, "context_mask": mask}], [guidance]
    record = {"concepts": [[c.text, c.weight] for c in concepts] if shared else None,
              "negative_prompt": negative_prompt, "unknown_words": unknown}
    if weights == [1.0]:  # D_u + 1 (D_c - D_u) = D_c whatever D_u is: skip the unconditional evaluation
        cond = {key: value.expand(n, *value.shape[1:]) for key, value in conds[0].items()}
        return (lambda x, sigma: model(x, sigma, **cond)), 1, record
    return composed_denoiser(model, conds, weights, uncond), 1 + len(conds), record


def unknown_words_message(unknown: Sequence[str], vocab: Sequence[str] | None = None) -> str:
    """Warning text for prompt words a model cannot read, listing the words it knows (``vocab``) if given."""
    plural = len(unknown) > 1
    message = (f"this model does not know the word{'s' * plural} {', '.join(map(repr, unknown))}: "
               f"{'each reaches' if plural else 'it reaches'} the model as the meaningless <unk> token")
    if vocab:
        message += f"; it knows {len(vocab)} words: {' '.join(vocab[:60])}{' ...' if len(vocab) > 60 else ''}"
    return message


def write_prompt_grid(pipeline, prompts: Sequence[str], path, *, per_prompt: int = 4, seed: int = 0,
                      **sample_options):
    """A grid PNG with one row of ``per_prompt`` images per prompt, labelled with the prompt; returns its path.

    ``pipeline`` is a text-to-image :class:`~noisecraft.images.pipeline.ImagePipeline`; ``sample_options``
    (guidance, steps, sampler, ...) go to its ``sample``. All rows are generated in one batch.
    """
    from noisecraft.images.io import save_grid

    repeated = [p for p in prompts for _ in range(per_prompt)]
    images, parameters = pipeline.sample(len(repeated), prompt=repeated, seed=seed, **sample_options)
    return save_grid(images, path, nrow=per_prompt, parameters=parameters, labels=list(prompts),
                     upscale=max(1, 64 // pipeline.spec.resolution))
