# The seven services as `make dev` runs them: name and operations port. Sourced, not run.
# The gateway's API is on 127.0.0.1:8080; every service's /healthz, /readyz and /metrics are on
# 127.0.0.1:<port>.
SERVICES=(
    gateway:9100
    registration-batcher:9101
    dlq-retrier:9102
    email-worker:9103
    position-worker:9104
    reward-worker:9105
    activity-log-processor:9106
)
GATEWAY_HTTP_ADDR=127.0.0.1:8080
