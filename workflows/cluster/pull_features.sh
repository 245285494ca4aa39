#!/usr/bin/env bash
# Put this repository and its hash-checked feature set on the cluster's shared volume, once,
# on the head node (both presets in this folder call it). Every node then reads the same bytes
# that dvc.lock names; nothing is recomputed on the cluster.
#
#   AMNET_REPO_URL    git URL of this repository (required)
#   AMNET_DVC_REMOTE  the DVC remote holding the pushed set, e.g. s3://bucket/amnet-dvc (required);
#                     credentials come from the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ssh agent)
#   AMNET_REV         commit/branch/tag to check out (default: main)
#   AMNET_SHARED      shared volume folder (default: /mnt/cluster_storage/amnet)
#   AMNET_STAGE       DVC target to pull (default: features; `dvc pull` with no target = everything)
set -euo pipefail
: "${AMNET_REPO_URL:?set AMNET_REPO_URL to the git URL of this repository}"
: "${AMNET_DVC_REMOTE:?set AMNET_DVC_REMOTE to the DVC remote that holds the pushed feature set}"
rev="${AMNET_REV:-main}"
dest="${AMNET_SHARED:-/mnt/cluster_storage/amnet}/repo"
stage="${AMNET_STAGE:-features}"

if [ -d "$dest/.git" ]; then
  git -C "$dest" fetch --quiet origin
else
  mkdir -p "$(dirname "$dest")"
  git clone --quiet "$AMNET_REPO_URL" "$dest"
fi
git -C "$dest" checkout --quiet "$rev"
cd "$dest"
# The remote lives in .dvc/config.local (never committed); verify=true re-hashes every pulled
# file, so a corrupted object in the remote stops here instead of reaching training.
dvc remote add --local --force --default store "$AMNET_DVC_REMOTE"
dvc remote modify --local store verify true
dvc pull "$stage"
dvc status "$stage"
echo "feature set ready in $dest (rev $(git rev-parse --short HEAD)); run jobs from that folder"
