#!/usr/bin/env bash
# Builds the Kubernetes test binaries (kube-apiserver, etcd, kubectl, helm) from the pinned Go module in
# tests/kube/gobuild into .cache/kube/bin, so the tests run against a real control plane on any machine that
# has Go and the Go module proxy. A stamp of the inputs (go.mod, go.sum, the etcd main and this script) lets
# a second call return at once while the binaries match the pinned versions.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/tests/kube/gobuild"
out="${KUBE_BIN_DIR:-$root/.cache/kube/bin}"
binaries=(kube-apiserver etcd kubectl helm)

command -v go >/dev/null 2>&1 || {
  echo "kube-binaries: Go is not installed; install Go >= 1.26 to build the Kubernetes test binaries" >&2
  exit 1
}

stamp="$(cat "$src/go.mod" "$src/go.sum" "$src/etcd/main.go" "$0" | sha256sum | cut -d' ' -f1)"
have_all=1
for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || have_all=0; done
if ((have_all)) && [[ "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "kube-binaries: up to date in $out"
  exit 0
fi

cd "$src"
# The go.mod is the one place the versions are pinned; the version strings the binaries report come from it.
kube="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"   # v1.37.2
helm="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"      # v3.22.0
minor="${kube#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm"

mkdir -p "$out"
rm -f "$out/.stamp"
start=$SECONDS
echo "kube-binaries: building kube-apiserver and kubectl $kube, etcd, helm $helm into $out (the first build takes minutes)"
# Static binaries (no cgo), as Kubernetes releases them; -trimpath and -s -w keep them small and reproducible.
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl helm.sh/helm/v3/cmd/helm ./etcd
echo "$stamp" >"$out/.stamp"
echo "kube-binaries: built in $((SECONDS - start)) s"
