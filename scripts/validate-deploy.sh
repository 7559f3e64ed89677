#!/usr/bin/env bash
# Validates every file in deploy/ (and docs/deploy.md) as far as this machine can: there is
# no Docker engine and no Kubernetes cluster here, so images are not built and manifests
# not applied; everything else is checked, against the real tools where they exist:
#
#   Dockerfile           structure (stages, non-root USER, only the binary + sql/ copied,
#                        EXPOSE, ENTRYPOINT/CMD, HEALTHCHECK), COPY sources exist and pass
#                        Dockerfile.dockerignore; its HEALTHCHECK command is run against a
#                        real `tailbox run` (healthy while it runs, unhealthy once stopped)
#   docker-compose.yml   compose-spec JSON schema (check-jsonschema), wal_level=logical,
#                        mounts, KRaft settings, health-gated depends_on, TAILBOX_* names,
#                        `tailbox config check` on the tailbox service's environment
#   compose/initdb/*.sql run exactly as the postgres image would (psql, ON_ERROR_STOP) on a
#                        throwaway PostgreSQL 15 with wal_level=logical; then the slot,
#                        publication and role are checked and `tailbox status` passes
#   kubernetes/*.yaml    Kubernetes OpenAPI schemas, strict (kubernetes-validate), the
#                        kustomization's resources, cross-references (ConfigMap, Secret,
#                        ServiceAccount, ports, labels), probes, securityContext,
#                        `tailbox config check` on the pod's environment
#   systemd/*            `systemd-analyze verify` (no warning allowed) in a temporary root,
#                        `systemd-analyze security --offline` exposure <= 2.0, the example
#                        environment file through `tailbox config check`
#   grafana/*.json       JSON, dashboard structure, every query through promtool's parser
#   prometheus/*.yml     `promtool check rules`, `promtool test rules`
#   everywhere           tailbox_* metric names exist in crates/cli/src/metrics.rs, TAILBOX_*
#                        variables exist in docs/configuration.md (generated from the
#                        option definitions, checked by a test)
#
# Output: one line per file (ok / PART = valid as far as checked, some checks SKIPPED,
# loudly / FAIL with the reasons indented below), then "deploy: N passed, N failed,
# N skipped". Exit status 1 if any file failed.
#
# Installs its validators when missing (idempotent; as root on Debian 12 for apt):
#   - a virtualenv ${TAILBOX_CACHE:-~/.cache/tailbox}/validate-deploy-venv with PyYAML,
#     check-jsonschema and kubernetes-validate from PyPI (pinned below); without PyPI it
#     falls back to python3 + PyYAML (apt python3-yaml) and SKIPS the schema checks,
#   - systemd-analyze (apt: systemd) if missing,
#   - promtool: the one on PATH, else extracted from Debian's `prometheus` package into
#     ${TAILBOX_CACHE:-~/.cache/tailbox}/promtool (apt-get download + dpkg-deb -x; the
#     package is not installed, so no Prometheus server is set up or started); if that
#     fails the promtool checks are SKIPPED, loudly.
# Uses target/debug/tailbox (or $TAILBOX_BIN; built with cargo if missing) and PostgreSQL
# 15 from /usr/lib/postgresql/15 (scripts/install-deps.sh) when present, else SKIPS what
# needs them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${TAILBOX_CACHE:-$HOME/.cache/tailbox}"
log() { printf 'validate-deploy: %s\n' "$*" >&2; }

PIP_REQS="pyyaml==6.0.3 check-jsonschema==0.39.0 kubernetes-validate==1.37.0"

work="$(mktemp -d /tmp/tailbox-validate-deploy.XXXXXX)"
chmod 755 "$work" # scripts/pg.sh runs PostgreSQL as the postgres user when we are root
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$cache"
# One run at a time installs into the cache.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/validate-deploy.lock"
    flock 9
fi

is_root() { [[ "$(id -u)" == 0 ]]; }
apt_updated=""
apt_update_once() {
    is_root || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    if [[ -z "$apt_updated" ]]; then
        log "apt-get update"
        apt-get update -qq >&2 || return 1
        apt_updated=1
    fi
}
apt_install() {
    apt_update_once || return 1
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# --- Python with PyYAML (+ schema validators) ------------------------------------------
venv="$cache/validate-deploy-venv"
py=""
schema_why=""
if [[ -x "$venv/bin/python" && "$(cat "$venv/.tailbox-reqs" 2>/dev/null)" == "$PIP_REQS" ]]; then
    py="$venv/bin/python"
else
    log "installing validators into $venv: $PIP_REQS"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        apt_install python3-venv || true
        python3 -m venv "$venv" >/dev/null 2>&1 || rm -rf "$venv"
    fi
    # shellcheck disable=SC2086 # PIP_REQS is a list
    if [[ -x "$venv/bin/pip" ]] &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check $PIP_REQS >&2; then
        printf '%s' "$PIP_REQS" >"$venv/.tailbox-reqs"
        py="$venv/bin/python"
    else
        rm -rf "$venv"
        schema_why="check-jsonschema/kubernetes-validate could not be installed from PyPI"
        log "WARNING: $schema_why: compose and Kubernetes schema checks will be SKIPPED"
    fi
fi
if [[ -z "$py" ]]; then
    if python3 -c 'import yaml' 2>/dev/null; then
        py="$(command -v python3)"
    elif apt_install python3 python3-yaml && /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
        py=/usr/bin/python3
    else
        log "ERROR: no python3 with PyYAML (pip install pyyaml, or apt-get install python3-yaml)"
        exit 1
    fi
fi
jsonschema_tool=""
kubeval_tool=""
if [[ -z "$schema_why" ]]; then
    jsonschema_tool="$venv/bin/check-jsonschema"
    kubeval_tool="$venv/bin/kubernetes-validate"
fi

# --- systemd-analyze --------------------------------------------------------------------
sda="$(command -v systemd-analyze || true)"
sda_why=""
if [[ -z "$sda" ]]; then
    apt_install systemd || true
    sda="$(command -v systemd-analyze || true)"
    [[ -n "$sda" ]] || sda_why="systemd-analyze missing and 'apt-get install systemd' failed"
fi

# --- promtool -------------------------------------------------------------------------
promtool="$(command -v promtool || true)"
promtool_why=""
if [[ -z "$promtool" && -x "$cache/promtool/promtool" ]]; then
    promtool="$cache/promtool/promtool"
fi
if [[ -z "$promtool" ]]; then
    # Debian's `prometheus` package carries /usr/bin/promtool. Installing the package would
    # also create and start a Prometheus server; we only take promtool out of it.
    apt_note=""
    apt_update_once || apt_note="; apt-get update failed or not root"
    candidate="$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [[ -z "$candidate" || "$candidate" == "(none)" ]]; then
        promtool_why="no 'prometheus' package in the apt sources (apt-cache policy prometheus: ${candidate:-nothing}$apt_note)"
    else
        log "extracting promtool from Debian's prometheus $candidate into $cache/promtool"
        mkdir -p "$work/deb"
        # apt downloads as _apt when it can write there (else it warns and runs as root).
        if id _apt >/dev/null 2>&1; then chown _apt "$work/deb" 2>/dev/null || true; fi
        if (cd "$work/deb" && apt-get download -qq "prometheus=$candidate" >&2) &&
            dpkg-deb -x "$work/deb"/prometheus_*.deb "$work/deb/x" &&
            [[ -x "$work/deb/x/usr/bin/promtool" ]]; then
            mkdir -p "$cache/promtool"
            install -m 0755 "$work/deb/x/usr/bin/promtool" "$cache/promtool/promtool"
            promtool="$cache/promtool/promtool"
        else
            promtool_why="could not download and extract Debian's prometheus package"
        fi
    fi
fi
if [[ -z "$promtool" ]]; then
    log "WARNING: promtool unavailable ($promtool_why): the promtool checks will be SKIPPED"
fi

# --- the tailbox binary -------------------------------------------------------------------
bin="${TAILBOX_BIN:-}"
bin_why=""
if [[ -z "$bin" ]]; then
    if [[ ! -x target/debug/tailbox ]] && command -v cargo >/dev/null 2>&1; then
        log "building tailbox (cargo build -p tailbox-cli) for the checks that run it"
        cargo build --quiet -p tailbox-cli >&2 || true
    fi
    [[ -x target/debug/tailbox ]] && bin="$root/target/debug/tailbox"
fi
if [[ -n "$bin" && ! -x "$bin" ]]; then
    bin_why="TAILBOX_BIN=$bin is not executable"
    bin=""
fi
[[ -n "$bin" || -n "$bin_why" ]] || bin_why="no tailbox binary (target/debug/tailbox missing and cargo build failed)"

# --- PostgreSQL 15 --------------------------------------------------------------------
pg_why=""
if [[ ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
    pg_why="PostgreSQL 15 is not installed (scripts/install-deps.sh installs it)"
fi

log "python: $py; promtool: ${promtool:-none}; systemd-analyze: ${sda:-none}; tailbox: ${bin:-none}"

cat >"$work/validate.py" <<'PY'
"""The checks of scripts/validate-deploy.sh (see there). One line per file on stdout."""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import yaml

ROOT = os.environ["TB_ROOT"]
WORK = os.environ["TB_WORK"]
BIN = os.environ.get("TB_BIN") or None
BIN_WHY = os.environ.get("TB_BIN_WHY", "")
PROMTOOL = os.environ.get("TB_PROMTOOL") or None
PROMTOOL_WHY = os.environ.get("TB_PROMTOOL_WHY", "")
JSONSCHEMA = os.environ.get("TB_JSONSCHEMA") or None
KUBEVAL = os.environ.get("TB_KUBEVAL") or None
SCHEMA_WHY = os.environ.get("TB_SCHEMA_WHY", "")
SDA = os.environ.get("TB_SDA") or None
SDA_WHY = os.environ.get("TB_SDA_WHY", "")
PG_WHY = os.environ.get("TB_PG_WHY", "")
K8S_VERSIONS = ["1.30.0", "1.37.0"]
DEPLOY = "deploy"


def rel(path):
    return os.path.relpath(path, ROOT)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


class Check:
    def __init__(self):
        self.done, self.skipped, self.errors = [], [], []

    def ok(self, what):
        self.done.append(what)

    def skip(self, what, why):
        self.skipped.append(f"{what} ({why})")

    def fail(self, msg):
        self.errors.append(msg)

    def expect(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond


def run(cmd, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, **kw)


def tail(text, n=15):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-n:]


# --- facts from the source: metric names and environment variables ------------------------
def metric_names():
    return set(re.findall(r'"(tailbox_[a-z0-9_]+)"', read("crates/cli/src/metrics.rs")))


def env_names():
    # The variables are derived from the option names (crates/cli/src/options.rs); the
    # generated reference lists every one.
    names = set(re.findall(r"`(TAILBOX_[A-Z0-9_]+)`", read("docs/configuration.md")))
    return names | {"TAILBOX_LOG"}  # the log filter (crates/cli/src/logging.rs)


METRICS = metric_names()
ENV_NAMES = env_names()


def check_metric_names(c, text, what):
    used = set(re.findall(r"\btailbox_[a-z0-9_]+", text))
    unknown = sorted(used - METRICS)
    if unknown:
        c.fail(f"{what}: metric(s) not exported by tailbox (crates/cli/src/metrics.rs): {', '.join(unknown)}")
    elif used:
        c.ok(f"{len(used)} metric names exist")
    return used


def check_env_names(c, names, what):
    unknown = sorted(n for n in names if n.startswith("TAILBOX_") and n not in ENV_NAMES)
    if unknown:
        c.fail(f"{what}: unknown variable(s) (not in docs/configuration.md): {', '.join(unknown)}")
    return not unknown


def config_check(c, env, what):
    """`tailbox config check` with exactly `env` (plus PATH/HOME)."""
    if not BIN:
        c.skip(f"tailbox config check of {what}", BIN_WHY)
        return
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": WORK}
    full.update(env)
    r = run([BIN, "config", "check"], env=full, cwd=WORK)
    if r.returncode == 0:
        c.ok(f"tailbox config check ({what})")
    else:
        c.fail(f"tailbox config check of {what} failed:")
        for line in tail(r.stdout):
            c.fail("  " + line)


def promtool_rules(c, path, what, cwd=None):
    if not PROMTOOL:
        c.skip(f"promtool check rules ({what})", PROMTOOL_WHY)
        return
    r = run([PROMTOOL, "check", "rules", path], cwd=cwd)
    if r.returncode == 0:
        c.ok(f"promtool check rules ({what})")
    else:
        c.fail(f"promtool check rules ({what}):")
        for line in tail(r.stdout):
            c.fail("  " + line)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def http_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    status = data.split(b"\r\n", 1)[0].split()
    return int(status[1]) if len(status) > 1 else 0


def die_with_parent():
    """In the child: SIGTERM when this script dies (PR_SET_PDEATHSIG), so no tailbox is left."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Tailbox:
    """`tailbox run` against nothing (PostgreSQL and Kafka on a closed loopback port): it
    retries with backoff, /healthz answers 200, /readyz 503."""

    def __init__(self):
        self.port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": WORK,
            "TAILBOX_PG_URL": "postgres://nobody@127.0.0.1:1/none",
            "TAILBOX_KAFKA_BROKERS": "127.0.0.1:1",
            "TAILBOX_METRICS_ADDR": f"127.0.0.1:{self.port}",
            "TAILBOX_PROGRESS_INTERVAL_SECS": "0",
        }
        self.log = open(os.path.join(WORK, "tailbox-run.log"), "w")
        self.proc = subprocess.Popen([BIN, "run"], env=env, cwd=WORK, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.up = wait_port(self.port, self.proc)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def interpolate(value, problems):
    """Compose variable interpolation with the defaults (${VAR:-default}, ${VAR-default})."""
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3)
        if op in (":-", "-"):
            return default
        problems.append(f"${{{name}}} has no default: the file is not usable without it")
        return ""

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-|:?\?)([^}]*))?\}", sub, value)


def env_dict(env, problems):
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        env = out
    return {k: interpolate(str(v), problems) for k, v in (env or {}).items()}


# --- Dockerfile -------------------------------------------------------------------------
def dockerfile_instructions(text):
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        lines.append((word.upper(), rest.strip()))
        cur = ""
    return lines


def dockerignore_excludes(patterns, path):
    """Docker's .dockerignore rules: the last matching pattern wins, '!' re-includes, a
    pattern matching a parent directory matches everything below it."""

    def to_re(p):
        out, i = "", 0
        while i < len(p):
            if p.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif p.startswith("**", i):
                out += ".*"
                i += 2
            elif p[i] == "*":
                out += "[^/]*"
                i += 1
            elif p[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(p[i])
                i += 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        neg = raw.startswith("!")
        p = raw[1:] if neg else raw
        p = p.strip().strip("/")
        if not p:
            continue
        rx = to_re(p)
        if any(rx.match(cand) for cand in candidates):
            excluded = not neg
    return excluded


def read_dockerignore(path):
    pats = []
    for line in read(path).splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            pats.append(s)
    return pats


def check_dockerfile(c, path):
    text = read(path)
    ins = dockerfile_instructions(text)
    args = {}
    stages = []  # (image, name, [instructions])
    for word, rest in ins:
        if word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""),
                           rest.split()[0] if rest.split()[0] != "--platform" else rest.split()[1])
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            stages.append((image, m.group(1) if m else None, []))
        elif stages:
            stages[-1][2].append((word, rest))
    if not c.expect(len(stages) >= 2, "expected a multi-stage build (builder + runtime)"):
        return
    builder, runtime = stages[0], stages[-1]
    c.expect(re.fullmatch(r"rust:1\.\d+(\.\d+)?-bookworm", builder[0]) is not None,
             f"builder image should be rust:1.N-bookworm, is {builder[0]}")
    c.expect(builder[1] == "builder", "the first stage should be named builder")
    c.expect(any(w == "RUN" and "cargo build" in r and "--release" in r for w, r in builder[2]),
             "the builder stage runs no 'cargo build --release'")
    c.expect(runtime[0] == "debian:bookworm-slim", f"runtime image should be debian:bookworm-slim, is {runtime[0]}")
    rt = runtime[2]
    users = [r for w, r in rt if w == "USER"]
    if c.expect(users, "the runtime stage sets no USER (it would run as root)"):
        user = users[-1].split(":")[0]
        c.expect(user not in ("root", "0"), f"USER {users[-1]} is root")
    hcs = [r for w, r in rt if w == "HEALTHCHECK"]
    c.expect(hcs and "/healthz" in hcs[-1], "no HEALTHCHECK on /healthz in the runtime stage")
    c.expect(any(w == "EXPOSE" and "8245" in r.split() for w, r in rt), "no EXPOSE 8245")
    ep = [r for w, r in rt if w == "ENTRYPOINT"]
    cmd = [r for w, r in rt if w == "CMD"]
    c.expect(ep and json.loads(ep[-1]) == ["tailbox"], 'ENTRYPOINT should be ["tailbox"]')
    c.expect(cmd and json.loads(cmd[-1]) == ["run"], 'CMD should be ["run"]')
    # Only the binary and sql/ go into the runtime image.
    for w, r in rt:
        if w == "ADD":
            c.fail(f"ADD in the runtime stage: {r}")
        if w == "COPY":
            toks = [t for t in r.split() if not t.startswith("--chown") and not t.startswith("--chmod")]
            frm = [t for t in toks if t.startswith("--from=")]
            srcs = [t for t in toks if not t.startswith("--")][:-1]
            if frm:
                c.expect(all(os.path.basename(s) == "tailbox" for s in srcs),
                         f"runtime COPY {r}: only the tailbox binary should come from the builder")
            else:
                c.expect(all(s.rstrip("/") == "sql" for s in srcs),
                         f"runtime COPY {r}: only sql/ should come from the context")
    for w, r in builder[2] + rt:
        if w == "RUN" and "apt-get install" in r:
            c.expect("--no-install-recommends" in r, f"apt-get install without --no-install-recommends: {r[:60]}…")
            c.expect("rm -rf /var/lib/apt/lists" in r, f"apt lists not removed in the same RUN: {r[:60]}…")
    # COPY sources from the context exist and are not excluded by the ignore file.
    ignore = path + ".dockerignore"
    pats = read_dockerignore(ignore) if os.path.exists(os.path.join(ROOT, ignore)) else []
    for _, _, stage in stages:
        for w, r in stage:
            if w == "COPY" and "--from=" not in r:
                for s in [t for t in r.split() if not t.startswith("--")][:-1]:
                    s = s.rstrip("/")
                    if not c.expect(os.path.exists(os.path.join(ROOT, s)), f"COPY source {s} does not exist in the context (repository root)"):
                        continue
                    c.expect(not dockerignore_excludes(pats, s), f"COPY source {s} is excluded by {ignore}")
    if not c.errors:
        c.ok(f"stages {builder[1]} ({builder[0]}) -> {runtime[0]}, USER {users[-1]}, only binary + sql/ copied, "
             "EXPOSE 8245, ENTRYPOINT/CMD, COPY sources in the context")
    # Run the HEALTHCHECK command against a real tailbox.
    if not hcs:
        return
    m = re.search(r"\bCMD\s+(.*)$", hcs[-1], re.S)
    if not c.expect(m, "HEALTHCHECK has no CMD"):
        return
    body = m.group(1).strip()
    hc = json.loads(body) if body.startswith("[") else ["/bin/sh", "-c", body]
    if not BIN:
        c.skip("HEALTHCHECK run against tailbox", BIN_WHY)
        return
    if not shutil.which(hc[0]):
        c.skip("HEALTHCHECK run", f"{hc[0]} not on this machine")
        return
    tb = Tailbox()
    try:
        if not c.expect(tb.up, f"tailbox run did not open its metrics port (log: {tb.log.name})"):
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TAILBOX_METRICS_ADDR": f"0.0.0.0:{tb.port}"}
        healthy = run(hc, env=env, timeout=10).returncode
    finally:
        tb.stop()
    unhealthy = run(hc, env=env, timeout=10).returncode
    c.expect(healthy == 0, f"HEALTHCHECK failed (exit {healthy}) while tailbox ran")
    c.expect(unhealthy != 0, "HEALTHCHECK passed although tailbox was stopped")
    if healthy == 0 and unhealthy != 0:
        c.ok("HEALTHCHECK run: healthy while tailbox runs, unhealthy once stopped")


def check_dockerignore(c, path):
    pats = read_dockerignore(path)
    must_include = ["Cargo.toml", "Cargo.lock", "crates/cli/src/main.rs", "crates/cli/Cargo.toml",
                    "tests/Cargo.toml", "sql/01_outbox_table.sql"]
    must_exclude = ["target/debug/tailbox", ".git/HEAD", "crates/cli/target/x", "docs/operations.md"]
    for p in must_include:
        c.expect(not dockerignore_excludes(pats, p), f"{p} is excluded, the build needs it")
    for p in must_exclude:
        c.expect(dockerignore_excludes(pats, p), f"{p} is sent to the build context")
    if not c.errors:
        c.ok(f"build inputs kept ({', '.join(must_include[:3])}, …), target/ .git/ docs/ left out")


# --- docker compose -----------------------------------------------------------------------
def load_compose():
    path = os.path.join(DEPLOY, "docker-compose.yml")
    return yaml.safe_load(read(path))


def check_compose(c, path):
    doc = yaml.safe_load(read(path))
    c.ok("YAML")
    if JSONSCHEMA:
        r = run([JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", os.path.join(ROOT, path)])
        if r.returncode == 0:
            c.ok("compose-spec schema (check-jsonschema)")
        else:
            c.fail("compose-spec schema:")
            for line in tail(r.stdout, 25):
                c.fail("  " + line)
    else:
        c.skip("compose-spec schema", SCHEMA_WHY)
    base = os.path.join(ROOT, os.path.dirname(path))
    problems = []
    services = doc.get("services") or {}
    for name in ("postgres", "kafka", "tailbox", "consumer"):
        c.expect(name in services, f"no service {name}")
    if c.errors:
        return
    pg, kafka, tb, consumer = (services[n] for n in ("postgres", "kafka", "tailbox", "consumer"))
    # PostgreSQL
    c.expect(re.match(r"postgres:15\b", pg.get("image", "")), "postgres should use a postgres:15 image")
    cmd = pg.get("command") or []
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    c.expect("wal_level=logical" in cmd, "postgres command lacks -c wal_level=logical")
    mounts = {}
    for v in pg.get("volumes") or []:
        src, _, rest = str(v).partition(":")
        target = rest.split(":")[0]
        mounts[target] = src
        if src.startswith(".") or src.startswith("/"):
            c.expect(os.path.exists(os.path.normpath(os.path.join(base, src))), f"volume source {src} does not exist")
    init = mounts.get("/docker-entrypoint-initdb.d")
    if c.expect(init, "nothing mounted at /docker-entrypoint-initdb.d"):
        c.expect(os.path.normpath(os.path.join(base, init)) != os.path.join(ROOT, "sql"),
                 "sql/ mounted as the init directory: 99_teardown.sql would run too and drop the slot")
        init_dir = os.path.normpath(os.path.join(base, init))
        scripts = sorted(os.listdir(init_dir)) if os.path.isdir(init_dir) else []
        c.expect(scripts, f"{init} holds no init script")
        for s in scripts:
            text = open(os.path.join(init_dir, s), encoding="utf-8").read()
            for target, src in mounts.items():
                if os.path.normpath(os.path.join(base, src)) == os.path.join(ROOT, "sql"):
                    c.expect(target in text, f"{s} does not read the sql/ scripts from {target}")
    # Kafka (KRaft, single node)
    kenv = env_dict(kafka.get("environment"), problems)
    c.expect(kafka.get("image", "").startswith("apache/kafka:"), "kafka should use the apache/kafka image")
    roles = set(kenv.get("KAFKA_PROCESS_ROLES", "").split(","))
    c.expect(roles == {"broker", "controller"}, "KAFKA_PROCESS_ROLES should be broker,controller (KRaft)")
    c.expect("CONTROLLER" in kenv.get("KAFKA_CONTROLLER_LISTENER_NAMES", ""), "no KAFKA_CONTROLLER_LISTENER_NAMES")
    c.expect(kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").startswith(str(kenv.get("KAFKA_NODE_ID", "")) + "@"),
             "KAFKA_CONTROLLER_QUORUM_VOTERS should name KAFKA_NODE_ID")
    for k in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        c.expect(kenv.get(k) == "1", f"{k} should be 1 on a single node")
    cid = kenv.get("CLUSTER_ID", "")
    try:
        ok = len(base64.urlsafe_b64decode(cid + "==")) == 16 and len(cid) == 22
    except ValueError:
        ok = False
    c.expect(ok, f"CLUSTER_ID {cid!r} is not 16 bytes in base64url (kafka-storage.sh random-uuid)")
    # tailbox
    build = tb.get("build") or {}
    ctx = os.path.normpath(os.path.join(base, build.get("context", ".")))
    c.expect(os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))),
             "tailbox build: dockerfile not found relative to the context")
    tenv = env_dict(tb.get("environment"), problems)
    check_env_names(c, tenv, "tailbox environment")
    for dep, spec in (tb.get("depends_on") or {}).items():
        cond = spec.get("condition") if isinstance(spec, dict) else None
        c.expect(cond == "service_healthy", f"tailbox depends_on {dep} should wait for service_healthy")
        c.expect("healthcheck" in services.get(dep, {}), f"{dep} has no healthcheck to wait for")
    port = tenv.get("TAILBOX_METRICS_ADDR", "0.0.0.0:8245").rsplit(":", 1)[-1]
    c.expect(any(str(p).endswith(f":{port}") for p in tb.get("ports") or []), f"metrics port {port} not published")
    # consumer
    ccmd = " ".join(str(x) for x in consumer.get("command") or [])
    c.expect("kafka-console-consumer" in ccmd and "outbox" in ccmd and "print.headers=true" in ccmd,
             "consumer should run kafka-console-consumer on outbox.event.* with print.headers=true")
    for p in problems:
        c.fail(p)
    if not c.errors:
        c.ok("wal_level=logical, init scripts without 99_teardown, KRaft single node, health-gated depends_on, "
             "TAILBOX_* names")
    # tailbox's configuration as the container gets it (its image sets these two).
    env = {"TAILBOX_LOG_FORMAT": "json", "TAILBOX_METRICS_ADDR": "0.0.0.0:8245"}
    env.update(tenv)
    config_check(c, env, "tailbox service environment")


def check_initdb_sql(c, path):
    if PG_WHY:
        c.skip("run on PostgreSQL 15", PG_WHY)
        return
    doc = load_compose()
    problems = []
    pgenv = env_dict(doc["services"]["postgres"].get("environment"), problems)
    tbenv = env_dict(doc["services"]["tailbox"].get("environment"), problems)
    db = pgenv.get("POSTGRES_DB", "postgres")
    pgdir = os.path.join(WORK, "pg")
    env = dict(os.environ)
    env["TAILBOX_PG_PARENT_PID"] = str(os.getpid())
    r = run(["bash", os.path.join(ROOT, "scripts/pg.sh"), "start", pgdir], env=env,
            stderr=subprocess.PIPE)
    if not c.expect(r.returncode == 0, "scripts/pg.sh start failed: " + " | ".join(tail(r.stderr or "", 5))):
        return
    url = r.stdout.strip().splitlines()[-1]
    m = re.match(r"postgres://postgres@([^:/]+):(\d+)/", url)
    host, port = m.group(1), m.group(2)
    try:
        base = {"PATH": os.environ["PATH"], "PGHOST": host, "PGPORT": port, "HOME": WORK}

        def psql(sql, user="postgres", dbname=db):
            return run(["psql", "-X", "-tA", "-U", user, "-d", dbname, "-c", sql], env=base)

        r = run(["psql", "-X", "-q", "-U", "postgres", "-d", "postgres", "-c", f'CREATE DATABASE "{db}"'], env=base)
        if not c.expect(r.returncode == 0, f"CREATE DATABASE failed: {r.stdout.strip()}"):
            return
        # Exactly as docker-entrypoint.sh runs *.sql (docker_process_sql), with the
        # container's environment; sql/ is where the repository has it.
        env = dict(base)
        env.update(pgenv)
        env["TAILBOX_SQL_DIR"] = os.path.join(ROOT, "sql")
        cmd = ["psql", "-v", "ON_ERROR_STOP=1", "--username", "postgres", "--no-password", "--no-psqlrc",
               "--dbname", db, "-f", os.path.join(ROOT, path)]
        r = run(cmd, env=env)
        if not c.expect(r.returncode == 0, "psql failed:"):
            for line in tail(r.stdout):
                c.fail("  " + line)
            return
        c.ok("runs as docker-entrypoint.sh runs it (psql -v ON_ERROR_STOP=1 --no-psqlrc) on PostgreSQL 15")
        slot = tbenv.get("TAILBOX_SLOT", "tailbox")
        pub = tbenv.get("TAILBOX_PUBLICATION", "tailbox")
        role = re.match(r"postgres://([^:@]+)", tbenv.get("TAILBOX_PG_URL", "")).group(1)
        checks = [
            (f"SELECT plugin FROM pg_replication_slots WHERE slot_name = '{slot}'", "pgoutput", f"slot {slot} (pgoutput)"),
            (f"SELECT pubinsert AND NOT pubupdate AND NOT pubdelete FROM pg_publication WHERE pubname = '{pub}'",
             "t", f"publication {pub} (inserts only)"),
            (f"SELECT count(*) FROM pg_publication_tables WHERE pubname = '{pub}' AND tablename = 'outbox'", "1",
             "outbox table in the publication"),
            (f"SELECT rolcanlogin AND rolreplication FROM pg_roles WHERE rolname = '{role}'", "t",
             f"role {role} LOGIN REPLICATION"),
            (f"SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = '{role}'", "t", f"role {role} has a password"),
        ]
        for sql, want, what in checks:
            got = psql(sql).stdout.strip()
            c.expect(got == want, f"{what}: expected {want!r}, got {got!r}")
        got = psql("SELECT count(*) FROM outbox", user=role).stdout.strip()
        c.expect(got == "0", f"role {role} cannot read the outbox table: {got}")
        if not c.errors:
            c.ok(f"slot {slot} (pgoutput), publication {pub} (inserts), role {role} LOGIN REPLICATION with SELECT on outbox")
        if BIN:
            env = {"PATH": os.environ["PATH"], "HOME": WORK}
            env.update(tbenv)
            env["TAILBOX_PG_URL"] = re.sub(r"@[^/]+/", f"@{host}:{port}/", tbenv["TAILBOX_PG_URL"])
            r = run([BIN, "status"], env=env, cwd=WORK)
            if c.expect(r.returncode == 0, "tailbox status (as the compose tailbox service connects) failed:"):
                c.ok("tailbox status as the tailbox service's role")
            else:
                for line in tail(r.stdout):
                    c.fail("  " + line)
        else:
            c.skip("tailbox status", BIN_WHY)
    finally:
        run(["bash", os.path.join(ROOT, "scripts/pg.sh"), "stop", pgdir])


# --- Kubernetes ---------------------------------------------------------------------------
def k8s_docs(name):
    return [d for d in yaml.safe_load_all(read(os.path.join(DEPLOY, "kubernetes", name))) if d]


def k8s_by_kind(kind):
    kdir = os.path.join(ROOT, DEPLOY, "kubernetes")
    out = []
    for f in sorted(os.listdir(kdir)):
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml":
            out += [d for d in k8s_docs(f) if d.get("kind") == kind]
    return out


def kubeval(c, path):
    if not KUBEVAL:
        c.skip("Kubernetes schema", SCHEMA_WHY)
        return
    for v in K8S_VERSIONS:
        r = run([KUBEVAL, "--strict", "--quiet", "-k", v, os.path.join(ROOT, path)])
        if r.returncode != 0:
            c.fail(f"kubernetes-validate --strict -k {v}:")
            for line in tail(r.stdout):
                c.fail("  " + line)
            return
    c.ok(f"Kubernetes schemas {' and '.join(K8S_VERSIONS)}, strict (kubernetes-validate)")


def check_k8s(c, path):
    name = os.path.basename(path)
    docs = [d for d in yaml.safe_load_all(read(path)) if d]
    c.ok("YAML")
    if name == "kustomization.yaml":
        doc = docs[0]
        kdir = os.path.dirname(os.path.join(ROOT, path))
        res = doc.get("resources") or []
        for r_ in res:
            c.expect(os.path.isfile(os.path.join(kdir, r_)), f"resource {r_} does not exist")
        files = {f for f in os.listdir(kdir) if f.endswith((".yaml", ".yml")) and f != name}
        missing = sorted(files - set(res))
        c.expect(not missing, f"not listed in resources: {', '.join(missing)}")
        images = {i["name"] for i in doc.get("images") or []}
        used = {ct["image"].split(":")[0] for d in k8s_by_kind("Deployment")
                for ct in d["spec"]["template"]["spec"]["containers"]}
        c.expect(images <= used, f"images {images} not used by the Deployment ({used})")
        if not c.errors:
            c.ok(f"{len(res)} resources, all present, every manifest listed")
        return
    kubeval(c, path)
    for d in docs:
        kind = d.get("kind")
        if kind == "Deployment":
            check_deployment(c, d)
        elif kind == "Service":
            pod = k8s_by_kind("Deployment")[0]["spec"]["template"]
            labels = pod["metadata"]["labels"]
            sel = d["spec"].get("selector") or {}
            c.expect(sel and all(labels.get(k) == v for k, v in sel.items()), "Service selector does not match the pod")
            ports = {p["name"]: p["containerPort"] for ct in pod["spec"]["containers"] for p in ct.get("ports", [])}
            for p in d["spec"]["ports"]:
                t = p.get("targetPort")
                c.expect(t in ports or t in ports.values(), f"targetPort {t} is no container port")
            if not c.errors:
                c.ok("selector matches the pod, targetPort exists")
        elif kind == "ConfigMap":
            ok = check_env_names(c, d.get("data") or {}, "ConfigMap")
            used = [e["configMapRef"]["name"] for dep in k8s_by_kind("Deployment")
                    for ct in dep["spec"]["template"]["spec"]["containers"] for e in ct.get("envFrom", [])
                    if "configMapRef" in e]
            c.expect(d["metadata"]["name"] in used, "the Deployment does not use this ConfigMap")
            if ok and not c.errors:
                c.ok(f"{len(d.get('data') or {})} TAILBOX_* variables, all known, used by the Deployment")
        elif kind == "Secret":
            keys = set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())
            refs = [e["valueFrom"]["secretKeyRef"] for dep in k8s_by_kind("Deployment")
                    for ct in dep["spec"]["template"]["spec"]["containers"] for e in ct.get("env", [])
                    if "secretKeyRef" in (e.get("valueFrom") or {})]
            for ref in refs:
                if ref["name"] == d["metadata"]["name"] and not ref.get("optional"):
                    c.expect(ref["key"] in keys, f"the Deployment needs key {ref['key']}")
            c.expect(any(ref["name"] == d["metadata"]["name"] for ref in refs), "the Deployment does not use this Secret")
            if not c.errors:
                c.ok("every key the Deployment requires is present")
        elif kind == "ServiceAccount":
            c.expect(d.get("automountServiceAccountToken") is False, "automountServiceAccountToken should be false")
            sa = [dep["spec"]["template"]["spec"].get("serviceAccountName") for dep in k8s_by_kind("Deployment")]
            c.expect(d["metadata"]["name"] in sa, "the Deployment does not use this ServiceAccount")
            if not c.errors:
                c.ok("no API token, used by the Deployment")
        else:
            c.fail(f"no check for kind {kind}")


def dockerfile_uid():
    users = [r for w, r in dockerfile_instructions(read(os.path.join(DEPLOY, "Dockerfile"))) if w == "USER"]
    return users[-1].split(":")[0] if users else None


def check_deployment(c, d):
    spec = d["spec"]
    pod = spec["template"]["spec"]
    c.expect(spec.get("replicas") == 1, "replicas must be 1 (one reader per slot)")
    c.expect((spec.get("strategy") or {}).get("type") == "Recreate", "strategy must be Recreate (never two readers)")
    cts = pod["containers"]
    c.expect(len(cts) == 1, "expected one container")
    ct = cts[0]
    ports = {p["name"]: p["containerPort"] for p in ct.get("ports", [])}
    for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (ct.get(probe) or {}).get("httpGet") or {}
        c.expect(get.get("path") == want, f"{probe} should GET {want}")
        c.expect(get.get("port") in ports or get.get("port") in ports.values(), f"{probe} port is no container port")
    req = (ct.get("resources") or {}).get("requests") or {}
    c.expect(req.get("cpu") and req.get("memory"), "no resource requests")
    psc, sc = pod.get("securityContext") or {}, ct.get("securityContext") or {}
    c.expect(psc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True, "runAsNonRoot is not set")
    uid = str(sc.get("runAsUser", psc.get("runAsUser", "")))
    c.expect(uid not in ("", "0"), "runAsUser should be a non-zero uid")
    c.expect(uid == dockerfile_uid(), f"runAsUser {uid} differs from the image's USER {dockerfile_uid()}")
    c.expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem should be true")
    c.expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation should be false")
    c.expect("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), "capabilities should drop ALL")
    # The pod's environment: ConfigMap (envFrom) + env (values and Secret keys).
    cms = {m["metadata"]["name"]: m.get("data") or {} for m in k8s_by_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s.get("stringData") or {} for s in k8s_by_kind("Secret")}
    env = {}
    for e in ct.get("envFrom", []):
        name = e["configMapRef"]["name"]
        if c.expect(name in cms, f"envFrom ConfigMap {name} is not in the manifests"):
            env.update(cms[name])
    for e in ct.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            if c.expect(ref["name"] in secrets, f"Secret {ref['name']} is not in the manifests"):
                if ref["key"] in secrets[ref["name"]]:
                    env[e["name"]] = str(secrets[ref["name"]][ref["key"]])
                else:
                    c.expect(ref.get("optional"), f"Secret key {ref['key']} missing and not optional")
    check_env_names(c, env, "pod environment")
    mport = env.get("TAILBOX_METRICS_ADDR", "0.0.0.0:8245").rsplit(":", 1)[-1]
    c.expect(str(mport) in {str(p) for p in ports.values()}, f"container port differs from the metrics port {mport}")
    stop = env.get("TAILBOX_SHUTDOWN_TIMEOUT_SECS", "30")
    if c.expect(stop.isdigit(), f"TAILBOX_SHUTDOWN_TIMEOUT_SECS {stop!r} is not a number of seconds"):
        c.expect(pod.get("terminationGracePeriodSeconds", 30) > int(stop),
                 "terminationGracePeriodSeconds should exceed TAILBOX_SHUTDOWN_TIMEOUT_SECS")
    if not c.errors:
        c.ok("replicas 1, Recreate, probes /healthz and /readyz, requests, non-root uid = image USER, "
             "read-only root, ConfigMap/Secret references")
    config_check(c, env, "pod environment")


# --- systemd ------------------------------------------------------------------------------
def unit_values(text):
    vals, section = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        vals.setdefault((section, k.strip()), []).append(v.strip())
    return vals


def check_unit(c, path):
    text = read(path)
    v = unit_values(text)

    def get(k, section="Service"):
        return (v.get((section, k)) or [None])[-1]

    execstart = get("ExecStart") or ""
    binary = execstart.split()[0].lstrip("-@:+!") if execstart else ""
    c.expect(binary == "/usr/local/bin/tailbox" and execstart.split()[1:2] == ["run"],
             "ExecStart should be /usr/local/bin/tailbox run")
    c.expect(get("DynamicUser") == "yes" or (get("User") not in (None, "root", "0")), "runs as root")
    c.expect(get("EnvironmentFile") == "/etc/tailbox/tailbox.env", "EnvironmentFile should be /etc/tailbox/tailbox.env")
    for k, want in (("Restart", "on-failure"), ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes")):
        c.expect(get(k) == want, f"{k}={want} missing")
    stop = get("TimeoutStopSec") or "90s"
    c.expect(int(re.sub(r"s$", "", stop)) > 30, "TimeoutStopSec should exceed shutdown_timeout_secs (30)")
    if not c.errors:
        c.ok("ExecStart, DynamicUser, EnvironmentFile, Restart=on-failure, ProtectSystem=strict, NoNewPrivileges")
    if not SDA:
        c.skip("systemd-analyze verify/security", SDA_WHY)
        return
    # A temporary root: the system's units (for the dependencies), this unit, and a stub
    # at the ExecStart path (verify checks it is executable); nothing on the host changes.
    sdroot = os.path.join(WORK, "systemd-root")
    shutil.rmtree(sdroot, ignore_errors=True)
    units = next((p for p in ("/usr/lib/systemd/system", "/lib/systemd/system") if os.path.isdir(p)), None)
    os.makedirs(os.path.join(sdroot, "usr/lib/systemd"), exist_ok=True)
    if units:
        shutil.copytree(units, os.path.join(sdroot, "usr/lib/systemd/system"), symlinks=True)
    os.makedirs(os.path.join(sdroot, "etc/systemd/system"), exist_ok=True)
    unit = os.path.basename(path)
    shutil.copy(os.path.join(ROOT, path), os.path.join(sdroot, "etc/systemd/system", unit))
    stub = os.path.join(sdroot, binary.lstrip("/"))
    os.makedirs(os.path.dirname(stub), exist_ok=True)
    with open(stub, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(stub, 0o755)
    r = run([SDA, "verify", "--man=no", f"--root={sdroot}", unit])
    if r.returncode == 0 and not r.stdout.strip():
        c.ok("systemd-analyze verify: no warnings")
    else:
        c.fail(f"systemd-analyze verify (exit {r.returncode}):")
        for line in tail(r.stdout):
            c.fail("  " + line)
    r = run([SDA, "security", "--offline=true", "--threshold=20", f"--root={sdroot}", "--no-pager", unit])
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", r.stdout)
    level = m.group(1) + " " + m.group(2) if m else "?"
    if c.expect(r.returncode == 0 and m, f"systemd-analyze security: exposure {level}, above 2.0"):
        c.ok(f"systemd-analyze security --offline: exposure {level}")
    shutil.rmtree(sdroot, ignore_errors=True)


def check_envfile(c, path):
    env = {}
    for n, line in enumerate(read(path).splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not c.expect(re.match(r"[A-Z_][A-Z0-9_]*=", s), f"line {n}: not KEY=VALUE"):
            continue
        k, _, val = s.partition("=")
        env[k] = val
    if check_env_names(c, env, "environment file") and not c.errors:
        c.ok(f"{len(env)} TAILBOX_* variables, all known")
    config_check(c, env, "this file")


# --- Grafana, Prometheus ---------------------------------------------------------------------
def check_dashboard(c, path):
    d = json.loads(read(path))
    c.ok("JSON")
    c.expect(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, "schemaVersion should be >= 36")
    c.expect(d.get("uid") and d.get("title"), "uid and title are required")
    panels = list(d.get("panels") or [])
    for p in list(panels):
        panels += p.get("panels") or []
    ids = [p.get("id") for p in panels]
    c.expect(len(ids) == len(set(ids)) and None not in ids, "panel ids must be unique")
    names = {v.get("name") for v in (d.get("templating") or {}).get("list", [])}
    exprs = []
    for p in panels:
        g = p.get("gridPos") or {}
        c.expect(all(k in g for k in "hwxy") and g["x"] + g["w"] <= 24, f"panel {p.get('title')}: bad gridPos")
        if p.get("type") == "row":
            continue
        c.expect(p.get("targets"), f"panel {p.get('title')}: no query")
        for t in p.get("targets") or []:
            e = t.get("expr", "")
            c.expect(e, f"panel {p.get('title')}: empty query")
            for var in re.findall(r"\$(\w+)", e):
                c.expect(var.startswith("__") or var in names, f"panel {p.get('title')}: unknown variable ${var}")
            exprs.append((p["id"], t.get("refId", "A"), e))
    check_metric_names(c, json.dumps(d), "dashboard")
    if not c.errors:
        c.ok(f"schemaVersion {d['schemaVersion']}, {len(panels)} panels, unique ids, gridPos, variables defined")
    # Every query through Prometheus' parser, with Grafana's variables substituted.
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for pid, ref, e in exprs:
        e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
        e = re.sub(r"\$\{?(\w+)\}?", ".*", e)
        rules["groups"][0]["rules"].append({"record": f"dashboard:panel_{pid}_{ref}", "expr": e})
    tmp = os.path.join(WORK, "dashboard-queries.yml")
    with open(tmp, "w") as f:
        yaml.safe_dump(rules, f)
    promtool_rules(c, tmp, f"{len(exprs)} queries")


def check_alerts(c, path):
    doc = yaml.safe_load(read(path))
    c.ok("YAML")
    rules = [r for g in doc.get("groups") or [] for r in g.get("rules") or []]
    text = " ".join(r.get("expr", "") for r in rules)
    check_metric_names(c, text, "rules")
    want = {
        "replication lag > 300 for 5m": lambda r: "tailbox_replication_lag_seconds" in r["expr"] and "300" in r["expr"] and r.get("for") == "5m",
        "retained WAL": lambda r: "tailbox_slot_retained_wal_bytes" in r["expr"],
        "DLQ growth": lambda r: "increase(tailbox_dead_lettered_total" in r["expr"],
        "not ready": lambda r: "tailbox_streaming" in r["expr"] and "tailbox_kafka_ok" in r["expr"],
        "down": lambda r: re.search(r"\bup\b", r["expr"]) or "absent(tailbox_up)" in r["expr"],
    }
    for what, f in want.items():
        c.expect(any(f(r) for r in rules if "expr" in r), f"no rule for {what}")
    for r in rules:
        c.expect(r.get("labels", {}).get("severity"), f"{r.get('alert')}: no severity label")
    if not c.errors:
        c.ok(f"{len(rules)} rules: lag, retained WAL, DLQ, not ready, down")
    promtool_rules(c, os.path.join(ROOT, path), "alerts")


def check_alert_tests(c, path):
    yaml.safe_load(read(path))
    c.ok("YAML")
    if not PROMTOOL:
        c.skip("promtool test rules", PROMTOOL_WHY)
        return
    full = os.path.join(ROOT, path)
    r = run([PROMTOOL, "test", "rules", os.path.basename(full)], cwd=os.path.dirname(full))
    if r.returncode == 0:
        c.ok("promtool test rules: SUCCESS")
    else:
        c.fail("promtool test rules:")
        for line in tail(r.stdout, 30):
            c.fail("  " + line)


def check_markdown(c, path):
    text = read(path)
    base = os.path.dirname(os.path.join(ROOT, path))
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        c.expect(os.path.exists(os.path.normpath(os.path.join(base, link))), f"broken link {link}")
    for ref in sorted(set(re.findall(r"`((?:deploy|scripts|sql|docs)/[\w./-]+)`", text))):
        c.expect(os.path.exists(os.path.join(ROOT, ref)), f"names {ref}, which does not exist")
    check_metric_names(c, text, "text")
    if not c.errors:
        c.ok("links and named files exist")


CHECKS = [
    (r"deploy/Dockerfile", check_dockerfile),
    (r"deploy/Dockerfile\.dockerignore", check_dockerignore),
    (r"deploy/docker-compose\.yml", check_compose),
    (r"deploy/compose/initdb/[^/]+\.sql", check_initdb_sql),
    (r"deploy/kubernetes/[^/]+\.ya?ml", check_k8s),
    (r"deploy/systemd/[^/]+\.service", check_unit),
    (r"deploy/systemd/[^/]+\.env\.example", check_envfile),
    (r"deploy/grafana/[^/]+\.json", check_dashboard),
    (r"deploy/prometheus/[^/]+\.test\.ya?ml", check_alert_tests),
    (r"deploy/prometheus/[^/]+\.ya?ml", check_alerts),
    (r"(deploy/README|docs/deploy)\.md", check_markdown),
]


def main():
    files = []
    for dirpath, _, names in os.walk(os.path.join(ROOT, DEPLOY)):
        files += [rel(os.path.join(dirpath, n)) for n in names]
    files = sorted(files)
    if os.path.exists(os.path.join(ROOT, "docs/deploy.md")):
        files.append("docs/deploy.md")
    passed = failed = partial = 0
    for f in files:
        c = Check()
        fn = next((fn for pat, fn in CHECKS if re.fullmatch(pat, f)), None)
        if fn is None:
            c.fail("no check for this file: add one to scripts/validate-deploy.sh")
        else:
            try:
                fn(c, f)
            except Exception as e:  # a file that breaks a check is invalid
                c.fail(f"{type(e).__name__}: {e}")
        if c.errors:
            failed += 1
            print(f"FAIL  {f}", flush=True)
            for e in c.errors:
                print(f"        {e}", flush=True)
        else:
            status = "PART" if c.skipped else "ok"
            partial += bool(c.skipped)
            passed += not c.skipped
            line = f"{status:<5} {f}: {'; '.join(c.done)}"
            if c.skipped:
                line += " | SKIPPED: " + "; ".join(c.skipped)
            print(line, flush=True)
    print(f"deploy: {passed} passed, {failed} failed, {partial} skipped", flush=True)
    return 1 if failed else 0


sys.exit(main())
PY

TB_ROOT="$root" TB_WORK="$work" \
    TB_BIN="$bin" TB_BIN_WHY="$bin_why" \
    TB_PROMTOOL="$promtool" TB_PROMTOOL_WHY="$promtool_why" \
    TB_JSONSCHEMA="$jsonschema_tool" TB_KUBEVAL="$kubeval_tool" TB_SCHEMA_WHY="$schema_why" \
    TB_SDA="$sda" TB_SDA_WHY="$sda_why" TB_PG_WHY="$pg_why" \
    "$py" "$work/validate.py"
