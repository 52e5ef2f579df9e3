"""
The tool on a live kernel: the 6.1.192 sample kernel booted in QEMU (TCG) as
a VMware guest whose "host" (gdb) makes the real vmw_balloon driver inflate,
with the report run inside the guest against /proc/kcore and compared with
debugfs vmmemctl read in the same guest (see live_guest.py).

Three guests boot per run, one after the other: a steady one (the balloon
inflates to 40000 frames and stays; the report as root and as an unprivileged
user), a moving one (the host changes the target every second, so the
balloon inflates and deflates under the walk), and Debian's stock 6.1 kernel
(its image package, fetched with apt-get download into the cache; KASLR on)
with no debug file in the guest, where the report can only read the kernel's
BTF and kallsyms. Marked ``live``; skipped with the reason when QEMU, gdb,
binutils or busybox-static are missing.
"""

import os
import time

import live_guest
import pytest

pytestmark = pytest.mark.live

TARGET = 40000
#: The moving guest swings between TARGET and LOW_TARGET.
LOW_TARGET = 25000
#: Hard limits: each QEMU run (boot, inflation, every command; killed after
#: it), each wait for the balloon and each command inside the guest. On an
#: idle 2-core x86_64 host a steady run takes about 25 s, a moving one 50 s.
GUEST_TIMEOUT = 420
WAIT_TIMEOUT = 120
COMMAND_TIMEOUT = 120

#: At most this many seconds, the delayed walks of the moving guest wait in
#: the middle for the balloon to change (it changes about once a second).
DELAY = 5

#: Findings that say a list is corrupt: never on a healthy live kernel.
CORRUPT = {"bad_pointer", "cycle", "prev_mismatch", "not_in_dump"}

_TIMES = {}


def _summary(request, t0):
    def report():
        total = time.time() - t0
        lines = [
            "live tests: %.0f s in all (%s)"
            % (total, ", ".join("%s %.0f s" % kv for kv in _TIMES.items()))
        ]
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        capman = request.config.pluginmanager.get_plugin("capturemanager")
        for line in lines:
            if tr is not None and capman is not None:
                with capman.global_and_fixture_disabled():
                    tr.write("\n")
                    tr.write_line(line)
            else:
                live_guest.log(line)

    return report


@pytest.fixture(scope="module")
def live_env(request, tmp_path_factory):
    reason = live_guest.missing()
    if reason:
        pytest.skip(reason)
    t0 = time.time()
    request.addfinalizer(_summary(request, t0))
    files = live_guest.kernel_files()
    work = str(tmp_path_factory.mktemp("live"))
    base = os.path.join(work, "base.cpio")
    # Hundreds of MB: not left behind in pytest's temporary directories (the
    # guests' logs are).
    request.addfinalizer(lambda: os.path.exists(base) and os.unlink(base))
    live_guest.build_initramfs(base, files)
    _TIMES["initramfs"] = time.time() - t0
    return {"files": files, "work": work, "base": base}


def _run(live_env, name, body, host, smp=1):
    t0 = time.time()
    try:
        result = live_guest.run_guest(
            os.path.join(live_env["work"], name),
            live_env["base"],
            live_env["files"],
            body.replace("@T@", str(COMMAND_TIMEOUT)).replace("@W@", str(WAIT_TIMEOUT)),
            host,
            timeout=GUEST_TIMEOUT,
            smp=smp,
        )
    except live_guest.GuestError as e:
        pytest.fail(str(e))
    finally:
        _TIMES[name] = time.time() - t0
    assert (
        "@@WAIT-TIMEOUT@@" not in result.data and "@@NO-VMMEMCTL@@" not in result.data
    ), "the balloon never reached its target:\n" + result.data[-3000:]
    return result


DROP_ROOT = (
    "import os, sys; os.setgroups([]); os.setgid(65534); os.setuid(65534); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.fixture(scope="module")
def steady(live_env):
    c = live_guest.guest_commands()
    body = """
wait_target %(target)d @W@
vmm drgn.before
run drgn timeout @T@ %(drgn_script)s --json
vmm drgn.after
vmm console.before
run console timeout @T@ %(balloon_report)s --json
vmm console.after
run nonroot timeout @T@ $PY -c '%(drop)s' %(balloon_report)s
run nonroot_json timeout @T@ $PY -c '%(drop)s' %(balloon_report)s --json
""" % dict(c, target=TARGET, drop=DROP_ROOT)
    host = {
        "capabilities": live_guest.CAP_4K,
        "targets": [TARGET],
        "start_delay_polls": 2,
    }
    return _run(live_env, "steady", body, host)


@pytest.fixture(scope="module")
def moving(live_env):
    c = live_guest.guest_commands()
    inst = c["instrumented"]
    # The host stops the VM at each of its commands, so in guest time the
    # driver's inflation by 15000 frames is nearly instantaneous, and it
    # happens once a (guest) second: a fast walk (a fraction of a second)
    # mostly falls between two changes. The instrumented runs record every
    # walk; the delayed ones pause in the middle of a walk (after its first
    # block of the memory map) until the balloon changed.
    runs = [
        ("move_drgn", c["drgn_script"]),
        ("move_console", c["balloon_report"]),
        ("move_fast1", inst),
        ("move_fast2", inst),
        ("move_slow", inst + " --slow-walk"),
        ("move_delay1", "env LIVE_DELAY=%s %s" % (DELAY, inst)),
        ("move_delay2", "env LIVE_DELAY=%s %s" % (DELAY, inst)),
        ("move_delay_all", "env LIVE_DELAY=%s LIVE_DELAY_WALKS=99 %s" % (DELAY, inst)),
    ]
    body = "wait_grown 5000 @W@\n" + "".join(
        "vmm %s.before\nrun %s timeout @T@ %s --json\nvmm %s.after\n" % (n, n, cmd, n)
        for n, cmd in runs
    )
    # The host changes the target at every poll (once a second): the driver
    # inflates or deflates by 15000 frames, 2 MiB pages first (the host takes
    # 20 of them, then refuses 2 MiB pages) and 4 KiB pages after.
    host = {
        "capabilities": live_guest.CAP_2M,
        "targets": [TARGET, LOW_TARGET] * 1000,
        "settle_polls": 0,
        "max_2m_pages": 20,
        "start_delay_polls": 2,
    }
    return _run(live_env, "moving", body, host, smp=2), [n for n, _ in runs]


def _check_steady(result, name):
    run = result.command(name)
    assert run["rc"] == 0, run
    doc = run["json"]
    assert doc is not None, run
    before = result.vmmemctl(name + ".before")
    after = result.vmmemctl(name + ".after")
    assert (
        (before["current"], before["target"])
        == (after["current"], after["target"])
        == (TARGET, TARGET)
    ), (before, after)
    b = doc["balloon"]
    assert b["size_frames"] == before["current"]
    assert b["target_frames"] == before["target"]
    assert b["verified"] is True, b["findings"]
    assert b["pages_4k"] == TARGET and b["pages_2m"] == 0
    assert doc["kernel"]["live"] is True
    assert doc["kernel"]["release"] == live_guest.KERNEL_RELEASE
    _TIMES["%s run in the guest" % name] = run["seconds"]
    live_guest.log("%s: %.1f s in the guest" % (name, run["seconds"]))


def test_live_drgn_script(steady):
    """drgn scripts/balloon_report.py --json, as root, against /proc/kcore."""
    _check_steady(steady, "drgn")


def test_live_console_script(steady):
    """balloon-report --json, as root, against /proc/kcore."""
    _check_steady(steady, "console")


def test_live_not_root(steady):
    run = steady.command("nonroot")
    assert run["rc"] == 7, run
    assert run["stdout"] == ""
    lines = run["stderr"].splitlines()
    assert len(lines) == 1, run["stderr"]
    assert lines[0].startswith("balloon-report: error: ") and "root" in lines[0]

    run = steady.command("nonroot_json")
    assert run["rc"] == 7, run
    assert len(run["stderr"].splitlines()) == 1, run["stderr"]
    assert run["json"]["error"]["exit_code"] == 7


def _frames_moved(before, after):
    keys = ("alloc(4k)", "alloc(2M)", "free(4k)", "free(2M)")
    return any(before.get(k) != after.get(k) for k in keys)


def test_live_moving_balloon(moving):
    """The host inflates and deflates the balloon while the report walks it:
    exit 0 (verified) or 1 (the figures moved), never a corrupt list."""
    result, names = moving
    overlapped = 0
    disturbed = 0
    for name in names:
        run = result.command(name)
        doc = run["json"]
        assert doc is not None and "error" not in doc, run
        assert run["rc"] in (0, 1), run
        assert doc["kernel"]["live"] is True
        b = doc["balloon"]
        kinds = [f["kind"] for f in b["findings"]]
        assert not CORRUPT & set(kinds), (name, b["findings"])
        if run["rc"] == 0:
            assert b["verified"] is True and not kinds
        else:
            assert "moved" in kinds, (name, b["findings"])
        before, after = (
            result.vmmemctl(name + ".before"),
            result.vmmemctl(name + ".after"),
        )
        overlapped += _frames_moved(before, after)
        for w in run["walks"] or ():
            disturbed += w["delayed"] and not w["verified"]
        live_guest.log(
            "%s: rc %d, %.1f s, size %d, balloon %s -> %s, findings %s, walks %s"
            % (
                name,
                run["rc"],
                run["seconds"],
                b["size_frames"],
                before["current"],
                after["current"],
                kinds,
                run["walks"],
            )
        )
    # Otherwise this test tested nothing.
    assert overlapped, "the balloon never moved while a report ran"
    live_guest.log("%d delayed walks met a moving balloon" % disturbed)
    assert disturbed, "no delayed walk met a moving balloon"


# --- A stock Debian kernel with no debug files anywhere (issue 8) ---


@pytest.fixture(scope="module")
def stock(request, tmp_path_factory):
    """Debian's own 6.1 kernel (its image package: vmlinuz, vmw_vmci,
    vmw_balloon; KASLR on) as a VMware guest whose initramfs holds no vmlinux
    and no debug file: the report can only use the kernel's BTF
    (/sys/kernel/btf) and kallsyms (/proc/kallsyms)."""
    reason = live_guest.missing()
    if reason:
        pytest.skip(reason)
    from drgn_balloon.btf_debuginfo import btf_supported

    unsupported = btf_supported()
    if unsupported:
        # This drgn's one-line refusal is asserted in test_btf_samples.py.
        pytest.skip(unsupported)
    t0 = time.time()
    try:
        files = live_guest.stock_kernel_files()
    except live_guest.GuestError as e:
        pytest.fail(str(e))
    work = str(tmp_path_factory.mktemp("live-stock"))
    base = os.path.join(work, "base.cpio")
    request.addfinalizer(lambda: os.path.exists(base) and os.unlink(base))
    live_guest.build_initramfs(base, files)
    body = """
wait_target %(target)d @W@
echo "@@BEGIN debug_files@@"
find / -xdev \\( -name 'vmlinux*' -o -name '*.debug' -o -name 'System.map*' \\) \\
    2>/dev/null
echo "@@END debug_files@@"
vmm stock.before
run stock timeout @T@ $BALLOON_REPORT --json
vmm stock.after
""" % dict(target=TARGET)
    host = {
        "capabilities": live_guest.CAP_4K,
        "targets": [TARGET],
        "start_delay_polls": 2,
    }
    try:
        result = live_guest.run_guest(
            os.path.join(work, "stock"),
            base,
            files,
            body.replace("@T@", str(COMMAND_TIMEOUT)).replace("@W@", str(WAIT_TIMEOUT)),
            host,
            timeout=GUEST_TIMEOUT,
            stock=True,
        )
    except live_guest.GuestError as e:
        pytest.fail(str(e))
    finally:
        _TIMES["stock"] = time.time() - t0
    assert "@@WAIT-TIMEOUT@@" not in result.data, result.data[-3000:]
    return result


def test_live_stock_kernel_without_debug_files(stock):
    """balloon-report --json on /proc/kcore of a stock kernel: BTF and
    kallsyms only, and the figures of debugfs vmmemctl."""
    assert stock.sections["debug_files"].strip() == ""
    run = stock.command("stock")
    assert run["rc"] == 0, run
    doc = run["json"]
    assert doc is not None, run
    assert doc["debuginfo"]["source"] == "btf", doc["debuginfo"]
    booted = stock.sections["booted"].split()[0]
    assert doc["kernel"]["live"] is True
    assert doc["kernel"]["release"] == booted
    before = stock.vmmemctl("stock.before")
    after = stock.vmmemctl("stock.after")
    assert (before["current"], before["target"]) == (after["current"], after["target"])
    assert before["target"] == TARGET
    b = doc["balloon"]
    assert b["size_frames"] == before["current"]
    assert b["target_frames"] == before["target"]
    assert b["capabilities"] == before["used capabilities"]
    assert b["reset_required"] is (before["is resetting"] == "y")
    assert b["verified"] is True, b["findings"]
    assert b["pages_4k"] + 512 * b["pages_2m"] == before["current"]
    live_guest.log("stock: %.1f s in the guest" % run["seconds"])
