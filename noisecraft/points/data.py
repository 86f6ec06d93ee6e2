"""Training data of the points modality: the procedural world (:mod:`noisecraft.points.world`) or a folder of the
user's meshes.

A mesh folder holds OBJ / STL / PLY / GLB / GLTF / OFF files (read by trimesh), either in sub-folders (the
sub-folder name is the label: ``chairs/a.obj`` -> "chairs") or with a ``metadata.jsonl`` of captions
(``{"file_name": "a.obj", "text": "a wooden chair"}`` per line). Every mesh is normalised to the unit sphere: centred
on the area-weighted centroid of its surface and scaled so that its farthest vertex is at distance 1. Item ``i``
samples ``points`` surface points of mesh ``i % len(meshes)`` with the same random draw every time (resumable).

Unreadable files, meshes without faces (a point cloud) and meshes without surface area are named in one error;
``skip_bad=True`` (``--skip-bad``) leaves them out and reports them instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from noisecraft.points.world import PointsWorld, _rng, sample_triangles

MESH_SUFFIXES = (".obj", ".stl", ".ply", ".glb", ".gltf", ".off")


class BadMesh(ValueError):
    """A mesh file that cannot be used; the message names the file and why."""


def load_mesh_triangles(path: str | Path) -> np.ndarray:
    """The triangles ``[F, 3, 3]`` of the mesh (or scene, flattened) in ``path``, normalised to the unit sphere."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise BadMesh(f"{path}: no such mesh file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise BadMesh(f"{path}: unknown mesh format {path.suffix or '(no suffix)'}; use one of "
                      f"{', '.join(MESH_SUFFIXES)}")
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as error:  # trimesh raises many kinds for broken files
        raise BadMesh(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    faces = getattr(loaded, "faces", None)
    if faces is None or len(faces) == 0:
        raise BadMesh(f"{path}: the mesh is empty (no faces; a point cloud is not a mesh)")
    triangles = np.asarray(loaded.triangles, dtype=np.float64)
    if not np.isfinite(triangles).all():
        raise BadMesh(f"{path}: the mesh has non-finite vertex coordinates")
    areas = np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    if not areas.sum() > 1e-12:
        raise BadMesh(f"{path}: the mesh has no surface area (all faces degenerate)")
    centroid = (triangles.mean(1) * areas[:, None]).sum(0) / areas.sum()
    triangles = triangles - centroid
    return triangles / float(np.linalg.norm(triangles.reshape(-1, 3), axis=1).max())


@dataclass
class MeshFolder:
    """Map-style data set of a mesh folder (see the module docstring)."""

    root: Path
    points: int = 2048
    normals: bool = False
    seed: int = 0
    skip_bad: bool = False
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    caption_list: list[str] | None = None
    triangles: list[np.ndarray] = field(default_factory=list)
    report: str = ""

    def __post_init__(self) -> None:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such mesh folder (give a folder of OBJ/STL/PLY/GLB files, or "
                                    "'world' for the procedural shapes)")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        if not files:
            raise ValueError(f"{root} holds no mesh files ({', '.join(MESH_SUFFIXES)})")
        captions = _read_captions(root) if (root / "metadata.jsonl").is_file() else None
        good, bad = [], []
        for path in files:
            try:
                triangles = load_mesh_triangles(path)
            except BadMesh as error:
                bad.append(str(error))
                continue
            good.append((path, triangles))
        if bad and not self.skip_bad:
            raise ValueError(f"{len(bad)} of {len(files)} meshes cannot be used (pass --skip-bad to leave them "
                             f"out): " + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
        if not good:
            raise ValueError(f"no usable mesh in {root}: " + "; ".join(bad[:10]))
        self.report = (f"left out {len(bad)} bad meshes: " + "; ".join(bad)) if bad else ""
        self.files = [p for p, _ in good]
        self.triangles = [t for _, t in good]
        if captions is not None:
            rel = [p.relative_to(root).as_posix() for p in self.files]
            missing = [r for r in rel if r not in captions]
            if missing:
                raise ValueError(f"{root}/metadata.jsonl has no caption for {len(missing)} meshes, e.g. {missing[0]}")
            self.caption_list = [captions[r] for r in rel]
        folders = [p.parent.relative_to(root).as_posix() for p in self.files]
        if all(f != "." for f in folders):
            self.class_names = sorted(set(folders))
            self.labels = [self.class_names.index(f) for f in folders]
        else:
            self.labels = [0] * len(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        xyz, normals = sample_triangles(self.triangles[index], self.points, _rng(self.seed, index, "folder"))
        cloud = np.concatenate([xyz, normals], 1) if self.normals else xyz
        item: dict[str, Any] = {"points": cloud.astype(np.float32), "label": self.labels[index]}
        if self.caption_list is not None:
            item["caption"] = self.caption_list[index]
        return item

    @property
    def captions(self) -> list[str] | None:
        return self.caption_list


def _read_captions(root: Path) -> dict[str, str]:
    captions = {}
    for number, line in enumerate((root / "metadata.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            captions[str(entry["file_name"])] = str(entry["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{root}/metadata.jsonl line {number}: expected {{\"file_name\": ..., \"text\": ...}} "
                             f"({error})") from None
    return captions


def build_points_data(data: str, *, points: int, normals: bool, world: dict | None = None,
                      num_examples: int = 100_000, seed: int = 0, skip_bad: bool = False):
    """``"world"`` -> :class:`PointsWorld`, else a :class:`MeshFolder` of that path."""
    if data == "world":
        config = dict(world or {}) | {"points": points, "normals": normals}
        return PointsWorld(config, size=num_examples, seed=seed, split="train")
    if world:
        raise ValueError("'world' settings only apply to data='world'")
    return MeshFolder(Path(data), points=points, normals=normals, seed=seed, skip_bad=skip_bad)
