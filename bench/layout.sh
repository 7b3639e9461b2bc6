#!/usr/bin/env bash
# Time `tinyvm-oci build` of everything (every format, SHA256SUMS, the OCI
# layout with the VM artifact, the KubeVirt manifests) against a build of
# the files and SHA256SUMS alone, and of the files with the layout but no
# manifests (which splits the layout's cost from theirs), for each disk
# size, in the same run:
# the runs of every variant are interleaved, so a change in the machine's
# load hits all of them alike. With OLD, an older tinyvm-oci binary is
# measured the same way, beside this checkout's.
#
#   bash bench/layout.sh [RUNS] [SIZES] [OLD]   # defaults: 15, "1MiB 64MiB"
#
# Prints medians of wall time and CPU time (user+sys) in ms, and the ratio
# of everything to the files alone. The output directory is under TMPDIR:
# on tmpfs the file system's own costs (about 55 files more with the
# layout) drop out.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
sizes=${2:-1MiB 64MiB}
old=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/tinyvm-oci" ./cmd/tinyvm-oci
bins=("$work/tinyvm-oci")
names=(now)
if [ -n "$old" ]; then
  bins+=("$old")
  names+=(old)
fi

declare -A wall cpu
# one BIN SIZE MODE: one build; appends its wall and CPU time in µs.
one() {
  local args=() t
  case $3 in
  files) args=(--oci-layout=false --kubevirt=false) ;;
  layout) args=(--kubevirt=false) ;;
  esac
  rm -rf "$work/out"
  t=$( { TIMEFORMAT='%R %U %S'; time "${bins[$1]}" build -q -o "$work/out" --size "$2" "${args[@]}" >/dev/null 2>&1; } 2>&1 )
  wall[$1,$2,$3]+="$(awk '{printf "%d", $1*1000000}' <<<"$t") "
  cpu[$1,$2,$3]+="$(awk '{printf "%d", ($2+$3)*1000000}' <<<"$t") "
}
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'; }

for _ in $(seq "$runs"); do
  for size in $sizes; do
    for i in "${!bins[@]}"; do
      one "$i" "$size" files
      one "$i" "$size" layout
      one "$i" "$size" all
    done
  done
done

echo "median of $runs interleaved runs on $(nproc) CPUs, output in $(dirname "$work") ($(stat -f -c %T "$work")), $(go env GOVERSION)"
echo
echo "| binary | size | files only, wall | with layout, wall | everything, wall | ratio | files only, CPU | with layout, CPU | everything, CPU | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for i in "${!bins[@]}"; do
  for size in $sizes; do
    fw=$(median <<<"${wall[$i,$size,files]}") lw=$(median <<<"${wall[$i,$size,layout]}") aw=$(median <<<"${wall[$i,$size,all]}")
    fc=$(median <<<"${cpu[$i,$size,files]}") lc=$(median <<<"${cpu[$i,$size,layout]}") ac=$(median <<<"${cpu[$i,$size,all]}")
    awk -v n="${names[$i]}" -v s="$size" -v fw="$fw" -v lw="$lw" -v aw="$aw" -v fc="$fc" -v lc="$lc" -v ac="$ac" \
      'BEGIN {printf "| %s | %s | %s | %s | %s | %.2fx | %s | %s | %s | %.2fx |\n", n, s, fw, lw, aw, aw/fw, fc, lc, ac, ac/fc}'
  done
done
