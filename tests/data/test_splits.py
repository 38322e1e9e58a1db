"""The split rule (vlsa.data.splits): an id's side depends on the id alone, not on how many ids the
folder holds (issue 30, row 2)."""

import numpy as np

from vlsa.data.splits import hash_split


def _ids(n: int, prefix: str = "case") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def test_an_id_is_held_out_iff_its_salted_hash_falls_below_the_fraction():
    from vlsa.data.splits import position

    ids = _ids(200)
    held = hash_split(ids, 0.3, salt="s")
    assert held == {i for i in ids if position(i, "s") < 0.3}
    assert 0.2 < len(held) / len(ids) < 0.4  # binomial around the fraction, not exact


def test_adding_ids_never_moves_a_kept_id_into_the_held_out_part():
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(2, 12))
        ids = _ids(n, prefix=f"t{trial}_")
        extra = [f"new{trial}_{k}" for k in range(int(rng.integers(1, 6)))]
        before = hash_split(ids, 0.3, salt="mms-test")
        after = hash_split(ids + extra, 0.3, salt="mms-test")
        kept_before = set(ids) - before
        assert not kept_before & after, (trial, kept_before & after)


def test_the_split_of_one_folder_does_not_depend_on_its_size():
    from vlsa.data.splits import position

    # the first 6 of 9 ids: every id found below the fraction among 6 is still below among 9
    ids = _ids(9)
    small, large = hash_split(ids[:6], 0.3, salt="x"), hash_split(ids, 0.3, salt="x")
    below = {i for i in ids[:6] if position(i, "x") < 0.3}
    if below:
        assert small == below and large & set(ids[:6]) == below


def test_tiny_domains_still_hold_one_id_out_and_a_single_id_trains():
    from vlsa.data.splits import position

    assert hash_split(["only"], 0.3) == set()
    assert hash_split([], 0.3) == set()
    assert hash_split(_ids(5), 0.0) == set()
    # two ids, a small fraction: none below it, so the lowest hash is held out
    pair = ["a", "b"]
    assert all(position(i, "v") >= 0.01 for i in pair)
    assert hash_split(pair, 0.01, salt="v") == {min(pair, key=lambda i: position(i, "v"))}


def test_the_validation_pick_holds_out_an_exact_count_in_hash_order():
    from vlsa.data.splits import hash_pick, position

    ids = _ids(48)
    picked = hash_pick(ids, 0.2, salt="val-0")
    assert len(picked) == round(0.2 * 48)
    assert picked == set(sorted(ids, key=lambda i: position(i, "val-0"))[: len(picked)])
    assert len(hash_pick(ids[:2], 0.9, salt="val-0")) == 1 and hash_pick(ids[:1], 0.5) == set()
