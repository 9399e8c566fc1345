# Thin targets: each is one line; the work lives in scripts/ and the `platform` CLI.
.PHONY: setup quickstart test test-fast bench lint stop loadtest reliability audit docs image
IMAGE ?= $(shell .venv/bin/python -c 'from lorafleet.platform.topology import IMAGE; print(IMAGE)')
setup:      ; bash scripts/setup.sh
quickstart: setup ; env -u PYTHONDONTWRITEBYTECODE .venv/bin/platform quickstart   # its processes write their bytecode
test:       setup ; bash scripts/bytecode.sh && .venv/bin/python scripts/audit.py && .venv/bin/python -m pytest   # audit reports, never fails
test-fast:  setup ; bash scripts/bytecode.sh && .venv/bin/python -m pytest -m unit
bench:      setup ; for f in benchmarks/*_bench.py; do .venv/bin/python $$f || exit 1; done
lint:       setup ; .venv/bin/python -m ruff check --select E9,F lorafleet tests benchmarks loadtests scripts
loadtest:   setup ; .venv/bin/python loadtests/run.py $(ARGS)
reliability: setup ; .venv/bin/python benchmarks/reliability.py $(ARGS)
audit:      setup ; .venv/bin/python scripts/audit.py
stop:       ; .venv/bin/platform stop
docs:       setup ; NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict -d site
image:      ; podman build -f deploy/Containerfile -t $(IMAGE) .
