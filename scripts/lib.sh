# Shared by scripts/up and scripts/test: each step installs or starts what it
# needs only when it is missing, so a second run is quick. The callers run from
# the repository root (the paths below are relative to it).
#
#   ensure_venv              .venv with the pinned tools of infra/local/requirements.txt
#   ensure_ffmpeg            ffmpeg (and the title cards' font) from Debian
#   ensure_moto              moto on 127.0.0.1:$MOTO_PORT, reused if one answers there;
#                            exports AWS_ENDPOINT_URL, region and test credentials
#   stop_moto_if_started_here
#   bootstrap_stack [NAME]   the template's resources in moto; exports their names
#   lint_template            cfn-lint, sam validate --lint and checkov, offline
#   ensure_chromium          Debian's chromium, for the browser test (scripts/test only)
#   ensure_browser_deps      node, and tests/browser's playwright-core from its lock file
#   ensure_node              node and npm
#   ensure_client_deps       clients/typescript's packages from its lock file

LOCAL_DIR=".local"
VENV=".venv"
export MOTO_PORT="${MOTO_PORT:-5000}"

log() { printf '==> %s\n' "$*" >&2; }

# .local holds keys and secrets (the demo keys, the local provider's secret
# and token, the stacks' environment): only its owner may enter it.
private_local_dir() {
  mkdir -p "$LOCAL_DIR"
  chmod 700 "$LOCAL_DIR"
}

# A project-local Python with moto, cfn-lint, SAM CLI and cargo-lambda, pinned in
# infra/local/requirements.txt; reinstalled only when that file changes.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(sha256sum infra/local/requirements.txt | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "installing the local stack's Python tools into $VENV"
  # A venv whose interpreter no longer runs (python3 upgraded) is made anew.
  "$VENV/bin/python" -c '' 2>/dev/null || python3 -m venv --clear "$VENV" || {
    log "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    return 1
  }
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r infra/local/requirements.txt
  echo "$want" > "$stamp"
}

# ffmpeg renders the local provider's videos (Debian's package).
ensure_ffmpeg() {
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null \
    && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] && return
  log "installing ffmpeg"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "ffmpeg is missing and installing it needs root"; return 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  # The DejaVu font draws the prompt on the local provider's title cards.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg fonts-dejavu-core >/dev/null
}

# moto's own config endpoint, which names its services: another server on the
# port does not pass for moto.
moto_answers() {
  local config
  config=$(curl -fsS --max-time 2 "http://127.0.0.1:$MOTO_PORT/moto-api/config" 2>/dev/null) \
    && [[ $config == *'"lambda"'* ]]
}

# moto in server mode on $MOTO_PORT, reused when one already answers there.
ensure_moto() {
  export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  if moto_answers; then
    return
  fi
  if curl -sS -o /dev/null --max-time 2 "http://127.0.0.1:$MOTO_PORT/" 2>/dev/null; then
    log "port $MOTO_PORT answers, but not as moto: set MOTO_PORT to a free port"
    return 1
  fi
  log "starting moto on port $MOTO_PORT (log: $LOCAL_DIR/moto-$MOTO_PORT.log)"
  private_local_dir
  # Its own session, so that Ctrl-C on scripts/up leaves it (and its data)
  # running. The shell writes its own pid and becomes moto (exec): $! would be
  # setsid's when setsid has to fork.
  # shellcheck disable=SC2016 # $$ is for the inner shell
  setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$LOCAL_DIR/moto-$MOTO_PORT.pid" \
    "$VENV/bin/python" infra/local/moto_server.py -H 127.0.0.1 -p "$MOTO_PORT" \
    >"$LOCAL_DIR/moto-$MOTO_PORT.log" 2>&1 < /dev/null &
  MOTO_STARTED_HERE=1
  local pid=""
  for _ in $(seq 1 60); do
    moto_answers && return
    [ -n "$pid" ] || pid=$(cat "$LOCAL_DIR/moto-$MOTO_PORT.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      # It exited: another moto may have taken the port first (two commands
      # starting at once); use that one, else give up.
      if moto_answers; then
        MOTO_STARTED_HERE=""
        return
      fi
      break
    fi
    sleep 0.5
  done
  log "moto did not start; the end of $LOCAL_DIR/moto-$MOTO_PORT.log:"
  tail -n 20 "$LOCAL_DIR/moto-$MOTO_PORT.log" >&2
  return 1
}

# Stops the moto that ensure_moto started in this shell, if it did.
stop_moto_if_started_here() {
  if [ "${MOTO_STARTED_HERE:-}" = 1 ] && [ -f "$LOCAL_DIR/moto-$MOTO_PORT.pid" ]; then
    kill "$(cat "$LOCAL_DIR/moto-$MOTO_PORT.pid")" 2>/dev/null || true
    rm -f "$LOCAL_DIR/moto-$MOTO_PORT.pid"
  fi
}

# Creates the template's resources in moto (again: it reuses what exists) and
# exports their names for the functions.
bootstrap_stack() {
  local name="${1:-${STACK_NAME:-videojobs-local}}"
  local env_file="$LOCAL_DIR/$name.env"
  private_local_dir
  "$VENV/bin/python" infra/local/bootstrap.py --stack-name "$name" --env-out "$env_file" >/dev/null
  # shellcheck disable=SC1090
  source "$env_file"
}

# The local video provider on LOCAL_PROVIDER_PORT (4010), with a signing secret
# and the bearer token its API takes kept in .local, so that a restarted API
# still trusts (and is trusted by) a provider left running.
ensure_local_provider() {
  local port="${LOCAL_PROVIDER_PORT:-4010}"
  private_local_dir
  if [ ! -s "$LOCAL_DIR/provider-secret" ]; then
    python3 -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(24)).decode())' > "$LOCAL_DIR/provider-secret"
  fi
  export LOCAL_PROVIDER_WEBHOOK_SECRET
  LOCAL_PROVIDER_WEBHOOK_SECRET=$(cat "$LOCAL_DIR/provider-secret")
  export LOCAL_PROVIDER_WEBHOOK_SECRETS="$LOCAL_PROVIDER_WEBHOOK_SECRET"
  if [ ! -s "$LOCAL_DIR/provider-token" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$LOCAL_DIR/provider-token"
  fi
  export LOCAL_PROVIDER_TOKEN
  LOCAL_PROVIDER_TOKEN=$(cat "$LOCAL_DIR/provider-token")
  export LOCAL_PROVIDER_URL="http://127.0.0.1:$port"
  local auth="Authorization: Bearer $LOCAL_PROVIDER_TOKEN"
  if curl -fsS -o /dev/null --max-time 2 -H "$auth" "$LOCAL_PROVIDER_URL/v1/stats" 2>/dev/null; then
    return
  fi
  log "starting the local provider on port $port (log: $LOCAL_DIR/provider.log)"
  # Source images come from moto's S3 on loopback.
  LOCAL_PROVIDER_ADDR="127.0.0.1:$port" LOCAL_PROVIDER_DIR="$LOCAL_DIR/provider" LOCAL_PROVIDER_ALLOW_LOOPBACK_IMAGES=true \
    setsid target/debug/local-provider >"$LOCAL_DIR/provider.log" 2>&1 < /dev/null &
  echo $! > "$LOCAL_DIR/provider.pid"
  for _ in $(seq 1 40); do
    curl -fsS -o /dev/null --max-time 2 -H "$auth" "$LOCAL_PROVIDER_URL/v1/stats" 2>/dev/null && return
    sleep 0.25
  done
  log "the local provider did not start; see $LOCAL_DIR/provider.log"
  return 1
}

# cfn-lint (warnings fail too) and SAM's own validation. Both run offline and
# need no credentials; sam wants a region, and telemetry off keeps it from
# reaching out.
lint_template() {
  log "linting template.yaml"
  "$VENV/bin/cfn-lint" template.yaml
  SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" validate --lint --template-file template.yaml \
    --region "${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}" >/dev/null
  # The IaC security scan: any failed check fails the run; each skipped one
  # is justified where it is skipped (the resource's Metadata in the template).
  log "scanning template.yaml with checkov"
  "$VENV/bin/checkov" --file template.yaml --framework cloudformation --quiet --compact \
    --skip-download >/dev/null || {
    "$VENV/bin/checkov" --file template.yaml --framework cloudformation --quiet --compact --skip-download >&2
    return 1
  }
}

# Installs Debian packages as root (directly or through sudo).
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "installing $* needs root"; return 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Debian's Chromium: the review page's browser test drives it headless.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return
  log "installing chromium (for the browser test)"
  apt_install chromium
}

# Node.js and the browser test's own packages (playwright-core, no browser
# download), installed from tests/browser/package-lock.json; again only when
# the lock file changes.
ensure_browser_deps() {
  command -v node >/dev/null && command -v npm >/dev/null || {
    log "installing nodejs and npm (for the browser test)"
    apt_install nodejs npm
  }
  local dir="tests/browser" stamp="tests/browser/node_modules/.lock.sha256" want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -d "$dir/node_modules/playwright-core" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return
  log "installing the browser test's packages into $dir/node_modules"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$stamp"
}

# Node.js and npm, from Debian when missing.
ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return
  log "installing nodejs and npm"
  apt_install nodejs npm
}

# The TypeScript client's packages (openapi-typescript, typescript), from
# clients/typescript/package-lock.json; again only when the lock file changes.
ensure_client_deps() {
  ensure_node
  local dir="clients/typescript" stamp="clients/typescript/node_modules/.lock.sha256" want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -d "$dir/node_modules/openapi-typescript" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return
  log "installing the TypeScript client's packages into $dir/node_modules"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$stamp"
}
