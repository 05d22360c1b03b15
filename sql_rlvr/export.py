"""`evaluate.py --export merged`: a LoRA adapter merged into its base model and saved as a plain 16-bit
(or float32) checkpoint that loads without peft, checked to answer as the adapter does.

Imports config, errors and utils (model loading and generation); torch, transformers, peft and
unsloth inside the function, unsloth first when it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import utils
from config import Config
from sql_rlvr.errors import UserError


def export_merged(cfg: Config, backend: str, adapter: Path, out: Path, chats: list[list[dict]],
                  dtype: str = "bfloat16") -> dict:
    """Merge a LoRA adapter into its base and save a 16-bit checkpoint loadable without peft.

    The merge happens on an unquantized base (merging into a 4-bit base is the usual cause of a
    merged model worse than its adapter; --load_in_4bit is ignored here), then the weights are cast
    to `dtype`. The merged model, reloaded from disk, must give the adapter model's greedy answers on `chats`.
    unsloth: its `save_pretrained_merged`, which writes 16-bit weights only.
    """
    if backend == "unsloth":
        if dtype == "float32":
            raise UserError("--export_dtype float32 is not available on the unsloth backend (save_pretrained_merged "
                            "writes 16-bit weights): use bfloat16 or float16, or --backend hf for float32")
        utils.import_unsloth(cpu_bf16=dtype == "bfloat16")  # before transformers and peft, below
    import dataclasses
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if backend == "unsloth":
        model, tokenizer = utils.load_model(dataclasses.replace(cfg, load_in_4bit=False), backend, adapter=adapter,
                                      trainable=False, dtype=dtype)
        model.save_pretrained_merged(str(out), tokenizer, save_method="merged_16bit")
        del model
        saved = json.loads((out / "config.json").read_text())
        if str(saved.get("dtype") or saved.get("torch_dtype")) != dtype:
            # unsloth writes the model's own 16-bit dtype; the user asked for another one. Written beside, then
            # moved in: the loaded tensors may still be mapped from the files they would overwrite.
            cast_dir = out.with_name(out.name + ".cast")
            shutil.rmtree(cast_dir, ignore_errors=True)
            AutoModelForCausalLM.from_pretrained(str(out), dtype=getattr(torch, dtype)).save_pretrained(str(cast_dir))
            for stale in out.glob("model*.safetensors*"):
                stale.unlink()
            for path in cast_dir.iterdir():
                os.replace(path, out / path.name)
            cast_dir.rmdir()
    else:
        from peft import PeftModel

        name = utils.resolve_model_name(cfg.model_name)
        tokenizer = AutoTokenizer.from_pretrained(str(adapter) if (Path(adapter) / "tokenizer.json").exists() else name)
        base = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        merged.to(getattr(torch, dtype)).save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    # Compare in the dtype the merged weights were saved in, on both sides.
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    prompts = [utils.render_prompt(tokenizer, chat) for chat in chats]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=getattr(torch, dtype)).to(device)
    merged_answers = utils.generate(reloaded, tokenizer, prompts, "hf", adapter_dir=None, max_new_tokens=32, progress=False)
    del reloaded
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(utils.resolve_model_name(cfg.model_name), dtype=getattr(torch, dtype)).to(device)
    with_adapter = PeftModel.from_pretrained(base, str(adapter))
    adapter_answers = utils.generate(with_adapter, tokenizer, prompts, "hf", adapter_dir=adapter, max_new_tokens=32, progress=False)
    info = {"base_model": cfg.model_name, "adapter": str(adapter), "dtype": dtype, "checked_prompts": len(prompts),
            "agreeing_prompts": sum(a == b for a, b in zip(merged_answers, adapter_answers)),
            "merged_answers": merged_answers, "adapter_answers": adapter_answers}
    (out / "export_info.json").write_text(json.dumps(info, indent=2))
    return info
