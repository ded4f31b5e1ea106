#!/usr/bin/env bash
# Shared by the tpu_scripts: flag parsing helpers and `run`, which prints each command (one line,
# prefixed "+ ", shell-quoted exactly as it would run) and runs it unless --dry_run was given.
# Sourced, not run: `source "$(dirname "$0")/common.sh"`.

DRY_RUN=${DRY_RUN:-0}

die() {
  echo "error: $*" >&2
  exit 2
}

# quote ARG: ARG as the shell reads it back, plain when it is plain, else in single quotes.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# run CMD ARGS...: print "+ CMD ARGS..." (one line, quoted) then run it (not with --dry_run).
run() {
  local line="+" arg
  for arg in "$@"; do
    line+=" $(quote "$arg")"
  done
  echo "$line"
  if [[ "$DRY_RUN" != 1 ]]; then
    "$@"
  fi
}

# need VALUE "--flag or ENV": a one-line error when a required setting is missing.
need() {
  [[ -n "$1" ]] || die "missing $2"
}

# gcloud's project flag, when --project / PROJECT is set.
project_args() {
  if [[ -n "${PROJECT:-}" ]]; then
    printf '%s\n' "--project=$PROJECT"
  fi
}
