#!/usr/bin/env bash
# Install detectron2 0.6 (Python-only) into $PYTHON (default: the repo's .venv).
#
# Why a script and not a pip requirement: detectron2 is not on PyPI. Its upstream 0.6
# source is, as the sdist `pb1-detectron2==0.6`, but that sdist cannot be installed as is:
#   * `pip download/install` refuse it while preparing metadata: its `all` extra has a
#     direct-URL dependency (panopticapi), which pip rejects for index distributions.
#     So the sdist is fetched by name with pip's own finder and session (pip's index,
#     proxy and certificate settings apply), and checked against a pinned sha256.
#   * it ships no C++ sources, yet setup.py builds the `detectron2._C` extension: the
#     build is made Python-only. NMS and ROIAlign already come from torchvision
#     (detectron2/layers/nms.py, roi_align.py); the modules that import `_C` at import
#     time (rotated boxes, ROIAlignRotated, deformable conv, the fast COCO evaluator)
#     get a stub that raises only when one of those ops is called.
#   * the model-zoo configs sit in detectron2/model_zoo/configs but setup.py globs a
#     top-level configs/ that the sdist lacks, so none were installed:
#     package_data now lists them, so model_zoo.get_config_file(...) works.
#   * Pillow 10 removed Image.LINEAR (used as a default argument, so importing
#     detectron2.data failed): Image.BILINEAR, the same filter.
#   * numpy 1.24 removed np.bool/np.int/np.float/np.str/np.object: the builtins.
#   * model_zoo uses pkg_resources, which setuptools>=81 no longer ships: setuptools<81
#     is installed, and model_zoo falls back to importlib.resources anyway.
#
# Idempotent: exits after a few seconds when an importable detectron2 already passes
# the checks below. Offline: D2_SDIST=/path/to/pb1-detectron2-0.6.tar.gz skips the fetch.
set -euo pipefail

SECONDS=0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
SDIST_NAME="pb1-detectron2"
SDIST_VERSION="0.6"
SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

if ! "$PYTHON" -c 'import sys' 2>/dev/null; then
    echo "install_detectron2.sh: PYTHON=$PYTHON is not a working Python interpreter" >&2
    exit 2
fi

# Functional check of every fix: passes for any detectron2 that will work for vcmbench.
check_detectron2() {
    "$PYTHON" -W ignore - <<'EOF'
import os
import numpy as np
import detectron2
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model  # imports layers (rotated/deform modules) and heads
from detectron2.data import transforms  # Image.LINEAR was a default argument here
from detectron2.structures.masks import polygons_to_bitmask  # np.bool

for name in ("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
             "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml",
             "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"):
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(name))
mask = polygons_to_bitmask([np.array([0.0, 0.0, 4.0, 0.0, 4.0, 4.0])], 8, 8)
assert mask.dtype == bool, mask.dtype
print(f"detectron2 {detectron2.__version__} at {os.path.dirname(detectron2.__file__)}")
EOF
}

if check_detectron2 2>/dev/null; then
    echo "detectron2 already installed with the fixes; nothing to do (${SECONDS}s)"
    exit 0
fi

echo "== build tools and runtime dependencies"
# setuptools<81 still ships pkg_resources; both are needed before the --no-build-isolation builds.
"$PYTHON" -m pip install --quiet "setuptools>=68,<81" wheel
# detectron2's install_requires minus what inference does not import (tensorboard, black,
# pydot, future); fvcore/iopath pinned to the range detectron2 0.6 was released against.
"$PYTHON" -m pip install --quiet --no-build-isolation \
    "fvcore==0.1.5.post20221221" "iopath>=0.1.7,<0.1.10" "yacs>=0.1.8" "termcolor>=1.1" \
    tabulate cloudpickle portalocker "pycocotools>=2.0.2" "omegaconf>=2.1" "hydra-core>=1.1" \
    matplotlib "tqdm>4.29.0" "Pillow>=7.1" pyyaml

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ -n "${D2_SDIST:-}" ]]; then
    echo "== using $D2_SDIST"
    cp "$D2_SDIST" "$WORK/"
else
    echo "== fetching $SDIST_NAME==$SDIST_VERSION (sdist) with pip's finder"
    "$PYTHON" - "$SDIST_NAME" "$SDIST_VERSION" "$WORK" <<'EOF'
# `pip download` would prepare the sdist's metadata and reject it (direct-URL extra), so
# only pip's finder and HTTP session are used: same index, proxy and cert settings as pip.
import sys
from pathlib import Path

from pip._internal.commands import create_command
from pip._vendor.packaging.specifiers import SpecifierSet

name, version, dest = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cmd = create_command("download")
options, _ = cmd.parse_args(["--no-deps", "--no-binary", ":all:", "-d", str(dest), f"{name}=={version}"])
session = cmd._build_session(options)
finder = cmd._build_package_finder(options=options, session=session)
best = finder.find_best_candidate(name, SpecifierSet(f"=={version}")).best_candidate
if best is None:
    sys.exit(f"pip's index has no sdist of {name}=={version}; download it elsewhere and pass D2_SDIST=/path/to/it")
resp = session.get(best.link.url_without_fragment, stream=True)
resp.raise_for_status()
with open(dest / best.link.filename, "wb") as f:
    for chunk in resp.iter_content(1 << 16):
        f.write(chunk)
print(f"   {best.link.filename}")
EOF
fi

SDIST="$(ls "$WORK"/*.tar.gz)"
GOT="$("$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$SDIST")"
if [[ "$GOT" != "$SDIST_SHA256" ]]; then
    echo "install_detectron2.sh: $SDIST has sha256 $GOT, expected $SDIST_SHA256" >&2
    exit 1
fi
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/$SDIST_NAME-$SDIST_VERSION"

echo "== patching the source"
"$PYTHON" - "$SRC" <<'EOF'
import re
import sys
from pathlib import Path

src = Path(sys.argv[1])


def edit(rel: str, old: str, new: str, count: int = 1) -> None:
    """Exact replacement that fails loudly, so a different sdist cannot slip through half-patched."""
    path = src / rel
    text = path.read_text()
    n = text.count(old)
    if n != count:
        sys.exit(f"patch failed: {rel}: expected {count} occurrence(s) of {old!r}, found {n}")
    path.write_text(text.replace(old, new))


# 1. setup.py: no C++ extension (the sdist has no csrc/), configs from the package folder,
#    the dist named detectron2, and only the requirements inference needs.
edit("setup.py", "import torch\nfrom torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension\n", "")
edit("setup.py", 'torch_ver = [int(x) for x in torch.__version__.split(".")[:2]]\nassert torch_ver >= [1, 8], "Requires PyTorch >= 1.8"\n', "")
edit("setup.py", "    ext_modules=get_extensions(),\n", "")
edit("setup.py", '    cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},\n', "")
edit("setup.py", 'name="pb1-detectron2"', 'name="detectron2"')
edit("setup.py", 'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
     'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},')
setup = (src / "setup.py").read_text()
start = setup.index("    install_requires=[")
end = setup.index("\n)\n", start)
setup = setup[:start] + """    install_requires=[
        "Pillow>=7.1", "matplotlib", "pycocotools>=2.0.2", "termcolor>=1.1", "yacs>=0.1.8",
        "tabulate", "cloudpickle", "tqdm>4.29.0", "fvcore>=0.1.5,<0.1.6", "iopath>=0.1.7,<0.1.10",
        "omegaconf>=2.1", "hydra-core>=1.1",
    ],""" + setup[end:]
(src / "setup.py").write_text(setup)

# 2. The C++ extension's users: import a stub that raises when an op is called.
(src / "detectron2/_C_missing.py").write_text('''"""Stand-in for detectron2._C, the C++ extension this Python-only install does not build.

NMS and ROIAlign come from torchvision and need nothing here. Rotated boxes, ROIAlignRotated,
deformable convolution and the fast COCO evaluator exist only in the extension.
"""


def __getattr__(name: str):
    raise RuntimeError(
        f"detectron2._C.{name} is not available: detectron2 was installed Python-only by "
        "scripts/install_detectron2.sh (no C++ extension). Rotated boxes, deformable conv and "
        "COCOEvaluator(use_fast_impl=True) need detectron2 built from source with a compiler."
    )
''')
guarded = (
    "try:\n"
    "    from detectron2 import _C\n"
    "except ImportError:  # Python-only install (scripts/install_detectron2.sh)\n"
    "    from detectron2 import _C_missing as _C\n"
)
for rel in ("detectron2/layers/deform_conv.py", "detectron2/layers/rotated_boxes.py",
            "detectron2/layers/roi_align_rotated.py", "detectron2/evaluation/fast_eval_api.py"):
    edit(rel, "from detectron2 import _C\n", guarded)

# 3. Check that the layers the R-CNN models use are torchvision's ops, not the extension.
nms = (src / "detectron2/layers/nms.py").read_text()
roi = (src / "detectron2/layers/roi_align.py").read_text()
if "from torchvision.ops import boxes as box_ops" not in nms or "from torchvision.ops import roi_align" not in roi:
    sys.exit("patch failed: detectron2/layers nms.py/roi_align.py no longer use torchvision ops")

# 4. Pillow >= 10: Image.LINEAR is gone; BILINEAR is the same filter.
edit("detectron2/data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR")

# 5. numpy >= 1.24: the aliases of builtins are gone.
alias = re.compile(r"\bnp\.(bool|int|float|str|object)\b(?!_)")
changed = 0
for path in sorted(src.rglob("*.py")):
    text = path.read_text()
    new, n = alias.subn(r"\1", text)
    if n:
        path.write_text(new)
        changed += n
if changed == 0:
    sys.exit("patch failed: no numpy aliases found; is this the detectron2 0.6 sdist?")

# 6. setuptools >= 81 has no pkg_resources: find the configs with importlib.resources.
edit("detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", "from importlib import resources\n")
edit("detectron2/model_zoo/model_zoo.py",
     'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
     'cfg_file = str(resources.files("detectron2.model_zoo").joinpath("configs", config_path))')

# Marker: which patch set this install carries (read by nothing critical; for bug reports).
edit("detectron2/__init__.py", '__version__ = "0.6"\n',
     '__version__ = "0.6"\n__vcmbench_python_only__ = True  # installed by scripts/install_detectron2.sh\n')
print(f"   setup.py Python-only, _C stub, Image.LINEAR, {changed} numpy aliases, model_zoo resources")
EOF

echo "== installing"
"$PYTHON" -m pip uninstall --quiet --yes pb1-detectron2 detectron2 >/dev/null 2>&1 || true
"$PYTHON" -m pip install --quiet --no-build-isolation --no-deps "$SRC"

# Leave the source tree before the check, so `import detectron2` finds the installed copy.
cd "$ROOT"
check_detectron2
echo "detectron2 installed in ${SECONDS}s"
