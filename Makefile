# Thin wrapper over scripts/ (the README's commands).
.PHONY: setup build test demo bench
setup: ; bash scripts/setup.sh
build: ; bash scripts/build.sh
test: ; bash scripts/test.sh
demo: ; bash scripts/demo.sh
bench: build
	for b in build/bench/*_bench; do $$b; done
