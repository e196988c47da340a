"""How long one short command takes from the shell: ``slimface verify A B``, start to exit.

Usage: ``python benchmarks/start_time.py [A B] [--model M] [--runs N] [--json OUT]``
(the command is ``slimface verify A B --model M --face central``)

Two ways to start, run alternately ``--runs`` times each in fresh processes, same cache:

* ``twin``: the model's ONNX Runtime twin was recorded by an earlier run
  (:mod:`slimface.runtime.ort_twin`), so the command never imports PyTorch;
* ``model``: the record is deleted before each run, so the command loads the PyTorch model,
  finds the cached ONNX export, checks it against PyTorch and times both, as every start
  did before twins were recorded (it writes the record again at the end, a few
  milliseconds).

Both print the same verdict and similarity (checked). Without A and B it takes the first two
images of one LFW person who is in no pair. Prints a table, and JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def default_pair() -> tuple[Path, Path]:
    """Two images of one LFW person who is in no view-1 or view-2 pair."""
    from slimface.data.lfw import VIEW1_FILES, VIEW2_FILE, lfw_people_not_in_pairs
    from slimface.data.roots import find_data_root

    root = find_data_root()
    if root is None:
        sys.exit("start_time.py: ../shared/data not found; pass two images")
    lfw = root / "lfw"
    people = lfw_people_not_in_pairs([lfw / f for f in (VIEW2_FILE, *VIEW1_FILES)])
    pair = next((images[:2] for images in people.values() if len(images) >= 2), None)
    if pair is None:
        sys.exit("start_time.py: no LFW person outside the pairs has two images")
    return pair[0], pair[1]


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"start_time.py: {' '.join(args)} failed:\n{done.stderr}")
    return seconds, done.stdout.split("(")[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--model", default="slimface-mobile")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    if len(opts.images) not in (0, 2):
        parser.error("give two images, or none for an LFW default")
    a, b = opts.images or default_pair()

    from slimface.runtime.ort_twin import record_path, model_spec
    from slimface.runtime.timing import cpu_info

    env = dict(os.environ)
    cli = [str(Path(sys.executable).with_name("slimface")), "verify", str(a), str(b),
           "--model", opts.model, "--face", "central"]
    record = record_path(model_spec(opts.model))
    run_once(cli, env)  # exports and records when the cache has neither yet
    if not record.is_file():
        sys.exit(f"start_time.py: {opts.model} runs in PyTorch here (no ONNX Runtime twin "
                 "recorded): nothing to compare")
    times: dict[str, list[float]] = {"twin": [], "model": []}
    verdicts = set()
    for _ in range(opts.runs):
        for way in times:
            if way == "model":
                record.unlink(missing_ok=True)
            seconds, verdict = run_once(cli, env)
            times[way].append(seconds)
            verdicts.add(verdict)
    if len(verdicts) != 1:
        sys.exit(f"start_time.py: the two ways disagree: {sorted(verdicts)}")
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {"command": " ".join(cli[1:]), "model": opts.model, "runs": opts.runs,
              "median_s": median, "times_s": times, "speedup": median["model"] / median["twin"],
              "verdict": verdicts.pop(), "cpu": cpu_info()}
    print(f"{'start':<8}{'median s':>10}   ({opts.runs} runs each, alternating)")
    for way in times:
        print(f"{way:<8}{median[way]:>10.3f}")
    print(f"twin start {result['speedup']:.2f}x faster; {result['verdict']}")
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
