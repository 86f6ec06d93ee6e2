"""``TextPipeline``: a trained text model folder behind the pipeline protocol (noisecraft.protocol).

Generation is masked diffusion (``noisecraft.sequence.sampling.generate_tokens``): all positions start masked and
are revealed over ``steps`` steps. Three kinds of request:

- free text: ``{"n": 4, "length": 200}``;
- a prefix: ``{"prefix": "ROMEO.\\n"}``: the text starts with the prefix, kept as given, and goes on to ``length``
  tokens;
- infilling: ``{"infill": "To be, or [___] to be"}``: a template whose gaps are generated and whose other text is
  kept as given. A gap is ``[`` + one or more ``_`` + ``]``; each ``_`` is one generated token: one character with
  the character tokenizer (``[___]`` -> 3 characters), one BPE token (about 4 characters of English) with the BPE
  tokenizer. Any other bracket is plain text (``[Exit.]`` stays as written); ``\\[`` writes a literal ``[`` where it
  would open a gap (``\\[__]`` is the text ``[__]``). The text is the filled template, then, when ``length`` is
  larger than the template's tokens, a continuation up to ``length`` tokens.

``length`` counts tokens (characters with the character tokenizer); by default the model's window, or the
template's length with ``infill``. A free or continued text ends at the first ``<eos>`` the model writes (a document
end); inside an infilled template, a generated ``<eos>`` / ``<pad>`` is left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from noisecraft import __version__
from noisecraft.protocol import Generation, Param, ParameterError, Pipeline, StepReporter
from noisecraft.sequence.folder import load_sequence_folder
from noisecraft.training.checkpoint import atomic_write_bytes

from .tokenizers import TOKENIZER_FILE, CharTokenizer, Tokenizer, UnknownCharacters, load_tokenizer

MODEL_KIND = "text"
STRATEGIES = ("ancestral", "random", "confidence")
MAX_N = 256
MAX_STEPS = 4096
OUTPUT_FILE = "texts.jsonl"
_GAP = re.compile(r"\\\[|\[(_+)\]")


def parse_template(template: str) -> list[tuple[str, str | int]]:
    """``template`` as segments ``("text", str)`` and ``("gap", number of tokens)`` (see the module docstring)."""
    segments: list[tuple[str, str | int]] = []
    text, position = [], 0
    for match in _GAP.finditer(template):
        text.append(template[position:match.start()])
        position = match.end()
        if match.group(1) is None:  # "\[": a literal bracket
            text.append("[")
            continue
        if "".join(text):
            segments.append(("text", "".join(text)))
        text = []
        segments.append(("gap", len(match.group(1))))
    text.append(template[position:])
    if "".join(text):
        segments.append(("text", "".join(text)))
    return segments





def texts_jsonl(generation: Generation) -> bytes:
    """One JSON object per text: its index, the text and the parameters that made it."""
    lines = [json.dumps({"index": i, "text": text, "parameters": generation.parameters}, ensure_ascii=False,
                        sort_keys=True) for i, text in enumerate(generation.items)]
    return ("\n".join(lines) + "\n").encode("utf-8")


class TextPipeline(Pipeline):
    """A text diffusion model (network + tokenizer) ready to generate; ``noisecraft.load(folder)`` returns one."""

    modality = "text"

    def __init__(self, model: torch.nn.Module, spec: Any, tokenizer: Tokenizer, model_config: dict, *,
                 source: str = ""):
        self.model, self.spec, self.tokenizer = model.eval(), spec, tokenizer
        self.model_config, self.source = model_config, source

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", use_ema: bool = True) -> "TextPipeline":
        model, spec, tokenizer, model_config, model_dir = load_sequence_folder(
            path, kind=MODEL_KIND, what="text", fit_command="noisecraft text fit", tokenizer_file=TOKENIZER_FILE,
            load_tokenizer=load_tokenizer, device=device, use_ema=use_ema)
        return cls(model, spec, tokenizer, model_config, source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        return int(self.spec.max_length)

    # --- the pipeline protocol ---

    def parameters(self) -> list[Param]:
        unit = "characters" if isinstance(self.tokenizer, CharTokenizer) else "BPE tokens"
        gap = "character" if isinstance(self.tokenizer, CharTokenizer) else "BPE token (~4 characters)"
        window = self.max_length
        return [
            Param("n", "int", 1, "Number of texts to generate.", 1, MAX_N),
            Param("length", "int", None, f"Length of each text in {unit} (default: the model's window, {window}; "
                                         f"with infill, the template's length).", 1, window),
            Param("prefix", "str", "", "Text every generated text starts with, kept as given.", None,
                  16 * window),
            Param("infill", "str", "", "Template to fill in: text kept as given, with gaps [___] generated, one "
                                       f"{gap} per _ (e.g. \"To be, or [___] to be\"); \\[ is a literal [.",
                  None, 16 * window),
            Param("steps", "int", window, "Denoising steps (more: better text, slower; about the length is "
                                          "plenty).", 1, MAX_STEPS),
            Param("strategy", "choice", "ancestral", "Which masked tokens each step reveals: ancestral (exact "
                                                     "MDLM sampler), random (a fixed count at random) or "
                                                     "confidence (the most probable first, MaskGIT).",
                  choices=STRATEGIES),
            Param("temperature", "float", 1.0, "Sampling temperature (0: always the most probable token).", 0, 5),
            Param("top_p", "float", 1.0, "Nucleus sampling: draw only from the most probable tokens that make up "
                                         "this probability mass (1: all; must be > 0).", 0, 1),
        ]

    def _encode(self, text: str, name: str) -> list[int]:
        try:
            return self.tokenizer.encode(text, what=f"the {name}")
        except UnknownCharacters as error:
            raise ParameterError(name, str(error)) from None

    def _plan(self, params: dict[str, Any]) -> dict[str, Any]:
        """Resolve length, prefix tokens and the infill template (token ids, mask where generated)."""
        prefix, infill, length = params["prefix"] or "", params["infill"] or "", params["length"]
        if prefix and infill:
            raise ParameterError("infill", "give either a prefix or an infill template, not both (a template "
                                           "that starts with text is a prefix with gaps)")
        if not params["top_p"] > 0:
            raise ParameterError("top_p", f"must be > 0 (a nucleus holds at least the most probable token), got "
                                          f"{params['top_p']:g}")
        mask_id = int(self.spec.mask_id)
        plan: dict[str, Any] = {"prefix": None, "template": None, "segments": None, "kept": 0}
        if infill:
            segments = parse_template(infill)
            if not any(kind == "gap" for kind, _ in segments):
                raise ParameterError("infill", f"the template {infill[:40]!r} has no gap; mark the text to generate "
                                               f"with [___] (one _ per generated token)")
            ids, encoded = [], []
            for kind, value in segments:
                part = self._encode(value, "infill") if kind == "text" else [mask_id] * int(value)
                encoded.append((kind, value, len(part)))
                ids.extend(part)
            length = len(ids) if length is None else length
            if len(ids) > length:
                raise ParameterError("infill", f"the template is {len(ids)} tokens long but length is {length}; "
                                               f"shorten the template or raise length (at most {self.max_length})")
            if len(ids) > self.max_length:
                raise ParameterError("infill", f"the template is {len(ids)} tokens long; the model's window is "
                                               f"{self.max_length}")
            plan |= {"template": ids + [mask_id] * (length - len(ids)), "segments": encoded, "kept": len(ids)}
        elif prefix:
            ids = self._encode(prefix, "prefix")
            length = self.max_length if length is None else length
            if len(ids) >= length:
                raise ParameterError("prefix", f"the prefix is {len(ids)} tokens long, not shorter than the text "
                                               f"length {length}; shorten it or raise length (at most "
                                               f"{self.max_length})")
            plan |= {"prefix": ids, "kept": len(ids)}
        plan["length"] = self.max_length if length is None else length
        return plan

    def _generate(self, params: dict[str, Any], *, seed: int, progress, cancel) -> Generation:
        from noisecraft.sequence.sampling import generate_tokens

        plan = self._plan(params)
        reporter = StepReporter(params["steps"], progress, cancel)
        reporter.check_cancel()
        length, n = plan["length"], params["n"]
        prefix = None if plan["prefix"] is None else torch.tensor(plan["prefix"], dtype=torch.long)
        template = None if plan["template"] is None else torch.tensor(plan["template"], dtype=torch.long)
        tokens = generate_tokens(
            self.model, n, length, steps=params["steps"], seed=seed, strategy=params["strategy"],
            temperature=params["temperature"], top_p=params["top_p"], prefix=prefix, template=template,
            progress=lambda done, total: reporter.step(max(0, done - reporter.done), total=total),
            device=self.device)
        texts = [self._text(row.tolist(), params, plan) for row in tokens.cpu()]
        record = {"model": self.source, "modality": self.modality, **params, "length": length, "seed": seed,
                  "tokenizer": self.tokenizer.kind, "noisecraft": __version__}
        return Generation(texts, record)

    def _until_eos(self, ids: list[int]) -> list[int]:
        eos = self.tokenizer.eos_id
        return ids[:ids.index(eos)] if eos in ids else ids

    def _text(self, ids: list[int], params: dict[str, Any], plan: dict[str, Any]) -> str:
        kept = plan["kept"]
        if plan["segments"] is None:  # free text or a prefix (kept exactly as given)
            return (params["prefix"] or "") + self.tokenizer.decode(self._until_eos(ids[kept:]))
        parts, position = [], 0
        for kind, value, count in plan["segments"]:
            parts.append(value if kind == "text" else self.tokenizer.decode(ids[position:position + count]))
            position += count
        return "".join(parts) + self.tokenizer.decode(self._until_eos(ids[kept:]))

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        """``texts.jsonl``: one JSON object per text (index, text, parameters), written atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / OUTPUT_FILE
        atomic_write_bytes(path, texts_jsonl(generation))
        return [path]
