# Shared settings for the sample-building scripts (sourced).
CACHE=${DRGN_BALLOON_CACHE:-/var/tmp/drgn-balloon-build}
APTDIR=$CACHE/apt
APTX="-o Dir::Etc::sourcelist=$APTDIR/sources.list -o Dir::Etc::sourceparts=/dev/null -o Dir::State::Lists=$APTDIR/lists -o Dir::Cache=$APTDIR/cache"
# Extra directories searched for already-downloaded .deb files (space separated).
DEB_DIRS=${DRGN_BALLOON_DEB_DIRS:-"$CACHE/debs /opt/debs"}

# A private apt setup for other Debian suites; the system apt config is left alone.
aptx_update() {
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$CACHE/debs"
    if [ ! -f "$APTDIR/sources.list" ] || [ -z "$(ls "$APTDIR/lists" 2>/dev/null | grep -v partial)" ]; then
        cat > "$APTDIR/sources.list" <<EOS
deb ${DRGN_BALLOON_DEBIAN_MIRROR:?set DRGN_BALLOON_DEBIAN_MIRROR} bullseye main
deb ${DRGN_BALLOON_DEBIAN_MIRROR:?set DRGN_BALLOON_DEBIAN_MIRROR} bookworm main
deb ${DRGN_BALLOON_DEBIAN_MIRROR:?set DRGN_BALLOON_DEBIAN_MIRROR} trixie main
deb ${DRGN_BALLOON_DEBIAN_MIRROR:?set DRGN_BALLOON_DEBIAN_MIRROR} sid main
EOS
        apt-get $APTX update -q
    fi
}

# find_or_fetch_deb PACKAGE -> prints the path of PACKAGE_*.deb (downloads it if needed)
find_or_fetch_deb() {
    local pkg=$1 d f
    for d in $DEB_DIRS; do
        f=$(ls "$d/${pkg}_"*.deb 2>/dev/null | sort -V | tail -1)
        if [ -n "$f" ]; then echo "$f"; return 0; fi
    done
    aptx_update >&2
    (cd "$CACHE/debs" && apt-get $APTX download "$pkg" >&2)
    f=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | sort -V | tail -1)
    [ -n "$f" ] || { echo "cannot fetch $pkg" >&2; return 1; }
    echo "$f"
}
