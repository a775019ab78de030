# Shared part of the side-by-side timing scripts (sourced, not run): checks for qemu-img, publishes
# our qcow2 command into a temporary folder, and defines the timing helpers.
#   QCOW2    the command line that runs our tool
#   out      the temporary folder (removed on exit); work=$out/work for the scripts' files
#   row NAME QEMU-COMMAND... -- QCOW2-COMMAND...   times both RUNS times, prints one Markdown row
#   table_header                                   prints the Markdown table header
command -v qemu-img >/dev/null || { echo "qemu-img is needed (apt-get install -y qemu-utils)" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet publish src/Qcow2.Cli -c Release -o "$out/bin" -nologo -v:q >/dev/null
QCOW2=(dotnet "$out/bin/qcow2.dll")
work="$out/work"; mkdir -p "$work"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { # runs "$@" RUNS times, prints the median wall seconds and the median CPU seconds (user + sys); a failing run stops the script
  local TIMEFORMAT='%R %U %S' i t
  for i in $(seq "$RUNS"); do
    t=$( { time "$@" >/dev/null 2>"$out/stderr"; } 2>&1 | tail -1) || { cat "$out/stderr" >&2; exit 1; }
    echo "$t"
  done > "$out/times"
  printf "%s %s\n" "$(awk '{print $1}' "$out/times" | median)" "$(awk '{printf "%.3f\n", $2 + $3}' "$out/times" | median)"
}
row() { # name, qemu command..., --, qcow2 command...
  local name=$1; shift
  local q=() o=()
  while [ "$1" != "--" ]; do q+=("$1"); shift; done; shift
  o=("$@")
  local tq to
  tq=$(timeit "${q[@]}"); to=$(timeit "${o[@]}")
  awk -v n="$name" -v q="$tq" -v o="$to" 'BEGIN {
    split(q, a, " "); split(o, b, " ");
    printf "| %s | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f |\n", n, a[1], b[1], b[1] / a[1], a[2], b[2], (a[2] > 0 ? b[2] / a[2] : 0) }'
}
table_header() {
  echo "| operation | qemu-img wall (s) | qcow2 wall (s) | wall ratio | qemu-img CPU (s) | qcow2 CPU (s) | CPU ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
}
