#!/usr/bin/env bash
# Runs `npm run setup` only when something it installs may be missing or out of date: the stamp
# is a hash of every file that pins a part, written after a successful setup.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.tools/setup.stamp
want=$(cat scripts/setup.sh package-lock.json tools/pulumi/go.mod tools/pulumi/pulumi-resource-pulumi-nodejs tools/vcsim/go.mod tools/moto/requirements.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/node ] && [ -x .tools/bin/vcsim ]; then
  exit 0
fi
bash scripts/setup.sh
mkdir -p .tools
echo "$want" >"$stamp"
