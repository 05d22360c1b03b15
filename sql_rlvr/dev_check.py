"""GRPO's in-training dev check (--eval_steps N): every N steps, greedy execution accuracy (EX) of the model
being trained on a fixed, seeded dev subset, logged as eval/ex in that step's log line (metrics.jsonl,
wandb, curves.png). Reward curves cannot show reward hacking; this can.

A module of its own, not a part of train_grpo.py: it is one TrainerCallback (DevEXCallback) with its
own subset, prompts and scorer, and it measures what evaluate.py measures (the same seeded subset, the
same prompts, the same scorer), so that the last eval/ex equals evaluate.py's EX of the saved adapter.

Imports transformers when it is imported (DevEXCallback is a TrainerCallback): train_grpo.py imports it
after the model is loaded, so that unsloth, when used, is imported first. Of ours: agent, benchmarks,
config, extract, progress, scoring, sql_tool and utils.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

import utils
from config import Config
from sql_rlvr import agent, benchmarks, scoring
from sql_rlvr.extract import final_sql
from sql_rlvr.progress import Report
from sql_rlvr.sql_tool import SQLTool


class DevEXCallback(TrainerCallback):
    """Every --eval_steps steps: greedy EX of the model being trained on a fixed, seeded dev subset.

    Rank 0 generates (the other processes wait at the next collective) and scores with the evaluator's
    own scorer; the value joins that step's log line as `eval/ex`: on_log adds it to the logs, which is
    why add_to puts this callback first. hf: plain `generate` on the live PeftModel. unsloth: vLLM
    through utils.generate with the *current* LoRA weights, saved to a temporary folder first (each
    load_lora gets a new request id, so vLLM never reuses an older copy); without them vLLM would answer
    with the base model. With `tool` (the agentic mode) each answer comes from evaluation's loop,
    agent.answer_with_tools. `template_kwargs`: the chat template's, by default utils.chat_template_kwargs.
    """

    def __init__(self, cfg: Config, dataset: benchmarks.Spider | benchmarks.Bird, backend: str, tokenizer,
                 out: Path, tool: SQLTool | None = None, template_kwargs: dict | None = None) -> None:
        self.cfg, self.dataset, self.backend, self.tokenizer, self.out = cfg, dataset, backend, tokenizer, out
        self.tool = tool
        self.template_kwargs = (utils.chat_template_kwargs(tokenizer, cfg.reasoning) if template_kwargs is None
                                else template_kwargs)
        self.think_opener = utils.think_opener(tokenizer, self.template_kwargs) if cfg.reasoning else ""
        self.spec = utils.benchmark_spec(cfg)  # the benchmark's strata and match rule
        dev = dataset.examples("dev")
        chosen = utils.stratified_subset(dev, cfg.eval_subset_size, cfg.seed, self.spec.eval_strata)
        self.examples = [dev[i] for i in chosen]  # evaluate.py --max_eval_examples draws the same ones
        chats = [utils.render_prompt_for(dataset, ex, cfg) for ex in self.examples]
        limit = cfg.max_seq_length - cfg.max_completion_length  # a prompt over it gets no answer: scored wrong
        self.prompts, _, self.fits = agent.model_prompts(tokenizer, chats, self.template_kwargs, tool is not None, limit)
        self.db_paths = [str(dataset.db_path(ex["db_id"])) for ex in self.examples]
        self.golds = [(scoring.flatten_sql(ex["query"]), ex["db_id"]) for ex in self.examples]
        self.ex: float | None = None  # measured at a step's end, logged in that step's line
        print(f"[grpo] eval/ex every {cfg.eval_steps} steps on {len(self.examples)} of {len(dev)} dev questions "
              f"(seed {cfg.seed}, stratified by database and {self.spec.eval_strata[-1]}; "
              f"{len(self.examples) - len(self.fits)} over the prompt limit)")

    def add_to(self, trainer) -> None:
        """Make this the trainer's first callback, wherever the others are: on_log puts eval/ex into the logs
        dict that every later callback (metrics.jsonl, the progress line, wandb) writes."""
        trainer.callback_handler.callbacks.insert(0, self)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.cfg.eval_steps:
            return
        control.should_log = True  # on every process: the log line gathers across them
        if not state.is_world_process_zero:
            return
        start = time.time()
        with utils.inference_mode(model, self.tokenizer, self.backend, self.cfg.fast_inference):
            generated = self.answers(model, Report(f"[grpo] step {state.global_step}: eval/ex answers",
                                                   self.cfg.progress_every_s, bar=False))
        texts = [""] * len(self.examples)  # a prompt over the limit: no answer
        for i, text in zip(self.fits, generated):
            texts[i] = text
        # --reasoning true: the final query only; no answer (None) is scored wrong, as in evaluate.py
        preds = [scoring.flatten_sql(final_sql(t, self.cfg.reasoning, self.think_opener) or "") for t in texts]
        records = scoring.score_predictions(preds, self.golds, self.dataset.db_dir("dev"), self.cfg.sql_timeout_s,
                                            workers=1, rule=self.spec.rule)
        self.ex = sum(r["exec_match"] for r in records) / len(records)
        print(f"[grpo] step {state.global_step}: eval/ex={self.ex:.3f} greedy on {len(records)} dev questions "
              f"({time.time() - start:.1f} s)", flush=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Through the public callback API, not the trainer's private _metrics: every later callback gets the
        # same logs dict, and the log history (trainer_state.json in checkpoints) its entry for this step.
        if self.ex is None or logs is None:
            return
        logs["eval/ex"] = self.ex
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["eval/ex"] = self.ex
        self.ex = None

    def answers(self, model, report: Report | None = None) -> list[str]:
        """The greedy answers of the prompts that fit, from the model as it is now; `report`: its progress
        lines in a log (sql_rlvr/progress.py; never a bar under the trainer's)."""
        if self.backend != "unsloth" or not self.cfg.fast_inference:
            # The live PeftModel itself; adapter_dir only names it (and checks it has LoRA).
            return self.generate(model, self.out, report)
        live = Path(tempfile.mkdtemp(prefix=".eval-adapter-", dir=self.out))
        try:
            model.save_pretrained(str(live))
            return self.generate(model, live, report)
        finally:
            shutil.rmtree(live, ignore_errors=True)

    def generate(self, model, adapter_dir: Path, report: Report | None = None) -> list[str]:
        cfg = self.cfg
        return agent.answers(model, self.tokenizer, self.backend, [self.prompts[i] for i in self.fits],
                             [self.db_paths[i] for i in self.fits], tool=self.tool, max_calls=cfg.max_tool_calls,
                             template_kwargs=self.template_kwargs, max_seq_length=cfg.max_seq_length,
                             adapter_dir=adapter_dir, max_new_tokens=cfg.max_completion_length, temperature=0.0,
                             batch_size=cfg.eval_batch_size, progress=report or False,
                             fast_inference=cfg.fast_inference)
