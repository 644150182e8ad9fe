#!/usr/bin/env bash
# Runs every test of Dossier on a fresh machine:
#   1. makes local virtualenvs (if missing) with pinned moto server and aws-sam-cli + cfn-lint,
#   2. starts moto server on a free loopback port (stopped by PID on exit),
#   3. installs Debian's chromium + chromium-driver if missing (browser test of the approval pages),
#   4. checks formatting and clippy, runs every Rust test (unit, contract, adapter, CLI, browser, end-to-end),
#   5. lints the SAM template (`sam validate --lint`, checkov),
#   6. runs each cargo-fuzz target for FUZZ_SECONDS (default 20), built in the background meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
SAM_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
CHECKOV_VERSION="3.3.30"
export SAM_CLI_TELEMETRY=0
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Each step's wall time, printed at the end (the README and issue 17 track them).
RUN_STARTED=$SECONDS
STEP_NAME=""
STEP_STARTED=$SECONDS
STEP_TIMES=()
end_step() {
  if [ -n "$STEP_NAME" ]; then STEP_TIMES+=("$(printf '%5ss  %s' "$((SECONDS - STEP_STARTED))" "$STEP_NAME")"); fi
}
step() {
  end_step
  STEP_NAME="$*"
  STEP_STARTED=$SECONDS
  printf '\n==> %s\n' "$*"
}
print_step_times() {
  end_step
  STEP_NAME=""
  echo
  echo "step times:"
  printf '  %s\n' "${STEP_TIMES[@]}"
  printf '  %5ss  total\n' "$((SECONDS - RUN_STARTED))"
}

# venv DIR STAMP PACKAGES...: a virtualenv with exactly these pinned packages.
venv() {
  local dir="$1" stamp="$2"; shift 2
  if [ ! -f "$dir/.installed-$stamp" ]; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    touch "$dir/.installed-$stamp"
  fi
}

# The fuzz targets build in the background from the start, at the lowest CPU priority: their
# release build (instrumented) is some 6 CPU-minutes, and it takes only what the rest leaves idle
# (installs, tests waiting on moto, the linters), so it neither slows the Rust build and tests nor
# waits for them. cargo-fuzz with `--sanitizer none` runs on the stable toolchain (no sanitizer:
# the fuzzed crate forbids `unsafe`); `--debug-assertions` turns on overflow checks and debug
# assertions, which a release build leaves out (panics, overflows and hangs are what the targets
# look for); 16 codegen units build in 185 s instead of 259 s here (some 30 % fewer runs a second).
FUZZ_FLAGS="--sanitizer none --debug-assertions --codegen-units 16"
export FUZZ_FLAGS
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_TARGETS=(webhook extra_data link message model_answer evidence)
FUZZ_BUILD_LOG="$(mktemp -t fuzz-build.XXXXXX.log)"
# Its own session makes its process tree one group the exit trap can stop; but a new session is also
# a new scheduler autogroup (Linux, when enabled), where `nice` counts only inside the group and the
# group as a whole would get half the CPU: so the group itself is niced too (measured here: plain
# `setsid` left the foreground 50 % of the two cores, the niced autogroup 97 %).
setsid --wait nice -n 19 bash -c '
  set -e
  if [ -w /proc/self/autogroup ]; then echo 19 >/proc/self/autogroup || echo "autogroup priority unchanged"; fi
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
  cargo fuzz build $FUZZ_FLAGS
' >"$FUZZ_BUILD_LOG" 2>&1 &
FUZZ_BUILD_PID=$!

# Whatever was started is stopped on any exit; each is set once started.
MOTO_PID="" MOTO_LOG="" LINT_VENV_PID="" LINT_VENV_LOG="" FUZZ_DIR=""
FUZZ_PIDS=()
cleanup() {
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ -n "$LINT_VENV_PID" ]; then kill "$LINT_VENV_PID" 2>/dev/null || true; fi
  # The fuzz build runs in a session of its own: its whole process group goes.
  kill -- "-$FUZZ_BUILD_PID" 2>/dev/null || true
  # So does each fuzz run's (cargo, cargo-fuzz, the fuzzer).
  for pid in "${FUZZ_PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  rm -rf "$MOTO_LOG" "$LINT_VENV_LOG" "$FUZZ_BUILD_LOG" "$FUZZ_DIR"
}
trap cleanup EXIT

step "virtualenv (moto ${MOTO_VERSION}); aws-sam-cli ${SAM_VERSION}, cfn-lint ${CFN_LINT_VERSION}, checkov ${CHECKOV_VERSION} install meanwhile"
# Separate environments: their boto3 pins differ. The template linters are needed only after the
# Rust tests, so they install in the background while cargo builds (mostly network and unpacking
# against the compiler's CPU); their log is shown if they fail.
LINT_VENV_LOG="$(mktemp -t lint-venvs.XXXXXX.log)"
(
  venv .venv-sam "$SAM_VERSION-$CFN_LINT_VERSION" "aws-sam-cli==${SAM_VERSION}" "cfn-lint==${CFN_LINT_VERSION}"
  venv .venv-checkov "$CHECKOV_VERSION" "checkov==${CHECKOV_VERSION}"
) >"$LINT_VENV_LOG" 2>&1 &
LINT_VENV_PID=$!
venv .venv-moto "$MOTO_VERSION" "moto[server]==${MOTO_VERSION}"

step "chromium + chromedriver (browser test of the approval pages)"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then echo "install Debian's chromium and chromium-driver (needs root), then run again"; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version

step "moto server"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
MOTO_LOG="$(mktemp -t moto.XXXXXX.log)"
# moto with its DynamoDB requests serialised (see tests/moto_server.py: concurrent transactions
# undo each other's writes in plain moto).
.venv-moto/bin/python tests/moto_server.py -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:${PORT}/moto-api/', timeout=1)" 2>/dev/null; then break; fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then echo "moto server exited:"; cat "$MOTO_LOG"; exit 1; fi
  sleep 0.2
done
echo "moto server on 127.0.0.1:${PORT} (pid ${MOTO_PID})"
export DOSSIER_TEST_AWS_ENDPOINT="http://127.0.0.1:${PORT}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test (unit, contract on embedded + moto, adapters against fakes, CLI, end-to-end)"
TEST_LOG="$(mktemp -t cargo-test.XXXXXX.log)"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$TEST_LOG"
TEST_STATUS=${PIPESTATUS[0]}
set -e
SUMMARY="$(grep -E '^test result:' "$TEST_LOG" | awk '
  { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
  END { printf "%d passed, %d failed, %d skipped", p, f, s }')"
rm -f "$TEST_LOG"
if [ "$TEST_STATUS" -ne 0 ]; then print_step_times; echo "tests: $SUMMARY"; exit "$TEST_STATUS"; fi
case "$SUMMARY" in 0\ passed*) echo "no test ran"; exit 1 ;; esac

step "template linters installed (waited for)"
if ! wait "$LINT_VENV_PID"; then echo "installing aws-sam-cli / cfn-lint / checkov failed:"; cat "$LINT_VENV_LOG"; exit 1; fi

step "sam validate --lint"
.venv-sam/bin/sam validate --lint --template template.yaml

step "checkov (every suppression is justified in the resource's Metadata)"
.venv-checkov/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

step "fuzz: ${FUZZ_TARGETS[*]} (${FUZZ_SECONDS}s each, two at a time; cargo-fuzz: overflow checks, no sanitizer)"
if ! wait "$FUZZ_BUILD_PID"; then echo "building the fuzz targets failed:"; tail -60 "$FUZZ_BUILD_LOG"; exit 1; fi
# fuzz_one TARGET: fuzzes one target; new inputs go to a scratch corpus (the seeds in fuzz/corpus
# stay as committed); its log goes to $FUZZ_DIR/TARGET.log.
fuzz_one() {
  local target="$1" scratch
  scratch="$(mktemp -d)"
  local status=0
  cargo fuzz run $FUZZ_FLAGS "$target" "$scratch" "fuzz/corpus/$target" -- -max_total_time="$FUZZ_SECONDS" >"$FUZZ_DIR/$target.log" 2>&1 || status=$?
  rm -rf "$scratch"
  return "$status"
}
FUZZ_DIR="$(mktemp -d)"
export -f fuzz_one
export FUZZ_DIR FUZZ_SECONDS
FUZZ_RUNS=""
# Each libFuzzer process is one thread: two at a time fill both cores. A failure stops its partner
# (the exit trap) and shows the failing target's log.
for ((i = 0; i < ${#FUZZ_TARGETS[@]}; i += 2)); do
  FUZZ_PIDS=()
  for target in "${FUZZ_TARGETS[@]:i:2}"; do
    setsid --wait bash -c 'fuzz_one "$1"' fuzz_one "$target" &
    FUZZ_PIDS+=("$!")
  done
  for k in "${!FUZZ_PIDS[@]}"; do
    target="${FUZZ_TARGETS[i + k]}"
    if ! wait "${FUZZ_PIDS[k]}"; then
      echo "fuzz target $target failed:"; tail -40 "$FUZZ_DIR/$target.log"
      # CI keeps only the tail of the output: the panic and the input go last, the input as
      # base64 (`base64 -d > crash` and `cargo fuzz run $FUZZ_FLAGS $target crash` replays it).
      echo "what failed:"; grep -E -A4 "panicked at|ERROR: libFuzzer" "$FUZZ_DIR/$target.log" | head -30
      for crash in fuzz/artifacts/"$target"/*; do
        [ -f "$crash" ] || continue
        echo "reproducer $crash ($(wc -c <"$crash") bytes; first 4 KiB as base64):"; head -c 4096 "$crash" | base64
      done
      exit 1
    fi
    if ! runs="$(grep -oE '^Done [0-9]+' "$FUZZ_DIR/$target.log" | awk '{print $2}')" || [ -z "$runs" ]; then
      echo "fuzz target $target ended without libFuzzer's 'Done' line:"; tail -40 "$FUZZ_DIR/$target.log"; exit 1
    fi
    echo "$target: $(grep -E '^Done' "$FUZZ_DIR/$target.log")"
    FUZZ_RUNS="$FUZZ_RUNS $target:$runs"
  done
done
FUZZ_PIDS=()

print_step_times
echo
echo "all checks passed (fmt, clippy, tests, sam validate --lint, checkov, fuzz)"
echo "fuzz runs:$FUZZ_RUNS"
echo "tests: $SUMMARY"
