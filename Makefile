# Fine-Tune Studio. `make studio` and `make test` are all a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: install studio demo test test-all quality bench soak clean

# Recipes are silent (@): `make demo` must leave nothing but its JSON summary on stdout.
$(STAMP): requirements.txt
	@echo "installing into $(VENV) (pinned requirements.txt, a few minutes the first time)" >&2
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip >&2
	@$(BIN)/pip install -q -r requirements.txt >&2
	@touch $(STAMP)

install: $(STAMP)

studio: $(STAMP)  ## install, build the tiny model, start the UI on 127.0.0.1:8501
	$(BIN)/python -m studio tiny
	$(BIN)/python -m studio ui --host $(HOST) --port $(PORT)

demo: $(STAMP)  ## the whole pipeline headless on the tiny model; JSON summary on stdout
	@$(BIN)/python -m studio demo

test: $(STAMP)  ## unit + e2e on CPU; GPU tests skip
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not soak"

quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)  ## GPU figures against a naive transformers+peft baseline
	$(BIN)/python -m studio bench

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak

clean:
	rm -rf workspace .pytest_cache .ruff_cache
