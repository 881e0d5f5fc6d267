# tools/oracle-sync guest side (busybox sh inside the oracle VM; see README.md).
# /out/in/config.txt (ipvsadm -R input), optional /out/in/guest-setup.sh (sourced first),
# messages sent by backup-host.sh. Output: /out/kernel/.
set -u
K=/out/kernel; mkdir -p $K
now() { adjtimex | awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf "%d.%06d\n", s, u}'; }
if [ -f /out/in/guest-setup.sh ]; then
  . /out/in/guest-setup.sh > $K/guest-setup.log 2>&1
fi
ipvsadm -R < /out/in/config.txt > $K/restore.log 2>&1
echo "ipvsadm -R rc=$?" >> $K/restore.log
ipvsadm --start-daemon backup --mcast-interface eth0 --syncid ${SYNCID:-0} >> $K/restore.log 2>&1 \
  || { echo "start-daemon failed" >&2; cat $K/restore.log >&2; exit 1; }
ipvsadm -L --daemon > $K/daemon.txt
# count what reaches the guest (the daemon reads the same socket traffic; this is only a check)
tcpdump -i eth0 -p -n -U --immediate-mode -w /tmp/rx.pcap 'udp port 8848' 2> /tmp/tcpdump.err &
TD=$!
for _ in $(seq 100); do grep -q listening /tmp/tcpdump.err 2>/dev/null && break; sleep 0.1; done
sleep 0.5
echo "ready $(now)" > $K/read_at.txt
signal ready
await sent 300 || exit 1
echo "sent_seen $(now)" >> $K/read_at.txt
sleep ${AFTER_WAIT:-1}
{
echo "conns_start $(now)";     ipvsadm -L -n -c > $K/conns.txt 2>&1;                   echo "conns_end $(now)"
echo "conn_sync_start $(now)"; cat /proc/net/ip_vs_conn_sync > $K/conn_sync.txt;      echo "conn_sync_end $(now)"
echo "services_start $(now)";  ipvsadm -L -n > $K/services.txt 2>&1;                  echo "services_end $(now)"
echo "stats_start $(now)";     ipvsadm -L -n --stats > $K/stats.txt 2>&1;             echo "stats_end $(now)"
echo "proc_conn_start $(now)"; cat /proc/net/ip_vs_conn > $K/proc_ip_vs_conn.txt;     echo "proc_conn_end $(now)"
echo "pconn_start $(now)";     ipvsadm -L -n --persistent-conn > $K/persistent-conn.txt 2>&1; echo "pconn_end $(now)"
} >> $K/read_at.txt
kill -INT $TD; sleep 0.5
cp /tmp/rx.pcap $K/received.pcap
dmesg | grep -i 'ipvs' > $K/dmesg.txt
cat $K/conns.txt
