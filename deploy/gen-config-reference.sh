#!/usr/bin/env bash
# Regenerate the configuration reference in deploy/README.md (between the config-reference
# markers) from the config crate, the one place options are declared. The test
# `deploy_readme_reference_is_the_generated_one` in hubcat-config fails when they differ.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
HUBCAT_WRITE_REFERENCE=1 cargo test --quiet -p hubcat-config deploy_readme_reference_is_the_generated_one >/dev/null
echo "deploy/README.md: configuration reference regenerated" >&2
