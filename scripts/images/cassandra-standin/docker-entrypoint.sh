#!/bin/bash
# STAND-IN image for the official Apache Cassandra image (Dockerfile.cassandra-standin).
#
# The same environment contract as the official image's entrypoint, which the chart relies
# on: with the command `cassandra` (the default CMD is `cassandra -f`) it edits
# $CASSANDRA_CONF/cassandra.yaml and cassandra-rackdc.properties in place from
#
#   CASSANDRA_SEEDS                 the seed list (default: the broadcast address)
#   CASSANDRA_CLUSTER_NAME          cluster_name
#   CASSANDRA_LISTEN_ADDRESS        listen_address ("auto", the default: the first global
#                                   IPv4 address of the container)
#   CASSANDRA_BROADCAST_ADDRESS     broadcast_address (default: the listen address)
#   CASSANDRA_RPC_ADDRESS           rpc_address (default 0.0.0.0)
#   CASSANDRA_BROADCAST_RPC_ADDRESS broadcast_rpc_address (default: the broadcast address)
#   CASSANDRA_ENDPOINT_SNITCH       endpoint_snitch
#   CASSANDRA_NUM_TOKENS            num_tokens
#   CASSANDRA_START_RPC             start_rpc (no such setting since 4.0: nothing to edit)
#   CASSANDRA_DC, CASSANDRA_RACK    dc= and rack= of cassandra-rackdc.properties
#
# then runs the command. Heap settings (MAX_HEAP_SIZE, HEAP_NEWSIZE) and JVM_EXTRA_OPTS are
# read by $CASSANDRA_CONF/cassandra-env.sh when `cassandra` starts. The files are rewritten
# through a temporary file in /tmp and `cat >`, so a bind-mounted file stays the same file.
# Started as root, it gives the data, log and config directories to the cassandra user
# (999) and runs the command as that user; started as any other user, it runs it as is.
set -euo pipefail

# No arguments, or only options: run Cassandra with them.
if [[ $# -eq 0 || ${1#-} != "$1" ]]; then
  set -- cassandra -f "$@"
fi

if [[ $1 == cassandra && $(id -u) == 0 ]]; then
  find /var/lib/cassandra /var/log/cassandra "$CASSANDRA_CONF" \! -user cassandra \
    -exec chown cassandra:cassandra '{}' +
  exec setpriv --reuid=cassandra --regid=cassandra --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# The first global IPv4 address of the container (its pod IP in Kubernetes).
first_address() {
  ip -o -4 address show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

# "sed -i" without replacing the file: sed into a temporary file, then copy it back.
edit_in_place() {
  local file=$1 tmp
  shift
  tmp=$(mktemp)
  sed "$@" "$file" >"$tmp"
  cat "$tmp" >"$file"
  rm -f "$tmp"
}

# A value as the replacement part of a sed s||| command.
sed_value() {
  printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'
}

if [[ $1 == cassandra ]]; then
  : "${CASSANDRA_RPC_ADDRESS=0.0.0.0}"
  : "${CASSANDRA_LISTEN_ADDRESS=auto}"
  if [[ $CASSANDRA_LISTEN_ADDRESS == auto ]]; then
    CASSANDRA_LISTEN_ADDRESS=$(first_address)
  fi
  : "${CASSANDRA_BROADCAST_ADDRESS=$CASSANDRA_LISTEN_ADDRESS}"
  if [[ $CASSANDRA_BROADCAST_ADDRESS == auto ]]; then
    CASSANDRA_BROADCAST_ADDRESS=$(first_address)
  fi
  : "${CASSANDRA_BROADCAST_RPC_ADDRESS:=$CASSANDRA_BROADCAST_ADDRESS}"
  : "${CASSANDRA_SEEDS:=$CASSANDRA_BROADCAST_ADDRESS}"

  yaml=$CASSANDRA_CONF/cassandra.yaml
  edit_in_place "$yaml" -E "s|(- seeds:).*|\1 \"$(sed_value "$CASSANDRA_SEEDS")\"|"

  for setting in broadcast_address broadcast_rpc_address cluster_name endpoint_snitch \
    listen_address num_tokens rpc_address start_rpc; do
    var=CASSANDRA_${setting^^}
    value=${!var:-}
    if [[ -n $value ]]; then
      # The setting, or its commented-out example ("# broadcast_address: 1.2.3.4").
      edit_in_place "$yaml" -E "s|^(# )?($setting:).*|\2 $(sed_value "$value")|"
    fi
  done

  for key in dc rack; do
    var=CASSANDRA_${key^^}
    value=${!var:-}
    if [[ -n $value ]]; then
      edit_in_place "$CASSANDRA_CONF/cassandra-rackdc.properties" \
        -E "s|^($key=).*|\1$(sed_value "$value")|"
    fi
  done
fi

exec "$@"
