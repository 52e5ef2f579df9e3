#!/bin/bash
# Fetch makedumpfile 1.7.8 (Debian sid) into $CACHE/tools without installing it.
# Debian 12's makedumpfile 1.7.2 rejects QEMU 7.2's ELF dumps and does not know the
# page types of 7.x kernels.  The sid binary needs glibc >= 2.38, so we also extract
# trixie's libc6 next to it and run it through that libc's dynamic loader.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
T=$CACHE/tools
mkdir -p "$T" "$CACHE/debs"
if [ ! -x "$T/makedumpfile" ] || ! "$T/makedumpfile" -v >/dev/null 2>&1; then
    mdf=$(find_or_fetch_deb makedumpfile sid)
    case $mdf in *1.7.8*) ;; *) echo "warning: $mdf is not 1.7.8" >&2 ;; esac
    libc=$(find_or_fetch_deb libc6 trixie)
    rm -rf "$T/mdf" "$T/libc"
    dpkg-deb -x "$mdf" "$T/mdf"
    dpkg-deb -x "$libc" "$T/libc"
    cat > "$T/makedumpfile" <<EOS
#!/bin/sh
exec "$T/libc/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$T/libc/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$T/mdf/usr/bin/makedumpfile" "\$@"
EOS
    chmod +x "$T/makedumpfile"
fi
"$T/makedumpfile" -v | head -1
