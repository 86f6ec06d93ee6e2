"""Small pieces every modality's commands share: JSON config files, progress bars, output folders."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable


def load_json(path: Path) -> dict:
    """A JSON config file as a dict, or a one-line error naming the file, line and column."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} line {error.lineno}, column {error.colno}: invalid JSON ({error.msg})") from None


def progress_bar(description: str) -> Callable[[dict], None]:
    """A sampler callback drawing a tqdm bar. The bar appears at the first step, so a request refused before
    sampling starts prints no empty bar; ``info["total"]`` (when the pipeline gives it) sizes it."""
    from tqdm.auto import tqdm

    state = {}

    def callback(info: dict) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=info.get("total"), desc=description, unit="step", leave=False)
        bar = state["bar"]
        bar.update(1)
        if bar.total is not None and bar.n >= bar.total:
            bar.close()

    return callback


def step_progress_bar(description: str) -> Callable[[int, int], None]:
    """A protocol ``progress(done, total)`` callback (:meth:`noisecraft.protocol.Pipeline.generate`) drawing a tqdm
    bar from the first step on, so a request refused before it starts draws none."""
    from tqdm.auto import tqdm

    state: dict = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=description, unit="step", leave=False)
        bar = state["bar"]
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def prepare_output_folder(out: Path, pattern: str = "*") -> Path:
    """Create ``out``; warn when it already holds earlier outputs, which new files of the same names replace and
    the others stay beside (so a grid and a folder could disagree)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} is a file; pass a folder with -o")
    earlier = sorted(out.glob(pattern)) if out.is_dir() else []
    if earlier:
        warnings.warn(f"{out} already holds {len(earlier)} file(s) from an earlier run; files of the same names are "
                      "replaced and the rest stay: use a new -o folder to keep runs apart", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    return out
