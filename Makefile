# Thin targets: each is one line; the work lives in scripts/ and the `platform` CLI.
.PHONY: setup quickstart test test-fast bench lint stop
setup:      ; bash scripts/setup.sh
quickstart: setup ; .venv/bin/platform quickstart
test:       setup ; .venv/bin/python -m pytest
test-fast:  setup ; .venv/bin/python -m pytest -m unit
bench:      setup ; for f in benchmarks/*_bench.py; do .venv/bin/python $$f || exit 1; done
lint:       setup ; .venv/bin/python -m ruff check --select E9,F lorafleet tests benchmarks
stop:       ; .venv/bin/platform stop
