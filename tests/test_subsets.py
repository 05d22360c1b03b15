"""utils.stratified_subset: the seeded, stratified sample behind --max_train_examples, --max_eval_examples
and GRPO's --eval_steps subset."""

import collections

from sql_rlvr import hardness
import utils


def test_same_seed_same_subset_and_another_seed_another(spider):
    train = spider.examples("train")
    first = utils.stratified_subset(train, 10, seed=42)
    assert first == utils.stratified_subset(train, 10, seed=42)
    assert first != utils.stratified_subset(train, 10, seed=43)
    assert len(first) == len(set(first)) == 10


def test_subset_keeps_dataset_order(spider):
    dev = spider.examples("dev")
    chosen = utils.stratified_subset(dev, 9, seed=7, keys=["db_id", "hardness"])
    assert chosen == sorted(chosen) and all(0 <= i < len(dev) for i in chosen)


def test_every_database_is_covered_when_n_allows_it(spider):
    for split, keys in (("train", ["db_id"]), ("dev", ["db_id", "hardness"])):
        examples = spider.examples(split)
        databases = {ex["db_id"] for ex in examples}
        for seed in range(5):
            chosen = utils.stratified_subset(examples, len(databases), seed, keys)
            assert {examples[i]["db_id"] for i in chosen} == databases
    # the first N are what --max_eval_examples used to take: a few databases only
    dev = spider.examples("dev")
    assert len({ex["db_id"] for ex in dev[:4]}) < len({ex["db_id"] for ex in dev})


def test_draws_follow_the_strata_sizes():
    # 60 / 30 / 10 examples: 10 draws give 6 / 3 / 1 (one each first, the rest in proportion)
    examples = [{"db_id": db, "query": "SELECT 1"} for db, count in (("a", 60), ("b", 30), ("c", 10)) for _ in range(count)]
    chosen = utils.stratified_subset(examples, 10, seed=0)
    assert collections.Counter(examples[i]["db_id"] for i in chosen) == {"a": 6, "b": 3, "c": 1}
    # within a database, by hardness: easy and extra halves of "a"
    for i, ex in enumerate(examples[:60]):
        ex["query"] = "SELECT 1" if i % 2 else "SELECT a FROM t WHERE b IN (SELECT c FROM u) UNION SELECT d FROM v"
    chosen = utils.stratified_subset(examples, 10, seed=0, keys=["db_id", "hardness"])
    assert collections.Counter(hardness.spider_hardness(examples[i]["query"]) for i in chosen if i < 60) == {"easy": 3, "extra": 3}


def test_n_at_least_the_dataset_or_zero_means_all(spider):
    dev = spider.examples("dev")
    everything = list(range(len(dev)))
    assert utils.stratified_subset(dev, len(dev), 1) == everything
    assert utils.stratified_subset(dev, len(dev) + 5, 1, ["db_id", "hardness"]) == everything
    assert utils.stratified_subset(dev, 0, 1) == everything
    assert utils.stratified_subset([], 3, 1) == []


def test_subset_record_names_what_was_sampled(spider):
    dev = spider.examples("dev")
    chosen = utils.stratified_subset(dev, 5, 3, ["db_id", "hardness"])
    record = utils.subset_record(chosen, len(dev), 5, 3, ["db_id", "hardness"])
    assert record["indices"] == chosen and record["size"] == 5 and record["of"] == len(dev) and record["seed"] == 3
    assert record["strata"] == ["db_id", "hardness"] and len(record["indices_sha256"]) == 64
