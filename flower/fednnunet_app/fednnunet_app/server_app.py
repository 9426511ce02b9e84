"""FednnU-Net's strategies as a Flower ServerApp, for FednnU-Net Web sites (browser or
`fednnunet flower-site`) and any ClientApp that speaks the same messages (docs/flower.md).

Run config: method (ffe | fedavg | asym), num-server-rounds, iters, min-nodes, tiny,
configuration, weighting (cases | uniform), join-timeout-s, round-timeout-s, out-dir.

Phases (message types and records, as src/fed/flower/site.ts answers them):
  query.fingerprint  FFE only: every node's dataset fingerprint; merged here (strategy.py, the same
                     rule as FednnU-Net Web's relay). Nodes that hold no dataset may not answer it.
  query.plan         every node plans (FFE: on the merged fingerprint, so every node derives the
                     same plans with FednnU-Net Web's planner; otherwise on its own data) and sends
                     its plans and its freshly initialised weights. FFE/FedAvg: plans must agree.
                     The first node (lowest id) initialises the global model, as FednnU-Net starts
                     from one client's parameters.
  train              per round: the global shared set out, the same keys back + metrics; the
                     weighted mean (case counts, or uniform) of the replies that arrived.
  query.final        the final global shared set to every node (each evaluates it).
The final model is saved in FednnU-Net Web's model-folder format (model.json, plans.json,
dataset.json, weights.json, weights.bin); for AsymFedAvg only the shared set is global, so the
folder holds the shared tensors (shared-weights.*) and the sites keep their full models.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from .strategy import merge_fingerprints, shared_spec, weighted_mean

app = ServerApp()

METHODS = ("ffe", "fedavg", "asym")


def log(line: str) -> None:
    print(f"[fednnunet-app] {line}", flush=True)


def _arrays(rec: ArrayRecord) -> dict[str, np.ndarray]:
    out = {}
    for name, arr in rec.items():
        a = arr.numpy()
        if a.dtype.kind != "f":
            raise ValueError(f"array '{name}' is {a.dtype}, not floating point")
        out[name] = a.astype(np.float32, copy=False)
    return out


def _array_record(weights: dict[str, np.ndarray]) -> ArrayRecord:
    rec = ArrayRecord()
    for name, a in weights.items():
        rec[name] = Array(np.ascontiguousarray(a, dtype=np.float32))
    return rec


def _ask(grid: Grid, nodes: list[int], mtype: str, content_for, timeout: float, quorum: int) -> dict[int, Message]:
    """Sends one message per node, waits for replies; errors are logged and dropped; fewer than
    `quorum` good replies fail the run with the nodes' reasons."""
    msgs = [Message(content=content_for(n), dst_node_id=n, message_type=mtype) for n in nodes]
    replies = grid.send_and_receive(msgs, timeout=timeout)
    good, errors = {}, []
    for r in replies:
        src = r.metadata.src_node_id
        if r.has_error():
            errors.append(f"node {src}: {r.error.reason}")
        else:
            good[src] = r
    for e in errors:
        log(f"{mtype}: {e}")
    if len(good) < quorum:
        raise RuntimeError(
            f"{mtype}: {len(good)} of {len(nodes)} nodes answered, {quorum} needed"
            + (f" ({'; '.join(errors)})" if errors else "")
        )
    return good


def _plans_hash(plans: str) -> str:
    """SHA-256 of a node's plans without the fields that name its dataset (dataset_name,
    plans_name): what must agree for the nodes to train one network on one preprocessing."""
    p = json.loads(plans)
    if not isinstance(p, dict):
        raise ValueError("plans are not a JSON object")
    for k in ("dataset_name", "plans_name"):
        p.pop(k, None)
    # nnU-Net caps the batch size by the site's own number of training cases (5 % of its voxels),
    # so FFE sites of different sizes plan different batch sizes for one network: a local choice.
    for c in (p.get("configurations") or {}).values():
        if isinstance(c, dict):
            c.pop("batch_size", None)
    return hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()


def _config(c: ConfigRecord, key: str):
    if key not in c:
        raise ValueError(f"a reply lacks '{key}'")
    return c[key]


@app.main()
def main(grid: Grid, context: Context) -> None:
    try:
        _main(grid, context)
    except Exception as e:
        # The SuperLink streams our log lines to whoever submitted the run: say why it stopped.
        log(f"failed: {type(e).__name__}: {e}")
        raise


def _main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    method = str(rc.get("method", "ffe"))
    if method not in METHODS:
        raise ValueError(f"method '{method}' is not one of {', '.join(METHODS)}")
    rounds = int(rc.get("num-server-rounds", 3))
    iters = int(rc.get("iters", 250))
    min_nodes = int(rc.get("min-nodes", 2))
    tiny = bool(rc.get("tiny", False))
    configuration = str(rc.get("configuration", "3d_fullres"))
    weighting = str(rc.get("weighting", "cases"))
    join_timeout = float(rc.get("join-timeout-s", 600))
    round_timeout = float(rc.get("round-timeout-s", 86400))
    out_dir = Path(str(rc.get("out-dir", "")) or "fednnunet-flower-model")
    if rounds < 1 or iters < 1 or min_nodes < 1:
        raise ValueError("num-server-rounds, iters and min-nodes must be ≥ 1")
    if weighting not in ("cases", "uniform"):
        raise ValueError("weighting must be cases or uniform")

    # Quorum to start: min-nodes connected nodes (a deadline, not forever).
    start = time.monotonic()
    while len(list(grid.get_node_ids())) < min_nodes:
        if time.monotonic() - start > join_timeout:
            raise RuntimeError(f"fewer than {min_nodes} nodes joined within {join_timeout:.0f} s")
        time.sleep(1)
    nodes = sorted(grid.get_node_ids())
    log(f"{method}: {len(nodes)} nodes, {rounds} rounds × {iters} iterations")

    plan_cfg = {
        "method": method,
        "configuration": configuration,
        "rounds": rounds,
        "iters": iters,
        "min-nodes": min_nodes,
        "tiny": tiny,
    }
    if method == "ffe":
        replies = _ask(grid, nodes, "query.fingerprint", lambda n: RecordDict({"config": ConfigRecord({})}),
                       round_timeout, len(nodes))
        order = [n for n in nodes if n in replies]
        fps, cases = [], []
        for n in order:
            c = replies[n].content["fingerprint"]
            fps.append(json.loads(_config(c, "fingerprint")))
            cases.append(int(_config(c, "num-cases")))
        merged = merge_fingerprints(fps, cases)
        plan_cfg["aggregate"] = json.dumps(merged)
        log(f"FFE: merged {len(order)} fingerprints ({sum(cases)} cases); per-case rows stay in the merge")

    replies_plan = replies = _ask(grid, nodes, "query.plan", lambda n: RecordDict({"config": ConfigRecord(plan_cfg)}),
                   round_timeout, len(nodes))
    planned = [n for n in nodes if n in replies]
    plans = {n: _config(replies[n].content["plan"], "plans") for n in planned}
    hashes = {n: _plans_hash(p) for n, p in plans.items()}
    num_cases = {n: int(_config(replies[n].content["plan"], "num-cases")) for n in planned}
    # Nodes that send no weights with their plan take the global architecture as it comes
    # (e.g. a numpy-only ClientApp): they are not part of the key intersection.
    inits = {n: _arrays(replies[n].content["arrays"]) for n in planned if "arrays" in replies[n].content}
    if not inits:
        raise RuntimeError("no node sent initial weights")
    if method in ("ffe", "fedavg") and len(set(hashes[n] for n in inits)) != 1:
        raise RuntimeError(
            f"{method} needs one plan at every node; got {len(set(hashes.values()))} different plans"
            + (" (FFE: nodes derived different plans from the same merged fingerprint — different versions?)" if method == "ffe" else "")
        )
    specs = [[(k, tuple(v.shape)) for k, v in inits[n].items()] for n in sorted(inits)]
    spec = shared_spec(specs)
    if method != "asym" and any(len(s) != len(spec) for s in specs):
        raise RuntimeError(f"{method}: the nodes' networks differ (use method=asym)")
    first = sorted(inits)[0]
    global_w = {k: inits[first][k] for k, _ in spec}
    log(f"plans sha256 {sorted(set(hashes.values()))}; shared set {len(spec)} tensors "
        f"({sum(len(s) for s in specs) // len(specs) - len(spec)} local per node on average)")

    history = []
    for rnd in range(1, rounds + 1):
        content = lambda n: RecordDict({
            "arrays": _array_record(global_w),
            "config": ConfigRecord({"server-round": rnd, "iters": iters}),
        })
        replies = _ask(grid, planned, "train", content, round_timeout, min(min_nodes, len(planned)))
        updates, weights, metrics = [], [], {}
        for n, r in sorted(replies.items()):
            u = _arrays(r.content["arrays"])
            if sorted(u) != sorted(global_w) or any(u[k].shape != global_w[k].shape for k in u):
                log(f"round {rnd}: node {n} sent other keys or shapes than the shared set; dropped")
                continue
            m = r.content["metrics"]
            n_ex = int(m["num-examples"]) if "num-examples" in m else num_cases.get(n, 1)
            updates.append(u)
            weights.append(float(n_ex) if weighting == "cases" else 1.0)
            metrics[n] = {k: float(v) for k, v in m.items() if isinstance(v, (int, float))}
        if len(updates) < min(min_nodes, len(planned)):
            raise RuntimeError(f"round {rnd}: {len(updates)} usable updates, {min_nodes} needed")
        global_w = weighted_mean(updates, weights)
        losses = [m.get("loss") for m in metrics.values() if "loss" in m]
        log(f"round {rnd}: {len(updates)} updates, keys {len(global_w)}, "
            f"mean loss {np.mean(losses) if losses else float('nan'):.4f}")
        history.append({"round": rnd, "nodes": sorted(metrics), "metrics": {str(k): v for k, v in metrics.items()}})

    replies = _ask(grid, planned, "query.final",
                   lambda n: RecordDict({"arrays": _array_record(global_w), "config": ConfigRecord({})}),
                   round_timeout, 1)
    final = {str(n): {k: float(v) for k, v in r.content["metrics"].items()} for n, r in replies.items()}
    log(f"final: {final}")
    plan_rec = replies_plan[first].content["plan"]
    _save_model(
        out_dir,
        model_json=json.loads(_config(plan_rec, "model-json")) if "model-json" in plan_rec else None,
        plans=plans[first],
        dataset_json=_config(plan_rec, "dataset-json"),
        weights=global_w,
        complete=method != "asym",
        provenance={
            "trained_by": "fednnunet Flower ServerApp",
            "method": method,
            "sites": len(planned),
            "rounds": rounds,
            "iterations": rounds * iters,
            "shared_tensors": len(spec),
        },
        history=history,
        final=final,
    )
    log(f"model saved to {out_dir}")


def _save_model(out_dir: Path, *, model_json, plans: str, dataset_json: str, weights: dict[str, np.ndarray],
                complete: bool, provenance: dict, history: list, final: dict) -> None:
    """FednnU-Net Web's model folder (src/model/model-folder.ts): model.json, plans.json,
    dataset.json, weights.json (index) + weights.bin (float32, little-endian, PyTorch layout)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors, offset = [], 0
    for name, a in weights.items():
        tensors.append({"name": name, "shape": list(a.shape), "offset": offset})
        offset += 4 * a.size
    index = {"dtype": "float32", "byte_order": "little", "layout": "pytorch", "total_bytes": offset,
             "tensors": tensors}
    # A model needs every tensor: AsymFedAvg's global is only the shared set (sites keep the rest).
    stem = "weights" if complete else "shared-weights"
    with open(out_dir / f"{stem}.bin", "wb") as f:
        for a in weights.values():
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    (out_dir / f"{stem}.json").write_text(json.dumps(index, indent=1) + "\n")
    (out_dir / "plans.json").write_text(json.dumps(json.loads(plans), indent=4) + "\n")
    (out_dir / "dataset.json").write_text(json.dumps(json.loads(dataset_json), indent=4) + "\n")
    if complete and model_json is not None:
        model_json["provenance"] = provenance
        (out_dir / "model.json").write_text(json.dumps(model_json, indent=2) + "\n")
    (out_dir / "federation.json").write_text(
        json.dumps({"provenance": provenance, "rounds": history, "final": final}, indent=2) + "\n"
    )
