"""Evaluation on Spider dev (or test) or BIRD dev (or mini-dev): generate SQL with an adapter, write the
official evaluator's files, score them.

    python evaluate.py --adapter grpo                 # sft | grpo | none | PATH (greedy by default)
    python evaluate.py --preset smoke --adapter sft
    python evaluate.py --adapter grpo --num_samples 8  # + 8 sampled answers, voted on by execution (maj@k, pass@k)
    python evaluate.py --adapter grpo --ts_db_dir DIR  # EX and test-suite accuracy (TS) in one run
    python evaluate.py --adapter grpo --eval_split test  # Spider test; outputs under eval/<adapter>/test/
    python evaluate.py --score_only --pred P --gold G --db_dir D --results R   # no model, no GPU
    python evaluate.py --score_only --pred A --pred B --pred C --gold G --db_dir D   # vote among files
    python evaluate.py --compare RUN_A RUN_B           # evaluation folders or their metrics.json
    python evaluate.py --adapter grpo --export merged  # save a merged 16-bit checkpoint instead
    python evaluate.py --benchmark bird --adapter grpo --eval_split mini_dev   # BIRD (sql_rlvr/benchmarks.py)
    python evaluate.py --benchmark folder --data_dir DIR --adapter grpo   # your own data (docs/data.md)
    python evaluate.py --ask "How many singers are older than 30?" --db PATH.sqlite --adapter grpo   # sql_rlvr/ask.py
    python evaluate.py --adapter grpo --eval_file syn.json,dk.json --eval_tables dk_tables.json --eval_db_dir dk_db
                                                       # Spider-format files, one run (sql_rlvr/question_files.py)
    python evaluate.py --self_traces traces.jsonl --num_samples 8 --reasoning true --adapter none
                       # reasoning traces on the training questions, verified, for train_sft.py --sft_traces

Writes under <output_dir>/eval/<adapter>/ (eval/<adapter>/test/ for --eval_split test): pred.txt and
gold.txt in the official evaluator's formats, predictions.jsonl (question, gold, raw answer,
prediction, match, hardness, error) and metrics.json (execution accuracy overall and by hardness,
the model, the adapter and its hash, the config); with --num_samples also pred_greedy.txt and
candidates.jsonl (pred.txt then holds the voted prediction). With --eval_file, the same under
eval/<adapter>/<file name>/ for each file, then one table, a row per file. Score-only writes the
per-example --results (default results.jsonl) and its metrics beside it, named after it (metrics.json
for results.jsonl, R.metrics.json for R.jsonl). Without a terminal (a log file), progress lines come
every --progress_every_s seconds. Execution match follows Spider's official evaluator
(test-suite-sql-eval, default flags or --keep_distinct) exactly, except that a prediction over
--sql_timeout_s is wrong where the official one hangs.
With --benchmark bird (sql_rlvr/benchmarks.py): BIRD's rule (also for voting), predict_dev.json / dev_gold.sql,
EX by difficulty; --eval_split mini_dev scores BIRD's mini-dev (under eval/<adapter>/mini_dev/);
--ts_db_dir and --keep_distinct are Spider's and refused.
"""

from config import Config, parse_config  # first: it stops Python < 3.11 in one line

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import utils
from sql_rlvr import agent, benchmarks, question_files, run_folders, scoring, traces
from sql_rlvr.ask import ask
from sql_rlvr.extract import final_sql
from sql_rlvr.errors import StageFinished, UserError
from sql_rlvr.export import export_merged
from sql_rlvr.progress import Report
from sql_rlvr.sql_tool import SQLTool


def official_command(pred: Path, gold: Path, db_dir: Path, tables: Path, keep_distinct: bool = False) -> str:
    return (f"python evaluation.py --gold {gold} --pred {pred} --db {db_dir} --table {tables} --etype exec"
            + (" --keep_distinct" if keep_distinct else "") + "   # in a checkout of github.com/taoyds/test-suite-sql-eval")


def questions_sha256(golds: list[tuple[str, str]]) -> str:
    """Fingerprint of the evaluated questions (gold SQL and db_id, in order): --compare pairs only equal ones.
    The SQL is flattened first, so a gold file spaced otherwise (Spider's dev_gold.sql) is the same questions."""
    return hashlib.sha256("\n".join(f"{scoring.flatten_sql(sql)}\t{db}" for sql, db in golds).encode()).hexdigest()


def comparator(cfg: Config) -> str:
    return f"{utils.benchmark_spec(cfg).comparator(cfg)} (timeout {cfg.sql_timeout_s:g} s counts as wrong)"


def test_suite_size(db_dir: str | os.PathLike, db_ids: set[str]) -> int:
    """Most database files any db_id has under db_dir (1 = Spider's layout, more = a test suite)."""
    return max((len(scoring.db_files(db_dir, db)) for db in db_ids), default=0)


def vote_metrics(records: list[dict], k: int, spec) -> dict:
    """ex_vote and pass_at_k, overall and by the benchmark's levels (ex_vote_by_hardness or
    ex_vote_by_difficulty, ...), from vote_predictions records."""
    vote, reach = spec.summarize(records), spec.summarize(records, key="any_match")
    return {"k": k, "ex_vote": vote["all"]["ex"], f"ex_vote_{spec.metrics_key}": vote,
            "pass_at_k": reach["all"]["ex"], f"pass_at_k_{spec.metrics_key}": reach}


def score_only_metrics_path(results: Path) -> Path:
    """Score-only's metrics, named after its --results file: metrics.json beside results.jsonl (the default),
    R.metrics.json beside any other R.jsonl, so that several scorings share a folder (e.g. with and
    without --keep_distinct)."""
    if results.name == "results.jsonl":
        return results.with_name("metrics.json")
    return results.with_name(results.name.removesuffix(".jsonl") + ".metrics.json")


def score_only(cfg: Config, args: argparse.Namespace) -> None:
    missing = [flag for flag in ("pred", "gold", "db_dir") if not getattr(args, flag)]
    if missing:
        raise UserError("--score_only needs " + ", ".join(f"--{m}" for m in missing))
    spec = utils.benchmark_spec(cfg)  # its file formats, match rule and difficulty levels
    spec.check_options(cfg)
    golds, labels = spec.read_gold(args.gold)
    pred_files = list(args.pred)
    pred_lists = [spec.read_predictions(path, expected=len(golds)) for path in pred_files]
    if not Path(args.db_dir).is_dir():
        raise UserError(f"--db_dir {args.db_dir} is not a folder (expected <db_dir>/<db_id>/<db_id>.sqlite)")
    # The shipped mini datasets keep their databases as SQL text, built on first use as opening them does
    # (a real download's .sqlite files are never touched; a test suite only from our *.perturb.sql layout).
    benchmarks.ensure_databases_built(Path(args.db_dir))
    if any(Path(args.db_dir).glob("*/*.perturb.sql")):
        benchmarks.ensure_test_suite_built(Path(args.db_dir), Path(args.db_dir).parent / "database")
    results = Path(args.results) if args.results else Path(pred_files[0]).with_name("results.jsonl")
    metrics_path = score_only_metrics_path(results)
    if metrics_path.exists():
        try:
            previous = json.loads(metrics_path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
        if (isinstance(previous, dict) and previous.get("mode") != "score_only"
                and any(key.startswith("by_") for key in previous)):
            raise UserError(f"{metrics_path} holds a generation run's metrics: pass --results in another folder")
        if not cfg.overwrite:  # the rule of every stage and of generation: nothing written is replaced silently
            raise UserError(f"{metrics_path} already holds scores; pass --overwrite to replace them, or another "
                            f"--results file (each has its own metrics; these are {results.name}'s)")
    start = time.time()
    if len(pred_lists) == 1:
        records = scoring.score_predictions(pred_lists[0], golds, args.db_dir, cfg.sql_timeout_s, cfg.reward_workers,
                                          keep_distinct=cfg.keep_distinct, rule=spec.rule)
    else:  # several files: candidates in the order given, voted on by execution under the benchmark's rule
        records = scoring.vote_predictions([list(c) for c in zip(*pred_lists)], golds, args.db_dir, cfg.sql_timeout_s,
                                         cfg.reward_workers, keep_distinct=cfg.keep_distinct, rule=spec.rule)
    spec.label(records, labels)
    seconds = time.time() - start
    for record in records:  # the scored (or chosen) prediction, for --compare's list of flipped questions
        record["prediction"] = pred_lists[record.get("chosen", 0)][record["index"]]
    run_folders.write_jsonl(results, records)
    summary = spec.summarize(records)
    metrics = {
        "ex": summary["all"]["ex"], spec.metrics_key: summary, "comparator": comparator(cfg),
        "keep_distinct": cfg.keep_distinct, "mode": "score_only",
        "pred_files": [str(Path(f).resolve()) for f in pred_files], "gold_file": str(Path(args.gold).resolve()),
        "db_dir": str(Path(args.db_dir).resolve()),
        "databases_per_db_id": test_suite_size(args.db_dir, {db for _, db in golds}),
        "results_file": results.name, "examples": len(records), "questions_sha256": questions_sha256(golds),
        "model": None, "adapter": None, "adapter_sha256": None, "scoring_seconds": round(seconds, 2),
        "config": cfg.to_dict(),
    }
    extra_rows = []
    if len(pred_lists) > 1:
        k = len(pred_lists)
        metrics.update(vote_metrics(records, k, spec))
        files = []
        for j, path in enumerate(pred_files):
            own = spec.summarize([{**r, "own": r["candidate_matches"][j]} for r in records], key="own")
            files.append({"file": str(Path(path).resolve()), "ex": own["all"]["ex"], spec.metrics_key: own})
            extra_rows.append((f"file {j}: {Path(path).name}", own))
        metrics["ex_files"] = files
        extra_rows.insert(0, (f"pass@{k}", metrics[f"pass_at_k_{spec.metrics_key}"]))
    metrics_path.write_text(json.dumps(metrics, indent=2))
    if len(pred_lists) > 1:
        print(f"execution = EX of the vote among {len(pred_lists)} files (voting rule: docs/evaluation.md, Self-consistency)")
    print(spec.format_table(summary, extra_rows))
    print(f"scored {len(records)} predictions in {seconds:.2f} s; per-example results in {results}; metrics in {metrics_path}")


def resolve_adapter(cfg: Config) -> tuple[Path | None, str]:
    """--adapter sft | grpo | none | PATH -> (folder or None, label used for the output folder)."""
    name = cfg.adapter.strip()
    if name.lower() in ("none", "base", ""):
        return None, "base"
    if name in ("sft", "grpo"):
        path = Path(cfg.output_dir) / name
        if not (path / "adapter_model.safetensors").exists():
            script = "train_sft.py" if name == "sft" else "train_grpo.py"
            raise UserError(f"no {name} adapter in {path}: run `python {script}` with the same --output_dir "
                                  "first, or pass --adapter PATH / --adapter none")
        return path, name
    path = Path(name)
    utils.read_adapter_config(path)  # a clear error when it is not an adapter folder
    return path, path.name


@dataclass
class Answers:
    """What the model said: each question's greedy answer and its sampled candidates (--num_samples)."""

    greedy: list[str]
    samples: list[list[str]]  # k answers per question; k = 0: empty lists
    backend: str
    prompts_over_limit: int
    seconds: float
    # The agentic mode (--max_tool_calls N): each answer's tool calls (sql_tool.ToolCall records), in the
    # same shapes as greedy and samples; None without it.
    greedy_calls: list[list[dict]] | None = None
    sample_calls: list[list[list[dict]]] | None = None
    call_stats: dict | None = None  # agent.call_stats of the greedy answers (and candidates_... of all)
    # --reasoning true: the "<think>" the prompt ended with (a thinking template: the answers start inside it)
    think_opener: str = ""
    completion_tokens: list[int] | None = None  # each greedy answer's length in tokens (tool results included)

    def sql(self, cfg: Config, text: str) -> str:
        """The SQL an answer gives, one line, as pred.txt holds it: its final query with --reasoning true
        (no final query: "", scored wrong), else extract_sql's."""
        return scoring.flatten_sql(final_sql(text, cfg.reasoning, self.think_opener) or "")

    def no_answer(self, cfg: Config, text: str) -> bool:
        """--reasoning true: the reasoning never reached a final query (cut by the length limit, or none given)."""
        return cfg.reasoning and final_sql(text, True, self.think_opener) is None


def evaluation_folder(cfg: Config, adapter: Path | None, label: str, name: str = "") -> Path:
    """eval/<adapter>/ (eval/<adapter>/<split>/ off dev; eval/<adapter>/<name>/ for the question file `name`),
    refused when it already holds an evaluation unless --overwrite; --resume accepts a finished one of this
    very adapter (a rerun chain), and says so."""
    out = Path(cfg.output_dir) / "eval" / label
    if name:
        out = out / name
    elif cfg.eval_split != "dev":
        out = out / cfg.eval_split  # eval/<adapter>/test/ (Spider), eval/<adapter>/mini_dev/ (BIRD)
    if (out / "metrics.json").exists() and not cfg.overwrite:
        if cfg.resume:  # evaluation has no checkpoints: --resume (as in a rerun chain) accepts a finished one
            # ... only of this very adapter: after `train_grpo.py --overwrite` the old numbers are not its numbers
            try:
                evaluated = json.loads((out / "metrics.json").read_text()).get("adapter_sha256")
            except (OSError, ValueError, AttributeError):
                evaluated = "unreadable"
            current = run_folders.adapter_digest(adapter) if adapter else None
            if evaluated != current:
                raise UserError(f"{out} holds an evaluation of another adapter (sha256 {str(evaluated)[:12]}, "
                                f"{adapter or 'base'} is now {str(current)[:12]}): pass --overwrite to evaluate again")
            raise StageFinished(f"[eval] {out} already holds an evaluation ({out / 'metrics.json'}): nothing "
                                "to resume. Pass --overwrite to evaluate again.")
        raise UserError(f"{out} already holds an evaluation; pass --overwrite to replace it")
    return out


def eval_examples(cfg: Config, spec: benchmarks.Benchmark, dataset: Any) -> tuple[list[dict], dict | None]:
    """The questions to evaluate, and the record of the seeded subset when --max_eval_examples draws one
    (stratified by database and hardness or difficulty: the first N questions cover a few databases)."""
    examples = dataset.examples(cfg.eval_split)
    if not 0 < cfg.max_eval_examples < len(examples):
        return examples, None
    chosen = utils.stratified_subset(examples, cfg.max_eval_examples, cfg.seed, spec.eval_strata)
    subset = utils.subset_record(chosen, len(examples), cfg.max_eval_examples, cfg.seed, spec.eval_strata)
    return [examples[i] for i in chosen], subset


def check_test_suites(cfg: Config, examples: list[dict]) -> None:
    """--ts_db_dir holds a database for every question's db_id: checked before any generation."""
    if not cfg.ts_db_dir:
        return
    if not Path(cfg.ts_db_dir).is_dir():
        raise UserError(f"--ts_db_dir {cfg.ts_db_dir} is not a folder (expected <dir>/<db_id>/*.sqlite)")
    try:
        scoring.check_db_dir(cfg.ts_db_dir, {ex["db_id"] for ex in examples})
    except UserError as exc:
        raise UserError(f"--ts_db_dir: {exc}") from None


@dataclass
class Generator:
    """The model evaluation answers with, loaded once (however many question files a run evaluates)."""

    backend: str
    model: Any
    tokenizer: Any
    template_kwargs: dict


def load_generator(cfg: Config, adapter: Path | None) -> Generator:
    """The model (with the adapter), its chat template checked for the mode (--max_tool_calls)."""
    backend = utils.pick_backend(cfg)
    model, tokenizer = utils.load_model(cfg, backend, adapter=adapter, trainable=False,
                                        fast_inference=backend == "unsloth" and cfg.fast_inference)
    template_kwargs = agent.checked_template_kwargs(model, tokenizer, cfg.model_name, cfg.max_tool_calls > 0)
    return Generator(backend, model, tokenizer, template_kwargs)


def generate_answers(cfg: Config, adapter: Path | None, dataset: Any, examples: list[dict], note: str,
                     generator: Generator | None = None, what: str = "") -> Answers:
    """Step 1: load the model (with the adapter; `generator`: one already loaded) and answer every
    question greedily, plus --num_samples sampled candidates in one call; a prompt over the length limit
    gets no answer (scored wrong). With --max_tool_calls N each answer is a conversation with the
    database (generate_with_tools). `what`: the questions' name in the log (the split, or a file's)."""
    generator = generator or load_generator(cfg, adapter)
    backend, model, tokenizer, template_kwargs = (generator.backend, generator.model, generator.tokenizer,
                                                  generator.template_kwargs)
    agentic = cfg.max_tool_calls > 0
    template_kwargs = agent.checked_template_kwargs(model, tokenizer, cfg.model_name, agentic, cfg.reasoning)
    opener = utils.think_opener(tokenizer, template_kwargs) if cfg.reasoning else ""
    what = what or cfg.eval_split
    # Rendered texts, or in the agentic mode chats offered the tool (their length counts its description).
    limit = cfg.max_seq_length - cfg.max_completion_length
    chats = [utils.render_prompt_for(dataset, ex, cfg) for ex in examples]
    prompts, lengths, fits = agent.model_prompts(tokenizer, chats, template_kwargs, agentic, limit)
    mode = f"; agentic, up to {cfg.max_tool_calls} queries per question" if agentic else ""
    print(f"[eval] backend={backend} adapter={adapter or 'none (base model)'} {what} examples={len(examples)}"
          f"{note}{mode}; {utils.length_report(lengths)}; over the {limit}-token prompt limit (scored wrong): "
          f"{len(prompts) - len(fits)}")
    if agentic:
        answers = generate_with_tools(cfg, adapter, dataset, examples, prompts, fits, backend, model, tokenizer,
                                      template_kwargs, what)
        answers.think_opener = opener
        return answers
    start = time.time()
    options = dict(max_new_tokens=cfg.max_completion_length, batch_size=cfg.eval_batch_size,
                   fast_inference=cfg.fast_inference)
    greedy = [""] * len(prompts)
    texts, lengths = utils.generate(model, tokenizer, [prompts[i] for i in fits], backend, adapter_dir=adapter,
                                    temperature=cfg.eval_temperature, return_lengths=True,
                                    progress=Report(f"[eval] {what}: greedy answers", cfg.progress_every_s), **options)
    for i, text in zip(fits, texts):
        greedy[i] = text
    k = cfg.num_samples
    samples: list[list[str]] = [[""] * k for _ in prompts]
    if k > 0:  # candidates c1..cK, sampled in one call besides the greedy one (c0)
        sampled = utils.generate(model, tokenizer, [prompts[i] for i in fits], backend, adapter_dir=adapter,
                                 temperature=cfg.sample_temperature, num_return_sequences=k, top_p=0.95, seed=cfg.seed,
                                 progress=Report(f"[eval] {what}: {k} sampled answers each", cfg.progress_every_s),
                                 **options)
        for j, i in enumerate(fits):
            samples[i] = sampled[j * k:(j + 1) * k]
    return Answers(greedy, samples, backend, len(prompts) - len(fits), time.time() - start, think_opener=opener,
                   completion_tokens=lengths)


def generate_with_tools(cfg: Config, adapter: Path | None, dataset: Any, examples: list[dict], chats: list[list[dict]],
                        fits: list[int], backend: str, model: Any, tokenizer: Any, template_kwargs: dict,
                        what: str = "") -> Answers:
    """generate_answers in the agentic mode: the same greedy and sampled answers of the questions whose
    chat `fits`, each the final turn of a conversation in which the model ran up to --max_tool_calls
    queries on the question's own database."""
    start = time.time()
    tool = SQLTool.from_config(cfg)
    options = dict(tool=tool, max_calls=cfg.max_tool_calls, template_kwargs=template_kwargs, adapter_dir=adapter,
                   max_new_tokens=cfg.max_completion_length, max_seq_length=cfg.max_seq_length,
                   batch_size=cfg.eval_batch_size, fast_inference=cfg.fast_inference)
    chosen = [chats[i] for i in fits]
    db_paths = [str(dataset.db_path(examples[i]["db_id"])) for i in fits]  # the original databases, as written
    k = cfg.num_samples
    try:
        greedy_t = agent.answer_with_tools(model, tokenizer, backend, chosen, db_paths,
                                           temperature=cfg.eval_temperature, **options,
                                           progress=Report(f"[eval] {what}: greedy answers", cfg.progress_every_s))
        sampled_t = (agent.answer_with_tools(model, tokenizer, backend, chosen, db_paths, temperature=cfg.sample_temperature,
                                             num_return_sequences=k, top_p=0.95, seed=cfg.seed, **options,
                                             progress=Report(f"[eval] {what}: {k} sampled answers each",
                                                             cfg.progress_every_s))
                     if k > 0 else [])
    finally:
        tool.close()
    unanswered = lambda: agent.Trajectory(ended="over_prompt_limit")  # noqa: E731  (one per question, never shared)
    greedy = [unanswered() for _ in examples]
    samples = [[unanswered() for _ in range(k)] for _ in examples]
    for j, i in enumerate(fits):
        greedy[i] = greedy_t[j]
        if k > 0:
            samples[i] = sampled_t[j * k:(j + 1) * k]
    stats = agent.call_stats(greedy)
    if k > 0:
        stats.update({f"candidates_{name}": value
                      for name, value in agent.call_stats(greedy + [t for s in samples for t in s]).items()})
    print(f"[eval] tool calls per question {stats['tool_calls_mean']:.2f}, answered after a call "
          f"{stats['answered_after_call']:.3f} (greedy)")
    return Answers([t.answer for t in greedy], [[t.answer for t in s] for s in samples], backend,
                   len(examples) - len(fits), time.time() - start, greedy_calls=[t.call_records() for t in greedy],
                   sample_calls=[[t.call_records() for t in s] for s in samples], call_stats=stats,
                   completion_tokens=[greedy[i].completion_tokens for i in fits])


def write_answer_files(cfg: Config, spec: benchmarks.Benchmark, out: Path, examples: list[dict], answers: Answers,
                       db_dir: Path) -> tuple[Path, Path, list[str], list[dict]]:
    """Step 2: the official evaluator's files: gold.txt, pred.txt (the greedy SQL, or with --num_samples
    the vote among greedy + sampled candidates, with pred_greedy.txt and candidates.jsonl beside it),
    and the benchmark's own formats (BIRD: predict_dev.json, dev_gold.sql). Returns (pred file, gold
    file, predictions, voting records)."""
    out.mkdir(parents=True, exist_ok=True)
    # --overwrite: the earlier evaluation's marker first (a half-written folder never looks finished), and
    # its voting files, which this run may not write again.
    for name in ("metrics.json", "pred_greedy.txt", "candidates.jsonl"):
        (out / name).unlink(missing_ok=True)
    greedy = [answers.sql(cfg, a) for a in answers.greedy]
    pred_path, gold_path = out / "pred.txt", out / "gold.txt"
    scoring.write_gold_lines(gold_path, examples)
    votes: list[dict] = []
    preds = greedy
    if cfg.num_samples > 0:
        candidates = [[g] + [answers.sql(cfg, a) for a in more]
                      for g, more in zip(greedy, answers.samples)]
        votes = scoring.vote_predictions(candidates, scoring.read_gold_file(gold_path), db_dir, cfg.sql_timeout_s,
                                         cfg.reward_workers, keep_distinct=cfg.keep_distinct, rule=spec.rule)
        spec.label_from(votes, examples)
        preds = [c[v["chosen"]] for c, v in zip(candidates, votes)]
        (out / "pred_greedy.txt").write_text("\n".join(greedy) + "\n", encoding="utf-8")
        raw = ([a] + s for a, s in zip(answers.greedy, answers.samples))

        def with_calls(record: dict, i: int, j: int) -> dict:  # the agentic mode: each candidate's own calls
            return {**record, "tool_calls": answers.greedy_calls[i] if j == 0 else answers.sample_calls[i][j - 1]} \
                if answers.greedy_calls else record

        run_folders.write_jsonl(out / "candidates.jsonl", [{
            "index": v["index"], "db_id": ex["db_id"], "question": ex["question"], "chosen": v["chosen"],
            "votes": v["votes"], "executed": v["executed"], "any_match": v["any_match"],
            "candidates": [with_calls({"k": j, "answer": a, "sql": sql, "outcome": o, "exec_match": m, "group": g}, i, j)
                           for j, (a, sql, o, m, g) in enumerate(zip(texts, cands, v["candidate_outcomes"],
                                                                     v["candidate_matches"], v["groups"]))],
        } for i, (ex, v, cands, texts) in enumerate(zip(examples, votes, candidates, raw))])
    pred_path.write_text("\n".join(preds) + "\n", encoding="utf-8")
    if spec.write_eval_files is not None:  # the benchmark's own formats (BIRD: predict_dev.json, dev_gold.sql)
        pred_path, gold_path = spec.write_eval_files(out, examples, preds)
    return pred_path, gold_path, preds, votes


def score_answer_files(cfg: Config, spec: benchmarks.Benchmark, pred_path: Path, gold_path: Path, db_dir: Path,
                       examples: list[dict]) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """Step 3: score the files just written, exactly as --score_only (and the official evaluator) would read
    them; with --ts_db_dir the same predictions on the test suites too. Returns (records, test-suite
    records, the gold pairs read)."""
    golds = scoring.read_gold_file(gold_path)
    preds = spec.read_predictions(pred_path, len(golds))
    records = scoring.score_predictions(preds, golds, db_dir, cfg.sql_timeout_s, cfg.reward_workers,
                                        keep_distinct=cfg.keep_distinct, rule=spec.rule)
    spec.label_from(records, examples)
    ts_records = []
    if cfg.ts_db_dir:
        ts_records = scoring.score_predictions(preds, golds, cfg.ts_db_dir, cfg.sql_timeout_s, cfg.reward_workers,
                                               keep_distinct=cfg.keep_distinct)
    return records, ts_records, golds


def report(cfg: Config, spec: benchmarks.Benchmark, out: Path, adapter: Path | None, dataset: Any,
           examples: list[dict], subset: dict | None, answers: Answers, files: tuple[Path, Path, list[str], list[dict]],
           scored: tuple[list[dict], list[dict], list[tuple[str, str]]], db_dir: Path, source: dict | None = None) -> None:
    """Step 4: predictions.jsonl (a record per question), metrics.json (EX by level, voting, test suites,
    what was evaluated; `source`: a question file's own entries), the score table, and the official
    evaluator's command on the same files."""
    pred_path, gold_path, preds, votes = files
    records, ts_records, golds = scored
    k = cfg.num_samples
    dev_indices = subset["indices"] if subset else range(len(examples))
    for record, ex, answer, pred, dev_index in zip(records, examples, answers.greedy, preds, dev_indices):
        record.update(question=ex["question"], gold=ex["query"], answer=answer, prediction=pred, dev_index=dev_index)
        if "file_index" in ex:  # --eval_file: the record's place in its file
            record["file_index"] = ex["file_index"]
    greedy = [answers.sql(cfg, a) for a in answers.greedy]
    if cfg.reasoning:  # the greedy answer's reasoning never reached a final query: wrong, counted on its own
        for record, answer in zip(records, answers.greedy):
            record["no_answer"] = answers.no_answer(cfg, answer)
    for record, v, g in zip(records, votes, greedy):
        record.update(chosen=v["chosen"], votes=v["votes"], executed=v["executed"], any_match=v["any_match"],
                      greedy_prediction=g, greedy_match=v["candidate_matches"][0])
    for record, ts in zip(records, ts_records):
        record.update(ts_match=ts["exec_match"], ts_error=ts["error"])
    for record, calls in zip(records, answers.greedy_calls or []):
        record["tool_calls"] = calls  # the agentic mode: the greedy answer's queries (sql, outcome, rows shown)
    run_folders.write_jsonl(out / "predictions.jsonl", records)

    summary = spec.summarize(records)
    metrics = {
        "ex": summary["all"]["ex"],
        spec.metrics_key: summary,
        "comparator": comparator(cfg), "keep_distinct": cfg.keep_distinct, "mode": "generation",
        "split": cfg.eval_split, "db_dir": str(db_dir.resolve()), "questions_sha256": questions_sha256(golds),
        "model": cfg.model_name, "adapter": str(adapter) if adapter else None,
        "adapter_sha256": run_folders.adapter_digest(adapter) if adapter else None,
        "backend": answers.backend, "examples": len(examples), "prompts_over_limit": answers.prompts_over_limit,
        "generation_seconds": round(answers.seconds, 1),
        "subset": subset,  # null: all of dev; else the seed, strata and dev indices of --max_eval_examples
        "config": cfg.to_dict(),
        "max_tool_calls": cfg.max_tool_calls,
        **(answers.call_stats or {}),  # the agentic mode: tool_calls_mean, answered_after_call
        "reasoning": cfg.reasoning,
        # greedy answers of the questions that fit: their length, and (--reasoning true) those with no final query
        "completion_tokens": length_stats(answers.completion_tokens or []),
        "no_answer": sum(r.get("no_answer", False) for r in records),
        **(source or {}),  # --eval_file: the file, its tables and databases, gold queries left out
    }
    extra_rows = []
    if k > 0:
        greedy_summary = spec.summarize([{**r, "greedy": r["greedy_match"]} for r in records], key="greedy")
        metrics.update({"num_samples": k, "ex_greedy": greedy_summary["all"]["ex"],
                        f"ex_greedy_{spec.metrics_key}": greedy_summary, **vote_metrics(votes, k + 1, spec)})
        extra_rows += [("greedy", greedy_summary), (f"pass@{k + 1}", metrics[f"pass_at_k_{spec.metrics_key}"])]
    if cfg.ts_db_dir:  # Spider only (check_options)
        ts_summary = spec.summarize(ts_records)
        metrics.update(ts=ts_summary["all"]["ex"], ts_by_hardness=ts_summary,
                       ts_db_dir=str(Path(cfg.ts_db_dir).resolve()),
                       ts_databases_per_db_id=test_suite_size(cfg.ts_db_dir, {db for _, db in golds}))
        extra_rows.append(("test-suite (ts)", ts_summary))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    tokens = metrics["completion_tokens"]
    if tokens["median"] is not None:
        print(f"[eval] answers: {tokens['median']} tokens median, {tokens['p95']} p95 (limit {cfg.max_completion_length})"
              + (f"; no final query (wrong): {metrics['no_answer']}" if cfg.reasoning else ""))
    if k > 0:
        print(f"execution = EX of the vote among {k + 1} candidates (greedy + {k} sampled at T={cfg.sample_temperature:g})")
    print(spec.format_table(summary, extra_rows))
    written = [pred_path, gold_path] + ([out / "pred_greedy.txt", out / "candidates.jsonl"] if k > 0 else [])
    print(f"[eval] wrote {', '.join(map(str, written))}, {out / 'predictions.jsonl'}, {out / 'metrics.json'}")
    print("official evaluator on the same files:\n  " + (
        spec.official_command(pred_path.resolve(), gold_path.resolve(), db_dir.resolve(), out.resolve())
        if spec.official_command else
        official_command(pred_path.resolve(), gold_path.resolve(), db_dir.resolve(), dataset.tables_path.resolve(),
                         cfg.keep_distinct)))
    if cfg.ts_db_dir:
        print("  (test suites) " + official_command(pred_path.resolve(), gold_path.resolve(),
                                                    Path(cfg.ts_db_dir).resolve(), dataset.tables_path.resolve(),
                                                    cfg.keep_distinct))


def length_stats(lengths: list[int]) -> dict:
    """Median and 95th percentile (nearest rank) of answer lengths in tokens; None when there are none."""
    if not lengths:
        return {"median": None, "p95": None}
    ordered = sorted(lengths)
    return {"median": ordered[(len(ordered) - 1) // 2], "p95": ordered[min(len(ordered) - 1, -(-95 * len(ordered) // 100) - 1)]}


def evaluate(cfg: Config) -> None:
    """generate -> write the official files -> score them -> report. Every check that needs no model
    (split, options, adapter, output folder, data, test suites) comes before the model is loaded."""
    start = time.time()
    spec = utils.benchmark_spec(cfg)  # Spider or BIRD (--benchmark): files, splits, match rule, levels
    spec.check_eval_split(cfg.eval_split)
    spec.check_options(cfg)
    adapter, label = resolve_adapter(cfg)
    if cfg.eval_file or cfg.eval_tables or cfg.eval_db_dir:
        evaluate_files(cfg, spec, adapter, label)
        print(f"[eval] done in {time.time() - start:.0f} s")
        return
    out = evaluation_folder(cfg, adapter, label)
    dataset = utils.open_dataset(cfg, cfg.eval_split)
    examples, subset = eval_examples(cfg, spec, dataset)
    check_test_suites(cfg, examples)
    note = (f" (seeded sample of {subset['of']}, seed {subset['seed']}, by database and {spec.eval_strata[-1]})"
            if subset else "")
    answers = generate_answers(cfg, adapter, dataset, examples, note)
    db_dir = dataset.db_dir(cfg.eval_split)
    files = write_answer_files(cfg, spec, out, examples, answers, db_dir)
    scored = score_answer_files(cfg, spec, files[0], files[1], db_dir, examples)
    report(cfg, spec, out, adapter, dataset, examples, subset, answers, files, scored, db_dir)
    print(f"[eval] done in {time.time() - start:.0f} s (generation {answers.seconds:.0f} s)")


@dataclass
class FileRun:
    """One --eval_file question file in a run: its folder, its questions, and its own config (--ts_db_dir
    dropped where its databases are not Spider dev's)."""

    qf: question_files.QuestionFile
    out: Path
    cfg: Config
    examples: list[dict]
    subset: dict | None


def evaluate_files(cfg: Config, spec: benchmarks.Benchmark, adapter: Path | None, label: str) -> None:
    """--eval_file: each question file evaluated as dev is (generate, write, score, report), each into
    eval/<adapter>/<file name>/, the model loaded once; then one table, a row per file. Every check of
    every file comes first; --resume leaves out the files already evaluated."""
    files = question_files.open_question_files(cfg)
    pending = []
    for qf in files:
        held = Path(cfg.output_dir) / "eval" / label / qf.name / "metrics.json"
        try:  # a file named test.json meets --eval_split test's folder: never read one as the other
            other = json.loads(held.read_text()).get("eval_file", "a split") if held.exists() else None
        except (OSError, ValueError, AttributeError):
            other = "something unreadable"
        if other is not None and other != str(qf.path.resolve()) and not cfg.overwrite:
            raise UserError(f"{held.parent} holds an evaluation of {other}, not of {qf.path}: rename the file, or pass "
                            "--overwrite to replace it")
        try:
            pending.append((qf, evaluation_folder(cfg, adapter, label, qf.name)))
        except StageFinished as finished:  # --resume: this file is done; its row comes from its metrics.json
            print(finished)
    runs = []
    for qf, out in pending:
        qf.prepare(out)  # the merged database folder and tables, where the set brings its own
        failed = question_files.leave_out_failing_golds(qf, cfg)
        if failed:
            shown = "; ".join(f"record {f['file_index']} ({f['db_id']}): {f['error']}" for f in failed[:3])
            print(f"[eval] {qf.name}: {len(failed)} of {qf.size} gold queries fail on their database and are left out "
                  f"(the official evaluator stops at them): {shown}{'; ...' if len(failed) > 3 else ''}")
        file_cfg = cfg
        if cfg.ts_db_dir and qf.own_databases():
            print(f"[eval] {qf.name}: no test-suite accuracy: its databases {', '.join(qf.own_databases())} come from "
                  "--eval_db_dir, and Spider's test suites cover Spider dev's")
            file_cfg = dataclasses.replace(cfg, ts_db_dir="")
        examples, subset = eval_examples(file_cfg, spec, qf)
        check_test_suites(file_cfg, examples)
        runs.append(FileRun(qf, out, file_cfg, examples, subset))
    generator = load_generator(cfg, adapter) if runs else None
    for run in runs:
        qf, run_cfg = run.qf, run.cfg
        note = (f" (seeded sample of {run.subset['of']}, seed {run.subset['seed']}, by database and "
                f"{spec.eval_strata[-1]})" if run.subset else "")
        answers = generate_answers(run_cfg, adapter, qf, run.examples, note, generator, what=qf.name)
        db_dir = qf.db_dir()
        files_written = write_answer_files(run_cfg, spec, run.out, run.examples, answers, db_dir)
        scored = score_answer_files(run_cfg, spec, files_written[0], files_written[1], db_dir, run.examples)
        source = {"split": None, "eval_file": str(qf.path.resolve()), "file_questions": qf.size,
                  "gold_left_out": qf.gold_failures, "own_databases": qf.own_databases(),
                  "eval_tables": str(Path(cfg.eval_tables).resolve()) if cfg.eval_tables else None,
                  "eval_db_dir": str(Path(cfg.eval_db_dir).resolve()) if cfg.eval_db_dir else None}
        report(run_cfg, spec, run.out, adapter, qf, run.examples, run.subset, answers, files_written, scored, db_dir,
               source)
    print(files_table([(qf.name, Path(cfg.output_dir) / "eval" / label / qf.name) for qf in files], label))


def files_table(rows: list[tuple[str, Path]], label: str) -> str:
    """The table papers print: a row per question file, execution accuracy (EX, of the greedy answers),
    test-suite accuracy (TS) and voted EX (--num_samples) in columns, '-' where a file has none."""
    metrics = {}
    for name, folder in rows:
        try:
            metrics[name] = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics[name] = {}
    has = {key: any(isinstance(m.get(key), (int, float)) for m in metrics.values()) for key in ("ts", "ex_vote")}
    header = ["file", "questions", "EX"] + (["TS"] if has["ts"] else []) + (["voted EX"] if has["ex_vote"] else [])
    width = max([len(h) for h in header] + [len(name) for name, _ in rows]) + 2

    def cell(value: Any) -> str:
        return f"{value:>10.3f}" if isinstance(value, (int, float)) else f"{'-':>10}"

    lines = [f"[eval] {len(rows)} question file{'s' if len(rows) > 1 else ''}, adapter {label}: EX of the greedy "
             "answers" + (", TS of pred.txt (the vote's with --num_samples)" if has["ts"] else "")
             + (", voted EX among greedy + sampled" if has["ex_vote"] else ""),
             f"{header[0]:<{width}}" + "".join(f"{h:>10}" for h in header[1:])]
    for name, folder in rows:
        m = metrics[name]
        values = [m.get("examples"), m.get("ex_greedy", m.get("ex"))]
        values += [m.get("ts")] if has["ts"] else []
        values += [m.get("ex_vote")] if has["ex_vote"] else []
        count = f"{values[0]:>10}" if isinstance(values[0], int) else f"{'-':>10}"
        lines.append(f"{name:<{width}}{count}" + "".join(cell(v) for v in values[1:]))
    lines.append(f"(each file's folder, files and metrics.json: {rows[0][1].parent}/<file>/)")
    return "\n".join(lines)


def ex_table_key(metrics: Any) -> tuple[str, tuple[str, ...]] | None:
    """The key of the EX table metrics.json holds, by_hardness (Spider) or by_difficulty (BIRD), and its
    levels + 'all'; None when it holds neither, complete."""
    for spec in benchmarks.BENCHMARKS.values():
        levels = spec.levels + ("all",)
        by = metrics.get(spec.metrics_key) if isinstance(metrics, dict) else None
        if isinstance(by, dict) and all(isinstance(by.get(lvl), dict) and {"ex", "count"} <= set(by[lvl])
                                        for lvl in levels):
            return spec.metrics_key, levels
    return None


def load_run(path_arg: str) -> tuple[dict, list[dict], Path]:
    """An evaluation folder or its metrics.json -> (metrics, per-question records or [], metrics path). A
    folder without metrics.json may hold one score-only run's R.metrics.json (several: name the file)."""
    path = Path(path_arg)
    if path.is_dir() and not (path / "metrics.json").exists():
        named = sorted(path.glob("*.metrics.json"))
        if len(named) > 1:
            raise UserError(f"{path} holds several score-only metrics ({', '.join(p.name for p in named)}): pass "
                            "one of them")
        path = named[0] if named else path / "metrics.json"
    elif path.is_dir():
        path = path / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not an evaluation (not a JSON file): pass an evaluation folder or the "
                        "metrics.json evaluate.py wrote in it") from None
    if ex_table_key(metrics) is None:
        raise UserError(f"{path} is not an evaluation's metrics.json (no by_hardness or by_difficulty with EX "
                              "per level): pass a folder or metrics.json written by evaluate.py")
    records_path = path.with_name(metrics.get("results_file") or "predictions.jsonl")
    records = []
    if records_path.exists():
        try:
            records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {records_path}: {exc}") from None
        if not all(isinstance(r, dict) and isinstance(r.get("exec_match"), bool) for r in records):
            raise UserError(f"{records_path} is not evaluate.py's per-question records (a JSON object with "
                                  "exec_match on each line)")
    return metrics, records, path


def compare(path_a: str, path_b: str) -> None:
    """EX by hardness (Spider) or difficulty (BIRD) side by side (and greedy/vote/pass@k/TS when present),
    and the questions whose verdict flipped."""
    (a, rec_a, file_a), (b, rec_b, file_b) = load_run(path_a), load_run(path_b)
    (by, levels), (by_b, _) = ex_table_key(a), ex_table_key(b)
    if by != by_b:
        raise UserError(f"{file_a} has {by} and {file_b} has {by_b}: evaluations of different benchmarks, "
                              "nothing to compare")
    # Both must be evaluations of the same questions before anything is printed.
    qa, qb = a.get("questions_sha256"), b.get("questions_sha256")
    counts_a = [a[by][lvl]["count"] for lvl in levels]
    counts_b = [b[by][lvl]["count"] for lvl in levels]
    if (qa and qb and qa != qb) or counts_a != counts_b:
        raise UserError(f"{file_a} and {file_b} are evaluations of different questions "
                              f"({counts_a[-1]} vs {counts_b[-1]} examples{', other gold queries' if qa != qb else ''}): "
                              "nothing to compare")
    if rec_a and rec_b and [r.get("db_id") for r in rec_a] != [r.get("db_id") for r in rec_b]:
        raise UserError("the two evaluations are not on the same examples: cannot pair questions")
    print(f"{'':<12}{'A':>10}{'B':>10}{'B - A':>10}   A = {file_a}\n{'':<12}{'':>30}   B = {file_b}")
    for level in levels:
        ea, eb = a[by][level]["ex"], b[by][level]["ex"]
        print(f"{level:<12}{ea:>10.3f}{eb:>10.3f}{eb - ea:>+10.3f}   (n={a[by][level]['count']})")
    titles = {"ex_greedy": "greedy EX", "ex_vote": "voted EX", "pass_at_k": "pass@k", "ts": "test-suite accuracy (ts)"}
    for name, title in titles.items():
        key = f"{name}_{by}"
        if key not in a and key not in b:
            continue
        ka, kb = a.get("k"), b.get("k")
        extra = f" (k = {ka if ka else '-'} / {kb if kb else '-'})" if name == "pass_at_k" else ""
        print(f"\n{title}{extra}:")
        for level in levels:
            va = a.get(key, {}).get(level, {}).get("ex")
            vb = b.get(key, {}).get(level, {}).get("ex")
            cells = [f"{v:>10.3f}" if isinstance(v, (int, float)) else f"{'-':>10}" for v in (va, vb)]
            diff = f"{vb - va:>+10.3f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else f"{'-':>10}"
            print(f"{level:<12}{cells[0]}{cells[1]}{diff}")
    if any(name in run for run in (a, b) for name in ("tool_calls_mean", "answered_after_call")):
        print("\nagentic mode (--max_tool_calls; greedy answers):")
        for name, title in (("max_tool_calls", "max_tool_calls"), ("tool_calls_mean", "calls/question"),
                            ("answered_after_call", "after a call")):
            va, vb = a.get(name), b.get(name)
            cells = [f"{v:>10.3f}" if isinstance(v, float) else f"{v if v is not None else '-':>10}" for v in (va, vb)]
            diff = (f"{vb - va:>+10.3f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float))
                    else f"{'-':>10}")
            print(f"{title:<14}{cells[0]:>8}{cells[1]}{diff}")
    if any("completion_tokens" in run for run in (a, b)):
        print("\nanswers (greedy):")
        rows = [("reasoning", lambda m: m.get("reasoning")), ("no answer", lambda m: m.get("no_answer")),
                ("tokens median", lambda m: (m.get("completion_tokens") or {}).get("median")),
                ("tokens p95", lambda m: (m.get("completion_tokens") or {}).get("p95"))]
        for title, get in rows:
            va, vb = get(a), get(b)
            diff = (f"{vb - va:>+10}" if type(va) is int and type(vb) is int else f"{'-':>10}")
            print(f"{title:<14}{str(va if va is not None else '-'):>8}{str(vb if vb is not None else '-'):>10}{diff}")
    if not rec_a or not rec_b:
        print("no per-question records beside both metrics files: cannot list flipped questions")
        return
    gained = [(x, y) for x, y in zip(rec_a, rec_b) if y["exec_match"] and not x["exec_match"]]
    lost = [(x, y) for x, y in zip(rec_a, rec_b) if x["exec_match"] and not y["exec_match"]]
    for title, pairs in ((f"fixed by B ({len(gained)})", gained), (f"broken by B ({len(lost)})", lost)):
        print(f"\n{title}:")
        for x, y in pairs:
            print(f"  #{x['index']} [{x.get(by.removeprefix('by_'))}] {x.get('question', '')}\n      A: {x.get('prediction', '')}\n"
                  f"      B: {y.get('prediction', '')}")


def export_adapter(cfg: Config) -> None:
    """Merge the adapter into 16-bit base weights; check the merged model answers like the adapter."""
    adapter, label = resolve_adapter(cfg)
    if adapter is None:
        raise UserError("--export merged needs an adapter (--adapter sft | grpo | PATH)")
    out = Path(cfg.output_dir) / "merged" / label
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise UserError(f"{out} already holds an export; pass --overwrite to replace it")
    dataset = utils.open_dataset(cfg)
    examples = dataset.examples("dev")[:4]
    chats = [utils.render_prompt_for(dataset, ex, cfg) for ex in examples]
    backend = utils.pick_backend(cfg)
    info = export_merged(cfg, backend, adapter, out, chats, cfg.export_dtype)  # imports unsloth first when used
    print(f"[export] backend={backend} merged {adapter} into {cfg.model_name} -> {out} ({info['dtype']}); greedy answers equal to "
          f"the adapter's on {info['agreeing_prompts']}/{info['checked_prompts']} dev prompts")
    if info["agreeing_prompts"] != info["checked_prompts"]:
        message = f"the merged model answers differently from the adapter on some prompts: see {out / 'export_info.json'}"
        if cfg.export_dtype == "float32":
            raise UserError(message)  # no rounding to blame: the merge itself is wrong
        print(f"WARNING: {message} (16-bit rounding of merged weights can flip a near-tie; compare EX of both)",
              file=sys.stderr)


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--score_only", action="store_true", help="score an existing pred.txt; no model is loaded")
    extra.add_argument("--pred", action="append", help="--score_only: predictions, one SQL a line (--benchmark bird: "
                       "or BIRD's predict_dev.json); repeat it (--pred A --pred B ...) to vote among several files, "
                       "candidates in the order given")
    extra.add_argument("--gold", help="--score_only: gold, 'SQL<TAB>db_id' a line (--benchmark bird: or BIRD's dev.json)")
    extra.add_argument("--db_dir", help="--score_only: folder of <db_id>/<db_id>.sqlite")
    extra.add_argument("--results", help="--score_only: per-example JSON lines (default: results.jsonl beside --pred); "
                       "the metrics beside them, named after them (metrics.json, or R.metrics.json for R.jsonl)")
    extra.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                       help="compare two evaluations: their folders or metrics.json files (no model is loaded)")
    extra.add_argument("--export", choices=["merged"], help="merge the adapter into a 16-bit checkpoint "
                       "under <output_dir>/merged/<adapter> instead of evaluating")
    extra.add_argument("--ask", metavar="QUESTION", help="answer one question on --db with the model: print its SQL "
                       "and the first rows of the result (sql_rlvr/ask.py); nothing is written")
    extra.add_argument("--db", metavar="PATH", help="--ask: any SQLite database (its schema is read from the file)")
    extra.add_argument("--self_traces", metavar="OUT.jsonl", help="instead of evaluating: sample --num_samples answers "
                       "with reasoning (--reasoning true) to every training question (--max_train_examples subsets "
                       "them) from the model (--adapter), and write those whose final query gives the gold result to "
                       "OUT.jsonl, the trace file train_sft.py --sft_traces reads (docs/reasoning.md)")
    cfg, args = parse_config(script="evaluate.py", extra=extra)
    if args.db and args.ask is None:
        raise UserError('--db is the database of --ask: pass --ask "QUESTION" too')
    if args.ask is not None:
        ask(cfg, args.ask, args.db, resolve_adapter(cfg)[0])
    elif args.compare:
        compare(*args.compare)
    elif args.score_only:
        score_only(cfg, args)
    elif args.export:
        export_adapter(cfg)
    elif args.self_traces:  # rejection sampling on the training questions (sql_rlvr/traces.py)
        traces.write_self_traces(cfg, Path(args.self_traces), resolve_adapter(cfg)[0])
    else:
        evaluate(cfg)


if __name__ == "__main__":
    run_folders.run_main(main)
