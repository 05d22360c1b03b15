"""Your own data (--benchmark folder) on real Spider dev laid out as a --data_dir folder: what checking every
gold query costs when a stage reads a split, and that the prompts equal --benchmark spider's.

What it measures
    * a temporary folder holding Spider's dev.json (as train.json and dev.json) and a link per dev
      database (<db_id>/<db_id>.sqlite), read by `benchmarks.Folder` (every gold query run once, in the
      sandbox) and by `benchmarks.Spider` (no gold query run): seconds, records kept;
    * the schema text of every database and the prompt schema of every dev question (with
      --value_hints, default 3) from the folder, with and without Spider's tables.json beside it,
      against `benchmarks.Spider`'s: how many are byte for byte equal (without tables.json, only the
      databases that declare their own keys can be).

How to run (from the repository root)
    python bench/folder_data.py                          # Spider at ../shared/spider
    python bench/folder_data.py --spider_dir PATH [--value_hints 3]

Prints a SKIP line when Spider's dev files are absent, else a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import SHARED_DIR, machine_line, skip, table  # the shared opening: the repository on sys.path


def folder_view(spider_dir: Path, root: Path, with_tables: bool) -> None:
    """Spider's dev split as a --data_dir folder: its questions as train.json and dev.json, a link per database."""
    root.mkdir()
    dev = json.loads((spider_dir / "dev.json").read_text())
    for name in ("train.json", "dev.json"):
        (root / name).write_text(json.dumps(dev))
    for db_id in sorted({ex["db_id"] for ex in dev}):
        (root / db_id).mkdir()
        os.symlink((spider_dir / "database" / db_id / f"{db_id}.sqlite").resolve(), root / db_id / f"{db_id}.sqlite")
    if with_tables:
        os.symlink((spider_dir / "tables.json").resolve(), root / "tables.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider_dir", default=str(SHARED_DIR / "spider"), help="Spider release folder")
    parser.add_argument("--value_hints", type=int, default=3, help="value hints in the compared prompt schemas")
    args = parser.parse_args()
    spider_dir = Path(args.spider_dir).expanduser()
    if not (spider_dir / "dev.json").exists() or not (spider_dir / "database").is_dir():
        return skip("folder_data", f"no Spider dev.json and database/ in {spider_dir}")

    from sql_rlvr import benchmarks

    start = time.perf_counter()
    spider = benchmarks.Spider.open(spider_dir)
    dev = spider.examples("dev")
    spider_seconds = time.perf_counter() - start
    rows = [["Spider reader (no gold query run)", len(dev), len(dev), f"{spider_seconds:.2f}", "-", "-"]]
    with tempfile.TemporaryDirectory() as tmp:
        for with_tables in (False, True):
            root = Path(tmp) / f"folder_{with_tables}"
            folder_view(spider_dir, root, with_tables)
            start = time.perf_counter()
            folder = benchmarks.Folder.open(root)
            kept = folder.examples("dev")
            seconds = time.perf_counter() - start
            schemas = sum(folder.schema(db) == spider.schema(db) for db in folder.databases)
            prompts = sum(folder.example_schema(ex, 0, args.value_hints) == spider.example_schema(ex, 0, args.value_hints)
                          for ex in dev)
            rows.append([f"Folder reader, {'with' if with_tables else 'without'} tables.json", len(dev), len(kept),
                         f"{seconds:.2f}", f"{schemas}/{len(folder.databases)}", f"{prompts}/{len(dev)}"])
    print(table(["reader of Spider dev", "records", "kept", "seconds", "schemas equal to Spider's",
                 f"prompt schemas equal (--value_hints {args.value_hints})"], rows))
    print(f"\n{machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
