#!/usr/bin/env bash
# Regenerates gateway/src/dimse/storage_classes.rs from the SOP class
# table of the dicom-dictionary-std crate in the local cargo registry.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(ls -d ~/.cargo/registry/src/*/dicom-dictionary-std-0.10.*/src/uids.rs | tail -n1)
out=gateway/src/dimse/storage_classes.rs
{
  echo '//! Storage SOP classes we accept (generated from dicom-dictionary-std 0.10.1,'
  echo '//! PS3.6 Table A-1, by scripts/gen-storage-classes.sh; retired classes included'
  echo '//! because older modalities still send them). (UID, name).'
  echo
  echo '#[rustfmt::skip]'
  echo 'pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &['
  sed -n '/^pub(crate) const SOP_CLASSES/,/^];/p' "$src" | grep -E '^\s+E::new' | grep 'Storage' \
    | grep -v -E 'Commitment|Storage Management|Media Storage Directory' \
    | sed -E 's/^\s+E::new\(("[^"]+"), ("[^"]+"), .*/    (\1, \2),/'
  echo '];'
} > "$out"
echo "wrote $out"
