# Two set-up commands: `make demo` and `make test`. Both install into .venv only when needed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= demo-out

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/latentfield audit demo:memorize --out $(OUT)/memorize
	$(VENV)/bin/latentfield audit demo:generalize --out $(OUT)/generalize
	@echo "reports: $(OUT)/memorize/report.html  $(OUT)/generalize/report.html"

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(OUT) .pytest_cache
