# The two commands of the README are `make dev` and `make test`; CI runs `make test`.
.PHONY: dev test stop lint stack fmt bench deploy-check contract

## dev: start PostgreSQL, the broker, topics, migrations and all seven services (logs in .stack/logs)
dev:
	@deploy/local/dev.sh

## test: every check: fmt, clippy -D warnings, all tests on the real servers, a dev/stop smoke run
test:
	@deploy/local/test.sh

## stop: stop the services (SIGTERM) and the broker that `make dev` started
stop:
	@deploy/local/stop.sh

## lint: cargo fmt --check and clippy with -D warnings (no servers needed)
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## contract: schemathesis against the running gateway's OpenAPI document (needs `make dev`)
contract:
	@deploy/local/contract.sh

## stack: only the local stack (PostgreSQL, broker, topics, migrations), for running tests by hand
stack:
	@deploy/local/stack.sh up

## fmt: format the code
fmt:
	cargo fmt --all

## bench: the benchmarks in release mode, each beside its baseline measured in the same run; one summary table, also written to BENCHMARKS.md
bench:
	@deploy/local/bench.sh

## deploy-check: the deployment files without a cluster or Docker engine (kustomize, Helm + schemas, compose, hadolint, dashboards, alert rules)
deploy-check:
	@deploy/check.sh
