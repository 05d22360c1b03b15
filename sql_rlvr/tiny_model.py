"""A hub-free stand-in model for tests and `--preset smoke`: a ~140k-parameter Qwen3 with a tokenizer
trained on the shipped mini-Spider and Qwen3-4B-Instruct-2507's chat template, built once into .cache/tiny-qwen3.

Imports config and benchmarks (to read the mini-Spider); torch, tokenizers and transformers only
when it builds. Never imported by scoring or the sandbox.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

from config import MINI_SPIDER_DIR, REPO_DIR
from sql_rlvr.benchmarks import Spider

# Where it is built: the repository's cache, or SQL_RLVR_TINY_MODEL_DIR (a test that must see a first build
# uses its own folder, never deleting the one that concurrent test processes are reading).
TINY_MODEL_DIR = Path(os.environ.get("SQL_RLVR_TINY_MODEL_DIR") or REPO_DIR / ".cache" / "tiny-qwen3")
TINY_MODEL_VERSION = "6"  # bump when the recipe below changes, so caches rebuild



# Qwen's own tool markers, plus the fixed JSON around a call's query: a 2-layer model cannot learn ~40
# byte-level tokens of boilerplate in a smoke SFT, and the parser reads the decoded text either way.
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
               '{"name": "execute_sql", "arguments": {"query": "', '"}}']


def qwen_chat_template() -> str:
    """Qwen3-4B-Instruct-2507's own chat template, as TRL bundles it (the one TRL's tool-call parser
    recognises): ChatML turns, tools in the system turn, <tool_call>/<tool_response> blocks, and, like
    the real one, no {% generation %} markers: anything that works here must not depend on them.
    Without tools it renders the project's chat exactly as a plain ChatML template does."""
    from trl.chat_template_utils import qwen3_instruct_2507_chat_template

    return qwen3_instruct_2507_chat_template


def _tiny_corpus(prompt_text: Sequence[str]) -> list[str]:
    """Text the tiny tokenizer is trained on: the prompt's fixed text, then the shipped mini-Spider's
    schemas, questions and SQL."""
    lines = list(prompt_text)
    spider = Spider.open(MINI_SPIDER_DIR)
    for db_id in sorted(spider.tables):
        lines.append(spider.schema(db_id))
    for split in ("train", "dev"):
        for ex in spider.examples(split):
            lines += [ex["question"], ex["query"]]
    return lines


def ensure_tiny_model(prompt_text: Sequence[str], path: str | os.PathLike = TINY_MODEL_DIR) -> str:
    """Build (once) and return the folder of a ~140k-parameter Qwen3 with a locally trained tokenizer.

    `prompt_text`: the fixed text of every prompt (utils gives its system prompt and labels), which the
    tokenizer learns first. Loadable with `from_pretrained` like any checkpoint. Built in a temporary
    folder and renamed into place, so concurrent test processes never see half a model. Building it
    leaves the caller's random state as it was: a run seeded the same trains the same whether the
    model was built now or found cached.
    """
    path = Path(path)
    corpus = _tiny_corpus(prompt_text)
    # The stamp names the recipe and the data: editing the mini-Spider rebuilds the tokenizer.
    version = f"{TINY_MODEL_VERSION}-{hashlib.sha256(chr(10).join(corpus).encode()).hexdigest()[:12]}"
    stamp = path / "sql-rlvr-tiny-version"
    if stamp.exists() and stamp.read_text().strip() == version:
        return str(path)
    import shutil
    import tempfile

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))  # its progress lines are blank lines in a log
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = qwen_chat_template()

    with torch.random.fork_rng(devices=[]):  # the weights' seed is the recipe's, never the caller's state
        torch.manual_seed(0)
        model = _tiny_qwen3(tokenizer)
        # The tool-call markers are tokens of their own, as in Qwen's tokenizer (added, not special), and so
        # is the JSON around a call's query: the agentic mode's format is then learnable in a smoke SFT. Added after the weights are drawn, so
        # every other weight, and any text without them, stays as before.
        drawn = len(tokenizer)
        tokenizer.add_tokens(TOOL_TOKENS)
        model.resize_token_embeddings(len(tokenizer))
        with torch.no_grad():  # drawn as the others are (resizing gives them all the mean: indistinguishable)
            rows = model.get_input_embeddings().weight
            rows[drawn:] = torch.randn(len(tokenizer) - drawn, rows.shape[1]) * model.config.initializer_range
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "sql-rlvr-tiny-version").write_text(version + "\n")
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    try:
        os.replace(tmp, path)
    except OSError:  # another process won the race; its model is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


def _tiny_qwen3(tokenizer):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        # Tied embeddings at the usual 0.02 cap logits near +-1: the model could never learn to say
        # anything. A wider init lets LoRA SFT teach it to emit SQL in seconds.
        initializer_range=0.3,
    )
    return Qwen3ForCausalLM(config)
