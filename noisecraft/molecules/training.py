"""Training a molecule model: molecules -> tokenizer -> padded token sequences (+ normalised properties) ->
``SequenceDiffusionModel`` -> the shared Trainer.

``train_molecules({"data": "moses", "out_dir": "runs/mol", "properties": "qed,logp,sa", "minutes": 30})`` writes
into ``out_dir`` the tokenizer (``tokenizer.json``) and, through the Trainer, ``config.json`` whose ``model_config``
is the ``SequenceModelSpec`` (kind ``"molecules"``; ``extra`` names the tokenizer and representation, the property
normalisation and the data's provenance), the weights, the EMA weights, checkpoints and logs.

Sequences: the molecule's tokens, ``<eos>``, then ``<pad>`` up to ``max_length`` (the longest training molecule + 1
unless given); padding is data (MDLM's setup): the model learns where a molecule ends.

Conditioning (classifier-free guidance, Ho & Salimans 2022): with k properties the network's condition is the
vector ``[z_1..z_k, m_1..m_k]`` (``cond_dim = 2k``): z_i the standardised value of property i, m_i = 1 when it is
given. In training each property is hidden on its own (z_i = m_i = 0) with probability ``property_drop_prob``, so a
request may target any subset of the properties; and the whole condition is dropped with probability
``cond_drop_prob`` (``cond_mask`` False: the network's learned "no condition" vector, the unconditional model that
guidance contrasts with). All these draws come from the Trainer's generator (a resumed run is bit-identical).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from noisecraft.training import Trainer
from noisecraft.training.runs import check_positive_ints, run_checkpoint, train_config_for, with_defaults

from .data import DEFAULT_DATA, MoleculeSet, read_molecules
from .properties import Normalizer, compute_table, parse_properties
from .tokenizers import REPRESENTATIONS, TOKENIZER_FILE, MoleculeTokenizer, TokenizeError, load_tokenizer
from .tokenizers import make_tokenizer

MODEL_KIND = "molecules"
PRESETS = ("tiny", "small", "base")
DEFAULTS: dict[str, Any] = {
    "data": DEFAULT_DATA, "column": None, "out_dir": None, "properties": [], "representation": "smiles",
    "preset": "small", "net": {}, "max_length": None, "steps": None, "minutes": None, "batch_size": 128,
    "lr": 3e-4, "seed": 0, "cond_drop_prob": 0.1, "property_drop_prob": 0.3, "train": {},
}


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    config = with_defaults(config, DEFAULTS, what="molecule training")
    config["properties"] = parse_properties(config["properties"])
    if config["representation"] not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {config['representation']!r}; choose one of "
                         f"{', '.join(REPRESENTATIONS)}")
    if config["preset"] not in PRESETS:
        raise ValueError(f"unknown preset {config['preset']!r}; choose one of {', '.join(PRESETS)}")
    check_positive_ints(config, ("batch_size",))
    max_length = config["max_length"]
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    for key in ("cond_drop_prob", "property_drop_prob"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{key} must be in [0, 1), got {value!r}")
    return config


class MoleculeSequences:
    """Map-style dataset of padded token sequences (and conditions); :meth:`collate` gathers a batch at once."""

    def __init__(self, tokens: torch.Tensor, cond: torch.Tensor | None):
        self.tokens, self.cond = tokens, cond

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"molecule {index} of {len(self)}")
        return index % len(self)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {"tokens": self.tokens[index]}
        if self.cond is not None:
            batch["cond"] = self.cond[index]
            batch["cond_mask"] = torch.ones(len(indices), dtype=torch.bool)
        return batch


def encode_all(tokenizer: MoleculeTokenizer, smiles: list[str], max_length: int | None):
    """(token rows without padding, kept indices, dropped count): molecules that do not fit ``max_length`` - 1
    tokens or that use symbols outside the vocabulary are left out."""
    rows, kept, dropped = [], [], 0
    for i, item in enumerate(smiles):
        try:
            ids = tokenizer.encode(item)
        except TokenizeError:
            dropped += 1
            continue
        if max_length is not None and len(ids) + 1 > max_length:
            dropped += 1
            continue
        rows.append(ids)
        kept.append(i)
    return rows, kept, dropped


def pad_rows(rows: list[list[int]], length: int, eos_id: int, pad_id: int) -> torch.Tensor:
    out = torch.full((len(rows), length), pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        out[i, len(ids)] = eos_id
    return out


def make_property_loss(spec, property_drop_prob: float, k: int):
    """The shared masked-diffusion loss with each property hidden on its own with ``property_drop_prob``."""
    from noisecraft.diffusion.loss import draw
    from noisecraft.sequence.model import make_loss_fn

    base = make_loss_fn(spec)
    if k == 0 or property_drop_prob == 0:
        return base

    def loss_fn(model, batch, generator):
        values, given = batch["cond"][:, :k], batch["cond"][:, k:]
        keep = draw(torch.rand, values.shape, generator=generator, device=values.device) >= property_drop_prob
        given = given * keep
        return base(model, {**batch, "cond": torch.cat([values * given, given], dim=1)}, generator)

    return loss_fn


def prepare(config: dict[str, Any], molecules: MoleculeSet, out_dir: Path, *, resume: bool):
    """Tokenizer, dataset and spec for a checked ``config``; returns (tokenizer, dataset, spec, info)."""
    from noisecraft.sequence.model import SequenceModelSpec
    from noisecraft.nets.registry import network_config

    if resume:
        path = out_dir / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {out_dir} holds no {TOKENIZER_FILE} (no molecule run was "
                                    f"started there); start without --resume")
        tokenizer = load_tokenizer(path)
        if tokenizer.representation != config["representation"]:
            raise ValueError(f"cannot resume: the run in {out_dir} uses {tokenizer.representation}, not "
                             f"{config['representation']}")
    else:
        tokenizer = make_tokenizer(config["representation"], molecules.smiles)
    rows, kept, dropped = encode_all(tokenizer, molecules.smiles, config["max_length"])
    if not rows:
        raise ValueError(f"no training molecule fits max_length={config['max_length']} (the longest needs "
                         f"{max(len(tokenizer.encode(s)) for s in molecules.smiles[:1000]) + 1})")
    length = config["max_length"] or max(len(r) for r in rows) + 1
    tokens = pad_rows(rows, length, tokenizer.eos_id, tokenizer.pad_id)
    names = config["properties"]
    extra: dict[str, Any] = {"tokenizer": TOKENIZER_FILE, "representation": tokenizer.representation,
                             "data": {**molecules.provenance, "used": len(rows), "too_long_or_unknown": dropped}}
    cond = None
    if names:
        smiles = [molecules.smiles[i] for i in kept]
        table = compute_table(smiles, names)
        normalizer = Normalizer.fit(table, names)
        values = torch.as_tensor(normalizer.normalise_table(table), dtype=torch.float32)
        cond = torch.cat([values, torch.ones_like(values)], dim=1)
        extra["properties"] = normalizer.to_dict()
        extra["property_drop_prob"] = config["property_drop_prob"]
    net = network_config("sequence_transformer", config["preset"],
                         **{"time_conditioning": "none", **config["net"], "vocab_size": tokenizer.vocab_size,
                            "max_length": length, "cond_dim": 2 * len(names)})
    net = net.to_dict() if hasattr(net, "to_dict") else dict(net)
    spec = SequenceModelSpec(kind=MODEL_KIND, network="sequence_transformer", net=net,
                             vocab_size=tokenizer.vocab_size, mask_id=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                             eos_id=tokenizer.eos_id, max_length=length, cond_drop_prob=config["cond_drop_prob"],
                             extra=extra)
    return tokenizer, MoleculeSequences(tokens, cond), spec


def train_on_molecules(molecules: MoleculeSet, config: dict[str, Any], *, resume: bool = False,
                       progress: bool = True):
    """Train on already read ``molecules`` with a checked ``config`` (see :func:`train_molecules`)."""
    from noisecraft.sequence.model import SequenceDiffusionModel

    out_dir = Path(config["out_dir"])
    checkpoint = run_checkpoint(out_dir, resume=resume)  # before anything is written into the run folder
    tokenizer, dataset, spec = prepare(config, molecules, out_dir, resume=resume)
    train_config = train_config_for(config, checkpoint=checkpoint, checkpoint_every=1000)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        tokenizer.save(out_dir)
    torch.manual_seed(config["seed"])  # network initialisation: the same seed gives the same model
    model = SequenceDiffusionModel(spec)
    loss_fn = make_property_loss(spec, config["property_drop_prob"], len(config["properties"]))
    trainer = Trainer(model, loss_fn, dataset, train_config, out_dir, model_config=spec.to_dict(),
                      collate_fn=dataset.collate, progress=progress)
    return trainer.fit(resume=resume)


def train_molecules(config: dict[str, Any], *, resume: bool = False, progress: bool = True):
    """The registry's training entry (``noisecraft.train(config, modality="molecules")``); returns the Trainer's
    result (``.step``, ``.loss``, ``.out_dir``, ...).

    ``config`` keys: ``out_dir`` (required), ``data`` (a SMILES / CSV file, or "moses" = 20k molecules of the MOSES
    training split, "moses:N"), ``column`` (the CSV's SMILES column), ``properties`` ("qed,logp,sa" or a list; none:
    unconditional), ``representation`` ("smiles" or "selfies"), ``preset`` (tiny, small, base), ``net`` (network
    overrides), ``max_length`` (tokens incl. ``<eos>``; default: the longest molecule + 1), ``steps`` or
    ``minutes``, ``batch_size`` (128), ``lr`` (3e-4), ``seed``, ``cond_drop_prob`` (0.1), ``property_drop_prob``
    (0.3) and ``train`` (any TrainConfig field).
    """
    import warnings

    config = check_config(config)
    molecules = read_molecules(config["data"], column=config["column"])
    if molecules.report:
        warnings.warn(molecules.report, stacklevel=2)
    return train_on_molecules(molecules, config, resume=resume, progress=progress)


# The first 120 molecules of the MOSES training split (MIT licence): the contract test's tiny model, no download.
TINY_SMILES = (
    "CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1",
    "CC(C)(C)C(=O)C(Oc1ccc(Cl)cc1)n1ccnc1",
    "Cc1c(Cl)cccc1Nc1ncccc1C(=O)OCC(O)CO",
    "Cn1cnc2c1c(=O)n(CC(O)CO)c(=O)n2C",
    "CC1Oc2ccc(Cl)cc2N(CC(O)CO)C1=O",
    "CCOC(=O)c1cncn1C1CCCc2ccccc21",
    "COc1ccccc1OC(=O)Oc1ccccc1OC",
    "O=C1Nc2ccc(Cl)cc2C(c2ccccc2Cl)=NC1O",
    "CN1C(=O)C(O)N=C(c2ccccc2Cl)c2cc(Cl)ccc21",
    "CCC(=O)c1ccc(OCC(O)CO)c(OC)c1",
    "Cc1nc2c([nH]1)c(=O)n(C)c(=O)n2CC1CC=CCC1",
    "COc1cc2c(cc1O)N=CC1CCC(O)N1C2=O",
    "COc1c(C)cnc(CS(=O)c2nc3ccccc3[nH]2)c1C",
    "COc1cc(C)c(Cc2cnc(N)nc2N)cc1OC",
    "O=C1Nc2ccc(Cl)cc2C(c2ccccc2)=NC1O",
    "CC1CC(OC(=O)CN2CCCC2=O)CC(C)(C)C1",
    "O=C(C1CCCCC1)N1CC(=O)N2CCc3ccccc3C2C1",
    "COC(=O)c1c[nH]c2cc(OC(C)C)c(OC(C)C)cc2c1=O",
    "CCC1NC(=O)c2cc(S(N)(=O)=O)c(Cl)cc2N1",
    "CN1C(=O)C(O)N=C(c2ccccc2)c2cc(Cl)ccc21",
    "CC(C)(C)C(=O)C(Oc1ccc(Cl)cc1)n1cncn1",
    "COc1cc(C(=O)N2CCOCC2)cc(OC)c1OC",
    "CC(c1ncncc1F)C(O)(Cn1cncn1)c1ccc(F)cc1F",
    "COc1ccc(C=C2CCCN=C2c2cccnc2)c(OC)c1",
    "CC(=O)Nc1ccc(S(=O)(=O)c2ccc(NC(C)=O)cc2)cc1",
    "CC(=O)Oc1cc(C)c(OC(C)=O)c2ccccc12",
    "CC(=O)Oc1cccc(OC(C)=O)c1OC(C)=O",
    "CC1(C)C(=O)Nc2cc3nc(-c4ccncc4)[nH]c3cc21",
    "CC(C)C=c1[nH]c(=O)c(=Cc2ccccc2)[nH]c1=O",
    "NC(=O)Nc1ccc(S(=O)(=O)c2ccc(N)cc2)cc1",
    "CC(C)(C#N)c1cc(Cn2cncn2)cc(C(C)(C)C#N)c1",
    "CNC(=O)Oc1ccccc1C(=O)Nc1ccccc1",
    "COc1ccc(-c2nnc(C)nc2-c2ccc(OC)cc2)cc1",
    "Nc1ncnc2c1ncn2Cc1c(F)cccc1Cl",
    "Clc1ccc(C2(Cn3cncn3)OCCO2)c(Cl)c1",
    "Cc1cc(Cc2cnc(N)nc2N)c2cccnc2c1N(C)C",
    "NS(=O)(=O)c1ccc(NCc2ccccc2)cc1",
    "CC1(C)C=C(n2ccccc2=O)c2cc(C#N)ccc2O1",
    "O=C1CN=C(c2ccccn2)c2cc(Br)ccc2N1",
    "CN(CCO)c1nc2c(c(=O)n(C)c(=O)n2C)n1C",
    "CCC1(O)C(=O)OCc2c1cc1n(c2=O)Cc2cc3ccccc3nc2-1",
    "CN1C(=O)CC(=O)N(c2ccccc2)c2cc(Cl)ccc21",
    "NS(=O)(=O)c1cc2c(cc1Cl)CN(C1CCCCC1)C2=O",
    "CCc1cc2c(s1)N(C)C(=O)CN=C2c1ccccc1Cl",
    "CC1(C)Oc2ccc(C#N)cc2C(N2CCCC2=O)C1O",
    "Nc1nc2c(ncn2C2CC(CO)C2CO)c(=O)[nH]1",
    "CC12CCC3=C(CCc4cc(O)ccc43)C1CCC2=O",
    "CNC(=O)c1ccc(Cl)c(S(=O)(=O)NC)c1",
    "NC(=O)c1cc(Br)cc(Br)c1O",
    "O=C(c1ccccc1)c1cccc(NS(=O)(=O)C(F)F)c1",
    "CCCN(CCC)S(=O)(=O)c1ccc(C)cc1",
    "O=C1OCC(Cc2cccc(O)c2)C1Cc1cccc(O)c1",
    "CCc1ccccc1-n1c(C)nc2ccccc2c1=O",
    "CCc1cc2c(s1)-n1c(C)nnc1CN=C2c1ccccc1Cl",
    "CCc1nc(N)nc(N)c1-c1ccc(Cl)c(Cl)c1",
    "Cc1c(O)c(C)c2c(c1O)C(=O)CC(c1ccc(O)cc1)O2",
    "CN1C(=O)CN=C(c2ccccc2F)c2cc(Cl)ccc21",
    "Nc1nc2c(ncn2COC(CO)CO)c(=O)[nH]1",
    "COc1c(OC)c(OC(C)=O)c2cc(Cl)ccc2c1OC(C)=O",
    "Cc1nc2ccccc2c(=O)n1-c1ccccc1Cl",
    "CCOc1ccc(-n2c(C)nc3ccccc3c2=O)cc1",
    "Cc1nc2ccccc2c(=O)n1-c1ccc(Cl)cc1",
    "Cc1cc2c(cc1S(N)(=O)=O)S(=O)(=O)CCC2",
    "Cc1nc(N)nc(N)c1-c1ccc(Cl)c(Cl)c1",
    "Cc1ccc(C)n1Nc1ccc(N2CCOCC2)nn1",
    "O=C1CC(c2ccc(O)cc2)Oc2cc(O)cc(O)c21",
    "Nc1ncnc2c1ncn2C1C=C(CO)C(O)C1O",
    "O=C(c1ccccc1Nc1ccncc1)N1CCCCC1",
    "CC1=NC(=O)C(C#N)=CC1=C1C=CN2C=CNC2=C1",
    "CC(=O)Nc1ccc(OC(=O)c2cccs2)cc1",
    "Nc1nc2c(ncn2CCC(CO)CO)c(=O)[nH]1",
    "OCC1(CO)COC(C(Cl)(Cl)Cl)OC1",
    "CCN(CC)C(=O)c1ccccc1C(=O)N(CC)CC",
    "COc1ccc(C2Cc3cccc(O)c3C(=O)O2)cc1O",
    "C#CCN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "Cc1c2c(cn1C)NC(=O)CN=C2c1ccccc1",
    "CCn1nc(C)c2c1C(c1ccccc1)=NCC(=O)N2",
    "Cc1c(NC(=O)c2ccccc2O)c(=O)n(-c2ccccc2)n1C",
    "CCn1ccc(NS(=O)(=O)c2ccc(N)cc2)nc1=O",
    "Cc1cnc(NS(=O)(=O)c2ccc(N)cc2)nc1",
    "Nc1ccc(S(=O)(=O)Nc2cnccn2)cc1",
    "CC(=O)N(c1onc(C)c1C)S(=O)(=O)c1ccc(N)cc1",
    "NS(=O)(=O)c1ccc(N2CCCCS2(=O)=O)cc1",
    "CN1C(=O)CC(=O)N(c2ccccc2)c2cc(C(F)(F)F)ccc21",
    "Cc1nn(C)c2c1C(c1ccccc1F)=NCC(=O)N2C",
    "CS(=O)(=O)c1ccc(-c2cn3ccccc3n2)cc1",
    "Cc1nn(C)c2c1C(c1cccc(Cl)c1)=NCCN2",
    "NS(=O)(=O)c1cc(C(=O)c2ccc(O)cc2)cs1",
    "COC1C(O)C(CO)OC1n1cnc2c(N)ncnc21",
    "N#Cc1ccc(Nc2ncnc3c2CCC3O)cc1",
    "CN(C)c1ncnc2c1ncn2Cc1ccccc1",
    "CCOC(=O)n1nc(N)c2c1CN(C(=O)OC(C)(C)C)C2",
    "O=C1c2cccnc2CN1Cc1c(F)cccc1F",
    "COc1ccc(CN2Cc3ncccc3C2=O)cc1",
    "O=C1c2cccnc2CN1Cc1ccc(Cl)cc1",
    "O=C1c2cccnc2CN1Cc1cccc(Cl)c1",
    "O=C1c2cccnc2CN1Cc1ccccc1C(F)(F)F",
    "CCOc1ccnc(N2CCN(C(=O)c3sccc3C#N)CC2)n1",
    "CCc1nc(C#N)c(N2CCc3ccccc3CC2)nc1C",
    "COc1cccc(-c2csc(-c3cccnc3)n2)c1",
    "CC1(O)C(O)C(CO)OC1n1ccc2c(N)ncnc21",
    "CC(=O)Nc1ccc(C(=O)Nc2ccccc2N)cc1",
    "CSc1nc2ccccc2n1Cc1ccccn1",
    "Cn1c(=O)c2c(ncn2CC2OCCO2)n(C)c1=O",
    "Cc1ccc(-c2nc3ccc(C)cn3c2CC(=O)N(C)C)cc1",
    "CC(=O)c1ccc(NS(C)(=O)=O)c(Oc2ccc(F)cc2F)c1",
    "Cn1c(=O)c2c(ncn2CC(=O)N2CCOCC2)n(C)c1=O",
    "CN1Cc2c(C(=O)OC(C)(C)C)ncn2-c2ccsc2C1=O",
    "Nc1nc2c(ncn2C2OC(CO)C(O)C2F)c(=O)[nH]1",
    "CNC(=O)OCc1nc(SC)n(C)c1COC(=O)NC",
    "O=C(NCCc1c[nH]c2ccccc12)c1cccnc1",
    "CC(C)n1c(=O)c2c(-c3noc(C4CC4)n3)ncn2c2ccccc21",
    "O=C1CCCN1S(=O)(=O)c1ccc(Cl)cc1",
    "O=C(c1cccnc1)N1CCN(c2cccc(C(F)(F)F)c2)CC1",
    "CCc1c(OC)nc2nc(-c3noc(C)n3)cn2c1C",
    "Nc1nc(NC2CC2)c2ncn(C3C=CC(CO)C3)c2n1",
    "CSc1c(CCC(C)O)c(O)c(C)c(O)c1C(C)=O",
    "COc1cnc2c3c(nccc13)C(=O)c1ccccc1-2",
    "Cc1cccc(C)c1NC(=O)c1ccc(S(C)(=O)=O)cc1",
    "Cc1nc(Cn2cnc3c2c(=O)[nH]c(=O)n3C)no1",
)


def make_tiny_model(out_dir: str | Path) -> Path:
    """A tiny QED-conditioned SMILES model of 120 MOSES molecules, trained a few steps (seconds): contract test."""
    molecules = MoleculeSet(list(TINY_SMILES), [], {"source": "built-in tiny MOSES sample"})
    config = check_config({"out_dir": str(out_dir), "properties": ["qed"], "preset": "tiny", "steps": 4,
                           "batch_size": 16, "lr": 1e-3, "train": {"checkpoint_every": 0, "log_every": 2}})
    train_on_molecules(molecules, config, progress=False)
    return Path(out_dir)
