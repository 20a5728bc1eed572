"""Prints the seed guide's "Auth Flow Tester" Python block, byte for byte.

Used by scripts/seed-flow-test.sh to prove that tests/seed/test_auth_flow.py is the guide's
script unmodified (when the guide is available beside the checkout).
"""
import sys

text = open(sys.argv[1], encoding="utf-8").read()
start = text.index("```python\n", text.index("### Auth Flow Tester")) + len("```python\n")
sys.stdout.write(text[start:text.index("```", start)])
