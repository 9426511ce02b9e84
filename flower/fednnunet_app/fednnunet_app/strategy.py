"""FednnU-Net's aggregation rules, in numpy, mirroring FednnU-Net Web's TypeScript:
the FFE fingerprint merge (src/fingerprint/ffe.ts aggregateFingerprints), the shared key set
(src/fed/aggregate.ts sharedSpec: name-and-shape intersection) and the weighted mean."""
from __future__ import annotations

import numpy as np

WEIGHTED_KEYS = ("mean", "median", "std", "percentile_00_5", "percentile_99_5")


def _weighted_mean(values: list[float], weights: list[float]) -> float:
    # Same order of operations as the TypeScript, so the doubles are identical.
    num = 0.0
    den = 0.0
    for v, w in zip(values, weights):
        num += w * v
        den += w
    return num / den


def merge_fingerprints(fps: list[dict], weights: list[float]) -> dict:
    """FednnU-Net's aggregate_fingerprints: max/min of max/min (through float32, as FednnU-Net's
    torch .item()), case-weighted means of the other intensity statistics and of the median
    relative size after cropping, spacings and shapes concatenated in node order."""
    if not fps:
        raise ValueError("no fingerprints to merge")
    if len(weights) != len(fps) or not all(w > 0 for w in weights):
        raise ValueError("need one positive weight per fingerprint")
    tables = [f["foreground_intensity_properties_per_channel"] for f in fps]
    channels = list(tables[0].keys())
    for t in tables:
        if sorted(t.keys()) != sorted(channels):
            raise ValueError(
                f"nodes disagree on image channels: {channels} vs {list(t.keys())}; "
                "FFE needs the same channels everywhere"
            )
    intens = {}
    for c in channels:
        props = [t[c] for t in tables]
        agg = {
            "max": float(np.float32(max(p["max"] for p in props))),
            "min": float(np.float32(min(p["min"] for p in props))),
        }
        for k in WEIGHTED_KEYS:
            agg[k] = _weighted_mean([p[k] for p in props], weights)
        intens[c] = {k: agg[k] for k in sorted(agg)}
    return {
        "foreground_intensity_properties_per_channel": intens,
        "median_relative_size_after_cropping": _weighted_mean(
            [f["median_relative_size_after_cropping"] for f in fps], weights
        ),
        "shapes_after_crop": [list(s) for f in fps for s in f["shapes_after_crop"]],
        "spacings": [list(s) for f in fps for s in f["spacings"]],
    }


def shared_spec(specs: list[list[tuple[str, tuple[int, ...]]]]) -> list[tuple[str, tuple[int, ...]]]:
    """Names (with shapes) every node has with the same shape, in the first node's order."""
    first, rest = specs[0], [dict(s) for s in specs[1:]]
    return [(n, s) for n, s in first if all(r.get(n) == s for r in rest)]


def weighted_mean(updates: list[dict[str, np.ndarray]], weights: list[float]) -> dict[str, np.ndarray]:
    """Per-tensor weighted mean (float64 accumulation, float32 result) over the updates' keys."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    out = {}
    for name in updates[0]:
        acc = np.zeros(updates[0][name].shape, dtype=np.float64)
        for u, w in zip(updates, weights):
            acc += (w / total) * u[name].astype(np.float64)
        out[name] = acc.astype(np.float32)
    return out
