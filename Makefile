# Two commands do the whole set-up on a fresh machine with Python 3.11:
#   make demo   -> .venv + vcmbench, then `vcmbench run` (the offline default sweep)
#   make test   -> .venv + vcmbench[dev] + detectron2 (Python-only), then the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test e2e install detectron2 bench ci-reference golden clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

$(VENV)/.detectron2: scripts/install_detectron2.sh | $(VENV)/.installed
	PYTHON=$(BIN)/python bash scripts/install_detectron2.sh
	touch $@

detectron2: $(VENV)/.detectron2

demo: install
	$(BIN)/vcmbench run

# The suite runs on TEST_WORKERS processes (pytest-xdist); ruff first, so a lint error fails fast.
# loadfile: a test file's tests run on one worker, in order, so a module fixture (the default run, the
# video run) is made once, not once per worker; files go out in collection order, the longest first
# (tests/conftest.py LONGEST_FIRST), not xdist's default of the most tests first.
# `make test` is the quick suite; `make e2e` the end-to-end runs marked slow (the default run, the
# video default, the reduced Mask R-CNN run, the wheel, SLURM). CI (.ci/run) runs both.
TEST_WORKERS ?= 2
test: install detectron2
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	bash scripts/lint_docker.sh
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

e2e: install detectron2
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m slow

# The CI regression references (anchors/README.md): the default run (20 scenes, what CI runs)
# and the same codecs over 50 scenes (benchmarks/default_scenes.py: how far the BD-rates move).
# the reduced segmentation run (tests/vision/test_ci_maskrcnn.py: MASK_RUN)
MASK_CI_RUN := model=ci_maskrcnn dataset.max_images=4 'codec=[raw,anchor_vvc,learned_interleaved]' complexity=false
# the reduced task runs of ci_semseg and ci_keypoints (tests/vision/test_ci_task_runs.py: TASK_RUN)
TASK_CI_RUN := dataset.max_images=4 'codec=[raw,anchor_vvc,pack_tile]' complexity=false timing.items=0
# the reduced run of the offline CI JDE (tests/vision/test_ci_jde_run.py: JDE_RUN): the first 3 frames of each sequence
JDE_CI_RUN := model=ci_jde dataset=synthetic_video dataset.max_frames=3 'codec=[raw,anchor_vvc,pack_tile]' complexity=false timing.items=0
ci-reference: install
	rm -rf results/ci-reference results/ci-reference-50 results/ci-reference-video results/ci-reference-maskrcnn \
		results/ci-reference-semseg results/ci-reference-keypoints results/ci-reference-jde
	$(BIN)/vcmbench run sweep.progress=false report=false hydra.run.dir=results/ci-reference
	cp results/ci-reference/points.csv anchors/ci/points.csv
	$(BIN)/vcmbench run sweep.progress=false report=false dataset=synthetic_video hydra.run.dir=results/ci-reference-video
	cp results/ci-reference-video/classes.csv anchors/ci/video-classes.csv
	cp results/ci-reference-video/points.csv anchors/ci/video-points.csv
	$(BIN)/vcmbench run sweep.progress=false report=false $(MASK_CI_RUN) hydra.run.dir=results/ci-reference-maskrcnn
	cp results/ci-reference-maskrcnn/points.csv anchors/ci/maskrcnn-points.csv
	$(BIN)/vcmbench run sweep.progress=false report=false model=ci_semseg $(TASK_CI_RUN) hydra.run.dir=results/ci-reference-semseg
	cp results/ci-reference-semseg/points.csv anchors/ci/semseg-points.csv
	$(BIN)/vcmbench run sweep.progress=false report=false model=ci_keypoints $(TASK_CI_RUN) hydra.run.dir=results/ci-reference-keypoints
	cp results/ci-reference-keypoints/points.csv anchors/ci/keypoints-points.csv
	$(BIN)/vcmbench run sweep.progress=false report=false $(JDE_CI_RUN) hydra.run.dir=results/ci-reference-jde
	cp results/ci-reference-jde/points.csv anchors/ci/jde-points.csv
	cp results/ci-reference-jde/classes.csv anchors/ci/jde-classes.csv
	$(BIN)/vcmbench run sweep.progress=false report=false dataset.count=50 hydra.run.dir=results/ci-reference-50
	cp results/ci-reference-50/points.csv anchors/ci/points-50.csv

# The exact mode's golden digests (tests/expected/golden.json): a deliberate act after a change meant to
# move the numbers, never part of the suite (docs/manual.md: Reproducibility).
golden: install
	$(BIN)/vcmbench golden --write tests/expected/golden.json

bench: install
	$(BIN)/python benchmarks/pipeline_overhead.py

clean:
	rm -rf $(VENV) results/*/ .pytest_cache
