# changeflow — the two commands a new user needs are `make demo` and `make test`.
CARGO ?= cargo

.PHONY: demo dev test lint tools build production clean replay-fixtures bench

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

## lint: formatting and clippy, as CI runs them (the production build's code too)
lint: tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p changeflow --no-default-features --lib --bins -- -D warnings

## production: the build without the development stack (no demo/dev/simulate/token/
## conformance-server, no simulators, no fixture workflows), checked as such
production: tools
	$(CARGO) build --no-default-features --bin changeflow
	@if $(CARGO) tree -p changeflow --no-default-features -e normal | grep -qE "changeflow-(simulators|devstack)"; then \
	  echo "production build links the simulators or the development stack" >&2; exit 1; fi
	@for command in demo dev simulate token conformance-server; do \
	  if ./target/debug/changeflow $$command --help >/dev/null 2>&1; then \
	    echo "production build has the '$$command' command" >&2; exit 1; fi; \
	done
	./target/debug/changeflow --help | grep -q 'serve'
	@echo "production build: serve, worker, audit, policy; no development commands, no simulators"

## bench: measure the release build on the embedded stack against its baselines, in one run
## (about ten minutes on two cores); prints a table and writes bench/results/<date>.md
bench: tools
	@./tools/ensure.sh bench
	$(CARGO) build --release --workspace --bin changeflow --bin changeflow-bench
	$(CARGO) bench -p changeflow-engine --bench authn_authz -- --warm-up-time 1 --measurement-time 3 > target/bench-authn.txt
	./target/release/changeflow-bench --authn-report target/bench-authn.txt

## tools: protoc and the pinned Python tools under .tools/ (idempotent)
tools:
	@./tools/ensure.sh

build: tools
	$(CARGO) build --bin changeflow

## replay-fixtures: record tests/replay/*.json again (after a deliberate workflow change that
## running executions need not survive; review the diff before committing it)
replay-fixtures: tools
	$(CARGO) test --test replay record_replay_fixtures -- --ignored --exact --nocapture

clean:
	rm -rf .changeflow target
