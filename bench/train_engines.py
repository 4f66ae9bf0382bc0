"""Median training tokens/s of the hand-written models and the IR executor, from
the log.jsonl files bench/train_engines.sh wrote: over every round's steps, the
first tenth of each run left out as warm-up."""
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
rounds = int(sys.argv[2])
print("| model | run | engine | final params | tokens/s (median) | ratio | final loss |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for arch in ["gpt2", "llama"]:
    for run in ["dense", "ecospac"]:
        base = None
        for engine in ["handwritten", "executor"]:
            speeds = []
            for r in range(1, rounds + 1):
                log = out / f"{arch}-{run}-{engine}-{r}" / "log.jsonl"
                lines = [json.loads(l) for l in log.read_text().splitlines()]
                speeds += [l["tokens_per_s"] for l in lines[max(1, len(lines) // 10):]]
            tps = statistics.median(speeds)
            base = base or tps
            last = lines[-1]
            print(f"| {arch} | {run} | {engine} | {last['params']:,} | {tps:.0f} | {tps / base:.2f} | {last['loss']:.3f} |")
