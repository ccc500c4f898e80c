#!/usr/bin/env python3
"""Fails when any crate in weft's dependency tree is not under an allowed licence.

An equivalent of `cargo deny check licenses` that needs nothing but cargo and python3: it keeps
GPL/AGPL/LGPL and unknown licences out of the tree (issue: keep copyleft out of weft)."""
import json
import re
import subprocess
import sys

ALLOWED = {
    "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "MIT", "MIT-0", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "MPL-2.0", "Unicode-3.0", "Unicode-DFS-2016", "Zlib", "CC0-1.0",
    "0BSD", "CDLA-Permissive-2.0", "BSL-1.0", "OpenSSL",
}


def acceptable(expr: str) -> bool:
    """An SPDX expression is acceptable when, reading OR as a choice and AND as all-of,
    an allowed combination exists."""
    expr = expr.replace("/", " OR ").replace("(", " ").replace(")", " ")
    for alternative in re.split(r"\s+OR\s+", expr):
        parts = [p.strip() for p in re.split(r"\s+AND\s+", alternative) if p.strip()]
        if parts and all(p in ALLOWED for p in parts):
            return True
    return False


meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
resolved = {n["id"] for n in meta["resolve"]["nodes"]}
bad = []
for pkg in meta["packages"]:
    if pkg["id"] not in resolved or pkg["source"] is None:
        continue
    lic = pkg.get("license") or ""
    if not lic or not acceptable(lic):
        bad.append(f'{pkg["name"]} {pkg["version"]}: {lic or "no licence field"}')
if bad:
    print("licence check failed:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"licence check: {len(resolved)} crates, all under allowed licences")
