"""GRPO's pass-rate prompt filtering (--grpo_filter_samples K) on the real tiny model, mini-Spider and SQLite."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from sql_rlvr import errors, pass_rate_filter
from sql_rlvr import run_folders
from config import MINI_SPIDER_DIR, Config, parse_config, run_defining_config
from conftest import copy_sft, run_script

K = 4
# A low rollout temperature: the questions the smoke SFT adapter has learnt by heart are then answered right
# every time (1 or 2 of the 48 here), while the others still vary enough for GRPO to train.
FLAGS = ["--preset", "smoke", "--grpo_filter_samples", str(K), "--temperature", "0.3", "--num_completions_to_log", "0"]
# 24 steps of 2 prompts go once through the prompts left in: TRL's completion log then shows the whole dataset.
STEPS = ["--grpo_max_steps", "24", "--save_steps", "12"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trained_questions(grpo: Path) -> set[str]:
    """The questions of every prompt TRL's completion log recorded (the user turn ends with the question)."""
    import pandas

    questions = set()
    for table in sorted(grpo.glob("completions/*.parquet")):
        for prompt in pandas.read_parquet(table)["prompt"]:
            questions.add(prompt[-1]["content"].rsplit("\nQuestion: ", 1)[1])
    return questions


@pytest.fixture(scope="module")
def filtered(tmp_path_factory, smoke_sft):
    """One finished `train_grpo.py --grpo_filter_samples 4` run (tests that change it work on a copy)."""
    out = tmp_path_factory.mktemp("filtered")
    copy_sft(smoke_sft, out)
    # --progress_every_s 0: every progress line a log file would get at its pace (not run-defining: --resume agrees)
    result = run_script("train_grpo.py", *FLAGS, *STEPS, "--output_dir", str(out), "--progress_every_s", "0")
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out, result


def test_every_prompt_is_sampled_k_times_and_the_counts_add_up(filtered):
    out, result = filtered
    grpo = out / "grpo"
    records = read_records(grpo / run_folders.PASS_RATES_FILE)
    train = json.loads((MINI_SPIDER_DIR / "train_spider.json").read_text())
    assert [(r["db_id"], r["question"], r["gold_sql"]) for r in records] == [
        (ex["db_id"], ex["question"], ex["query"]) for ex in train]  # every GRPO prompt, in order
    assert all(r["k"] == K and 0 <= r["passes"] <= K for r in records)
    assert {r["sft_adapter_sha256"] for r in records} == {sha(out / "sft" / "adapter_model.safetensors")}
    always = sum(r["passes"] == K for r in records)
    never = sum(r["passes"] == 0 for r in records)
    assert 1 <= always < len(records)  # the case this is for: prompts the SFT adapter always answers right
    info = json.loads((grpo / "run_info.json").read_text())
    summary = info["pass_rate_filter"]
    assert summary["k"] == K and summary["prompts_sampled"] == len(records) and summary["reused"] is False
    assert summary["left_out_always_matched"] == always and summary["never_matched"] == never
    assert summary["kept"] == info["prompts"] == len(records) - always
    assert summary["prompts_by_passes"] == [sum(r["passes"] == n for r in records) for n in range(K + 1)]
    assert (f"[grpo] pass-rate filter, {K} answers per prompt: {len(records)} prompts, {always} always matched "
            f"(left out), {never} never matched, {len(records) - always - never} in between; {len(records) - always} "
            "prompts for GRPO") in result.stdout
    assert re.search(rf"\[grpo\] pass rates: {len(records)}/{len(records)} prompts x {K} answers", result.stdout)
    # a log's progress lines: each chunk's generation (prompts done, rate), each chunk's scores (time left)
    assert re.search(r"^\[grpo\] pass rates, prompts 1-\d+ of 48: \d+/\d+ prompts, .*done in", result.stdout, re.M)
    assert re.search(r"^\[grpo\] pass rates: \d+/48 prompts x 4 answers sampled and scored \(\d+%\), .* left",
                     result.stdout, re.M)


def test_prompts_always_answered_right_are_not_in_the_trainers_dataset(filtered):
    out, _ = filtered
    records = read_records(out / "grpo" / run_folders.PASS_RATES_FILE)
    left_in = {r["question"] for r in records if r["passes"] < K}
    # One pass through the dataset (24 steps x 2 prompts >= the prompts left in): every completion logged
    # comes from a prompt left in, and every prompt left in was trained on, but for the last one of an odd
    # count (TRL's sampler draws whole batches of 2 prompts per pass and drops a batch it cannot fill).
    trained = trained_questions(out / "grpo")
    assert trained <= left_in and len(left_in - trained) <= len(left_in) % 2


def test_the_step_line_shows_the_groups_with_zero_reward_spread(filtered):
    # What filtering saves is visible while training: TRL's frac_reward_zero_std is in each step line.
    _, result = filtered
    lines = [line for line in result.stdout.splitlines() if line.startswith("[grpo] step ")]
    assert len(lines) == 24 and all(re.search(r"  frac_reward_zero_std [0-9.e-]+ ", line) for line in lines), lines[:2]


def test_resume_reuses_the_pass_rates_and_refuses_a_file_of_another_run(filtered, tmp_path):
    out, _ = filtered
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    grpo = tmp_path / "grpo"
    # As if the run had been killed after checkpoint-12: no finished marker, no later checkpoint.
    (grpo / "run_info.json").unlink()
    shutil.rmtree(grpo / "checkpoint-24")
    rates = grpo / run_folders.PASS_RATES_FILE
    original, stamp = rates.read_bytes(), rates.stat().st_mtime_ns
    args = ["train_grpo.py", *FLAGS, *STEPS, "--output_dir", str(tmp_path), "--resume"]

    rates.write_bytes(b"".join(original.splitlines(keepends=True)[:-1]))  # one prompt short
    refused = run_script(*args)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]  # after the model's loading bar
    assert last.startswith("error: --resume: ") and "error" not in refused.stderr.strip()[: -len(last)]
    assert "was sampled for another set of prompts (47; this run has 48): pass --overwrite" in last
    rates.write_bytes(original)
    os.utime(rates, ns=(stamp, stamp))

    resumed = run_script(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"--resume: reused {rates} (not sampled again)" in resumed.stdout
    assert "[grpo] pass rates:" not in resumed.stdout and "resuming from checkpoint-12" in resumed.stdout
    assert rates.read_bytes() == original and rates.stat().st_mtime_ns == stamp
    info = json.loads((grpo / "run_info.json").read_text())
    assert info["global_step"] == 24 and info["pass_rate_filter"]["reused"] is True
    first = json.loads((out / "grpo" / "run_info.json").read_text())["pass_rate_filter"]
    assert {k: v for k, v in info["pass_rate_filter"].items() if k not in ("reused", "seconds")} == {
        k: v for k, v in first.items() if k not in ("reused", "seconds")}


def test_every_prompt_always_answered_right_is_one_line(filtered, tmp_path, smoke_sft):
    # A training set of only the questions the first run left out, answered (almost) greedily: nothing is left.
    out, _ = filtered
    learnt = {r["question"] for r in read_records(out / "grpo" / run_folders.PASS_RATES_FILE) if r["passes"] == K}
    data = tmp_path / "spider"
    data.mkdir()
    train = [ex for ex in json.loads((MINI_SPIDER_DIR / "train_spider.json").read_text()) if ex["question"] in learnt]
    (data / "train_spider.json").write_text(json.dumps(train))
    for name in ("tables.json", "dev.json"):
        shutil.copy(MINI_SPIDER_DIR / name, data / name)
    (data / "database").symlink_to(MINI_SPIDER_DIR / "database")
    copy_sft(smoke_sft, tmp_path)
    result = run_script("train_grpo.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--spider_dir", str(data),
                        "--grpo_filter_samples", "2", "--temperature", "0.0001")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (f"error: --grpo_filter_samples 2: the SFT adapter answered each of the {len(train)} "
                                     "training prompts right 2 times out of 2, so no prompt is left for GRPO to learn "
                                     "from; train on harder or more questions, or pass --grpo_filter_samples 0")
    assert not (tmp_path / "grpo" / "run_info.json").exists()


def test_a_pass_rate_file_that_is_not_this_runs_is_refused_in_one_line(tmp_path):
    keys = [("db", "How many?", "SELECT count(*) FROM t"), ("db", "Which?", "SELECT a FROM t")]
    good = [{"db_id": d, "question": q, "gold_sql": g, "passes": p, "k": 3, "sft_adapter_sha256": "a" * 64}
            for (d, q, g), p in zip(keys, (3, 1))]
    path = tmp_path / run_folders.PASS_RATES_FILE
    run_folders.write_jsonl(path, good)
    assert pass_rate_filter.reused_pass_counts(path, keys, 3, "a" * 64) == [3, 1]
    base = [{**r, "sft_adapter_sha256": None} for r in good]  # sampled from the base model (--grpo_start base)
    run_folders.write_jsonl(path, base)
    assert pass_rate_filter.reused_pass_counts(path, keys, 3, None) == [3, 1]
    run_folders.write_jsonl(path, good)
    cases = [
        (good, keys, 4, "a" * 64, "holds 3 answers per prompt, not --grpo_filter_samples 4"),
        (good, keys, 3, "b" * 64, "was sampled from another SFT adapter than bbbbbbbbbbbb"),
        (good, keys, 3, None, "was sampled from an SFT adapter, not the base model"),  # --grpo_start base's resume
        ([{**r, "sft_adapter_sha256": None} for r in good], keys, 3, "a" * 64, "another SFT adapter than aaaaaaaaaaaa"),
        (good, keys[::-1], 3, "a" * 64, "was sampled for another set of prompts (2; this run has 2)"),
        ([{**good[0], "passes": 5}, good[1]], keys, 3, "a" * 64, "a pass count outside 0..3"),
        (None, keys, 3, "a" * 64, "is missing"),
    ]
    for records, want_keys, k, digest, message in cases:
        if records is None:
            path.unlink()
        else:
            run_folders.write_jsonl(path, records)
        with pytest.raises(errors.UserError) as caught:
            pass_rate_filter.reused_pass_counts(path, want_keys, k, digest)
        assert message in str(caught.value) and "pass --overwrite" in str(caught.value) and "\n" not in str(caught.value)
    path.write_text("{not json\n")
    with pytest.raises(errors.UserError, match="cannot be read"):
        pass_rate_filter.reused_pass_counts(path, keys, 3, "a" * 64)


def test_overwrite_clears_the_pass_rates_and_the_flag_defines_the_run(tmp_path):
    out = tmp_path / "grpo"
    out.mkdir()
    (out / run_folders.RUN_FILE).write_text("{}")
    run_folders.write_jsonl(out / run_folders.PASS_RATES_FILE, [{"passes": 1}])
    run_folders.prepare_output_dir(out, Config(output_dir=str(tmp_path), overwrite=True), "run_info.json")
    assert not (out / run_folders.PASS_RATES_FILE).exists()
    # Run-defining: a checkpoint trained on filtered prompts never resumes without the filter (or the reverse).
    assert run_defining_config(Config(grpo_filter_samples=4), "train_grpo.py")["grpo_filter_samples"] == 4
    assert "grpo_filter_samples" not in run_defining_config(Config(), "train_sft.py")
    with pytest.raises(ValueError, match="--grpo_filter_samples must be 0 or more"):
        parse_config(["--grpo_filter_samples", "-1"], script="train_grpo.py")
    shown = run_script("train_grpo.py", "--help")
    assert "--grpo_filter_samples" in shown.stdout and "prompt_pass_rates.jsonl" in shown.stdout


def test_the_filter_with_a_vllm_server_is_refused_in_one_line():
    """The server holds the base model until GRPO's first step sends it the adapter: it cannot sample the
    SFT adapter for the filter, and a silent fallback to plain generate on the training GPU would crawl."""
    with pytest.raises(ValueError, match="--grpo_filter_samples cannot run with --vllm_mode server"):
        parse_config(["--grpo_filter_samples", "4", "--vllm_mode", "server", "--backend", "hf"], script="train_grpo.py")
    parse_config(["--grpo_filter_samples", "0", "--vllm_mode", "server", "--backend", "hf"], script="train_grpo.py")
