#!/usr/bin/env bash
# lm_jax's command line. Every verb that runs Python sets up .venv first if it is missing.
#
#   ./launch.sh quickstart                     short GPT run on Tiny Shakespeare, then a sample
#   ./launch.sh test                           the test suite (fast tests)
#   ./launch.sh test-slow                      the slow tests (full recipes)
#   ./launch.sh train PRESET [--workdir DIR] [--config.KEY=VALUE ...]
#   ./launch.sh sample --workdir DIR [--prompt TEXT] [--num_tokens N] [--temperature T]
#                      [--top_k K] [--top_p P] [--seed S] [--num_samples N]
#   ./launch.sh sweep PRESET --grid KEY=v1,v2 [--grid ...] [--parallel N] [--sweep_dir DIR]
#                     [--config.KEY=VALUE ...]
#   ./launch.sh translate --workdir DIR [--beam_size B] [--length_penalty A] [--text "..."]
#                         [--attention_png OUT.png]      (sentences from stdin without --text)
#   ./launch.sh self-attention                 self-attention by hand on "I study at school"
#   ./launch.sh import-hf --hf_dir DIR --workdir OUT   a Hugging Face BERT folder -> a workdir
#   ./launch.sh encode --workdir DIR --text "..." [--text ...] --out FILE.npz
#                      [--max_length L] [--batch_size B]
#                      BERT's last hidden states and sentence embeddings
#   ./launch.sh neighbors --workdir DIR --word W [--k K] [--export FILE]
#                      a word-vector run's nearest neighbours
#   ./launch.sh bench                          the speed benchmarks (benchmarks/RESULTS.md)
#   ./launch.sh setup                          only create/refresh .venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LM_JAX_VENV:-$ROOT/.venv}"
VENV="${VENV%/}"  # its lock file sits beside it, not inside
# Absolute: some verbs change directory before they run Python.
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PY="$VENV/bin/python"
STAMP="$VENV/.lm_jax-installed"

die() { echo "error: $*" >&2; exit 2; }

installed() {
  # Reinstall when the pins or the package metadata change, or when asked.
  [ "${1:-}" != force ] && [ -x "$PY" ] && [ -f "$STAMP" ] \
    && [ "$STAMP" -nt "$ROOT/constraints.txt" ] \
    && [ "$STAMP" -nt "$ROOT/setup.cfg" ]
}

setup() {
  installed "$@" && return
  # One set-up at a time: two launches on a fresh checkout would otherwise
  # install into one .venv at once. The second then finds it done.
  # Without a lock where one cannot be had (a folder not ours, no flock).
  mkdir -p "$(dirname "$VENV")"
  if { exec 9>"$VENV.lock"; } 2>/dev/null && command -v flock >/dev/null
  then
    flock 9 || true
  fi
  if installed "$@"; then exec 9>&-; return; fi
  echo "setting up $VENV ..." >&2
  if "$PY" -c '' 2>/dev/null; then
    # A creation cut short leaves no pip (which every launch would then miss).
    "$PY" -m pip --version >/dev/null 2>&1 || "$PY" -m ensurepip >&2 \
      || die "$VENV has no pip and cannot install one; move it away or set LM_JAX_VENV"
  else
    if [ -n "$(ls -A "$VENV" 2>/dev/null)" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
      die "$VENV is not a virtual environment; move it away or set LM_JAX_VENV"
    fi
    "${PYTHON:-python3}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || die "the pinned packages need Python 3.11 or newer; set PYTHON=/path/to/python3.11"
    # A venv of ours whose Python is gone (an upgrade removed it) is made
    # anew; any other is only completed.
    clear=()
    [ -f "$STAMP" ] && clear=(--clear)
    "${PYTHON:-python3}" -m venv ${clear[@]+"${clear[@]}"} "$VENV" \
      || die "could not make $VENV; move it away or set LM_JAX_VENV"
  fi
  "$PY" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt" \
    -e "$ROOT[test]" >&2
  touch "$STAMP"
  exec 9>&-
}

# Raw corpora: $LM_JAX_DATA, else the shared data folder beside the checkout.
if [ -z "${LM_JAX_DATA:-}" ] && [ -d "$ROOT/../shared/data" ]; then
  export LM_JAX_DATA="$(cd "$ROOT/../shared/data" && pwd)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# glibc gives every allocation over 32 MB fresh pages, which the kernel then
# faults in 4 KB at a time on each step; transparent huge pages for malloc'd
# memory cut that cost (BERT fine-tuning about 20% faster on a 2-core VM).
# Harmless where huge pages are off or the C library is not glibc.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}"

preset_file() {
  local preset="$1" file="$ROOT/experiments/configs/$1.py"
  if [ ! -f "$file" ] || [ "$preset" = base ] || [ "$preset" = __init__ ]; then
    local known
    known="$(cd "$ROOT/experiments/configs" && ls *.py | grep -v -e '^base.py$' -e '^__init__.py$' | sed 's/\.py$//' | tr '\n' ' ')"
    die "unknown preset '$preset'; presets: $known"
  fi
  echo "$file"
}

verb="${1:-}"
[ $# -gt 0 ] && shift
case "$verb" in
  setup)
    setup force ;;
  test)
    setup
    cd "$ROOT"
    # Three workers on two cores: while one waits on a subprocess (the
    # command-line and multi-host tests), the others keep both cores busy
    # (README: the suite's times).
    exec "$PY" -m pytest -q -n 3 "$@" ;;
  test-slow)
    setup
    cd "$ROOT"
    exec "$PY" -m pytest -q -m slow "$@" ;;
  train)
    [ $# -ge 1 ] || die "usage: ./launch.sh train PRESET [--workdir DIR] [--config.KEY=VALUE ...]"
    preset="$1"; shift
    file="$(preset_file "$preset")"
    # Without --workdir: runs/PRESET, or runs/PRESET-KEY-VALUE... where the
    # --config flags change the training (experiments/cli.py).
    args=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --workdir)
          # A flag in its place means the value was forgotten.
          [ $# -ge 2 ] && [[ "$2" != --* ]] || die "--workdir needs a value"
          args+=("--workdir=$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
      esac
    done
    setup
    exec "$PY" -m experiments.train --config="$file" ${args[@]+"${args[@]}"} ;;
  sample)
    setup
    exec "$PY" -m experiments.sample "$@" ;;
  neighbors)
    setup
    exec "$PY" -m experiments.neighbors "$@" ;;
  translate)
    setup
    exec "$PY" -m experiments.translate "$@" ;;
  self-attention)
    setup
    exec "$PY" -m experiments.self_attention_example "$@" ;;
  import-hf)
    setup
    exec "$PY" -m experiments.import_hf "$@" ;;
  encode)
    setup
    exec "$PY" -m experiments.encode "$@" ;;
  sweep)
    [ $# -ge 1 ] || die "usage: ./launch.sh sweep PRESET --grid KEY=v1,v2 [--grid ...] [--parallel N] [--sweep_dir DIR] [--config.KEY=VALUE ...]"
    preset_file "$1" >/dev/null
    setup
    exec "$PY" -m experiments.sweep --preset="$1" "${@:2}" ;;
  quickstart)
    [ $# -eq 0 ] || die "quickstart takes no arguments; for your own settings use ./launch.sh train shakespeare_char_cpu --workdir DIR --config.KEY=VALUE"
    setup
    workdir="$ROOT/runs/quickstart"
    # The whole nanoGPT CPU recipe: about 1.5 minutes on 2 cores.
    # Training cannot be exec'd (sampling follows), so a signal to this
    # script is passed on: a kill must not leave it training. It runs in the
    # background for that, where bash ignores Ctrl-C for it: that too is
    # passed on, as a SIGTERM (the run resumes from its last checkpoint).
    # The traps come first, so that no signal falls between the start and
    # them; until the training starts, $! is unset.
    stop_training() {  # $1: the signal this script got
      if [ -n "${!:-}" ]; then
        kill -TERM "$!" 2>/dev/null || true
        wait "$!" || true
      fi
      trap - "$1"
      kill -"$1" $$  # ends this script as that signal would have
    }
    for signal in INT TERM HUP; do
      # shellcheck disable=SC2064  # each trap names its own signal
      trap "stop_training $signal" "$signal"
    done
    "$PY" -m experiments.train --config="$(preset_file shakespeare_char_cpu)" \
      --workdir="$workdir" &
    wait "$!"
    trap - INT TERM HUP
    exec "$PY" -m experiments.sample --workdir="$workdir" --num_tokens=400 \
      --prompt="ROMEO:" --temperature=0.8 ;;
  bench)
    setup
    cd "$ROOT"
    # Three rounds, each ending with the PyTorch baseline where its separate
    # venv exists (see benchmarks/nanogpt_reference.py), so that both sides
    # are timed in the same minutes of a shared machine.
    reference=()
    if [ -x "$ROOT/.venv-bench/bin/python" ]; then
      reference=(--reference "$ROOT/.venv-bench/bin/python")
    fi
    exec "$PY" benchmarks/gpt_cpu_throughput.py --rounds 3 ${reference[@]+"${reference[@]}"} "$@" ;;
  ""|-h|--help|help)
    # The comment block at the top, whatever its length.
    awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" ;;
  *)
    die "unknown command '$verb'; commands: quickstart test test-slow train sample translate self-attention import-hf encode neighbors sweep bench setup" ;;
esac
