# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/warrantyd demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# Reading quality first (fast), then speed (each starts its own servers; minutes each).
BENCH_SCRIPTS := measure_trimming eval_staff_replies eval_vendor_replies eval_drafter \
                 bench_llm_cost bench_latency bench_intake bench_queries bench_scaleout

bench: $(STAMP)
	@for script in $(BENCH_SCRIPTS); do echo "== bench/$$script.py"; \
	    $(BIN)/python bench/$$script.py || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
