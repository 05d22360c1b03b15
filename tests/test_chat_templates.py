"""Other base models (--model_name): the project's prompts and SFT loss mask on real chat templates.

Each family gets a tiny tokenizer (the tiny model's BPE plus that family's special tokens, bos/eos and
generation-config stop tokens) with the family's real chat template, as TRL's wheel ships it under
trl/chat_templates/ (verbatim copies of the hub's). SFT data preparation is the real one
(train_sft.build_trainer -> TRL's SFTTrainer tokenization) on a tiny model saved with that tokenizer.
"""

import shutil
from pathlib import Path

import pytest

from sql_rlvr import extract
from sql_rlvr import errors
import utils
from config import parse_config
from conftest import run_script

pytestmark = pytest.mark.both_lanes  # TRL bundles the templates and parses the calls: per version

import trl

TEMPLATES = Path(trl.__file__).parent / "chat_templates"
QWEN = dict(special=[], plain=[], bos=None, eos="<|im_end|>", stops=["<|im_end|>", "<|endoftext|>"], end="<|im_end|>\n")
LLAMA3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA31 = dict(special=LLAMA3 + ["<|eom_id|>", "<|python_tag|>"], plain=[], bos="<|begin_of_text|>", eos="<|eot_id|>",
               stops=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], end="<|eot_id|>")
GEMMA = dict(special=["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], plain=[], bos="<bos>", eos="<eos>",
             stops=["<eos>", "<end_of_turn>"], end="<end_of_turn>\n")
PHI3 = dict(special=["<s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], plain=[], bos="<s>",
            eos="<|endoftext|>", stops=["<|endoftext|>", "<|assistant|>", "<|end|>"], end="<|end|>\n<|endoftext|>")
# family -> (template file, tokens; template kwargs the check must choose; instructions folded by us)
FAMILIES = {
    "qwen2_5": (QWEN, {}, False),  # Qwen2.5(-Coder)-Instruct: default system prompt, replaced by ours
    "qwen3": (dict(QWEN, plain=["<think>", "</think>"]), {"enable_thinking": False}, False),  # Qwen3 hybrid
    "qwen3_instruct_2507": (QWEN, {}, False),  # the default base model
    "llama3": (dict(LLAMA31, special=LLAMA3, eos="<|end_of_text|>", stops=["<|end_of_text|>", "<|eot_id|>"]), {}, False),
    "llama3_1": (LLAMA31, {}, False),
    "llama3_2": (LLAMA31, {"date_string": "26 Jul 2024"}, False),  # else today's date in every prompt
    "gemma": (GEMMA, {}, True),  # Gemma 1/2: no system role, raises on one
    "gemma3": (GEMMA, {}, False),  # folds the system turn into the user turn itself
    "phi3": (PHI3, {}, False),
    "phi3_5": (PHI3, {}, False),
}
R1 = dict(special=["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"],
          plain=["<think>", "</think>"], bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>",
          stops=["<｜end▁of▁sentence｜>"], end="<｜end▁of▁sentence｜>")
VOCAB = 1024 + 32  # the tiny BPE plus room for every family's added tokens


def template_text(family: str) -> str:
    path = TEMPLATES / f"{family}.jinja"
    if not path.exists():
        pytest.skip(f"trl {trl.__version__} ships no {path.name}")
    return path.read_text()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny Qwen3 with room in its embeddings for the added tokens: shared by every family."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("weights")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(VOCAB)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def make_family(tmp_path_factory, tiny_weights, tiny_model_dir):
    """family -> folder of a tiny model whose tokenizer has the family's tokens and real template."""
    from transformers import AddedToken, AutoTokenizer, GenerationConfig

    made = {}

    def make(family: str, spec: dict) -> Path:
        if family in made:
            return made[family]
        template = template_text(family)
        out = tmp_path_factory.mktemp(family)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(tiny_weights / name, out / name)
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in spec["special"]], special_tokens=True)
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec["plain"]])
        assert len(tokenizer) <= VOCAB
        tokenizer.bos_token, tokenizer.eos_token = spec["bos"], spec["eos"]
        tokenizer.chat_template = template
        tokenizer.save_pretrained(out)
        GenerationConfig(eos_token_id=tokenizer.convert_tokens_to_ids(spec["stops"]),
                         pad_token_id=tokenizer.pad_token_id).save_pretrained(out)
        made[family] = out
        return out

    return make


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sft_labels_and_prompts_agree_on_the_real_template(family, make_family, spider, tmp_path):
    import train_sft

    spec, kwargs, folded = FAMILIES[family]
    model_dir = make_family(family, spec)
    cfg, _ = parse_config(["--preset", "smoke", "--output_dir", str(tmp_path), "--model_name", str(model_dir),
                           "--max_train_examples", "3"])
    trainer, _ = train_sft.build_trainer(cfg, tmp_path / "sft")  # runs check_chat_template, then TRL's tokenization
    tokenizer = trainer.processing_class
    assert utils.check_chat_template(tokenizer, family, utils.stop_token_ids(trainer.model, tokenizer)) == kwargs
    assert utils.chat_template_kwargs(tokenizer) == kwargs
    assert tokenizer.convert_tokens_to_ids(spec["end"].split("\n")[0]) in utils.stop_token_ids(trainer.model, tokenizer)

    train = spider.examples("train")  # --max_train_examples 3 is a seeded sample, in dataset order
    for i, ex in enumerate(train[j] for j in utils.stratified_subset(train, 3, cfg.seed, ["db_id"])):
        row = trainer.train_dataset[i]
        labels = trainer.data_collator([row])["labels"][0].tolist()
        start = next(j for j, t in enumerate(labels) if t != -100)
        # the loss covers exactly the SQL and the template's end of turn (the model learns to stop) ...
        assert tokenizer.decode(labels[start:]) == ex["query"].strip() + spec["end"]
        # ... after exactly the tokens evaluation prompts with, and GRPO (TRL renders its prompts itself)
        messages = utils.build_messages(spider.schema(ex["db_id"], cfg.schema_sample_values), ex["question"],
                                        tokenizer=tokenizer)
        prompt = utils.render_prompt_for(spider, ex, cfg, tokenizer)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert row["input_ids"][:start] == prompt_ids
        grpo_ids = tokenizer.apply_chat_template(conversation=[messages], add_generation_prompt=True, tokenize=True,
                                                 return_dict=True, **kwargs)["input_ids"][0]
        assert grpo_ids == prompt_ids
        # the instructions reach the model in every family, in the user turn where there is no system role
        assert utils.SYSTEM_PROMPT in prompt and "You are Qwen" not in prompt  # Qwen2.5's default system prompt
        assert (messages[0]["role"] == "user") == folded
        if family.startswith("gemma"):  # Gemma 2 folded by us, Gemma 3 by its template: the same text
            assert f"<start_of_turn>user\n{utils.SYSTEM_PROMPT}\n\nDatabase schema:" in prompt
    # an answer that opens with a think block (Qwen3 with thinking on, R1 distills) still yields its SQL
    assert extract.extract_sql("<think>\nCount the singers.\n</think>\n\nSELECT count(*) FROM singer") == \
        "SELECT count(*) FROM singer"


@pytest.mark.parametrize("family", ["qwen3", "gemma"])
def test_grpo_trainer_prompts_are_the_evaluation_prompts(family, make_family, spider, tmp_path):
    # GRPOTrainer renders conversational prompts itself, with GRPOConfig.chat_template_kwargs (as
    # train_grpo.py passes them). `_tokenize_prompts` is its own prompt tokenization (trl 1.15 and 1.16).
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    model_dir = make_family(family, FAMILIES[family][0])
    tokenizer = load_tokenizer(model_dir)
    kwargs = utils.check_chat_template(tokenizer, family)
    prompts = [utils.build_messages(spider.schema(ex["db_id"]), ex["question"], tokenizer=tokenizer)
               for ex in spider.examples("train")[:2]]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, bf16=False,
                      use_cpu=True, max_completion_length=4, chat_template_kwargs=kwargs or None, report_to=[])
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, processing_class=tokenizer,
                          reward_funcs=[lambda prompts, completions, **_: [0.0] * len(prompts)],
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]))
    grpo_ids = [[int(t) for t in ids] for ids in trainer._tokenize_prompts(prompts)[0]]
    assert grpo_ids == [tokenizer(utils.render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
                        for p in prompts]


def test_qwen3_hybrid_with_thinking_left_on_fails_loudly(make_family):
    tokenizer = load_tokenizer(make_family("qwen3", FAMILIES["qwen3"][0]))
    with pytest.raises(errors.UserError) as err:
        utils.check_chat_template(tokenizer, "Qwen/Qwen3-8B", template_kwargs={})
    message = str(err.value)
    assert "Qwen/Qwen3-8B" in message and "'<think>\\n\\n</think>\\n\\n" in message and "\n" not in message
    # the same template with the kwargs the check chooses renders the empty think block into the prompt instead
    assert utils.render_prompt(tokenizer, utils.build_messages("s", "q")).endswith("<think>\n\n</think>\n\n")


@pytest.mark.slow
def test_deepseek_r1_distill_is_refused_in_one_line(make_family, tmp_path):
    # Its generation prompt opens a <think> block, and its assistant turn drops everything up to </think>:
    # no chat makes training and inference render the same text.
    model_dir = make_family("deepseek_r1_distill", R1)
    tokenizer = load_tokenizer(model_dir)
    with pytest.raises(errors.UserError, match="<think>"):
        utils.check_chat_template(tokenizer, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    result = run_script("train_sft.py", "--preset", "smoke", "--output_dir", str(tmp_path), "--model_name", str(model_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if str(model_dir) in line]
    assert len(error) == 1 and "<think>" in error[0], result.stderr[-2000:]


def test_an_end_of_turn_that_generation_does_not_stop_at_fails(make_family):
    spec, _, _ = FAMILIES["llama3"]  # the original Llama 3 tokenizer: eos <|end_of_text|>, turns end <|eot_id|>
    tokenizer = load_tokenizer(make_family("llama3", spec))
    with pytest.raises(errors.UserError, match="stop tokens"):
        utils.check_chat_template(tokenizer, "meta-llama/Meta-Llama-3-8B-Instruct", [tokenizer.eos_token_id])
    assert utils.check_chat_template(tokenizer, "x", tokenizer.convert_tokens_to_ids(spec["stops"])) == {}


def test_generation_stops_at_the_generation_config_stop_tokens(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = utils.render_prompt(tiny_tokenizer, utils.build_messages("CREATE TABLE t (a INT)", "How many rows?"))
    answer = utils.generate(model, tiny_tokenizer, [prompt], "hf", adapter_dir=None, max_new_tokens=6, progress=False)[0]
    first = int(model(**tiny_tokenizer(prompt, add_special_tokens=False, return_tensors="pt")).logits[0, -1].argmax())
    assert answer and first != tiny_tokenizer.eos_token_id  # greedy: it does not stop by itself
    # the greedy first token becomes an end-of-turn token of the generation config (as <|eot_id|> is Llama 3's)
    model.generation_config.eos_token_id = [first]
    assert utils.stop_token_ids(model, tiny_tokenizer) == [first, tiny_tokenizer.eos_token_id]
    assert utils.generate(model, tiny_tokenizer, [prompt], "hf", adapter_dir=None, max_new_tokens=6,
                          progress=False) == [""]


def test_a_base_model_without_chat_template_is_one_clear_error(tiny_model_dir):
    tokenizer = load_tokenizer(Path(tiny_model_dir))
    tokenizer.chat_template = None
    with pytest.raises(errors.UserError, match="has no chat template"):
        utils.check_chat_template(tokenizer, "Qwen/Qwen3-4B-Base")


def test_vllm_generation_gets_the_prompt_tokens_and_the_models_stop_tokens(make_family, monkeypatch):
    # vLLM needs CUDA: a recording stand-in for unsloth's `fast_generate` (vLLM's LLM.generate) shows what
    # utils.generate hands it. Given text, vLLM tokenizes with add_special_tokens=True: a template that opens
    # with a BOS (Llama 3, Gemma) would be prompted with two, which neither training nor the hf path sees.
    import sys
    import types

    from transformers import GenerationConfig

    tokenizer = load_tokenizer(make_family("llama3_1", LLAMA31))
    prompt = utils.render_prompt(tokenizer, utils.build_messages("CREATE TABLE t (a INT)", "How many rows?"))
    assert prompt.startswith("<|begin_of_text|>")
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    answer_ids = tokenizer("SELECT count(*) FROM t", add_special_tokens=False)["input_ids"] + [eot, eot]
    calls, bars = [], []

    class Model:  # what utils.generate uses of unsloth's model on its vLLM path
        generation_config = GenerationConfig(eos_token_id=tokenizer.convert_tokens_to_ids(LLAMA31["stops"]))

        def load_lora(self, path):
            return ("lora_request", path)

        def fast_generate(self, prompts, sampling_params, lora_request, use_tqdm=True):  # vLLM's default: a bar
            calls.append((prompts, sampling_params, lora_request))
            bars.append(use_tqdm)
            if callable(use_tqdm):  # driven as vLLM's LLM._run_engine drives a tqdm it is given
                bar = use_tqdm(total=len(prompts), desc="Processed prompts", dynamic_ncols=True, postfix="speed")
                for _ in prompts:
                    assert bar.format_dict["elapsed"] >= 0
                    bar.postfix = "speed"
                    bar.update(sampling_params["n"])  # a finished request counts its n outputs
                bar.close()
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=answer_ids)] * sampling_params["n"])
                    for _ in prompts]

    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    answers = utils.generate(Model(), tokenizer, [prompt], "unsloth", adapter_dir="ADAPTER", max_new_tokens=8,
                             temperature=0.8, num_return_sequences=2, seed=3, fast_inference=True)
    prompts, params, lora_request = calls[0]
    assert prompts == [{"prompt_token_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"]}]
    assert prompts[0]["prompt_token_ids"].count(tokenizer.bos_token_id) == 1
    assert lora_request == ("lora_request", "ADAPTER")  # never the base model by accident
    assert eot in params["stop_token_ids"] and (params["n"], params["seed"], params["temperature"]) == (2, 3, 0.8)
    assert answers == ["SELECT count(*) FROM t"] * 2
    # vLLM gets our bar (sql_rlvr/progress.py: tqdm's on a terminal, lines in a log); progress=False turns it off
    utils.generate(Model(), tokenizer, [prompt], "unsloth", adapter_dir="ADAPTER", max_new_tokens=8, progress=False)
    assert callable(bars[0]) and bars[1] is False
    # every prompt over the length limit: nothing to generate, no call at all
    assert utils.generate(Model(), tokenizer, [], "unsloth", adapter_dir="ADAPTER", max_new_tokens=8) == [] and len(calls) == 2


def test_hf_sampling_ignores_the_generation_configs_top_k_and_top_p(tiny_model_dir, tiny_tokenizer):
    # Sampled candidates (--num_samples, --eval_temperature) draw from temperature and top_p alone, as on vLLM:
    # a base model's generation config (Qwen3-4B-Instruct-2507: top_k 20, top_p 0.8) must not narrow them on hf.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.top_k, model.generation_config.top_p = 1, 0.01  # what would make sampling greedy
    prompt = utils.render_prompt(tiny_tokenizer, utils.build_messages("CREATE TABLE t (a INT)", "How many rows?"))
    answers = utils.generate(model, tiny_tokenizer, [prompt], "hf", adapter_dir=None, max_new_tokens=8, temperature=1.0,
                             num_return_sequences=4, top_p=1.0, seed=0, progress=False)
    assert len(answers) == 4 and len(set(answers)) > 1


# No tool support in the template (Gemma 3, Phi-3); Qwen3's hybrid template drops earlier turns' think
# blocks, so a conversation is not a prefix of its continuation (TRL swaps in a training template there).
AGENTIC_REFUSED = {"qwen3", "gemma3", "phi3"}
TOOL_FAMILIES = ["qwen2_5", "qwen3_instruct_2507", "qwen3", "llama3_1", "llama3_2", "gemma3", "phi3"]


@pytest.mark.parametrize("family", TOOL_FAMILIES)
def test_agentic_sft_loss_on_the_real_template_leaves_out_the_tool_result(family, make_family, spider, tmp_path):
    """--max_tool_calls 2: on a template TRL can parse calls in, the SFT loss covers the call turn and the
    answer turn, each through its end of turn, and never the tool result; any other template stops in one
    line naming the model, before training."""
    import train_sft
    from sql_rlvr.sandbox import execute_sql

    spec, _, _ = FAMILIES[family]
    model_dir = make_family(family, spec)
    cfg, _ = parse_config(["--preset", "smoke", "--output_dir", str(tmp_path), "--model_name", str(model_dir),
                           "--max_train_examples", "3", "--max_tool_calls", "2"])
    try:
        trainer, _ = train_sft.build_trainer(cfg, tmp_path / "sft")
    except errors.UserError as exc:
        assert family in AGENTIC_REFUSED, f"{family}: {exc}"
        assert str(model_dir) in str(exc) and "--max_tool_calls" in str(exc) and "\n" not in str(exc)
        return
    assert family not in AGENTIC_REFUSED
    tokenizer = trainer.processing_class
    end = spec["end"].split("\n")[0]
    train = spider.examples("train")
    for i, ex in enumerate(train[j] for j in utils.stratified_subset(train, 3, cfg.seed, ["db_id"])):
        row = trainer.train_dataset[i]
        ids, labels = row["input_ids"], trainer.data_collator([row])["labels"][0].tolist()
        learned = tokenizer.decode([t for t in labels if t != -100])
        sql = ex["query"].strip()
        assert learned.count(end) == 2 and learned.endswith(sql + end)  # two turns, each learns to stop
        assert learned.count(sql.split()[-1]) >= 2  # the query in the call, and again in the answer
        result = execute_sql(spider.db_path(ex["db_id"]), sql).rows
        shown = str(result[0][0]) if result else "(0 rows)"
        assert shown in tokenizer.decode(ids).split(sql, 1)[1]  # the real result is in the conversation ...
        assert "rows" not in learned.replace(sql, "")  # ... and its count line never in the loss


THINKING = dict(QWEN, plain=["<think>", "</think>"])


@pytest.mark.parametrize("family, spec, kwargs, opener", [
    ("qwen3_instruct_2507", QWEN, {}, ""),  # the default base model: reasoning as plain text before the block
    ("qwen2_5", QWEN, {}, ""),
    ("qwen3", THINKING, {"enable_thinking": True}, ""),  # hybrid, thinking on: the model opens <think> itself
    ("qwen3_5_think", THINKING, {"enable_thinking": True}, "<think>\n"),  # the template opens it in the prompt
])
def test_reasoned_answers_survive_the_real_template(family, spec, kwargs, opener, make_family):
    # --reasoning true: what the model writes under each template (a think block where it has one) must be
    # rendered back verbatim after the generation prompt, and its final query read after the think block.
    tokenizer = load_tokenizer(make_family(family, spec))
    stops = tokenizer.convert_tokens_to_ids(spec["stops"])
    assert utils.check_chat_template(tokenizer, family, stops, reasoning=True) == kwargs
    assert utils.chat_template_kwargs(tokenizer, reasoning=True) == kwargs
    assert utils.think_opener(tokenizer, kwargs) == opener
    prompt = utils.render_prompt(tokenizer, utils.build_messages(_SCHEMA, "How many?", reasoning=True), kwargs)
    assert utils.REASONING_SYSTEM_PROMPT in prompt and prompt.endswith(opener or "assistant\n")
    answer = utils.check_answer("SELECT count(*) FROM singer", opener, bool(kwargs.get("enable_thinking")))
    assert ("<think>" in opener + answer) == bool(kwargs)
    assert extract.final_sql(answer, True, opener) == "SELECT count(*) FROM singer"
    # the default mode on the same template: thinking off, as before
    assert utils.chat_template_kwargs(tokenizer) == ({"enable_thinking": False} if kwargs else {})


_SCHEMA = 'CREATE TABLE "singer" ("singer_id" INTEGER PRIMARY KEY, "name" TEXT)'
# --reasoning true (sql_rlvr/traces.py): an instruct template, Qwen3's hybrid one with thinking on, and Qwen3.5's,
# which opens <think> in the generation prompt itself: family -> (tokens, template kwargs, the prompt's think opener)
THINK = dict(QWEN, plain=["<think>", "</think>"])
REASONING_FAMILIES = {"qwen3_instruct_2507": (QWEN, {}, ""), "qwen3": (THINK, {"enable_thinking": True}, ""),
                      "qwen3_5_think": (THINK, {"enable_thinking": True}, "<think>\n")}


@pytest.mark.parametrize("family", list(REASONING_FAMILIES))
def test_reasoning_sft_loss_covers_the_whole_trace_and_nothing_of_the_prompt(family, make_family, spider, tmp_path):
    """SFT on traces: the loss covers the reasoning, the final query and the end of turn, in the form the template
    renders (the think block on a thinking template), and not one token of the prompt, which is exactly the one
    evaluation and GRPO prompt with (its "<think>\\n" included where the template opens the block)."""
    import json

    import train_sft
    from sql_rlvr import traces

    spec, kwargs, opener = REASONING_FAMILIES[family]
    path = tmp_path / "traces.jsonl"
    argv = ["--preset", "smoke", "--output_dir", str(tmp_path), "--model_name", str(make_family(family, spec)),
            "--reasoning", "true", "--max_train_examples", "3", "--sft_traces", str(path)]
    cfg, _ = parse_config(argv)
    examples = utils.training_examples(cfg, utils.open_training_datasets(cfg))
    completions = [f"The question needs {ex['db_id']}'s tables.\nNo join.\n\n```sql\n{ex['query']}\n```" for ex in examples]
    completions[2] = f"<think>\nThe question needs a join.\n</think>\n\n```sql\n{examples[2]['query']}\n```"
    records = [{"db_id": ex["db_id"], "question": ex["question"], "completion": c} for ex, c in zip(examples, completions)]
    records.append({**records[0], "completion": "Wrong.\n```sql\nSELECT 1\n```"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    trainer, info = train_sft.build_trainer(cfg, tmp_path / "sft")
    assert (info["sft_traces"]["kept"], info["sft_traces"]["wrong"], info["train_examples"]) == (3, 1, 3)
    tokenizer = trainer.processing_class
    assert utils.chat_template_kwargs(tokenizer, True) == kwargs and utils.think_opener(tokenizer, kwargs) == opener
    end = spec["end"]
    for i, (ex, completion) in enumerate(zip(examples, completions)):
        row = trainer.train_dataset[i]
        labels = trainer.data_collator([row])["labels"][0].tolist()
        start = next(j for j, t in enumerate(labels) if t != -100)
        assert all(t != -100 for t in labels[start:])  # one span: the whole completion
        learned = tokenizer.decode(labels[start:])
        reasoning, answer = (part.strip() for part in extract.split_reasoning(completion.strip()))
        if kwargs:  # a thinking template: the reasoning in its think block, the query after it
            assert learned == ("" if opener else "<think>\n") + f"{reasoning}\n</think>\n\n{answer}{end}"
        else:  # an instruct one: the trace as written, a think block in it included
            assert learned == completion + end
        assert learned == traces.answer_text(completion, opener, bool(kwargs)) + end
        assert labels[start:] == tokenizer(learned, add_special_tokens=False)["input_ids"]  # the tokens generation writes
        prompt = utils.render_prompt_for(spider, ex, cfg, tokenizer)
        assert row["input_ids"][:start] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert prompt.endswith("<|im_start|>assistant\n" + opener) and utils.REASONING_SYSTEM_PROMPT in prompt
        assert extract.final_sql(learned[:-len(end)], True, opener) == ex["query"]  # what the reward reads of it
