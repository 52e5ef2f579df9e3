#!/usr/bin/env python3
"""
Run the corruption corpus (tests/corruption.py) on the bundled samples and
print what the tool answers for each damaged dump:

    python3 scripts/corruption_corpus.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import corruption  # noqa: E402

if __name__ == "__main__":
    sys.exit(corruption.main())
