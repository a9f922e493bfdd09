#!/usr/bin/env bash
# Checks the deployment and monitoring files: the alert rules (promtool check + unit tests) and every
# manifest under deploy/kubernetes (kubernetes-validate, strict, against a pinned Kubernetes version).
#
#   scripts/deploy-check.sh             run every check; exits non-zero on any failure
#   scripts/deploy-check.sh sync-rules  rewrite deploy/kubernetes/base/prometheus-rule.yaml from
#                                       deploy/prometheus/lifeline.rules.yml
#
# Needs the tools of `scripts/tools.sh install`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest Kubernetes release still commonly run; kubernetes-validate's bundled schemas decide the range.
KUBERNETES_VERSION=1.30.0
RULES=deploy/prometheus/lifeline.rules.yml
RULE_TESTS=deploy/prometheus/lifeline.rules.test.yml
MANIFESTS=deploy/kubernetes
PROMETHEUS_RULE=$MANIFESTS/base/prometheus-rule.yaml

# shellcheck source=scripts/common.sh
source scripts/common.sh

eval "$(scripts/tools.sh env)"
[[ -x $LIFELINE_PROMTOOL && -x $LIFELINE_KUBERNETES_VALIDATE ]] ||
	die "promtool or kubernetes-validate is missing: run scripts/tools.sh install"
# kubernetes-validate's venv has PyYAML; its Python reads the manifests.
PYTHON=${LIFELINE_KUBERNETES_VALIDATE%/*}/python

# The PrometheusRule is the rules file's groups under a Kubernetes header; comments come along.
render_prometheus_rule() {
	cat <<'EOF'
# The alert rules of deploy/prometheus/lifeline.rules.yml for the Prometheus Operator (needs its
# CRDs). Generated: edit the rules file, then run `scripts/deploy-check.sh sync-rules`.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: lifeline
  labels:
    app.kubernetes.io/name: lifeline
spec:
EOF
	sed -n '/^groups:/,$p' "$RULES" | sed 's/^\(.\)/  \1/'
}

check_rules() {
	log "promtool check rules $RULES"
	"$LIFELINE_PROMTOOL" check rules "$RULES"
	log "promtool test rules $RULE_TESTS"
	"$LIFELINE_PROMTOOL" test rules "$RULE_TESTS"
	diff -u "$PROMETHEUS_RULE" <(render_prometheus_rule) >&2 ||
		die "$PROMETHEUS_RULE differs from $RULES: run scripts/deploy-check.sh sync-rules"
}

# Prints the manifests kubernetes-validate can check, one a line; checks the others itself.
classify_manifests() {
	"$PYTHON" - "$MANIFESTS" <<'EOF'
import pathlib, sys, tomllib, yaml

# Custom resources: kubernetes-validate has no schema for them and only warns (exit 0), so they are
# named here, skipped there, and checked below as far as can be without their CRDs.
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
root = pathlib.Path(sys.argv[1])
errors = []
docs = {}
for path in sorted(root.rglob("*")):
    if path.suffix not in (".yaml", ".yml"):
        continue
    try:
        found = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        errors.append(f"{path}: not valid YAML: {e}")
        continue
    # One resource a file, so that a custom resource can be left out of kubernetes-validate alone.
    if len(found) != 1:
        errors.append(f"{path}: holds {len(found)} documents; put one resource in each file")
        continue
    doc = found[0]
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str):
        errors.append(f"{path}: apiVersion and kind must be strings")
        continue
    meta = doc.get("metadata") or {}
    if not meta.get("name"):
        errors.append(f"{path}: metadata.name is missing")
    if "namespace" in meta:
        errors.append(f"{path}: metadata.namespace is set; the manifests take the namespace of `kubectl apply -n`")
    docs[path] = doc
    if (api, kind) in CUSTOM:
        if not isinstance(doc.get("spec"), dict):
            errors.append(f"{path}: {kind} has no spec")
        print(f"deploy-check.sh: {path}: {api} {kind} is a custom resource: not validated by kubernetes-validate (no built-in schema); YAML, apiVersion and kind checked", file=sys.stderr)
    else:
        print(path)

by_kind = {}
for path, doc in docs.items():
    by_kind.setdefault(doc["kind"], []).append((path, doc))

# The plan must be TOML, and each of its sources needs a CronJob that runs it.
for path, doc in by_kind.get("ConfigMap", []):
    if doc["metadata"].get("name") != "lifeline-plan":
        continue
    try:
        plan = tomllib.loads(doc["data"]["plan.toml"])
    except (KeyError, tomllib.TOMLDecodeError) as e:
        errors.append(f"{path}: data.plan.toml is missing or not TOML: {e}")
        continue
    runs = set()
    for _, job in by_kind.get("CronJob", []):
        args = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("args", [])
        if args[:4] == ["lifeline", "--config", "/etc/lifeline/plan.toml", "run"] and len(args) > 4:
            runs.add(args[4])
    for source in plan.get("sources", []):
        if source.get("name") not in runs:
            errors.append(f"{path}: source {source.get('name')!r} has no CronJob running `lifeline --config /etc/lifeline/plan.toml run {source.get('name')}`")

# The ServiceMonitor must name a port the Service has.
ports = {p.get("name") for _, svc in by_kind.get("Service", []) for p in svc["spec"].get("ports", [])}
for path, doc in by_kind.get("ServiceMonitor", []):
    for endpoint in doc["spec"].get("endpoints", []):
        if endpoint.get("port") not in ports:
            errors.append(f"{path}: endpoint port {endpoint.get('port')!r} is no Service's port name ({sorted(ports)})")

for e in errors:
    print(f"deploy-check.sh: error: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
}

check_manifests() {
	local files out
	files=$(classify_manifests) || die "manifests in $MANIFESTS have errors (above)"
	[[ -n $files ]] || die "no manifests found in $MANIFESTS"
	log "kubernetes-validate --strict -k $KUBERNETES_VERSION on $(wc -l <<<"$files") manifests"
	# It exits 0 on a kind it has no schema for, with a warning: every file must say "passed".
	# shellcheck disable=SC2086 # one path a line, none with spaces
	if ! out=$("$LIFELINE_KUBERNETES_VALIDATE" --strict -k "$KUBERNETES_VERSION" $files 2>&1); then
		printf '%s\n' "$out" >&2
		die "kubernetes-validate failed"
	fi
	printf '%s\n' "$out" >&2
	if grep -v '^INFO .* passed for resource ' <<<"$out" | grep -q .; then
		die "kubernetes-validate did not pass every manifest (see its lines above)"
	fi
	[[ $(grep -c '^INFO .* passed for resource ' <<<"$out") -eq $(wc -l <<<"$files") ]] ||
		die "kubernetes-validate passed fewer resources than it was given"
}

main() {
	case ${1:-} in
	"")
		check_rules
		check_manifests
		log "all checks passed"
		;;
	sync-rules)
		render_prometheus_rule >"$PROMETHEUS_RULE"
		log "wrote $PROMETHEUS_RULE"
		;;
	*) usage ;;
	esac
}

main "$@"
