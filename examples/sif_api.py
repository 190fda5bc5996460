"""The SIF Python API on MovieLens-100K: a ranking search, a baseline, recommendations,
evaluation on held-out interactions, save and load (docs/sif.md, "Python API").

Usage: python examples/sif_api.py [DATA] [OUT]   (DATA: a file or a known name; default ml-100k)
"""
import sys

import pandas as pd

from sif import SIF


def main(data: str = "ml-100k", out: str = "runs/sif-api", **fast) -> dict:
    # implicit feedback: every rating is an interaction; per-user 8:1:1 split, BPR, NDCG@10 selection
    model = SIF(task="ranking", strategy="nasp", **fast).fit(data)
    print(model.summary_["interaction"], round(model.summary_["test_ndcg@10"], 4))
    baseline = SIF(task="ranking", ifc="pop").fit(data)  # popularity, on the same split (same seed)
    print("pop", round(baseline.summary_["test_ndcg@10"], 4))

    user = model.model.user_ids[0]
    print(model.recommend(user, k=5))             # rank, item, score, title: items the user never saw
    print(model.predict([user, user], model.model.item_ids[:2]))

    held_out = pd.DataFrame({"user": [user], "item": [model.model.item_ids[3]]})
    print(model.evaluate(held_out))               # ndcg@10, recall@10, ... on these interactions
    model.save(out)                               # a run directory: `nasp sif recommend --model OUT` reads it
    again = SIF.load(out)
    assert again.recommend(user, k=5)["item"].tolist() == model.recommend(user, k=5)["item"].tolist()
    return {"model": model.summary_, "pop": baseline.summary_}


if __name__ == "__main__":
    main(*sys.argv[1:3])
