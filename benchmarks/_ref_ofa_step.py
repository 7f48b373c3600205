"""Timing worker for the reference once-for-all package, run by bench_supernet.py in the reference venv.

The reference's import name is also `ofa`, so this runs in its own process with the reference venv's
python in isolated mode (`python -I`: neither our repo nor PYTHONPATH is on sys.path).  It speaks a
line protocol on stdin/stdout so the parent can interleave its rounds with ours:

    parent -> "run N"        worker -> {"times_ms": [...], "cpu_ms": [...]}   (N timed training steps)
    parent -> "quit"         worker exits

Before the first command it prints one JSON line describing the model (or {"error": ...}).
The batch (x, y) comes from a tensor file written by the parent, so both sides train on the same data.
Only the standard library, torch and the reference package are imported here.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-file", required=True, help="torch.save'd {'x': float [B,3,r,r], 'y': long [B]}")
    parser.add_argument("--n-classes", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--forbid-path", default="", help="fail if the imported `ofa` lives under this path (our repo)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    try:
        import ofa
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    except ImportError as exc:
        _reply({"error": f"cannot import the reference once-for-all package ({exc}); run benchmarks/setup_reference_venv.sh"})
        return 1
    if args.forbid_path and ofa.__file__.startswith(args.forbid_path):
        _reply({"error": f"imported our own ofa ({ofa.__file__}) instead of the reference package"})
        return 1

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    batch = torch.load(args.batch_file, weights_only=True)
    x, y = batch["x"], batch["y"]
    net = OFAMobileNetV3(
        n_classes=args.n_classes,
        dropout_rate=0.0,
        width_mult=1.0,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    net.set_max_net()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=3e-5)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    _reply(
        {
            "ready": True,
            "ofa_file": ofa.__file__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "params": sum(p.numel() for p in net.parameters()),
        }
    )
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] != "run":
            _reply({"error": f"unknown command {line.strip()!r}"})
            continue
        times, cpu = [], []
        for _ in range(int(cmd[1])):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        _reply({"times_ms": times, "cpu_ms": cpu})
    return 0


if __name__ == "__main__":
    sys.exit(main())
