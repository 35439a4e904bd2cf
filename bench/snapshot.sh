#!/bin/sh
# Copies the current build (build/core.wasm, dist/) into DIR so that a long
# benchmark keeps measuring one version while others rebuild the tree:
#
#   bench/snapshot.sh /tmp/wr-snap
#   CORE_WASM=/tmp/wr-snap/build/core.wasm node bench/dispatch.mjs
#   node bench/echo.mjs --bin /tmp/wr-snap/bin/wasm-reactor.js
#
# dist/cli.js finds the core at ../build/core.wasm and koffi through
# node_modules, so the copy keeps that layout and links node_modules back.
set -eu
dir=${1:?usage: bench/snapshot.sh DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir"
mkdir -p "$dir"
cp -r "$root/build" "$root/dist" "$root/bin" "$root/package.json" "$dir/"
ln -s "$root/node_modules" "$dir/node_modules"
echo "snapshot of $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- assembly host || echo ' + uncommitted changes in assembly/ or host/') in $dir"
echo "core.wasm sha256 $(sha256sum "$dir/build/core.wasm" | cut -c1-16)"
