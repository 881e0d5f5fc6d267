# tools/oracle-conn guest side (runs inside the oracle VM; see README.md).
# A request executor: host.py writes /out/conn/req/N (lines `snap 0|1`, `cmd SHELL`, `end`) and
# signals req_N; we run the commands, take a snapshot if asked, write /out/conn/resp/N and
# signal done_N. Times are the guest's CLOCK_REALTIME in microseconds (busybox adjtimex), the clock
# tcpdump stamps its frames with, so packet and snapshot times share one base.
set -u
C=/out/conn
mkdir -p $C/resp
now() { adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf "%d.%06d\n", s, u}'; }
snapshot() {
  echo "@ts0 $(now)"
  echo "@lcn"; ipvsadm -Lcn
  echo "@ts1 $(now)"
  # the defenses' memory figure (MemFree + Buffers) and knobs, read right after the listing
  echo "@mem"; grep -E '^(MemFree|Buffers):' /proc/meminfo
  echo "@vs"; (cd /proc/sys/net/ipv4/vs && grep . amemthresh am_droprate drop_entry drop_packet secure_tcp)
  echo "@pc"; ipvsadm -L -n --persistent-conn
  echo "@st"; ipvsadm -L -n --stats --exact
  echo "@snmp"; cat /proc/net/snmp
  echo "@ts2 $(now)"
}
# every VIP of every scenario is local (198.18.100.10 ...); ICMP errors not rate limited, so that
# every "no destination" answer is visible
ip addr add 198.18.100.0/24 dev lo
sysctl -qw net.ipv4.icmp_ratelimit=0
sysctl -qw net.ipv4.icmp_msgs_per_sec=100000
for d in eth0 eth1; do
  tcpdump -i $d -p -n -U --immediate-mode -s 256 -w /tmp/$d.pcap 2> /tmp/tcpdump-$d.err &
  eval "TD_$d=\$!"
done
for d in eth0 eth1; do
  for _ in $(seq 100); do grep -q listening /tmp/tcpdump-$d.err 2>/dev/null && break; sleep 0.1; done
done
{ echo "kernel=$(uname -r)"; echo "ipvsadm=$(ipvsadm -v 2>&1)"; echo "hz_probe=$(getconf CLK_TCK 2>/dev/null)"
  echo "conn_tab=$(head -1 /proc/net/ip_vs)"
  for d in eth0 eth1; do echo "addr_$d=$(iproute2-ip -4 -o addr show dev $d | awk '{printf "%s ", $4}')"; done
  echo "icmp_errors_use_inbound_ifaddr=$(cat /proc/sys/net/ipv4/icmp_errors_use_inbound_ifaddr)"
  echo "t_ready=$(now)"; cat /proc/uptime; } > $C/guest-info.txt
signal ready
n=0
while :; do
  n=$((n+1))
  await req_$n 900 || { echo "no request $n" >&2; break; }
  R=$C/resp/$n
  : > $R.tmp
  snap=0 fin=0
  while IFS= read -r line; do
    case $line in
      "snap "*) snap=${line#snap } ;;
      end) fin=1 ;;
      "cmd "*)
        c=${line#cmd }
        t0=$(now); out=$(sh -c "$c" 2>&1); rc=$?; t1=$(now)
        printf '@cmd %s\n@t0 %s\n@t1 %s\n@rc %s\n@out\n%s\n@endout\n' "$c" "$t0" "$t1" "$rc" "$out" >> $R.tmp ;;
    esac
  done < $C/req/$n
  [ "$snap" = 1 ] && snapshot >> $R.tmp 2>&1
  mv $R.tmp $R
  signal done_$n
  [ $fin = 1 ] && break
done
sleep 1; kill -INT $TD_eth0 $TD_eth1
sleep 1
cp /tmp/eth0.pcap /tmp/eth1.pcap $C/
cat /tmp/tcpdump-eth0.err /tmp/tcpdump-eth1.err > $C/tcpdump.err
echo "guest done after $n requests"
