"""Writes the README's claims tables from the published runs under results/ (each table lists the
experiments named in its start marker; every experiment with a CLAIM must be in one).

    python scripts/claims_table.py           # rewrite the table in README.md
    python scripts/claims_table.py --check   # exit 1 when README.md and results/ disagree
"""

import argparse
import sys
from pathlib import Path

from jaxlab import claims

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    readme = (REPO / "README.md").read_text()
    new = claims.readme_with_tables(readme, REPO)
    if args.check:
        if new != readme:
            print("README.md's claims tables differ from results/: run python scripts/claims_table.py",
                  file=sys.stderr)
            return 1
        return 0
    (REPO / "README.md").write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
