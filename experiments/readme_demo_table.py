"""Write the table ``medssl demo`` printed into README.md, between the demo-table markers.

    medssl demo && python experiments/readme_demo_table.py            # reads runs/demo/comparison.md
    python experiments/readme_demo_table.py --demo OTHER/demo --readme README.md

The block is the demo's ``comparison.md`` verbatim; ``tests/pipelines/test_demo.py`` runs the demo and
checks the README against what it prints (tolerances in that test).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- demo-table:start (python experiments/readme_demo_table.py) -->", "<!-- demo-table:end -->"
BLOCK = re.compile(re.escape(START) + r"\n(.*?)" + re.escape(END), re.S)


def readme_table(readme: str) -> str:
    """The table between the markers of ``readme`` (text)."""
    found = BLOCK.search(readme)
    if found is None:
        raise SystemExit(f"README has no block between {START!r} and {END!r}")
    return found.group(1).strip()


def with_table(readme: str, table: str) -> str:
    """``readme`` with the block between the markers replaced by ``table``."""
    readme_table(readme)  # the markers must be there
    return BLOCK.sub(lambda _: f"{START}\n{table.strip()}\n{END}", readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="runs/demo", help="demo folder holding comparison.md")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args()
    table = (Path(args.demo) / "comparison.md").read_text()
    readme = Path(args.readme)
    readme.write_text(with_table(readme.read_text(), table))
    print(f"{readme}: demo table replaced by {Path(args.demo) / 'comparison.md'}")


if __name__ == "__main__":
    main()
