"""Global tile positions from the accepted edges: iterated weighted least squares or a spanning tree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

from imagelib.errors import UsageError
from imagelib.stitching.layout import Layout
from imagelib.stitching.pairs import Edge

Solver = Literal["least_squares", "spanning_tree"]
#: the affine placement model must cut the translation model's RMS residual to this fraction
AFFINE_GAIN = 0.5
#: residuals under this many pixels are noise, never outliers (guards the relative rule)
NOISE_FLOOR = 0.5


@dataclass
class Solution:
    """Mosaic positions (N × ndim px, minimum corner at 0) and how each tile was placed."""

    positions: np.ndarray
    placed_by_model: np.ndarray
    components: list[list[int]]
    tile_residuals: np.ndarray
    model: str


def _components(n: int, edges: Sequence[Edge]) -> tuple[int, np.ndarray]:
    rows = [e.i for e in edges]
    cols = [e.j for e in edges]
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)


def _weight(edge: Edge) -> float:
    return max(float(edge.score), 1e-3)


def _least_squares(members: list[int], edges: Sequence[Edge], anchor: np.ndarray) -> np.ndarray:
    """Weighted LS positions of one component, its first tile fixed at ``anchor``."""
    index = {t: k for k, t in enumerate(members)}
    n, m = len(members), len(edges)
    design = np.zeros((m, n - 1))
    target = np.zeros((m, anchor.size))
    for r, e in enumerate(edges):
        w = np.sqrt(_weight(e))
        for t, sign in ((e.j, 1.0), (e.i, -1.0)):
            if index[t] > 0:
                design[r, index[t] - 1] = sign * w
            else:
                target[r] -= sign * w * anchor
        target[r] += w * e.shift
    out = np.empty((n, anchor.size))
    out[0] = anchor
    if n > 1:
        out[1:] = np.linalg.lstsq(design, target, rcond=None)[0]
    return out


def _tree(members: list[int], edges: Sequence[Edge], anchor: np.ndarray) -> np.ndarray:
    """Positions along the best-score spanning tree (each tile hangs on one path from the anchor)."""
    index = {t: k for k, t in enumerate(members)}
    n = len(members)
    out = np.empty((n, anchor.size))
    out[0] = anchor
    if n == 1:
        return out
    cost = coo_matrix(
        (
            [2.0 - min(_weight(e), 1.0) for e in edges],
            ([index[e.i] for e in edges], [index[e.j] for e in edges]),
        ),
        shape=(n, n),
    ).tocsr()
    tree = minimum_spanning_tree(cost)
    tree = tree + tree.T
    order, parent = breadth_first_order(tree, 0, directed=False)
    shift = {(index[e.i], index[e.j]): e.shift for e in edges}
    for k in order[1:]:
        p = parent[k]
        out[k] = out[p] + shift[(p, k)] if (p, k) in shift else out[p] - shift[(k, p)]
    return out


def _is_bridge(edge: Edge, edges: Sequence[Edge], members: list[int]) -> bool:
    """True when removing ``edge`` splits its component."""
    rest = [e for e in edges if e is not edge]
    index = {t: k for k, t in enumerate(members)}
    graph = coo_matrix(
        (np.ones(len(rest)), ([index[e.i] for e in rest], [index[e.j] for e in rest])),
        shape=(len(members),) * 2,
    )
    return connected_components(graph, directed=False)[0] > 1


def _residual(edge: Edge, positions: dict[int, np.ndarray]) -> float:
    return float(np.linalg.norm(positions[edge.j] - positions[edge.i] - edge.shift))


def _solve_component(
    members: list[int],
    edges: list[Edge],
    anchor: np.ndarray,
    solver: Solver,
    max_residual: float,
    relative_residual: float,
) -> np.ndarray:
    """Solve one component; least squares drops its worst non-bridge edge while residuals are outliers."""
    while True:
        if solver == "spanning_tree":
            solved = _tree(members, edges, anchor)
        else:
            solved = _least_squares(members, edges, anchor)
        at = dict(zip(members, solved, strict=True))
        residuals = np.array([_residual(e, at) for e in edges]) if edges else np.zeros(0)
        for e, r in zip(edges, residuals, strict=True):
            e.residual = float(r)
        if solver == "spanning_tree" or not edges:
            return solved
        mean = float(residuals.mean())
        worst = float(residuals.max())
        if not (worst > max_residual or (worst > relative_residual * mean and worst > NOISE_FLOOR)):
            return solved
        for k in np.argsort(-residuals):
            if not _is_bridge(edges[k], edges, members):
                edges[k].accepted, edges[k].reason = False, "residual"
                edges = edges[:k] + edges[k + 1 :]
                break
        else:
            return solved  # a spanning tree: nothing left to drop


def affine_model(nominal: np.ndarray, solved: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Map nominal → solved positions: affine (over axes where nominal varies) or a translation.

    The affine map is kept only when it explains the solved positions clearly better than a translation
    (a stage scale/rotation error); for random jitter alone it would just fit noise.
    """
    offset = (solved - nominal).mean(axis=0)

    def translate(points: np.ndarray) -> np.ndarray:
        return points + offset

    varying = [k for k in range(nominal.shape[1]) if np.ptp(nominal[:, k]) > 0]
    design = np.column_stack([nominal[:, varying], np.ones(len(nominal))])
    if len(nominal) < 2 * design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
        return translate, "translation"
    coef = np.linalg.lstsq(design, solved, rcond=None)[0]

    def affine(points: np.ndarray) -> np.ndarray:
        return np.column_stack([points[:, varying], np.ones(len(points))]) @ coef

    rms_affine = np.sqrt(np.mean((affine(nominal) - solved) ** 2))
    rms_shift = np.sqrt(np.mean((translate(nominal) - solved) ** 2))
    return (affine, "affine") if rms_affine < AFFINE_GAIN * rms_shift else (translate, "translation")


def solve(
    edges: Sequence[Edge],
    layout: Layout,
    *,
    solver: Solver = "least_squares",
    max_residual: float = 2.0,
    relative_residual: float = 4.0,
) -> Solution:
    """Global positions from the accepted edges (one tile fixed per component); others by the model."""
    if solver not in ("least_squares", "spanning_tree"):
        raise UsageError(
            f"unknown solver {solver!r}", field="solver", expected=["least_squares", "spanning_tree"]
        )
    n = len(layout)
    accepted = [e for e in edges if e.accepted]
    count, labels = _components(n, accepted)
    groups = [sorted(int(t) for t in np.flatnonzero(labels == c)) for c in range(count)]
    groups.sort(key=lambda g: (-len(g), g[0]))
    positions = layout.positions.copy()
    for members in groups:
        inside = [e for e in accepted if labels[e.i] == labels[members[0]]]
        positions[members] = _solve_component(
            members, inside, layout.positions[members[0]], solver, max_residual, relative_residual
        )
    main = groups[0]
    predict, model = affine_model(layout.positions[main], positions[main])
    placed = np.zeros(n, dtype=bool)
    for members in groups[1:]:
        # The component keeps its internal arrangement; the model places it as a whole.
        target = predict(layout.positions[members])
        positions[members] += (target - positions[members]).mean(axis=0)
        placed[members] = True
    residuals = np.zeros(n)
    for e in edges:
        if e.accepted and e.residual is not None:
            residuals[[e.i, e.j]] = np.maximum(residuals[[e.i, e.j]], e.residual)
    positions -= positions.min(axis=0)
    return Solution(positions, placed, groups, residuals, model)
