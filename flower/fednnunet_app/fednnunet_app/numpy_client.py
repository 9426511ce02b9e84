"""A ClientApp with numpy only, beside FednnU-Net Web sites in one federation (tests, and a
template for a Python site). It holds no images and no network of its own: it does not answer
the fingerprint query (FFE merges the nodes that do), answers the plan query with its case count
and no weights (so it takes the global network as it comes), and in each round returns the
global arrays moved by a fixed step, with the nnU-Net names and shapes it was sent. A real Python
site would train nnU-Net there (PyTorch) and send its state_dict under the same names."""
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()

NUM_CASES = 2
STEP = 0.001


@app.query("plan")
def plan(msg: Message, context: Context) -> Message:
    cfg = msg.content["config"]
    print(f"[numpy-client] plan query: method {cfg['method']}", flush=True)
    return Message(
        content=RecordDict({"plan": ConfigRecord({"plans": "{}", "num-cases": NUM_CASES})}),
        reply_to=msg,
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    names = list(arrays.keys())
    out = ArrayRecord()
    for name in names:
        a = arrays[name].numpy()
        out[name] = Array((a - STEP).astype(np.float32))
    rnd = msg.content["config"]["server-round"]
    print(f"[numpy-client] round {rnd}: {len(names)} arrays, first {names[0]} {arrays[names[0]].shape}",
          flush=True)
    return Message(
        content=RecordDict({
            "arrays": out,
            "metrics": MetricRecord({"num-examples": NUM_CASES, "loss": 0.0}),
        }),
        reply_to=msg,
    )


@app.query("final")
def final(msg: Message, context: Context) -> Message:
    names = list(msg.content["arrays"].keys())
    print(f"[numpy-client] final model: {len(names)} arrays", flush=True)
    return Message(content=RecordDict({"metrics": MetricRecord({"num-examples": NUM_CASES})}), reply_to=msg)
