# changeflow — the two commands a new user needs are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: demo dev test lint tools build clean

## demo: install what is missing, build, and run one sample change end to end
demo: tools build
	./target/debug/changeflow demo

## dev: run the embedded stack (Temporal, simulators, worker) until Ctrl-C
dev: tools build
	./target/debug/changeflow dev

## test: install what is missing, build, and run every test against real components
## (set CHANGEFLOW_TEST_POSTGRES_URL=postgres://... to run the PostgreSQL suites as well)
test: tools
	@if [ -z "$$CHANGEFLOW_TEST_POSTGRES_URL" ]; then \
	  echo "note: CHANGEFLOW_TEST_POSTGRES_URL is not set: skipping the PostgreSQL audit-store suite (SQLite runs)"; \
	fi
	$(CARGO) test --workspace --all-targets --no-fail-fast

## lint: formatting and clippy, as CI runs them
lint: tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## tools: protoc and the pinned Python tools under .tools/ (idempotent)
tools:
	@./tools/ensure.sh

build: tools
	$(CARGO) build --bin changeflow

clean:
	rm -rf .changeflow target
