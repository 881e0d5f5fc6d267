# tools/oracle-ipvsadm guest side: runs /out/commands.txt's lines with the
# guest's ipvsadm, one after the other, and writes /out/rec/N.{args,out,err,rc}.
set -u
mkdir -p /out/rec
uname -r > /out/rec/kernel
ipvsadm -v > /out/rec/ipvsadm-version 2>&1
n=0
grep -v '^#' /out/commands.txt | while IFS= read -r line; do
  [ -z "$line" ] && continue
  n=$((n + 1))
  printf '%s' "$line" > /out/rec/$n.args
  # Word splitting of the line is what a shell script calling ipvsadm does.
  # shellcheck disable=SC2086
  ipvsadm $line > /out/rec/$n.out 2> /out/rec/$n.err
  echo $? > /out/rec/$n.rc
done
