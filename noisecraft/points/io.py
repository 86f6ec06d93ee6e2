"""Writing generated clouds: PLY (points, normals, parameters in header comments), a reconstructed mesh (GLB or
OBJ), a three-view PNG (matplotlib) and a turntable GIF (imageio), each carrying the parameters and seed.
Everything is byte-deterministic for the same
input (no timestamps), so the same request and seed give the same files.

Mesh reconstruction: an **alpha shape** of the points (Edelsbrunner & Muecke 1994), computed from scipy's Delaunay
tetrahedralisation: keep the tetrahedra whose circumradius is below ``alpha`` and output their boundary triangles,
oriented outwards. ``alpha`` is the smallest of 6, 8, 11, ... 60 x the median nearest-neighbour distance (so it
follows the sampling density) that closes the surface through >= 90% of the points; a torus keeps its hole, which a
convex hull would fill. When no alpha closes it (a noisy or degenerate cloud), the **convex hull** is used; the
record says which (``reconstruction``, ``alpha``, ``closed``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from noisecraft.training.checkpoint import atomic_write_bytes


def _json(parameters: dict[str, Any]) -> str:
    return json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)


def ply_bytes(points: np.ndarray, normals: np.ndarray | None = None, *,
              comments: dict[str, Any] | None = None) -> bytes:
    """A binary little-endian PLY of ``points [N, 3]`` (and ``normals [N, 3]``); ``comments`` go in the header as
    one ``comment noisecraft {json}`` line (PLY comments are free text, one line each)."""
    points = np.asarray(points, dtype="<f4")
    columns = ["x", "y", "z"]
    data = points
    if normals is not None:
        data = np.concatenate([points, np.asarray(normals, dtype="<f4")], axis=1)
        columns += ["nx", "ny", "nz"]
    header = ["ply", "format binary_little_endian 1.0"]
    if comments:
        header.append("comment noisecraft " + _json(comments).replace("\n", " "))
    header.append(f"element vertex {len(points)}")
    header += [f"property float {c}" for c in columns]
    header.append("end_header")
    return ("\n".join(header) + "\n").encode() + np.ascontiguousarray(data, dtype="<f4").tobytes()


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(points, normals or None, the noisecraft comment's parameters) of a PLY written by :func:`ply_bytes`."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode().splitlines()
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    columns = [line.split()[2] for line in header if line.startswith("property")]
    comment = next((line[len("comment noisecraft "):] for line in header if line.startswith("comment noisecraft ")),
                   "{}")
    data = np.frombuffer(raw[end:], dtype="<f4", count=count * len(columns)).reshape(count, len(columns))
    return data[:, :3].copy(), (data[:, 3:6].copy() if len(columns) >= 6 else None), json.loads(comment)


def estimate_normals(points: np.ndarray, k: int = 12) -> np.ndarray:
    """Unit normals from the smallest principal direction of each point's ``k`` nearest neighbours, oriented away
    from the centroid (fine for the star-shaped world objects)."""
    from scipy.spatial import cKDTree

    k = min(k, len(points))
    _, index = cKDTree(points).query(points, k=k)
    neighbours = points[index] - points[index].mean(1, keepdims=True)
    _, _, vt = np.linalg.svd(neighbours, full_matrices=False)
    normals = vt[:, -1]
    outward = points - points.mean(0)
    normals *= np.where((normals * outward).sum(1, keepdims=True) < 0, -1.0, 1.0)
    return normals.astype(np.float32)


def _boundary(points: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The triangles that bound the union of tetrahedra ``kept [T, 4]``, oriented outwards."""
    if not len(kept):
        return np.zeros((0, 3), dtype=np.int64)
    order = [(0, 1, 2, 3), (0, 1, 3, 2), (0, 2, 3, 1), (1, 2, 3, 0)]  # a face and the vertex opposite it
    tri = np.concatenate([kept[:, list(o[:3])] for o in order])
    opposite = np.concatenate([kept[:, o[3]] for o in order])
    _, inverse, counts = np.unique(np.sort(tri, axis=1), axis=0, return_inverse=True, return_counts=True)
    boundary = counts[inverse.reshape(-1)] == 1
    tri, opposite = tri[boundary], opposite[boundary]
    normal = np.cross(points[tri[:, 1]] - points[tri[:, 0]], points[tri[:, 2]] - points[tri[:, 0]])
    inward = ((points[opposite] - points[tri[:, 0]]) * normal).sum(1) > 0
    tri[inward] = tri[inward][:, [0, 2, 1]]
    return tri.astype(np.int64)


def _closed(faces: np.ndarray) -> bool:
    """Whether every edge of ``faces`` is shared by exactly two of them (a closed surface)."""
    if not len(faces):
        return False
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


ALPHA_FACTORS = (6, 8, 11, 15, 21, 30, 42, 60)


def alpha_shape(points: np.ndarray, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(vertices, faces, record) of the alpha shape of ``points``.

    With ``alpha=None`` the smallest alpha of ``ALPHA_FACTORS`` x the median nearest-neighbour distance that gives
    a closed surface through at least 90% of the points is used; if none does, the convex hull. The record names the
    method, alpha and whether the surface is closed.
    """
    from scipy.spatial import ConvexHull, Delaunay, QhullError, cKDTree

    points = np.asarray(points, dtype=np.float64)
    spacing = float(np.median(cKDTree(points).query(points, k=2)[0][:, 1]))
    try:
        tetra = Delaunay(points).simplices
    except (QhullError, ValueError):
        tetra = np.zeros((0, 4), dtype=int)
    radius = np.zeros(0)
    if len(tetra):
        p = points[tetra]  # [T, 4, 3]; circumcentre x solves 2 (v_i - a) . (x - a) = |v_i - a|^2
        a = p[:, 0]
        m = 2 * (p[:, 1:] - a[:, None])
        rhs = ((p[:, 1:] - a[:, None]) ** 2).sum(-1)
        ok = np.abs(np.linalg.det(m)) > 1e-18
        radius = np.full(len(tetra), np.inf)
        radius[ok] = np.linalg.norm(np.linalg.solve(m[ok], rhs[ok][..., None])[..., 0], axis=1)
    candidates = [alpha] if alpha is not None else [f * spacing for f in ALPHA_FACTORS]
    faces, record = np.zeros((0, 3), dtype=np.int64), None
    for value in candidates:
        trial = _boundary(points, tetra[radius < value]) if len(tetra) else faces
        closed = _closed(trial)
        if alpha is not None or (closed and len(np.unique(trial)) >= 0.9 * len(points)):
            faces, record = trial, {"reconstruction": "alpha shape", "alpha": round(float(value), 6),
                                    "closed": closed}
            break
    if not len(faces):
        try:
            faces = ConvexHull(points).simplices.astype(np.int64)
        except (QhullError, ValueError):
            faces = np.zeros((0, 3), dtype=np.int64)
        why = "alpha shape was empty" if alpha is not None else \
            f"no alpha up to {ALPHA_FACTORS[-1]} x the point spacing closed the surface"
        record = {"reconstruction": f"convex hull ({why})", "closed": bool(len(faces))}
    used = np.unique(faces)
    remap = np.full(len(points), -1)
    remap[used] = np.arange(len(used))
    return points[used], remap[faces], record


def mesh_bytes(vertices: np.ndarray, faces: np.ndarray, fmt: str = "glb",
               parameters: dict[str, Any] | None = None) -> bytes:
    """The mesh as GLB (binary glTF; ``parameters`` in the scene's ``extras`` under "noisecraft") or OBJ bytes
    (``parameters`` as a first ``# noisecraft {json}`` comment line), through trimesh."""
    import trimesh

    if fmt not in ("glb", "obj"):
        raise ValueError(f"mesh format must be glb or obj, got {fmt!r}")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if fmt == "obj":
        header = f"# noisecraft {_json(parameters)}\n" if parameters else ""
        return (header + mesh.export(file_type="obj")).encode()
    scene = trimesh.Scene(mesh)
    if parameters:
        scene.metadata["noisecraft"] = json.loads(_json(parameters))
    return scene.export(file_type="glb")


VIEWS = (("front (x, z)", 0, 2), ("side (y, z)", 1, 2), ("top (x, y)", 0, 1))


def views_png(clouds: list[np.ndarray], titles: list[str], parameters: dict[str, Any]) -> bytes:
    """One row per cloud, three orthographic views (front, side, top), as PNG bytes carrying the parameters."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = len(clouds)
    figure = Figure(figsize=(7.5, 2.6 * rows), dpi=80)
    for r, (cloud, title) in enumerate(zip(clouds, titles)):
        for c, (name, i, j) in enumerate(VIEWS):
            ax = figure.add_subplot(rows, 3, r * 3 + c + 1)
            ax.scatter(cloud[:, i], cloud[:, j], s=1.5, c=cloud[:, 3 - i - j], cmap="viridis", linewidths=0)
            ax.set_xlim(-1.05, 1.05)
            ax.set_ylim(-1.05, 1.05)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}: {name}" if c == 0 else name, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None, "Description": _json(parameters)})
    return buffer.getvalue()


def render_points(cloud: np.ndarray, angle: float, size: int = 128, elevation: float = 0.45) -> np.ndarray:
    """A fast orthographic splat rendering (uint8 ``[size, size]``) of ``cloud`` turned by ``angle`` about z and
    tilted by ``elevation``: nearer points brighter, painted back to front."""
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = cloud[:, 0] * c - cloud[:, 1] * s, cloud[:, 0] * s + cloud[:, 1] * c, cloud[:, 2]
    ce, se = np.cos(elevation), np.sin(elevation)
    depth, up = y * ce + z * se, z * ce - y * se
    u = np.clip(((x + 1.1) / 2.2 * (size - 1)).round().astype(int), 0, size - 2)
    v = np.clip(((1.1 - up) / 2.2 * (size - 1)).round().astype(int), 0, size - 2)
    shade = (255 - 170 * (depth + 1.1) / 2.2).clip(40, 255).astype(np.uint8)
    image = np.full((size, size), 255, dtype=np.uint8)
    order = np.argsort(-depth, kind="stable")  # far first, near last (overwrites)
    for du in (0, 1):
        for dv in (0, 1):
            image[v[order] + dv, u[order] + du] = 255 - shade[order] + 40
    return image


def turntable_gif(clouds: list[np.ndarray], frames: int = 24, size: int = 128,
                  parameters: dict[str, Any] | None = None) -> bytes:
    """A looping GIF turning every cloud (side by side) once about the vertical axis; ``parameters`` go in the
    GIF's comment extension (JSON)."""
    import imageio.v3 as iio

    images = []
    for k in range(frames):
        angle = 2 * np.pi * k / frames
        images.append(np.concatenate([render_points(cloud, angle, size) for cloud in clouds], axis=1))
    extra = {"comment": _json(parameters).encode()} if parameters else {}
    return iio.imwrite("<bytes>", np.stack(images), extension=".gif", duration=80, loop=0, **extra)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path
