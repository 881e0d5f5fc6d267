# tools/oracle-fwd guest side (runs inside the oracle VM; see README.md).
# A command executor: host.py writes /out/fwd/req/N (lines `cmd SHELL`, or `end`), we run the
# commands in order, write /out/fwd/resp/N (per command: @cmd, @rc, @out ... @endout) and signal
# done_N. The packets themselves are sent and captured on the host side (tap0/tap1).
set -u
F=/out/fwd
mkdir -p $F/resp
# director-generated ICMP errors are not rate limited, so that every one is visible
sysctl -qw net.ipv4.icmp_ratelimit=0
sysctl -qw net.ipv4.icmp_msgs_per_sec=100000
sysctl -qw net.ipv4.icmp_msgs_burst=100000
{ echo "kernel=$(uname -r)"; echo "ipvsadm=$(ipvsadm -v 2>&1)"
  for d in eth0 eth1; do
    echo "addr_$d=$(iproute2-ip -4 -o addr show dev $d | awk '{printf "%s ", $4}')"
    echo "mac_$d=$(cat /sys/class/net/$d/address)"
    echo "mtu_$d=$(cat /sys/class/net/$d/mtu)"
  done
  for k in net.ipv4.vs.pmtu_disc net.ipv4.vs.snat_reroute net.ipv4.vs.conntrack net.ipv4.ip_forward \
           net.ipv4.icmp_errors_use_inbound_ifaddr net.ipv4.ip_no_pmtu_disc net.ipv4.ip_default_ttl \
           net.ipv4.ip_local_port_range net.ipv4.icmp_ratelimit net.ipv4.icmp_msgs_per_sec \
           net.ipv4.conf.all.rp_filter net.ipv4.conf.eth0.rp_filter net.ipv4.conf.eth1.rp_filter; do
    echo "sysctl $k=$(sysctl -n $k 2>&1 | tr '\t' ' ')"
  done
  echo "@routes"; iproute2-ip -4 route show table all
  echo "@lsmod"; lsmod 2>/dev/null | awk 'NR>1{print $1}' | tr '\n' ' '; echo
} > $F/guest-info.txt 2>&1
# IPv6 stays off (as the oracle's init leaves it) until host.py runs this before the first IPv6
# scenario: addresses on both links (the VIPs come per scenario, /128 on lo), forwarding, ICMPv6
# errors not rate limited, and nothing that would put frames on the links by itself later: no
# DAD, no router solicitations, no autoconfiguration (forwarding=1 also means no RS). The only
# frames IPv6 coming up sends are MLD reports for the groups the interfaces join; the 3 s sleep
# lets them pass before the first step (post.py ignores them outside step windows).
cat > /tmp/fwd-ipv6-on.sh <<'EOF6'
set -e
for d in default all lo eth0 eth1; do
  for k in accept_ra=0 autoconf=0 accept_dad=0 dad_transmits=0 router_solicitations=0 accept_redirects=0; do
    sysctl -qw net.ipv6.conf.$d.$k
  done
done
sysctl -qw net.ipv6.conf.all.forwarding=1
sysctl -qw net.ipv6.icmp.ratelimit=0
sysctl -qw net.ipv6.conf.all.disable_ipv6=0
iproute2-ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad
iproute2-ip -6 addr add 2001:db8:64::1/64 dev eth1 nodad
sleep 3
{ for d in eth0 eth1; do
    echo "addr6_$d=$(iproute2-ip -6 -o addr show dev $d scope global | awk '{printf "%s ", $4}')"
    echo "linklocal6_$d=$(iproute2-ip -6 -o addr show dev $d scope link | awk '{printf "%s ", $4}')"
    echo "mtu6_$d=$(sysctl -n net.ipv6.conf.$d.mtu)"
  done
  for k in net.ipv6.conf.all.disable_ipv6 net.ipv6.conf.all.forwarding net.ipv6.conf.eth0.forwarding \
           net.ipv6.conf.eth1.forwarding net.ipv6.conf.eth0.accept_ra net.ipv6.conf.eth0.accept_dad \
           net.ipv6.conf.eth0.router_solicitations net.ipv6.conf.eth0.hop_limit net.ipv6.icmp.ratelimit \
           net.ipv6.icmp.ratemask net.ipv4.icmp_msgs_per_sec net.ipv6.auto_flowlabels net.ipv6.flowlabel_reflect \
           net.ipv6.conf.all.accept_redirects; do
    echo "sysctl $k=$(sysctl -n $k 2>&1 | tr '\t' ' ')"
  done
  echo "@routes"; iproute2-ip -6 route show table all
} > /out/fwd/guest-info6.txt 2>&1
EOF6
signal ready
n=0
while :; do
  n=$((n+1))
  await req_$n 600 || { echo "no request $n" >&2; break; }
  R=$F/resp/$n
  : > $R.tmp
  fin=0
  while IFS= read -r line; do
    case $line in
      end) fin=1 ;;
      "cmd "*)
        c=${line#cmd }
        out=$(sh -c "$c" 2>&1); rc=$?
        printf '@cmd %s\n@rc %s\n@out\n%s\n@endout\n' "$c" "$rc" "$out" >> $R.tmp ;;
    esac
  done < $F/req/$n
  mv $R.tmp $R
  signal done_$n
  [ $fin = 1 ] && break
done
echo "guest done after $n requests"
