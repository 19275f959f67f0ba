#!/usr/bin/env bash
# A real HDFS on this machine: Apache Hadoop 3.5.0's MiniDFSCluster (NameNodes and DataNodes in one JVM,
# every port on 127.0.0.1), optionally with HA NameNodes and a Kerberos KDC. See tests/hdfs/README.md.
#
#   minidfs.sh build                 resolve Hadoop from Maven Central and build the harness (once)
#   minidfs.sh built                 exit 0 if the harness is built
#   minidfs.sh start DIR [--datanodes N] [--replication R] [--blocksize BYTES] [--ha] [--kerberos]
#                                    start a cluster (or restart the one in DIR, same data and NameNode
#                                    ports); the last line printed is its URL, once it accepts writes
#   minidfs.sh stop DIR              shut it down cleanly (its data stays for another start)
#   minidfs.sh kill DIR              SIGKILL its JVM (a crash)
#   minidfs.sh ctl DIR COMMAND...    kill-datanode I | restart-datanodes | failover | restart-namenode | info
#   minidfs.sh status DIR            running or stopped, and the URL
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$HERE/minidfs
JAR=$PROJECT/target/minidfs-0.1.0.jar
CP=$PROJECT/target/classpath.txt

die() { echo "minidfs.sh: $*" >&2; exit 1; }

built() { [[ -s $JAR && -s $CP ]] && [[ $JAR -nt $PROJECT/src/main/java/mvault/minidfs/Main.java ]]; }

build() {
  command -v mvn >/dev/null || die "Maven (mvn) is needed to build the harness"
  command -v java >/dev/null || die "a JDK (java) is needed to run the cluster"
  echo "minidfs.sh: building the harness with Maven (log: $PROJECT/target/build.log)" >&2
  mkdir -p "$PROJECT/target"
  if ! mvn -B -q -f "$PROJECT/pom.xml" package dependency:build-classpath -Dmdep.outputFile="$CP" \
      -DskipTests >"$PROJECT/target/build.log" 2>&1; then
    tail -20 "$PROJECT/target/build.log" >&2
    die "the Maven build failed (see $PROJECT/target/build.log)"
  fi
}

pid_of() { [[ -s $1/pid ]] && cat "$1/pid"; }
running() { local p; p=$(pid_of "$1") && kill -0 "$p" 2>/dev/null; }

# Send a control command and wait for its acknowledgement line; fail on an error answer.
ctl() {
  local dir=$1; shift
  running "$dir" || die "no cluster running in $dir"
  local name
  name=$(date +%s%N)-$$
  printf '%s\n' "$*" >"$dir/ctl/$name.cmd.tmp"
  mv "$dir/ctl/$name.cmd.tmp" "$dir/ctl/$name.cmd"
  for _ in $(seq 1200); do
    if [[ -s $dir/ctl/$name.ack ]]; then
      local ack; ack=$(cat "$dir/ctl/$name.ack"); rm -f "$dir/ctl/$name.ack"
      [[ $ack == ok* ]] || die "$*: $ack"
      echo "$ack"
      return 0
    fi
    running "$dir" || { [[ $1 == stop ]] && return 0; die "the cluster in $dir died during '$*' (see $dir/cluster.log)"; }
    sleep 0.1
  done
  die "no answer to '$*' in 120 s (see $dir/cluster.log)"
}

start() {
  local dir=$1; shift
  built || build
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  running "$dir" && die "a cluster is already running in $dir (pid $(pid_of "$dir"))"
  rm -f "$dir/url" "$dir/pid"
  # Detached: the cluster outlives this script and the test that started it until stop or kill.
  setsid java -Xmx768m -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true \
    -cp "$JAR:$(cat "$CP")" mvault.minidfs.Main "$dir" "$@" >>"$dir/cluster.log" 2>&1 </dev/null &
  local jvm=$!
  for _ in $(seq 1800); do
    if [[ -s $dir/url ]]; then
      echo "minidfs.sh: cluster in $dir (pid $jvm), client configuration in $dir/conf" >&2
      cat "$dir/url"
      return 0
    fi
    kill -0 "$jvm" 2>/dev/null || { tail -15 "$dir/cluster.log" >&2; die "the cluster JVM exited before it was ready (see $dir/cluster.log)"; }
    sleep 0.1
  done
  kill -9 "$jvm" 2>/dev/null || true
  die "the cluster was not ready in 180 s (see $dir/cluster.log)"
}

stop() {
  local dir=$1
  running "$dir" || { rm -f "$dir/url"; return 0; }
  local p; p=$(pid_of "$dir")
  ctl "$dir" stop >/dev/null || true
  for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$dir/url"
}

kill_cluster() {
  local dir=$1 p
  p=$(pid_of "$dir") || return 0
  kill -9 "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/url"
}

cmd=${1:-}
case "$cmd" in
  build) build ;;
  built) built ;;
  start) [[ $# -ge 2 ]] || die "usage: minidfs.sh start DIR [flags]"; shift; start "$@" ;;
  stop) [[ $# -eq 2 ]] || die "usage: minidfs.sh stop DIR"; stop "$2" ;;
  kill) [[ $# -eq 2 ]] || die "usage: minidfs.sh kill DIR"; kill_cluster "$2" ;;
  ctl) [[ $# -ge 3 ]] || die "usage: minidfs.sh ctl DIR COMMAND..."; shift; ctl "$@" ;;
  status)
    [[ $# -eq 2 ]] || die "usage: minidfs.sh status DIR"
    if running "$2" && [[ -s $2/url ]]; then echo "running $(cat "$2/url")"; else echo stopped; fi ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; [[ -z $cmd || $cmd == -h || $cmd == --help ]] || exit 2 ;;
esac
