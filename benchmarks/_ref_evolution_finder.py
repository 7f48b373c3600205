"""Reference side of bench_search.py: time once-for-all's own `EvolutionFinder` (PyPI `ofa`).

Runs inside the reference's virtual environment (its import name is also `ofa`), set up by
`benchmarks/setup_reference_venv.sh` (+ tqdm, which its search module imports).  Uses the
reference's tutorial setup: the w1.2 supernet, its Note10 latency lookup tables (the YAML of
/work/shared/fixtures/mit-ofa-note10, passed here as JSON), its MLP accuracy predictor
(random weights: the published ones cannot be downloaded here; cost is the same), one latency
constraint.  Prints one JSON object.
"""
import json
import random
import sys
import time

import numpy as np
import torch
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
from ofa.nas.accuracy_predictor import AccuracyPredictor, MobileNetArchEncoder
from ofa.nas.efficiency_predictor import MBv3LatencyTable, Mbv3LatencyModel
from ofa.nas.search_algorithm import EvolutionFinder


class CountingLatencyModel(Mbv3LatencyModel):
    """The reference's LUT latency model, fed local tables, counting its evaluations."""

    def __init__(self, ofa_net, luts):
        self.ofa_net = ofa_net
        self.latency_tables = {}
        for res, lut in luts.items():
            table = MBv3LatencyTable.__new__(MBv3LatencyTable)
            table.lut = lut
            self.latency_tables[int(res)] = table
        self.calls = 0

    def get_efficiency(self, arch_dict):
        self.calls += 1
        return super().get_efficiency(arch_dict)


def main() -> None:
    cfg = json.loads(sys.stdin.read())
    seed = int(cfg["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(int(cfg.get("threads", torch.get_num_threads())))
    resolutions = sorted(int(r) for r in cfg["luts"])
    net = OFAMobileNetV3(n_classes=1000, dropout_rate=0, width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    efficiency = CountingLatencyModel(net, cfg["luts"])
    encoder = MobileNetArchEncoder(image_size_list=resolutions, ks_list=[3, 5, 7], expand_list=[3, 4, 6], depth_list=[2, 3, 4], n_stage=5)
    accuracy = AccuracyPredictor(encoder, device="cpu")
    # budget: the latency quantile asked for, over random subnets
    sample = [efficiency.get_efficiency(encoder.random_sample_arch()) for _ in range(int(cfg.get("n_quantile_samples", 2000)))]
    constraint = float(np.quantile(sample, float(cfg["feasible_fraction"])))
    efficiency.calls = 0
    finder = EvolutionFinder(efficiency, accuracy, population_size=int(cfg["population"]), max_time_budget=int(cfg["generations"]))
    start = time.perf_counter()
    with torch.no_grad():
        _, best = finder.run_evolution_search(constraint, verbose=False)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds,
        "evaluations": efficiency.calls,
        "evaluations_per_s": efficiency.calls / seconds,
        "constraint_ms": constraint,
        "best_latency_ms": float(best[2]),
        "population": int(cfg["population"]),
        "generations": int(cfg["generations"]),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
