"""The recommendation policy on tensors: strategies, candidate pool, category cap."""

import numpy as np
import pytest
import torch

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.ml import recommend as R


def test_strategy_masks_and_names():
    conf = RecommendConf(new_user_max_events=3)
    is_new, at_risk = R.strategy_masks(
        ["new", "active", "at_risk", "churned", "at_risk", "active"], [10, 2, 10, 10, 1, 10], conf
    )
    assert is_new.tolist() == [True, True, False, False, True, False]
    assert at_risk.tolist() == [False, False, True, True, False, False]
    assert R.strategy_names(is_new, at_risk) == [
        "new_user_content_popularity",
        "new_user_content_popularity",
        "at_risk_long_term_value",
        "at_risk_long_term_value",
        "new_user_content_popularity",
        "personalized",
    ]


def test_strategies_off_get_the_personalized_ranking():
    stages, n_events = ["new", "at_risk", "churned", "at_risk", "active"], [10, 10, 10, 1, 10]
    is_new, at_risk = R.strategy_masks(
        stages, n_events, RecommendConf(strategies_off=("at_risk_long_term_value",))
    )
    assert is_new.tolist() == [True, False, False, True, False] and not at_risk.any()
    is_new, at_risk = R.strategy_masks(
        stages, n_events, RecommendConf(strategies_off=("new_user_content_popularity",))
    )
    # a new user in an at-risk stage is not moved into the at-risk strategy
    assert not is_new.any() and at_risk.tolist() == [False, True, True, False, False]
    assert set(
        R.strategy_names(
            *R.strategy_masks(
                stages,
                n_events,
                RecommendConf(
                    strategies_off=("new_user_content_popularity", "at_risk_long_term_value")
                ),
            )
        )
    ) == {"personalized"}


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
    assoc, prior = R.ltv_association(
        np.array([0.0, 10.0, 1000.0]), np.array([0.0, 10.0, 0.0]), 10.0
    )
    assert prior == 10 / 1010
    assert assoc[0] == prior and prior < assoc[1] < 1 and 0 < assoc[2] < prior


def test_at_risk_weight_moves_long_term_value_items_up():
    n = 8
    side = R.item_side(
        torch.zeros(n, 2), None, np.ones(n), np.arange(n, dtype=float), np.zeros(n, int), 1, "cpu"
    )
    raw = torch.zeros(1, n)
    raw[:, :2] = -float("inf")
    hist = torch.zeros(1, 3, dtype=torch.long)
    plain = R.policy_scores(
        raw.clone(), hist, np.array([False]), np.array([False]), side, RecommendConf()
    )
    risky = R.policy_scores(
        raw.clone(), hist, np.array([False]), np.array([True]), side, RecommendConf()
    )
    assert torch.equal(plain[0, 2:], torch.zeros(n - 2))
    assert risky[0, 2:].argmax().item() == n - 3


def _side(n_items=12, n_cat=3, pop=None):
    cats = np.array([-1, -1] + [k % n_cat for k in range(n_items)])
    pop = np.ones(n_items + 2) if pop is None else pop
    return R.item_side(
        torch.zeros(n_items + 2, 4), None, pop, np.zeros(n_items + 2), cats, n_cat, "cpu"
    )


def test_category_interests_follow_the_history_with_recency_and_prior():
    side = _side()
    # user 0: only category 1 (items 3, 6, 9 are indices 3+2...); user 1: empty; user 2: old c0,
    # recent c2
    hist = torch.tensor(
        [[3, 6, 9, 0], [0, 0, 0, 0], [2, 2, 2, 4]]
    )  # index i -> category (i - 2) % 3
    mix = R.category_interests(hist, side, decay=0.5, prior_steps=1.0)
    assert torch.allclose(mix.sum(1), torch.ones(3))
    assert float(mix[0, 1]) == pytest.approx(
        (0.25 + 0.5 + 1 + 1 / 3) / 2.75
    )  # decayed counts + prior
    assert torch.allclose(mix[1], torch.full((3,), 1 / 3))  # no history: the catalog mix
    assert mix[2, 2] > mix[2, 0]  # the last step weighs most


def test_interest_scores_rank_a_users_categories_then_popularity_within():
    pop = np.array([0, 0] + [1, 1, 1, 50, 1, 1, 5, 1, 1, 1, 1, 1], float)  # item 5 (cat 0) popular
    side = _side(pop=pop)
    s = R.interest_scores(torch.tensor([[0.8, 0.1, 0.1]]), side)[0]
    cat0 = [i for i in range(2, 14) if (i - 2) % 3 == 0]
    assert int(s[2:].argmax()) + 2 == 5  # popular item of the favourite category
    assert min(s[i] for i in cat0) > max(s[i] for i in range(2, 14) if i not in cat0 and i != 8)


def test_seen_items_are_kept_only_where_re_consumption_is_expected():
    from lifecycle_recs.ml.recommend import seen_policy

    conf = RecommendConf(filter_seen=True, keep_seen_repeat_share=0.05)
    assert seen_policy(conf, 0.12).filter_seen is False  # 12% of the next items were re-touches
    assert seen_policy(conf, 0.05).filter_seen is False  # at the threshold
    assert seen_policy(conf, 0.01).filter_seen is True
    assert (
        seen_policy(conf, None).filter_seen is True
    )  # an artifact from before the share was measured
    assert (
        seen_policy(RecommendConf(filter_seen=True, keep_seen_repeat_share=None), 0.9).filter_seen
        is True
    )
    assert seen_policy(RecommendConf(filter_seen=False), 0.0).filter_seen is False
    assert seen_policy(conf, 0.12).k == conf.k  # nothing else changes
