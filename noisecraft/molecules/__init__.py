"""Molecules by masked diffusion over SMILES or SELFIES tokens: the "molecules" modality (``noisecraft molecules``).

tokenizers.py: atom-level SMILES and SELFIES tokenizers. data.py: SMILES / CSV files -> canonical SMILES (invalid
lines reported), the embedded MOSES subset. properties.py: QED, logP, SA, MW, TPSA, HBD/HBA, rotatable bonds,
rings and their normalisation. training.py: ``train_molecules(config)`` over the shared Trainer (property
conditioning with condition dropout for classifier-free guidance) and ``make_tiny_model``. pipeline.py:
``MoleculePipeline`` (the pipeline protocol: targets, guidance, substructure by rejection; CSV + JSON + PNG).
filters.py: PAINS / Brenk alerts and forbidden SMARTS. scaffold.py: scaffold decoration by infill.
metrics.py: MOSES metrics and targeting metrics. cli.py: ``noisecraft molecules fit | sample | evaluate``. The
model, loss and sampler are the shared sequence layer's (:mod:`noisecraft.sequence`). Needs ``noisecraft[molecules]``
(rdkit, selfies).
"""
