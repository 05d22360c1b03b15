"""Evaluation on Spider dev: generate SQL with an adapter, write pred.txt/gold.txt, score them.

    python evaluate.py --adapter grpo                 # sft | grpo | none | PATH (greedy by default)
    python evaluate.py --preset smoke --adapter sft
    python evaluate.py --score_only --pred P --gold G --db_dir D --results R   # no model, no GPU
    python evaluate.py --compare A/metrics.json B/metrics.json
    python evaluate.py --adapter grpo --export merged  # also save a merged 16-bit checkpoint

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
import time
from pathlib import Path

import utils
from config import Config, parse_config


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
    if cfg.max_eval_examples > 0:
        examples = examples[: cfg.max_eval_examples]

    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=adapter, trainable=False,
                                        fast_inference=backend == "unsloth")
    prompts = [utils.render_prompt(tokenizer, utils.build_messages(spider.schema(ex["db_id"], cfg.schema_sample_values),
                                                                   ex["question"])) for ex in examples]
    lengths = utils.prompt_lengths(tokenizer, prompts)
    limit = cfg.max_seq_length - cfg.max_completion_length
    fits = [i for i, n in enumerate(lengths) if n <= limit]
    too_long = len(prompts) - len(fits)
    print(f"[eval] backend={backend} adapter={adapter or 'none (base model)'} dev examples={len(examples)}; "
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
    for record, ex, answer, pred in zip(records, examples, answers, preds):
        record.update(question=ex["question"], gold=ex["query"], answer=answer, prediction=pred)
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
        "generation_seconds": round(gen_seconds, 1), "config": cfg.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(utils.format_score_table(summary))
    print(f"[eval] wrote {pred_path}, {gold_path}, {out / 'predictions.jsonl'}, {out / 'metrics.json'}")
    print("official evaluator on the same files:\n  " +
          official_command(pred_path.resolve(), gold_path.resolve(), (spider.root / "database").resolve(),
                           (spider.root / "tables.json").resolve()))


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--score_only", action="store_true", help="score an existing pred.txt; no model is loaded")
    extra.add_argument("--pred", help="--score_only: predictions, one SQL a line")
    extra.add_argument("--gold", help="--score_only: gold, 'SQL<TAB>db_id' a line")
    extra.add_argument("--db_dir", help="--score_only: folder of <db_id>/<db_id>.sqlite")
    extra.add_argument("--results", help="--score_only: per-example JSON lines (default: results.jsonl beside --pred)")
    cfg, args = parse_config(script="evaluate.py", extra=extra)
    if args.score_only:
        score_only(cfg, args)
    else:
        evaluate(cfg, args)


if __name__ == "__main__":
    utils.run_main(main)
