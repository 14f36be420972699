.PHONY: install test test-all lint format quickstart bench

install:
	python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e '.[dev]'

test:
	python -m pytest -q

test-all:
	python -m pytest -q -m "slow or not slow"

lint:
	ruff check lora_adapt tests benchmarks
	mypy lora_adapt

format:
	ruff format lora_adapt tests benchmarks

quickstart:
	lora-adapt run recipes/quickstart.yaml --overwrite
