#!/usr/bin/env bash
# Create the virtual environment holding the reference once-for-all package (`ofa` on PyPI, by
# MIT HAN Lab) that benchmarks/bench_supernet.py times against.  Its import name is also `ofa`,
# so it lives in its own venv and the benchmark runs it in a separate process.
#
#   bash benchmarks/setup_reference_venv.sh          # -> ${OFA_REF_VENV:-$HOME/.cache/ofa-ref-venv}
#
# The reference declares only `torch` as a dependency; we pin the same torch/torchvision as the
# project (so both sides run the same kernels) and install the reference with --no-deps so nothing
# can pull another torch.  numpy is the only other module its model code imports at load time.
set -euo pipefail

VENV="${OFA_REF_VENV:-$HOME/.cache/ofa-ref-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
REF_VERSION="0.1.0.post202307202001"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" numpy
"$VENV/bin/python" -m pip install -q --no-deps "ofa==$REF_VERSION"
# smoke test: the reference supernet class must import and build
(cd / && "$VENV/bin/python" -c "
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
OFAMobileNetV3(n_classes=10, width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
import ofa, torch; print('reference ofa', '$REF_VERSION', 'at', ofa.__file__, 'torch', torch.__version__)
")
echo "reference venv ready: $VENV  (export OFA_REF_VENV=$VENV if you chose another path)"
