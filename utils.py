"""What the three entry scripts share: the benchmark's data and the prompt built from it, model loading
and generation, and the execution-based SQLite reward.

  data        open_dataset (a benchmark's dataset; its description: benchmark_spec), open_training_datasets,
              the seeded training sample, stratified subsets (readers: sql_rlvr/benchmarks.py)
  prompts     the chat every stage uses (render_prompt_for), the chat-template check (schema text:
              sql_rlvr/schema.py; reading the SQL out of an answer: sql_rlvr/extract.py)
  models      backend choice, loading with LoRA (unsloth or transformers + peft), generation, inference_mode
              (a model being trained generates, then trains on as before)
  reward      SQLExecutionReward, RewardValues, sql_reward, checked_gold_rows: defined in
              sql_rlvr/execution_reward.py, imported here so that the scripts take them from utils

Heavy libraries (torch, transformers, peft, TRL, unsloth, vllm) are imported inside functions only:
unsloth must be imported before the others when it is used.
Imports config and, of sql_rlvr, benchmarks, errors, execution_reward, hardness, progress and tiny_model;
none of them imports utils.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from config import TINY_MODEL_NAME, Config
from sql_rlvr import benchmarks, tiny_model
from sql_rlvr.errors import DataError, UserError
# The execution-based SQLite reward (defined in sql_rlvr/execution_reward.py), re-exported beside model loading
# and the prompt: the entry scripts take all three from utils.
from sql_rlvr.execution_reward import RewardValues, SQLExecutionReward, checked_gold_rows, sql_reward  # noqa: F401
from sql_rlvr.hardness import spider_hardness
from sql_rlvr.progress import Report, as_report, vllm_tqdm
from sql_rlvr.progress import bar as progress_bar


# ======================================================================
# data: the benchmark, the training sample, seeded subsets


def open_dataset(cfg: Config, split: str = "dev"):
    """The dataset of --benchmark (Spider or BIRD; see sql_rlvr/benchmarks.py): examples(split), schema, db_path.
    `split`: the evaluation split it is opened for (Spider's test split has its own tables and databases)."""
    return benchmark_spec(cfg).open(cfg, split)


def benchmark_spec(cfg: Config) -> benchmarks.Benchmark:
    """The description of --benchmark: files, match rule, difficulty, output formats (benchmarks.Benchmark)."""
    return benchmarks.get(cfg.benchmark)


def _stratum_key(key: str | Callable[[dict], Any]) -> Callable[[dict], Any]:
    if callable(key):
        return key
    if key == benchmarks.SUBSET_HARDNESS:
        return lambda example: spider_hardness(example["query"])
    return lambda example: example[key]


def _allocate(sizes: dict[Any, int], n: int, rng) -> dict[Any, int]:
    """Split n draws over groups of the given sizes in proportion to size (largest remainder, exact
    integers, ties broken by `rng`); when n is at least the number of groups, every group gets one,
    taken from the most over-represented group."""
    groups = sorted(sizes, key=repr)
    n = min(n, sum(sizes.values()))
    total = sum(sizes.values())
    quota, remainders = {}, {}
    for g in groups:
        quota[g], remainders[g] = divmod(n * sizes[g], total)
    order = list(groups)
    rng.shuffle(order)
    order.sort(key=lambda g: -remainders[g])  # stable: equal remainders keep the shuffled order
    for g in order[: n - sum(quota.values())]:
        quota[g] += 1
    if n >= len(groups):
        for g in order:
            if quota[g] == 0:
                donor = max((d for d in order if quota[d] > 1), key=lambda d: quota[d] / sizes[d])
                quota[donor] -= 1
                quota[g] = 1
    return quota


def _named_for_the_mix(cfg: Config, read: Callable[[], Any]) -> Any:
    """read(), with a missing or unreadable dataset named as --train_benchmarks' when that flag asked for it."""
    try:
        return read()
    except DataError as exc:
        if not cfg.train_benchmarks:
            raise
        raise type(exc)(f"--train_benchmarks {','.join(cfg.train_benchmarks)}: {exc}") from None


def open_training_datasets(cfg: Config) -> dict[str, Any]:
    """The dataset of each benchmark SFT and GRPO train on (--train_benchmarks, or --benchmark alone), by
    name: each example's schema, database and match rule come from its own."""
    return {name: _named_for_the_mix(cfg, lambda name=name: benchmarks.get(name).open(cfg, "dev"))
            for name in cfg.training_benchmarks()}


def training_examples(cfg: Config, datasets: dict[str, Any]) -> list[dict]:
    """The training questions of a run: the train split of each benchmark of `datasets`
    (open_training_datasets), each example with its `benchmark`, or with --max_train_examples a seeded
    sample over every (benchmark, database), in dataset order (the same in SFT and GRPO). One benchmark
    alone: the same sample as by database (its groups sort in the same order)."""
    examples = []
    for name, dataset in datasets.items():
        train = _named_for_the_mix(cfg, lambda dataset=dataset: dataset.examples("train", cfg.use_train_others))
        examples += [{**ex, "benchmark": name} for ex in train]
    if cfg.max_train_examples > 0:
        chosen = stratified_subset(examples, cfg.max_train_examples, cfg.seed, [lambda ex: (ex["benchmark"], ex["db_id"])])
        examples = [examples[i] for i in chosen]
    return examples


def count_by_benchmark(names: Sequence[str], **groups: list[dict]) -> dict[str, dict[str, int]]:
    """{benchmark: {group: how many of the group's examples are that benchmark's}} for each benchmark of
    `names` (run_info.json's train_benchmarks)."""
    return {name: {group: sum(ex["benchmark"] == name for ex in members) for group, members in groups.items()}
            for name in names}


def mix_report(counts: dict[str, dict[str, int]]) -> str:
    """count_by_benchmark as a log line's end: 'spider: examples=48 skipped=0; bird: ...'."""
    return "; ".join(f"{name}: " + " ".join(f"{k}={v}" for k, v in groups.items()) for name, groups in counts.items())


def stratified_subset(examples: list[dict], n: int, seed: int,
                      keys: Sequence[str | Callable[[dict], Any]] = ("db_id",)) -> list[int]:
    """Indices of a seeded sample of `n` examples, stratified by `keys` in turn, in dataset order.

    The first key splits the draws over its groups in proportion to their sizes (every group gets
    at least one when n is at least the number of groups), each group's share is split the
    same way by the next key, and the last level draws at random. A key is a field name, "hardness"
    (Spider's level of the gold query), or a function of an example. n <= 0 or n >= len(examples):
    all of them. The first N examples of Spider dev cover a handful of databases; this covers all.
    """
    if n <= 0 or n >= len(examples):
        return list(range(len(examples)))
    import random

    rng = random.Random(seed)
    key_fns = [_stratum_key(k) for k in keys]

    def draw(indices: list[int], count: int, level: int) -> list[int]:
        if level == len(key_fns):
            return rng.sample(indices, count)
        groups: dict[Any, list[int]] = {}
        for i in indices:
            groups.setdefault(key_fns[level](examples[i]), []).append(i)
        quota = _allocate({g: len(members) for g, members in groups.items()}, count, rng)
        return [i for g in sorted(groups, key=repr) for i in draw(groups[g], quota[g], level + 1)]

    return sorted(draw(list(range(len(examples))), n, 0))


def subset_record(indices: list[int], total: int, n: int, seed: int, keys: Sequence[str]) -> dict:
    """What a stratified subset was, for metrics files: enough to draw the same one again and check it."""
    return {"requested": n, "size": len(indices), "of": total, "seed": seed, "strata": list(keys),
            "indices": indices, "indices_sha256": hashlib.sha256(json.dumps(indices).encode()).hexdigest()}


# ======================================================================
# prompts: the chat of every stage, the chat-template check


SYSTEM_PROMPT = (
    "You are an expert SQLite developer. Given a database schema and a question, "
    "answer with one SQLite query that answers the question, and nothing else."
)
# --reasoning true: reason first, then the final query in a ```sql block (OmniSQL's and Arctic-Text2SQL-R1's
# answer shape); extract.final_sql reads it. A thinking template reasons in its own think block first.
REASONING_SYSTEM_PROMPT = (
    "You are an expert SQLite developer. Given a database schema and a question, first reason step by step: "
    "which tables and columns the question needs, how they join, and which conditions, grouping and ordering "
    "apply. Then give the final answer: one SQLite query in a ```sql code block at the end."
)


def build_messages(schema: str, question: str, sql: str | None = None, evidence: str = "",
                   tokenizer=None, reasoning: bool = False) -> list[dict]:
    """The chat used everywhere (SFT, GRPO, evaluation): system, user = schema + question, [assistant = SQL].

    `reasoning` (--reasoning true) asks for reasoning and a final ```sql block instead of the bare query
    (the assistant turn, when given, is then a whole reasoned answer).

    `evidence` (BIRD's external-knowledge hint) follows the question; it is left out when empty.
    With `tokenizer`, a template that has no system role (Gemma 1/2) gets the instructions at the top
    of the user turn instead, the way Gemma 3's own template folds them: the same text in every stage.
    """
    user = f"Database schema:\n{schema}\n\nQuestion: {question.strip()}"
    if evidence and evidence.strip():
        user += f"\nExternal knowledge: {evidence.strip()}"
    system = REASONING_SYSTEM_PROMPT if reasoning else SYSTEM_PROMPT
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if sql is not None:
        messages.append({"role": "assistant", "content": sql.strip()})
    return fit_to_template(tokenizer, messages) if tokenizer is not None else messages


def render_prompt(tokenizer, messages: list[dict], template_kwargs: dict | None = None) -> str:
    """The prompt text the model sees before it answers (chat template + generation prompt).

    `messages` may end with the assistant answer (dropped here). `template_kwargs` default to
    chat_template_kwargs(tokenizer), the ones training passes to TRL.
    """
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    kwargs = chat_template_kwargs(tokenizer) if template_kwargs is None else template_kwargs
    return tokenizer.apply_chat_template(fit_to_template(tokenizer, messages), tokenize=False,
                                         add_generation_prompt=True, **kwargs)


def render_prompt_for(dataset: Any, example: dict, cfg: Config, tokenizer=None) -> list[dict] | str:
    """The prompt chat of one example of `dataset` (Spider or BIRD, open_dataset), as training saw it (rendered
    to text with `tokenizer`, and the template kwargs of cfg.reasoning: a hybrid template thinks then)."""
    messages = build_messages(dataset.example_schema(example, cfg.schema_sample_values, cfg.value_hints),
                              example["question"], evidence=example.get("evidence", ""), reasoning=cfg.reasoning)
    if tokenizer is None:
        return messages
    return render_prompt(tokenizer, messages, chat_template_kwargs(tokenizer, cfg.reasoning))


# Chat templates of other base models (--model_name). Each must render the project's chat so that the
# generation prompt is a token prefix of the full chat, and what follows it is the answer plus only
# the template's end-of-turn tokens: that is what SFT learns (TRL's completion mask) and what
# evaluation and GRPO prompt with. check_chat_template verifies it on the model's own tokenizer.

_SYSTEM_ROLE: dict[str, bool] = {}  # chat template text -> whether it renders a system turn


def chat_template_kwargs(tokenizer, reasoning: bool = False) -> dict:
    """Keyword arguments every apply_chat_template of this model gets (SFT, GRPO, evaluation).

    - enable_thinking=False for hybrid-thinking templates (Qwen3): left on, the full chat holds an
      empty `<think>` block before the answer that the generation prompt lacks, so SFT would train it
      and inference never prompt it. Off, the prompt ends with that block and the answer is plain SQL.
      With `reasoning` (--reasoning true) it is on: the model reasons in its think block, and SFT's
      answers carry that block (check_chat_template checks that the template keeps it as written).
    - date_string pinned for templates that write today's date into the system turn (Llama 3.2):
      training and evaluation on different days would otherwise see different prompts.
    """
    template = getattr(tokenizer, "chat_template", None) or ""
    kwargs: dict = {}
    if "enable_thinking" in template:
        kwargs["enable_thinking"] = reasoning
    if "strftime_now" in template and "date_string" in template:
        kwargs["date_string"] = "26 Jul 2024"  # the date Llama 3.x templates fall back to
    return kwargs


def think_opener(tokenizer, template_kwargs: dict) -> str:
    """The "<think>" (with its newline) a thinking template's generation prompt ends with, or "": the model's
    answer then starts inside its think block (extract.final_sql is told so)."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False,
                                           add_generation_prompt=True, **template_kwargs)
    body = prompt.rstrip()
    return prompt[len(body) - len("<think>"):] if body.endswith("<think>") else ""


def template_has_system_role(tokenizer) -> bool:
    """Whether the chat template renders a system message (Gemma 1/2 raise on one; some drop it)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if template not in _SYSTEM_ROLE:
        probe = "sql-rlvr system probe"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "system", "content": probe}, {"role": "user", "content": "hello"}],
                tokenize=False, add_generation_prompt=True, **chat_template_kwargs(tokenizer))
            _SYSTEM_ROLE[template] = probe in text
        except Exception:  # the template's raise_exception("System role not supported") (a jinja2 TemplateError)
            _SYSTEM_ROLE[template] = False
    return _SYSTEM_ROLE[template]


def fit_to_template(tokenizer, messages: list[dict]) -> list[dict]:
    """`messages` as this tokenizer's template takes them: a leading system turn is folded into the
    first user turn ("instructions\n\nuser text") when the template has no system role."""
    if not messages or messages[0]["role"] != "system" or template_has_system_role(tokenizer):
        return messages
    system, rest = messages[0], [dict(m) for m in messages[1:]]
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system['content']}\n\n{rest[0]['content']}"
    return rest


# Answers that start as Spider's do (SELECT, lower-case select, WITH): the boundary between the
# generation prompt and the answer is where tokens could merge.
_CHECK_SCHEMA = 'CREATE TABLE "singer" (\n  "singer_id" INTEGER PRIMARY KEY,\n  "name" TEXT,\n  "age" INTEGER\n)'
_CHECK_EXAMPLES = (
    ("How many singers are there?", "SELECT count(*) FROM singer"),
    ("What are the names of singers older than 30?", "select name from singer where age > 30"),
    ("List the names in alphabetical order.", "WITH s AS (SELECT name FROM singer) SELECT name FROM s ORDER BY name"),
)


def check_answer(sql: str, opener: str, hybrid_thinking: bool) -> str:
    """A reasoned answer to a check question, as the model writes it under this template (--reasoning true):
    inside a think block the template opened (`opener`), in one it opens itself (Qwen3's hybrid template with
    thinking on), or as plain text before the final ```sql block."""
    reasons = "The question needs one table; no join, no condition beyond the question's."
    final = f"```sql\n{sql}\n```"
    if opener:
        return f"{reasons}\n</think>\n\n{final}"
    if hybrid_thinking:
        return f"<think>\n{reasons}\n</think>\n\n{final}"
    return f"{reasons}\n\n{final}"


def check_chat_template(tokenizer, model_name: str, stop_ids: list[int] | None = None,
                        template_kwargs: dict | None = None, reasoning: bool = False) -> dict:
    """Verify the model's own chat template on a few examples; return the template kwargs to use everywhere.

    For each example: the generation prompt (what evaluation and GRPO prompt with) must be a token
    prefix of the full chat (what SFT trains on), and the text between them must be exactly the SQL
    followed only by end-of-turn tokens, the first of which is one of `stop_ids` (the tokens
    generation stops at) when given. Anything else raises a one-line UserError naming the model and
    showing where the two renders differ. `template_kwargs` default to chat_template_kwargs(tokenizer, reasoning).
    With `reasoning` the answers are reasoned ones (check_answer), think block included where the
    template has one: it must keep them as written, or SFT on reasoning traces would train another text.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{model_name} has no chat template: use an instruct/chat model as --model_name")
    kwargs = chat_template_kwargs(tokenizer, reasoning) if template_kwargs is None else dict(template_kwargs)
    where = f"chat template of {model_name}" + (f" (with {kwargs})" if kwargs else "")
    added = set(tokenizer.added_tokens_decoder)
    opener = think_opener(tokenizer, kwargs) if reasoning else ""
    for question, query in _CHECK_EXAMPLES:
        sql = check_answer(query, opener, bool(kwargs.get("enable_thinking"))) if reasoning else query
        chat = build_messages(_CHECK_SCHEMA, question, sql, tokenizer=tokenizer, reasoning=reasoning)
        try:
            prompt = render_prompt(tokenizer, chat, kwargs)
            full = tokenizer.apply_chat_template(chat, tokenize=False, **kwargs)
        except Exception as exc:  # a template error: show it in one line, whatever its type
            raise UserError(f"the {where} fails on the project's chat: {type(exc).__name__}: {exc}") from None
        if (REASONING_SYSTEM_PROMPT if reasoning else SYSTEM_PROMPT) not in prompt:
            raise UserError(f"the {where} drops the instructions (system turn) from the prompt")
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        if full_ids[:len(prompt_ids)] != prompt_ids or not full.startswith(prompt):
            n = len(os.path.commonprefix([prompt, full]))
            raise UserError(f"the {where} renders the generation prompt differently from the start of the full "
                            f"chat: after {prompt[max(0, n - 40):n]!r} the prompt has {prompt[n:n + 40]!r} "
                            f"but the training chat has {full[n:n + 40]!r} (see docs/chat-models.md)")
        between = full[len(prompt):]
        if not between.startswith(sql):
            injected = between[:between.find(sql)] if sql in between else between[:60]
            raise UserError(f"the {where} puts {injected!r} into the assistant turn before the answer, which the "
                            f"generation prompt (ending {prompt[-30:]!r}) lacks: SFT would train it, inference "
                            "never prompt it (see docs/chat-models.md)")
        end = between[len(sql):]
        end_tokens = [t for t in tokenizer(end, add_special_tokens=False)["input_ids"] if tokenizer.decode([t]).strip()]
        if not end_tokens or any(t not in added for t in end_tokens):
            raise UserError(f"the {where} follows the answer with {end!r}, not only end-of-turn tokens")
        if stop_ids is not None and end_tokens[0] not in stop_ids:
            raise UserError(f"the {where} ends the answer with {tokenizer.decode(end_tokens[:1])!r}, which is not "
                            f"one of the model's stop tokens {tokenizer.convert_ids_to_tokens(list(stop_ids))}: "
                            "generation would not stop where training ends")
    notes = [f"template kwargs {kwargs}"] if kwargs else []
    if not template_has_system_role(tokenizer):
        notes.append("no system role, the instructions open the user turn")
    if notes:
        print(f"[chat] {model_name}: " + "; ".join(notes) + " (in SFT, GRPO and evaluation alike)")
    return kwargs


# ======================================================================
# models: backend, loading with LoRA, generation


# The fixed text of every prompt (build_messages): the tiny model's tokenizer learns it first.
_PROMPT_TEXT = (SYSTEM_PROMPT, "Database schema:", "Question:")


def resolve_model_name(name: str) -> str:
    """--model_name as from_pretrained takes it: 'tiny' is the local test model (built on first use); any
    other name is checked first (check_model_source)."""
    if name == TINY_MODEL_NAME:
        return tiny_model.ensure_tiny_model(_PROMPT_TEXT)
    check_model_source(name)
    return name


def check_model_source(name: str) -> None:
    """A model that cannot be loaded is one line now, not a minute of download retries: a path that does
    not exist, or a hub name that is neither in the Hugging Face cache nor reachable (HF_HUB_OFFLINE
    honoured). A cached hub model on a machine without network loads offline."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"--model_name {name} is not a model folder (no config.json in it)")
        return
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:  # a hub id is name or org/name
        raise UserError(f"--model_name {name}: no such folder (a local model is a folder with config.json; "
                        "a hub model is org/name, e.g. unsloth/Qwen3-4B-Instruct-2507)")
    import socket
    import urllib.parse

    from huggingface_hub import constants, try_to_load_from_cache

    howto = (f"download it first where there is network (`hf download {name}`, into the Hugging Face cache or "
             "--local-dir DIR, then --model_name DIR)")
    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise UserError(f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: {howto}")
        return
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as exc:
        if not cached:
            raise UserError(f"cannot reach {host} to download {name} ({exc.strerror or exc}; no network?): {howto}") from None
        # Cached: load it as it is, without the hub's retries (huggingface_hub and transformers read this flag).
        print(f"[model] {host} is unreachable: loading {name} from the Hugging Face cache (HF_HUB_OFFLINE=1)")
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants.HF_HUB_OFFLINE = True


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_backend(cfg: Config) -> str:
    """'unsloth' or 'hf'. auto = unsloth when CUDA and unsloth are both there, else hf.

    --backend unsloth also runs without CUDA, on unsloth's CPU backend (CI tests it), when vLLM is
    off (--fast_inference false); vLLM needs a GPU.
    """
    import importlib.util

    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if cfg.backend == "hf":
        return "hf"
    if cfg.backend == "unsloth":
        if cfg.fast_inference and not cuda_available():
            raise UserError("--backend unsloth with --fast_inference true (vLLM) needs a CUDA GPU; on this machine add "
                            "--fast_inference false (unsloth's CPU backend) or use --backend hf")
        if not has_unsloth:
            raise UserError("--backend unsloth needs unsloth: pip install -r requirements.txt (the GPU set), or on a CPU "
                            "pip install --no-deps -r requirements-unsloth-cpu.txt; or use --backend hf")
    elif not (cuda_available() and has_unsloth):
        return "hf"
    if cfg.fast_inference and importlib.util.find_spec("vllm") is None:
        raise UserError("--fast_inference true needs vllm (pip install -r requirements.txt), or pass --fast_inference false")
    if os.environ.get("UNSLOTH_ALLOW_CPU", "0") not in ("", "0"):
        raise UserError("UNSLOTH_ALLOW_CPU is set: it makes unsloth pretend to have CUDA and breaks model loading; unset it "
                        "(without a GPU sql-rlvr sets UNSLOTH_FORCE_CPU=1 itself)")
    return "unsloth"


def import_unsloth(cpu_bf16: bool = False):
    """Import unsloth; callers do it before transformers, peft and TRL, which it patches on import.

    Without CUDA it takes its CPU backend (UNSLOTH_FORCE_CPU=1), pinned to no bf16
    (UNSLOTH_CPU_BF16=0) so a run computes the same on every CPU; `cpu_bf16` only chooses the dtype
    its 16-bit merge writes (bfloat16, else float16) for --export merged.
    """
    if "unsloth" not in sys.modules and not cuda_available():
        os.environ["UNSLOTH_FORCE_CPU"] = "1"
        os.environ["UNSLOTH_CPU_BF16"] = "1" if cpu_bf16 else "0"
    import unsloth

    return unsloth


def read_adapter_config(adapter_dir: str | os.PathLike) -> dict:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.exists() or not (Path(adapter_dir) / "adapter_model.safetensors").exists():
        raise UserError(f"no LoRA adapter at {adapter_dir} (adapter_config.json + adapter_model.safetensors)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(cfg: Config, backend: str, adapter: str | os.PathLike | None = None, *,
               trainable: bool = True, fast_inference: bool = False, dtype: str | None = None):
    """(model, tokenizer) with LoRA: a new adapter (adapter=None, trainable), or the saved one.

    With `trainable`, the adapter's weights get gradients: a GRPO run on top of the SFT adapter that
    trained nothing (adapter loaded frozen) is the most reported silent failure, so this is checked.
    unsloth, when chosen, is imported here, before transformers, peft and TRL are. `dtype` (unsloth on
    CUDA): the weights' dtype, by default unsloth's choice; on CPU always float32.
    """
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        # Each process loads the whole model before the trainer (and DeepSpeed's zero.Init) exists.
        raise UserError("DeepSpeed ZeRO-3 is not supported: every process loads the whole model before the trainer "
                        "exists, so ZeRO-3 cannot partition it at load. Use configs/zero2.yaml (optimizer state "
                        "sharded) or configs/ddp.yaml (docs/scaling.md)")
    if backend == "unsloth":
        import_unsloth()  # before transformers, peft and TRL, which it patches on import
    import transformers

    if cfg.torch_threads > 0:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    name = resolve_model_name(cfg.model_name)
    transformers.set_seed(cfg.seed)  # the LoRA initialisation is part of the run: same seed, same run
    lora = dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules))
    if adapter is not None:
        saved = read_adapter_config(adapter)
        lora = dict(r=saved["r"], lora_alpha=saved["lora_alpha"], lora_dropout=saved.get("lora_dropout", 0.0),
                    target_modules=sorted(saved["target_modules"]) if isinstance(saved["target_modules"], list)
                    else saved["target_modules"])
    if backend == "unsloth":
        model, tokenizer = _load_unsloth(cfg, name, lora, adapter, trainable, fast_inference, dtype)
    else:
        model, tokenizer = _load_hf(cfg, name, lora, adapter, trainable)
    if adapter is not None:
        check_adapter_fits(model, adapter, name)
    if trainable and count_trainable(model) == 0:
        raise UserError("the LoRA adapter has no trainable parameters: training would change nothing")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _load_unsloth(cfg: Config, name: str, lora: dict, adapter, trainable: bool, fast_inference: bool,
                  dtype: str | None = None):
    import torch
    from unsloth import FastLanguageModel  # must come before transformers / peft / trl

    # CPU: float32, as the hf backend, whatever the CPU supports (unsloth would pick bf16 where it is native).
    weights_dtype = getattr(torch, dtype) if dtype else None
    if not torch.cuda.is_available():
        weights_dtype = torch.float32
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=name, max_seq_length=cfg.max_seq_length, load_in_4bit=cfg.load_in_4bit, dtype=weights_dtype,
            fast_inference=fast_inference, gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_lora_rank=lora["r"], random_state=cfg.seed,
        )
    except OSError as exc:
        raise UserError(f"cannot load model {name!r}: {exc}. Log in (HF_TOKEN in .env) or pass a local folder "
                        "with --model_name") from None
    if adapter is None and not trainable:
        FastLanguageModel.for_inference(model)
        return model, tokenizer  # the base model alone
    model = FastLanguageModel.get_peft_model(
        model, r=lora["r"], lora_alpha=lora["lora_alpha"], lora_dropout=lora["lora_dropout"],
        target_modules=lora["target_modules"], bias="none", random_state=cfg.seed,
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
    )
    if adapter is not None:
        # Same LoRA shape as the saved adapter (read from its config), then its weights: trainable by construction.
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(Path(adapter) / "adapter_model.safetensors")))  # checked by load_model
    if not trainable:
        FastLanguageModel.for_inference(model)
    return model, tokenizer


def _load_hf(cfg: Config, name: str, lora: dict, adapter, trainable: bool):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    on_cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as exc:
        raise UserError(f"cannot load model {name!r}: {str(exc).splitlines()[0]} "
                        "(no network? download it first, or pass a local folder with --model_name)") from None
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    elif trainable:
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", bias="none", **lora))
    # else: the base model alone (evaluate.py --adapter none)
    if not trainable:
        # Inference: onto this process's own device (cuda:<local rank>, or the CPU). A model to train stays where
        # it was loaded: the trainer moves it to its process's device once its config has set up accelerate.
        from accelerate import PartialState

        model.to(PartialState().device)
        model.eval()
    return model, tokenizer


def check_adapter_fits(model: Any, adapter: str | os.PathLike, name: str) -> None:
    """The saved adapter's LoRA weights are exactly the model's, in both directions: a weight the model
    lacks would be dropped, and a LoRA weight the file lacks would stay at its initial value (for lora_B,
    zero: the base model's answers) without a word."""
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    with safe_open(str(Path(adapter) / "adapter_model.safetensors"), framework="pt") as fh:
        saved = set(fh.keys())
    expected = set(get_peft_model_state_dict(model))
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        what = "; ".join(part for part in (f"{len(missing)} LoRA weights missing from the file, e.g. {missing[:2]}"
                                           if missing else "",
                                           f"{len(unexpected)} weights the model has no place for, e.g. {unexpected[:2]}"
                                           if unexpected else "") if part)
        raise UserError(f"adapter {adapter} does not fit {name}: {what}")


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end the model's turn: its generation config's eos_token_id (an int or a list:
    Llama 3's <|eot_id|>, Gemma's <end_of_turn>, Phi-3's <|end|>), plus the tokenizer's eos."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def answer_text(tokenizer, ids, stop: list[int]) -> str:
    """Decode generated ids up to the first stop token (which may be a non-special token, e.g. Phi-3's)."""
    ids = list(ids)
    cut = next((i for i, t in enumerate(ids) if t in stop), len(ids))
    return tokenizer.decode(ids[:cut], skip_special_tokens=True)


def generate(model, tokenizer, prompts: list[str], backend: str, *, adapter_dir: str | os.PathLike | None,
             max_new_tokens: int, temperature: float = 0.0, batch_size: int = 16,
             progress: bool | Report = True, num_return_sequences: int = 1, top_p: float = 1.0, top_k: int = 0,
             seed: int | None = None, fast_inference: bool = True, return_lengths: bool = False) -> list[str] | tuple:
    """Answers for rendered prompts, always with the adapter when there is one (see generate_ids): the
    text of each answer up to its stop token. `return_lengths`: (texts, each answer's generated tokens
    before its stop token)."""
    if not prompts:  # every prompt over the length limit: nothing to generate (a tokenizer call on [] raises)
        return ([], []) if return_lengths else []
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    stop = stop_token_ids(model, tokenizer)
    generated = generate_ids(model, tokenizer, prompt_ids, backend, adapter_dir=adapter_dir,
                             max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size,
                             progress=progress, num_return_sequences=num_return_sequences, top_p=top_p, top_k=top_k,
                             seed=seed, fast_inference=fast_inference)
    texts = [answer_text(tokenizer, ids, stop) for ids in generated]
    if return_lengths:
        return texts, [next((i for i, t in enumerate(ids) if t in stop), len(ids)) for ids in generated]
    return texts


def generate_ids(model, tokenizer, prompt_ids: list[list[int]], backend: str, *, adapter_dir: str | os.PathLike | None,
                 max_new_tokens: int, temperature: float = 0.0, batch_size: int = 16,
                 progress: bool | Report = True, num_return_sequences: int = 1, top_p: float = 1.0, top_k: int = 0,
                 seed: int | Sequence[int] | None = None, fast_inference: bool = True) -> list[list[int]]:
    """The generated token ids of each prompt (token ids, as TRL's rollouts pass them), ending with the
    stop token when the model stopped (an answer cut at max_new_tokens has none).

    unsloth with fast_inference: vLLM batched generation with the adapter's lora_request (without it
    vLLM silently uses the base model). Otherwise the (PEFT) model itself, batched `generate` with
    left padding; on unsloth after `for_inference` (its generation mode: KV cache on).
    num_return_sequences=n > 1 (sampling, temperature > 0): n answers per prompt, prompt-major (the
    answers of prompt i are [i*n, (i+1)*n)); top_p, top_k (0 = off) and seed apply to sampling.
    `seed`: one for the call, or one per prompt (vLLM seeds each request's sampler with its own; the
    hf path draws the batch from one stream, seeded with the first).
    `progress`: False, True or a progress.Report: tqdm's bar on a terminal, lines at a steady pace in a log
    (sql_rlvr/progress.py), counting prompts answered.
    """
    n = num_return_sequences
    report = as_report(progress)
    if not prompt_ids:
        return []
    stop = stop_token_ids(model, tokenizer)  # the model's own end-of-turn tokens, not only tokenizer.eos
    if backend == "unsloth" and fast_inference:
        from vllm import SamplingParams

        lora_request = vllm_lora_request(model, adapter_dir) if adapter_dir is not None else None
        def sampling(seed: int | None):
            return SamplingParams(temperature=temperature, max_tokens=max_new_tokens, n=n, top_p=top_p,
                                  top_k=top_k if top_k > 0 else -1, seed=seed, stop_token_ids=stop)  # vLLM's off is -1

        # One seed per prompt: a list of SamplingParams, one per request (vLLM's LLM.generate takes either).
        params = [sampling(s) for s in seed] if isinstance(seed, Sequence) else sampling(seed)
        # Token ids, as the hf path and TRL's vLLM rollouts pass them: vLLM tokenizes a text prompt with
        # add_special_tokens=True, which puts a second BOS before templates that open with one (Llama 3, Gemma).
        token_prompts = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        # use_tqdm: vLLM's LLM.generate shows its own bar by default (each --eval_steps check would print one);
        # given our tqdm, the bar where a terminal shows it and the lines of a log.
        outputs = model.fast_generate(token_prompts, sampling_params=params, lora_request=lora_request,
                                      use_tqdm=vllm_tqdm(report, n))
        answers = []
        for out in outputs:
            for o in out.outputs[:n]:
                ids = _through_stop(o.token_ids, stop)
                stopped = getattr(o, "finish_reason", None) == "stop"
                if stopped and (not ids or ids[-1] not in stop):  # a stop token vLLM left out of the ids
                    reason = getattr(o, "stop_reason", None)
                    ids.append(reason if isinstance(reason, int) else stop[0])
                answers.append(ids)
        return answers

    import torch

    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    if adapter_dir is not None and not hasattr(model, "peft_config"):
        raise UserError("generation was asked for an adapter, but the model has none loaded")
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    answers: list[list[int]] = []
    if seed is not None:
        torch.manual_seed(seed[0] if isinstance(seed, Sequence) else seed)
    batch_size = max(1, batch_size // n)  # n sequences per prompt: about the same rows per forward pass
    shown = progress_bar(report, len(prompt_ids))
    for start in range(0, len(prompt_ids), batch_size):
        batch = tokenizer.pad({"input_ids": [list(ids) for ids in prompt_ids[start:start + batch_size]]},
                              padding=True, return_tensors="pt").to(device)
        # Sampling from the given temperature, top_p and top_k alone, as vLLM does with its SamplingParams: never the
        # top_k/top_p of the model's generation config (Qwen3-4B-Instruct-2507 ships top_k 20, top_p 0.8).
        sampling = (dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k, num_return_sequences=n)
                    if temperature > 0 else dict(do_sample=False))
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=stop, **sampling)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        answers.extend(_through_stop(row, stop) for row in new_tokens.tolist())
        if shown is not None:
            shown.update(len(batch["input_ids"]))
    if shown is not None:
        shown.close()
    return answers


# vLLM LoRA requests by (model, adapter folder, the adapter file's size and time): unsloth_zoo's load_lora makes
# a request with a new id on every call, and vLLM's prefix cache keys include the LoRA, so a request per turn
# would re-prefill the whole conversation and reload the adapter every turn. A rewritten adapter (GRPO's
# --eval_steps saves the live one to the same folder) gets a new request.
_LORA_REQUESTS: dict[tuple, Any] = {}


def vllm_lora_request(model, adapter_dir: str | os.PathLike) -> Any:
    """The vLLM LoRA request of `adapter_dir` on this model: made once per version of the adapter's file."""
    weights = [Path(adapter_dir) / name for name in ("adapter_model.safetensors", "adapter_model.bin")]
    stamp = next(((w.stat().st_size, w.stat().st_mtime_ns) for w in weights if w.exists()), None)
    key = (id(model), os.path.abspath(adapter_dir), stamp)
    if key not in _LORA_REQUESTS:
        request = model.load_lora(str(adapter_dir))
        if request is None:
            raise UserError(f"vLLM could not load the adapter {adapter_dir}")
        _LORA_REQUESTS[key] = request
    return _LORA_REQUESTS[key]


def _through_stop(ids, stop: list[int]) -> list[int]:
    """Generated ids up to and including the first stop token (what follows it is padding)."""
    ids = list(ids)
    cut = next((i for i, t in enumerate(ids) if t in stop), None)
    return ids if cut is None else ids[:cut + 1]


@contextlib.contextmanager
def inference_mode(model, tokenizer, backend: str, fast_inference: bool) -> Iterator[None]:
    """Generation from a model that is being trained (GRPO's pass-rate filter and --eval_steps check), and
    back: inside, eval mode, left padding and, on unsloth without vLLM, unsloth's generation mode
    (for_inference: KV cache on, on CUDA gradient checkpointing off); on leaving, however it leaves, the
    training mode, the padding side and unsloth's training mode (for_training, as memory_probe does) as
    they were. vLLM (fast_inference) generates outside the model: its unsloth modes are left alone."""
    was_training, padding_side = model.training, tokenizer.padding_side
    unsloth_generates = backend == "unsloth" and not fast_inference
    try:
        model.eval()
        if unsloth_generates:
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(model)
        tokenizer.padding_side = "left"
        yield
    finally:
        model.train(was_training)
        if unsloth_generates and was_training:
            from unsloth import FastLanguageModel

            FastLanguageModel.for_training(model)
        tokenizer.padding_side = padding_side


def prompt_lengths(tokenizer, prompts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def length_report(lengths: list[int]) -> str:
    if not lengths:
        return "no prompts"
    ordered = sorted(lengths)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{len(ordered)} prompts, tokens: median {ordered[len(ordered) // 2]}, p99 {p99}, max {ordered[-1]}"
