# The two commands of the README's quick start, plus the benchmarks.
# Each target bootstraps what it needs (apt packages, .venv) first.
.PHONY: demo test bench bootstrap schema

bootstrap:
	scripts/bootstrap

demo: bootstrap
	.venv/bin/qmpdirty demo

test: bootstrap
	scripts/check

bench: bootstrap
	.venv/bin/python -m bench

schema: bootstrap
	.venv/bin/python scripts/gen-schema
