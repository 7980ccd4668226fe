"""The recommendation policy on tensors: strategies, candidate pool, category cap."""
import numpy as np
import torch

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.ml import recommend as R


def test_strategy_masks_and_names():
    conf = RecommendConf(new_user_max_events=3)
    is_new, at_risk = R.strategy_masks(["new", "active", "at_risk", "churned", "at_risk", "active"],
                                       [10, 2, 10, 10, 1, 10], conf)
    assert is_new.tolist() == [True, True, False, False, True, False]
    assert at_risk.tolist() == [False, False, True, True, False, False]
    assert R.strategy_names(is_new, at_risk) == [
        "new_user_content_popularity", "new_user_content_popularity", "at_risk_long_term_value",
        "at_risk_long_term_value", "new_user_content_popularity", "personalized"]


def test_candidate_pool_from_conf():
    assert R.candidate_pool(10, 1000, RecommendConf()) == 60
    assert R.candidate_pool(10, 1000, RecommendConf(candidate_pool_factor=10)) == 100
    assert R.candidate_pool(10, 30, RecommendConf()) == 30


def test_capped_topk_caps_and_fills():
    cats = torch.tensor([-1, -1, 0, 0, 0, 1, 1])
    top_i = torch.tensor([[2, 3, 4, 5, 6]])
    top_s = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    i, s = R.capped_topk(top_s, top_i, cats, 4, 1, 2)
    assert i.tolist() == [[2, 5, 3, 4]]  # one of each category first, then the best skipped
    assert s.tolist() == [[5.0, 2.0, 4.0, 3.0]]


def test_ltv_association_shrinks_to_the_mean():
    assoc, prior = R.ltv_association(np.array([0.0, 10.0, 1000.0]), np.array([0.0, 10.0, 0.0]), 10.0)
    assert prior == 10 / 1010
    assert assoc[0] == prior and prior < assoc[1] < 1 and 0 < assoc[2] < prior


def test_at_risk_weight_moves_long_term_value_items_up():
    n = 8
    side = R.item_side(torch.zeros(n, 2), None, np.ones(n), np.arange(n, dtype=float), np.zeros(n, int), 1, "cpu")
    raw = torch.zeros(1, n)
    raw[:, :2] = -float("inf")
    hist = torch.zeros(1, 3, dtype=torch.long)
    plain = R.policy_scores(raw.clone(), hist, np.array([False]), np.array([False]), side, RecommendConf())
    risky = R.policy_scores(raw.clone(), hist, np.array([False]), np.array([True]), side, RecommendConf())
    assert torch.equal(plain[0, 2:], torch.zeros(n - 2))
    assert risky[0, 2:].argmax().item() == n - 3
