# The two commands of the README's quick start (demo, test), plus helpers.
# Each target bootstraps what it needs (apt packages, .venv) first.
.PHONY: demo test bootstrap schema man config-example bench fuzz

bootstrap:
	scripts/bootstrap

demo: bootstrap
	.venv/bin/qmpdirty demo

test: bootstrap
	scripts/check

schema: bootstrap
	.venv/bin/python scripts/gen-schema

man: bootstrap
	.venv/bin/python scripts/gen-man

config-example: bootstrap
	.venv/bin/python scripts/gen-config-example

bench: bootstrap
	.venv/bin/python -m bench

fuzz: bootstrap
	.venv/bin/python -m fuzz
