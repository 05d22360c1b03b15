"""Evaluation on Spider dev: generate SQL with an adapter, write pred.txt/gold.txt, score them.

    python evaluate.py --adapter grpo                 # sft | grpo | none | PATH (greedy by default)
    python evaluate.py --preset smoke --adapter sft
    python evaluate.py --score_only --pred P --gold G --db_dir D --results R   # no model, no GPU
    python evaluate.py --compare A/metrics.json B/metrics.json
    python evaluate.py --adapter grpo --export merged  # save a merged 16-bit checkpoint instead

Writes under <output_dir>/eval/<adapter>/: pred.txt and gold.txt in the official evaluator's formats,
predictions.jsonl (question, gold, raw answer, prediction, match, hardness, error) and metrics.json
(execution accuracy overall and by hardness, the model, the adapter and its hash, the config).
Execution match follows Spider's official evaluator (test-suite-sql-eval, default flags) exactly,
except that a prediction over --sql_timeout_s is wrong where the official one hangs.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import utils
from config import Config, parse_config


EVAL_STRATA = ("db_id", utils.SUBSET_HARDNESS)  # --max_eval_examples samples across databases and hardness


def write_results(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def official_command(pred: Path, gold: Path, db_dir: Path, tables: Path) -> str:
    return (f"python evaluation.py --gold {gold} --pred {pred} --db {db_dir} --table {tables} --etype exec"
            "   # in a checkout of github.com/taoyds/test-suite-sql-eval")


def score_only(cfg: Config, args: argparse.Namespace) -> None:
    missing = [flag for flag in ("pred", "gold", "db_dir") if not getattr(args, flag)]
    if missing:
        raise utils.UserError("--score_only needs " + ", ".join(f"--{m}" for m in missing))
    golds = utils.read_gold_file(args.gold)
    preds = utils.read_pred_file(args.pred, expected=len(golds))
    if not Path(args.db_dir).is_dir():
        raise utils.UserError(f"--db_dir {args.db_dir} is not a folder (expected <db_dir>/<db_id>/<db_id>.sqlite)")
    start = time.time()
    records = utils.score_predictions(preds, golds, args.db_dir, cfg.sql_timeout_s, cfg.reward_workers)
    seconds = time.time() - start
    results = Path(args.results) if args.results else Path(args.pred).with_name("results.jsonl")
    write_results(results, records)
    summary = utils.summarize_scores(records)
    print(utils.format_score_table(summary))
    print(f"scored {len(records)} predictions in {seconds:.2f} s; per-example results in {results}")


def resolve_adapter(cfg: Config) -> tuple[Path | None, str]:
    """--adapter sft | grpo | none | PATH -> (folder or None, label used for the output folder)."""
    name = cfg.adapter.strip()
    if name.lower() in ("none", "base", ""):
        return None, "base"
    if name in ("sft", "grpo"):
        path = Path(cfg.output_dir) / name
        if not (path / "adapter_model.safetensors").exists():
            script = "train_sft.py" if name == "sft" else "train_grpo.py"
            raise utils.UserError(f"no {name} adapter in {path}: run `python {script}` with the same --output_dir "
                                  "first, or pass --adapter PATH / --adapter none")
        return path, name
    path = Path(name)
    utils.read_adapter_config(path)  # a clear error when it is not an adapter folder
    return path, path.name


def evaluate(cfg: Config, args: argparse.Namespace) -> None:
    adapter, label = resolve_adapter(cfg)
    out = Path(cfg.output_dir) / "eval" / label
    if (out / "metrics.json").exists() and not cfg.overwrite:
        raise utils.UserError(f"{out} already holds an evaluation; pass --overwrite to replace it")
    spider = utils.Spider.open(cfg.spider_dir)
    examples = spider.examples("dev")
    subset = None
    if 0 < cfg.max_eval_examples < len(examples):
        # A seeded sample stratified by database and hardness (the first N questions cover a few databases).
        chosen = utils.stratified_subset(examples, cfg.max_eval_examples, cfg.seed, EVAL_STRATA)
        subset = utils.subset_record(chosen, len(examples), cfg.max_eval_examples, cfg.seed, EVAL_STRATA)
        examples = [examples[i] for i in chosen]

    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=adapter, trainable=False,
                                        fast_inference=backend == "unsloth")
    prompts = [utils.render_prompt_for(spider, ex, cfg, tokenizer) for ex in examples]
    lengths = utils.prompt_lengths(tokenizer, prompts)
    limit = cfg.max_seq_length - cfg.max_completion_length
    fits = [i for i, n in enumerate(lengths) if n <= limit]
    too_long = len(prompts) - len(fits)
    sampled = f" (seeded sample of {subset['of']}, seed {subset['seed']}, by database and hardness)" if subset else ""
    print(f"[eval] backend={backend} adapter={adapter or 'none (base model)'} dev examples={len(examples)}{sampled}; "
          f"{utils.length_report(lengths)}; over the {limit}-token prompt limit (scored wrong): {too_long}")

    start = time.time()
    answers = [""] * len(prompts)
    generated = utils.generate(model, tokenizer, [prompts[i] for i in fits], backend, adapter_dir=adapter,
                               max_new_tokens=cfg.max_completion_length, temperature=cfg.eval_temperature,
                               batch_size=cfg.eval_batch_size)
    for i, text in zip(fits, generated):
        answers[i] = text
    gen_seconds = time.time() - start

    out.mkdir(parents=True, exist_ok=True)
    preds = [utils.flatten_sql(utils.extract_sql(a)) for a in answers]
    golds = [(utils.flatten_sql(ex["query"]), ex["db_id"]) for ex in examples]
    pred_path, gold_path = out / "pred.txt", out / "gold.txt"
    pred_path.write_text("\n".join(preds) + "\n", encoding="utf-8")
    gold_path.write_text("\n".join(f"{sql}\t{db}" for sql, db in golds) + "\n", encoding="utf-8")

    # Score the files just written, exactly as --score_only (and the official evaluator) would read them.
    golds_read = utils.read_gold_file(gold_path)
    records = utils.score_predictions(utils.read_pred_file(pred_path, len(golds_read)), golds_read,
                                      spider.root / "database", cfg.sql_timeout_s, cfg.reward_workers)
    dev_indices = subset["indices"] if subset else range(len(examples))
    for record, ex, answer, pred, dev_index in zip(records, examples, answers, preds, dev_indices):
        record.update(question=ex["question"], gold=ex["query"], answer=answer, prediction=pred, dev_index=dev_index)
    write_results(out / "predictions.jsonl", records)

    summary = utils.summarize_scores(records)
    adapter_sha = (hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
                   if adapter else None)
    metrics = {
        "ex": summary["all"]["ex"],
        "by_hardness": summary,
        "comparator": "sql-rlvr execution match = test-suite-sql-eval exec rules, default flags "
                      f"(timeout {cfg.sql_timeout_s:g} s counts as wrong)",
        "model": cfg.model_name, "adapter": str(adapter) if adapter else None, "adapter_sha256": adapter_sha,
        "backend": backend, "examples": len(examples), "prompts_over_limit": too_long,
        "generation_seconds": round(gen_seconds, 1),
        "subset": subset,  # null: all of dev; else the seed, strata and dev indices of --max_eval_examples
        "config": cfg.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(utils.format_score_table(summary))
    print(f"[eval] wrote {pred_path}, {gold_path}, {out / 'predictions.jsonl'}, {out / 'metrics.json'}")
    print("official evaluator on the same files:\n  " +
          official_command(pred_path.resolve(), gold_path.resolve(), (spider.root / "database").resolve(),
                           (spider.root / "tables.json").resolve()))


def load_run(metrics_path: str) -> tuple[dict, list[dict]]:
    path = Path(metrics_path)
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise utils.UserError(f"cannot read {path}: {exc}") from None
    predictions = path.with_name("predictions.jsonl")
    records = [json.loads(line) for line in predictions.read_text().splitlines()] if predictions.exists() else []
    return metrics, records


def compare(path_a: str, path_b: str) -> None:
    """EX by hardness side by side, and the questions whose verdict flipped between two evaluations."""
    (a, rec_a), (b, rec_b) = load_run(path_a), load_run(path_b)
    print(f"{'':<10}{'A':>10}{'B':>10}{'B - A':>10}   A = {path_a}\n{'':<10}{'':>30}   B = {path_b}")
    for level in utils.HARDNESS_LEVELS + ("all",):
        ea, eb = a["by_hardness"][level]["ex"], b["by_hardness"][level]["ex"]
        print(f"{level:<10}{ea:>10.3f}{eb:>10.3f}{eb - ea:>+10.3f}   (n={a['by_hardness'][level]['count']})")
    if not rec_a or not rec_b:
        print("no predictions.jsonl beside both metrics files: cannot list flipped questions")
        return
    if [r["db_id"] for r in rec_a] != [r["db_id"] for r in rec_b]:
        raise utils.UserError("the two evaluations are not on the same examples: cannot pair questions")
    gained = [(x, y) for x, y in zip(rec_a, rec_b) if y["exec_match"] and not x["exec_match"]]
    lost = [(x, y) for x, y in zip(rec_a, rec_b) if x["exec_match"] and not y["exec_match"]]
    for title, pairs in ((f"fixed by B ({len(gained)})", gained), (f"broken by B ({len(lost)})", lost)):
        print(f"\n{title}:")
        for x, y in pairs:
            print(f"  #{x['index']} [{x['hardness']}] {x.get('question', '')}\n      A: {x.get('prediction', '')}\n"
                  f"      B: {y.get('prediction', '')}")


def export(cfg: Config) -> None:
    """Merge the adapter into 16-bit base weights; check the merged model answers like the adapter."""
    adapter, label = resolve_adapter(cfg)
    if adapter is None:
        raise utils.UserError("--export merged needs an adapter (--adapter sft | grpo | PATH)")
    out = Path(cfg.output_dir) / "merged" / label
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise utils.UserError(f"{out} already holds an export; pass --overwrite to replace it")
    spider = utils.Spider.open(cfg.spider_dir)
    examples = spider.examples("dev")[:4]
    chats = [utils.render_prompt_for(spider, ex, cfg) for ex in examples]
    info = utils.export_merged(cfg, utils.pick_backend(cfg), adapter, out, chats, cfg.export_dtype)
    print(f"[export] merged {adapter} into {cfg.model_name} -> {out} ({info['dtype']}); greedy answers equal to "
          f"the adapter's on {info['agreeing_prompts']}/{info['checked_prompts']} dev prompts")
    if info["agreeing_prompts"] != info["checked_prompts"]:
        message = f"the merged model answers differently from the adapter on some prompts: see {out / 'export_info.json'}"
        if cfg.export_dtype == "float32":
            raise utils.UserError(message)  # no rounding to blame: the merge itself is wrong
        print(f"WARNING: {message} (16-bit rounding of merged weights can flip a near-tie; compare EX of both)",
              file=sys.stderr)


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--score_only", action="store_true", help="score an existing pred.txt; no model is loaded")
    extra.add_argument("--pred", help="--score_only: predictions, one SQL a line")
    extra.add_argument("--gold", help="--score_only: gold, 'SQL<TAB>db_id' a line")
    extra.add_argument("--db_dir", help="--score_only: folder of <db_id>/<db_id>.sqlite")
    extra.add_argument("--results", help="--score_only: per-example JSON lines (default: results.jsonl beside --pred)")
    extra.add_argument("--compare", nargs=2, metavar=("METRICS_A", "METRICS_B"),
                       help="compare two evaluations' metrics.json (no model is loaded)")
    extra.add_argument("--export", choices=["merged"], help="merge the adapter into a 16-bit checkpoint "
                       "under <output_dir>/merged/<adapter> instead of evaluating")
    cfg, args = parse_config(script="evaluate.py", extra=extra)
    if args.compare:
        compare(*args.compare)
    elif args.score_only:
        score_only(cfg, args)
    elif args.export:
        export(cfg)
    else:
        evaluate(cfg, args)


if __name__ == "__main__":
    utils.run_main(main)
