#!/bin/sh
# Prints the cargo features among $1 (space-separated) that the manifest $2 declares in its
# [features] table, space-separated on one line; warns on stderr about each one it leaves out.
# Used by docker/Dockerfile so `FEATURES="kafka mongo"` builds with whichever already exist.
#
#   sh docker/select-features.sh "kafka mongo" server/Cargo.toml
set -eu

requested="${1:-}"
manifest="${2:-server/Cargo.toml}"
declared="$(awk '
  /^[[:space:]]*\[/ { in_features = ($0 ~ /^[[:space:]]*\[features\][[:space:]]*(#.*)?$/); next }
  in_features && /^[[:space:]]*[A-Za-z0-9_-]+[[:space:]]*=/ {
    sub(/^[[:space:]]*/, ""); sub(/[[:space:]]*=.*/, ""); print
  }' "$manifest")"

selected=""
for feature in $(printf '%s' "$requested" | tr ',' ' '); do
  if printf '%s\n' "$declared" | grep -qxF -- "$feature"; then
    selected="${selected:+$selected }$feature"
  else
    echo "select-features: $manifest declares no feature \`$feature\`; building without it" >&2
  fi
done
printf '%s\n' "$selected"
