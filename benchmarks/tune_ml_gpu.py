"""Hyper-parameter sweep of the sequence model on prepared MovieLens-100K tensors,
on a GPU (no Spark needed): `movielens_quality.py --dump DIR` writes the tensors.

    python benchmarks/tune_ml_gpu.py DIR/ml100k_tensors.pt enc:hidden:item_dim:dropout:lr:text ...
"""

import os
import sys
import time


def main():
    import numpy as np
    import torch

    from lifecycle_recs.config import ModelConf, TrainConf
    from lifecycle_recs.ml.features import Batch
    from lifecycle_recs.ml.metrics import rank_metrics
    from lifecycle_recs.ml.trainer import fit, rank_targets
    from lifecycle_recs.ml.vocab import Vocab

    d = torch.load(sys.argv[1], weights_only=False)
    vocab = Vocab.from_json(d["vocab"])
    data = {k: Batch(**d[k]) for k in ("train", "val", "test")}
    seeds = [int(s) for s in os.environ.get("SEEDS", "2020").split(",")]
    for spec in sys.argv[2:]:
        enc, hid, idim, drop, lr, text = spec.split(":")
        res = []
        t = time.perf_counter()
        for seed in seeds:
            mc = ModelConf(
                encoder=enc,
                hidden_dim=int(hid),
                item_dim=int(idim),
                dropout=float(drop),
                use_text=text == "1",
                loss_weights={"next_item": 1.0, "churn": 0.0, "value": 0.0},
            )
            tc = TrainConf(seed=seed, epochs=200, patience=10, batch_size=256, lr=float(lr))
            model, info = fit(data["train"], data["val"], vocab, d["text"], mc, tc)
            r = rank_targets(model, data["test"], next(model.parameters()).device)
            res.append((rank_metrics(r, 10), info["epochs_run"]))
        h = np.mean([x[0]["hit@10"] for x in res])
        n = np.mean([x[0]["ndcg@10"] for x in res])
        print(
            f"{spec:<34} hit@10 {h:.4f} ndcg@10 {n:.4f} epochs {[x[1] for x in res]} "
            f"({time.perf_counter() - t:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
