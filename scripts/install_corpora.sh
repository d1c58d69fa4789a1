#!/usr/bin/env bash
# Fetch the Debian packages that the built-in corpora builtin://markup and
# builtin://code-adjacent are made from, and unpack them (no install, no root
# needed for dpkg-deb -x) into a cache the data preparation reads:
#
#   scripts/install_corpora.sh DATA_ROOT      -> DATA_ROOT/debian/<package>/
#
# Each package lands as DATA_ROOT/debian/<package>/tree/ (the unpacked files)
# and DATA_ROOT/debian/<package>/package.txt (deb file name, version, sha256);
# each package is unpacked in a temporary folder and renamed into place, so a
# half-unpacked package is never taken for a complete one.
# A package already there is skipped; pass --refresh to fetch it again.
# Only Debian's package archive is contacted (apt-get update + apt-get download).
set -euo pipefail

PACKAGES=(
  python3.11-doc   # HTML of the Python documentation (markup) + FAQ reST (code-adjacent)
  python3.11       # NEWS: CPython changelog entries 3.5 -> 3.11 (code-adjacent)
  python3.11-dev   # HISTORY: CPython changelog entries before 3.5 (code-adjacent)
)

refresh=0
root=""
for arg in "$@"; do
  case "$arg" in
    --refresh) refresh=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) root="$arg" ;;
  esac
done
if [[ -z "$root" ]]; then
  echo "usage: $0 [--refresh] DATA_ROOT" >&2
  exit 2
fi

dest="$root/debian"
mkdir -p "$dest"

missing=()
for pkg in "${PACKAGES[@]}"; do
  if [[ $refresh == 1 || ! -f "$dest/$pkg/package.txt" ]]; then
    missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} == 0 ]]; then
  echo "corpora packages already unpacked in $dest"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) != 0 ]] && command -v sudo >/dev/null; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq

work=$(mktemp -d "$dest/.download.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt drops to its _apt user to download, which cannot write into a private
# folder under an arbitrary data root; download as the invoking user instead.
apt_opts=(-qq)
if [[ $(id -u) == 0 ]]; then apt_opts+=(-o APT::Sandbox::User=root); fi
for pkg in "${missing[@]}"; do
  (cd "$work" && apt-get download "${apt_opts[@]}" "$pkg")
  deb=$(ls "$work"/"${pkg}"_*.deb)
  version=$(dpkg-deb -f "$deb" Version)
  sha=$(sha256sum "$deb" | cut -d' ' -f1)
  stage="$work/$pkg"
  mkdir -p "$stage/tree"
  dpkg-deb -x "$deb" "$stage/tree"
  printf 'package: %s\nversion: %s\ndeb: %s\nsha256: %s\n' \
    "$pkg" "$version" "$(basename "$deb")" "$sha" >"$stage/package.txt"
  rm -rf "$dest/$pkg"
  mv "$stage" "$dest/$pkg"
  rm -f "$deb"
  echo "unpacked $pkg $version into $dest/$pkg"
done
