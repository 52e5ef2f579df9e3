# Shared settings for the sample-building scripts (sourced).
CACHE=${DRGN_BALLOON_CACHE:-/var/tmp/drgn-balloon-build}
APTDIR=$CACHE/apt
APTX="-o Dir::Etc::sourcelist=$APTDIR/sources.list -o Dir::Etc::sourceparts=/dev/null -o Dir::State::Lists=$APTDIR/lists -o Dir::Cache=$APTDIR/cache"
# Extra directories searched for already-downloaded .deb files (space separated).
DEB_DIRS=${DRGN_BALLOON_DEB_DIRS:-"$CACHE/debs /opt/debs"}

# The Debian mirror this machine already uses for bookworm (override with
# DRGN_BALLOON_DEBIAN_MIRROR).
debian_mirror() {
    if [ -n "${DRGN_BALLOON_DEBIAN_MIRROR:-}" ]; then echo "$DRGN_BALLOON_DEBIAN_MIRROR"; return; fi
    {
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
            /^URIs:/ { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print u; exit } }'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed 's/\[[^]]*\]//' | awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }'
    } | head -n 1
}

# A private apt setup for other Debian suites; the system apt config is left alone.
aptx_update() {
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$CACHE/debs"
    if [ ! -f "$APTDIR/sources.list" ] || [ -z "$(ls "$APTDIR/lists" 2>/dev/null | grep -v partial)" ]; then
        local m
        m=$(debian_mirror)
        [ -n "$m" ] || { echo "no Debian mirror found in the apt config; set DRGN_BALLOON_DEBIAN_MIRROR" >&2; return 1; }
        printf 'deb %s %s main\n' "$m" bullseye "$m" trixie "$m" sid > "$APTDIR/sources.list"
        apt-get $APTX update -q
    fi
}

# find_or_fetch_deb PACKAGE SUITE -> prints the path of PACKAGE_*.deb (downloads it if
# needed: bookworm packages with the system apt, others with the private apt setup).
find_or_fetch_deb() {
    local pkg=$1 suite=$2 d f
    for d in $DEB_DIRS; do
        f=$(ls "$d/${pkg}_"*.deb 2>/dev/null | sort -V | tail -1)
        if [ -n "$f" ]; then echo "$f"; return 0; fi
    done
    mkdir -p "$CACHE/debs"
    if [ "$suite" = bookworm ]; then
        (cd "$CACHE/debs" && apt-get download "$pkg" >&2)
    else
        aptx_update >&2
        (cd "$CACHE/debs" && apt-get $APTX download "$pkg/$suite" >&2)
    fi
    f=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -1)
    [ -n "$f" ] || { echo "cannot fetch $pkg" >&2; return 1; }
    echo "$f"
}
