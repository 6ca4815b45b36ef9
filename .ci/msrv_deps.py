"""Checks that every normal (non-dev) dependency, with all features on,
declares a rust-version no newer than the crate's own, so the MSRV in
Cargo.toml holds for users. The crate's own code is held to it by clippy's
incompatible_msrv lint, which reads the same field."""
import json
import subprocess
import sys

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--all-features"]))
packages = {p["id"]: p for p in meta["packages"]}
root = meta["resolve"]["root"]
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}


def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


ours = packages[root]["rust_version"]
seen, stack, too_new = set(), [root], []
while stack:
    node = nodes[stack.pop()]
    for dep in node["deps"]:
        kinds = {k["kind"] for k in dep["dep_kinds"]}
        if node["id"] == root and kinds <= {"dev"}:
            continue
        if dep["pkg"] in seen:
            continue
        seen.add(dep["pkg"])
        stack.append(dep["pkg"])
        rv = packages[dep["pkg"]].get("rust_version")
        if rv and version(rv) > version(ours):
            too_new.append(f'{packages[dep["pkg"]]["name"]} {packages[dep["pkg"]]["version"]} needs {rv}')

print(f"rust-version = {ours}; {len(seen)} normal dependencies checked")
if too_new:
    print("dependencies newer than the declared MSRV:\n  " + "\n  ".join(sorted(too_new)))
    sys.exit(1)
