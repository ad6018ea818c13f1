# STAND-IN image for the official Apache Cassandra image (Dockerfile.cassandra-standin).
# Sourced by bin/cassandra after the options files; appends to the JVM_OPTS array the
# settings the distribution's cassandra-env.sh derives, with the same variables:
#
#   MAX_HEAP_SIZE, HEAP_NEWSIZE  set both or neither. Neither: max(min(1/2 ram, 1024MB),
#                                min(1/4 ram, 8GB)), "ram" being the container's memory
#                                limit when it has one. HEAP_NEWSIZE becomes -Xmn only
#                                without G1 (G1, the default here, sizes the young
#                                generation itself).
#   LOCAL_JMX                    yes (default): JMX on 127.0.0.1:$JMX_PORT without
#                                authentication, what nodetool uses.
#   JVM_EXTRA_OPTS               appended last.

JMX_PORT="7199"

memory_mb() {
  local total limit
  total=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
  limit=$(cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null | head -1)
  if [[ $limit =~ ^[0-9]+$ ]] && ((limit / 1048576 < total)); then
    total=$((limit / 1048576))
  fi
  echo "$total"
}

options=" ${JVM_OPTS[*]} "
using_g1=0
[[ $options == *" -XX:+UseG1GC "* ]] && using_g1=1

if [[ -z ${MAX_HEAP_SIZE:-} && -z ${HEAP_NEWSIZE:-} ]] || [[ -z ${MAX_HEAP_SIZE:-} && $using_g1 == 1 ]]; then
  ram=$(memory_mb)
  half=$((ram / 2 > 1024 ? 1024 : ram / 2))
  quarter=$((ram / 4 > 8192 ? 8192 : ram / 4))
  MAX_HEAP_SIZE="$((half > quarter ? half : quarter))M"
elif [[ -z ${MAX_HEAP_SIZE:-} ]] || [[ -z ${HEAP_NEWSIZE:-} && $using_g1 == 0 ]]; then
  echo "please set or unset MAX_HEAP_SIZE and HEAP_NEWSIZE in pairs (see cassandra-env.sh)" >&2
  exit 1
fi

if [[ $options != *" -Xmx"* && $options != *" -Xms"* ]]; then
  JVM_OPTS+=("-Xms$MAX_HEAP_SIZE" "-Xmx$MAX_HEAP_SIZE")
fi
if [[ $using_g1 == 0 && -n ${HEAP_NEWSIZE:-} && $options != *" -Xmn"* ]]; then
  JVM_OPTS+=("-Xmn$HEAP_NEWSIZE")
fi

export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-4}

# GC log in the log directory, ten files of 10 MiB at most.
if [[ $options != *" -Xlog:gc"* ]]; then
  JVM_OPTS+=("-Xlog:gc=info,heap*=trace,age*=debug,safepoint=info,promotion*=trace:file=$CASSANDRA_LOG_DIR/gc.log:time,uptime,pid,tid,level:filecount=10,filesize=10485760")
fi

# Cassandra measures object sizes with the jamm agent and refuses to start without it.
for jamm in "$CASSANDRA_HOME"/lib/jamm-*.jar; do
  JVM_OPTS+=("-javaagent:$jamm")
done

if [[ ${LOCAL_JMX:-yes} == yes ]]; then
  JVM_OPTS+=("-Dcassandra.jmx.local.port=$JMX_PORT" "-Dcom.sun.management.jmxremote.authenticate=false")
else
  JVM_OPTS+=("-Dcassandra.jmx.remote.port=$JMX_PORT" "-Dcom.sun.management.jmxremote.rmi.port=$JMX_PORT"
    "-Dcom.sun.management.jmxremote.authenticate=true")
fi

# shellcheck disable=SC2206
JVM_OPTS+=(${JVM_EXTRA_OPTS:-})
