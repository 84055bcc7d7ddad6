# skinscreen — `make run` starts the service, `make test` runs every check.
.PHONY: run test lint typecheck pytest contracts bench setup-serve setup-test

run: setup-serve
	.venv/bin/skinscreen serve

test: setup-test lint typecheck pytest

setup-serve:
	bash scripts/setup.sh serve

setup-test:
	bash scripts/setup.sh test

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

pytest:
	.venv/bin/pytest -q

contracts: setup-test
	SKINSCREEN_UPDATE_CONTRACTS=1 .venv/bin/pytest -q tests/contract

bench: setup-test
	.venv/bin/python benchmarks/bench_classify.py
	.venv/bin/python benchmarks/bench_pdf.py
	.venv/bin/python benchmarks/bench_pipeline.py
	.venv/bin/python benchmarks/bench_gate_heatmap.py
	.venv/bin/python benchmarks/bench_scale_out.py
	.venv/bin/python benchmarks/bench_bombs.py
