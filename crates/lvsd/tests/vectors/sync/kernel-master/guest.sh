# Recording A, guest side (runs inside the oracle VM under busybox sh; see README.md).
# Director with three services and a master sync daemon (syncid 7, sync_version 1) on eth0.
# Real servers 198.18.1.11/.12 are routed out of eth1 (to the real-server netns, which drops
# everything), so NAT/DR packets leave the VM but nothing ever answers except what host.py sends.
# host.py drives the traffic and may ask for commands (/out/req/N -> /out/resp/N); after its
# last request ("end") we wait SYNC_WAIT s for the master's 2-3 s flush and read the tables.
# Times: adjtimex (guest CLOCK_REALTIME, microseconds) = the clock of the guest-side eth0 pcap.
set -u
D=/out/rec; mkdir -p $D /out/resp
now() { adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf "%d.%06d\n", s, u}'; }
V0=198.18.0.100 V1=198.18.0.101
ip addr add $V0/32 dev lo
ip addr add $V1/32 dev lo
for rs in 198.18.1.11 198.18.1.12; do
  iproute2-ip route add $rs/32 dev eth1
  iproute2-ip neigh replace $rs lladdr 52:54:00:00:c1:01 dev eth1 nud permanent   # tap1 (netns R)
done
# the host end of the link (marker pings go there without an ARP round trip)
iproute2-ip neigh replace 198.18.0.1 lladdr 52:54:00:00:c0:01 dev eth0 nud permanent
{
ipvsadm -A -t $V0:80 -s rr
ipvsadm -a -t $V0:80 -r 198.18.1.11:80 -m
ipvsadm -a -t $V0:80 -r 198.18.1.12:80 -m
ipvsadm -A -u $V0:53 -s rr
ipvsadm -a -u $V0:53 -r 198.18.1.11:53 -m
ipvsadm -a -u $V0:53 -r 198.18.1.12:53 -m
ipvsadm -A -t $V1:443 -s rr -p 360 -M 255.255.255.0
ipvsadm -a -t $V1:443 -r 198.18.1.11:443 -g
ipvsadm -a -t $V1:443 -r 198.18.1.12:443 -g
ipvsadm --start-daemon master --mcast-interface eth0 --syncid 7
} 2>&1 | tee $D/setup.log
ipvsadm -S -n > $D/config.txt
cat /proc/net/ip_vs > $D/proc_ip_vs.txt          # kernel list order of the real servers
{ echo "kernel=$(uname -r)"
  for f in sync_version sync_threshold sync_refresh_period sync_retries sync_persist_mode sync_ports conntrack; do
    echo "$f=$(cat /proc/sys/net/ipv4/vs/$f | tr '\t' ' ')"; done
  echo "eth0=$(iproute2-ip -4 -o addr show dev eth0 | awk '{print $4}') mtu=$(cat /sys/class/net/eth0/mtu)"
} > $D/guest-info.txt
tcpdump -i eth0 -p -n -U --immediate-mode -w /tmp/eth0.pcap 'udp port 8848 or icmp' 2> /tmp/tcpdump.err &
TD=$!
for _ in $(seq 100); do grep -q listening /tmp/tcpdump.err 2>/dev/null && break; sleep 0.1; done
signal ready
n=0
while :; do
  n=$((n+1))
  await req_$n 300 || { echo "no request $n" >&2; exit 1; }
  c=$(cat /out/req/$n)
  [ "$c" = end ] && break
  { echo "@t $(now)"; sh -c "$c" 2>&1; } > /out/resp/$n.tmp
  mv /out/resp/$n.tmp /out/resp/$n
  signal done_$n
done
echo "traffic_end_guest $(now)" > $D/read_at.guest
sleep ${SYNC_WAIT:-5}
# marker 1 (ICMP echo, 111 bytes of payload) right before the reads, marker 2 (112) right after:
# both pcaps see them, so the reads can be placed on the host-side pcap's clock as well.
ping -c 1 -w 1 -s 111 198.18.0.1 > /dev/null 2>&1 &
sleep 0.2
{
echo "conns_start $(now)";     ipvsadm -L -n -c > $D/conns.txt;                    echo "conns_end $(now)"
echo "conn_sync_start $(now)"; cat /proc/net/ip_vs_conn_sync > $D/conn_sync.txt;   echo "conn_sync_end $(now)"
echo "services_start $(now)";  ipvsadm -L -n > $D/services.txt;                    echo "services_end $(now)"
echo "daemon_start $(now)";    ipvsadm -L --daemon > $D/daemon.txt;                echo "daemon_end $(now)"
echo "stats_start $(now)";     ipvsadm -L -n --stats > $D/stats.txt;               echo "stats_end $(now)"
echo "proc_conn_start $(now)"; cat /proc/net/ip_vs_conn > $D/proc_ip_vs_conn.txt;  echo "proc_conn_end $(now)"
} >> $D/read_at.guest
ping -c 1 -w 1 -s 112 198.18.0.1 > /dev/null 2>&1 &
sleep 1.5
echo "uptime $(cat /proc/uptime)" >> $D/read_at.guest
kill -INT $TD; sleep 1
cp /tmp/eth0.pcap $D/guest-eth0.pcap
cat $D/conns.txt $D/conn_sync.txt
