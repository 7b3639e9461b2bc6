#!/usr/bin/env bash
# Builds a snapshot release with GoReleaser, publishing nothing, and checks
# what it made: the binaries run and carry the version, commit and date;
# the archives and checksums are there; and the release holds the disk
# images in every format, with SHA256SUMS. .ci/run calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

goreleaser() { go run github.com/goreleaser/goreleaser/v2@v2.15.1 "$@"; }
fail() { echo "release.sh: $*" >&2; exit 1; }

# GoReleaser takes the commit, its date and the remote URL from git, and in
# snapshot mode falls back to fake values ("none", no date) when any is
# missing. A clone without a remote gets the project's URL through git's
# environment configuration, which changes no file.
if [[ -z $(git remote) ]]; then
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url \
    GIT_CONFIG_VALUE_0=https://github.com/tinyvm-oci/tinyvm-oci.git
fi

goreleaser check
goreleaser release --snapshot --clean --skip=publish

# Every target was built; the linux/amd64 binary runs `version`.
for target in linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64 windows_arm64; do
  exe=tinyvm-oci
  [[ $target == windows_* ]] && exe=tinyvm-oci.exe
  compgen -G "dist/tinyvm-oci_${target}*/${exe}" >/dev/null || fail "no ${exe} for ${target} in dist/"
done
bin=$(compgen -G 'dist/tinyvm-oci_linux_amd64*/tinyvm-oci' | head -n1)
out=$("$bin" version)
echo "$out"
commit=$(git rev-parse HEAD)
grep -q '^tinyvm-oci [0-9][0-9.]*-snapshot' <<<"$out" || fail "version not injected: $out"
grep -qx "commit: ${commit}" <<<"$out" || fail "commit ${commit} not injected: $out"
grep -q '^built: [0-9]\{4\}-' <<<"$out" || fail "date not injected: $out"

# mod_timestamp: the binary's mtime is the commit time, not the clock.
[[ $(stat -c %Y "$bin") == $(git log -1 --format=%ct) ]] || fail "$bin mtime is not the commit time"

# Archives and checksums.
for target in linux_amd64 linux_arm64 darwin_amd64 darwin_arm64; do
  compgen -G "dist/tinyvm-oci_*_${target}.tar.gz" >/dev/null || fail "no archive for ${target}"
done
for target in windows_amd64 windows_arm64; do
  compgen -G "dist/tinyvm-oci_*_${target}.zip" >/dev/null || fail "no archive for ${target}"
done
[[ -s dist/checksums.txt ]] || fail "no dist/checksums.txt"
(cd dist && sha256sum --quiet -c <(grep -v ' 512-byte-vm\.\| SHA256SUMS$' checksums.txt)) || fail "archive checksums do not match"

# The disk images: one file per format that `build` knows, each listed in
# dist-images/SHA256SUMS and in the release checksums, and the same bytes
# in the disk-images archive.
formats=$("$bin" build --help | sed -n 's/.*default all: \([a-z0-9,]*\)).*/\1/p')
[[ -n $formats ]] || fail "cannot read the format list from build --help"
want=$(tr ',' '\n' <<<"$formats" | wc -l)
mapfile -t images < <(cd dist-images && ls 512-byte-vm.*)
[[ ${#images[@]} -eq $want ]] || fail "${#images[@]} disk images in dist-images, want ${want} (${formats})"
(cd dist-images && sha256sum --quiet -c SHA256SUMS) || fail "dist-images/SHA256SUMS does not match"
archive=$(compgen -G 'dist/512-byte-vm_*_disk-images.tar.gz' | head -n1)
[[ -n $archive ]] || fail "no disk-images archive in dist/"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$archive" -C "$tmp"
for f in "${images[@]}" SHA256SUMS; do
  cmp -s "dist-images/$f" "$tmp/$f" || fail "$f missing from or different in $archive"
  sum=$(sha256sum "dist-images/$f" | cut -d' ' -f1)
  grep -q "^${sum}  ${f}\$" dist/checksums.txt || fail "$f not in dist/checksums.txt"
done
echo "release.sh: ok: ${#images[@]} disk images (${formats}), 6 binaries, archives and checksums"
