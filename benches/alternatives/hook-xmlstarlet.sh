#!/bin/sh
# The hook an operator would write with xmlstarlet, for comparison (same protocol and job as
# hook.py). Event names are fixed here (a shell script would not parse the JSON config):
# the benchmark config's five events.
case "$2 $3" in
  "migrate begin"|"restore begin") ;;
  *) exit 0 ;;
esac
set -- -P -i '/domain[not(perf)]/devices' -t elem -n perf -v ''
for e in cpu_cycles instructions cache_misses page_faults cpu_clock; do
  set -- "$@" -s "/domain/perf[1][not(event[@name='$e'])]" -t elem -n event -v '' \
    --var ev '$prev' -i '$ev' -t attr -n name -v "$e" -i '$ev' -t attr -n enabled -v yes
done
exec xmlstarlet ed "$@"
