# Shorthands for ./dev.sh (README's two commands; a fresh Debian 12 has no make):
#   make build   = ./dev.sh build   set up .venv, install kvmnet, build the default profile into output/
#   make test    = ./dev.sh test    install what the tests need (apt, then pip), run every tier
.PHONY: build test bench clean

build:
	./dev.sh build

test:
	./dev.sh test

bench: build
	.venv/bin/python -m bench.render_vs_netplan
	.venv/bin/python -m bench.fleet_scaling
	.venv/bin/python -m bench.lab_scale

clean:
	rm -rf output .cache .pytest_cache .mypy_cache .ruff_cache
