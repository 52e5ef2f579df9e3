"""
The %balloon drgn command (drgn 0.1.0+), on a real sample: -h, errors the
way drgn's commands raise them, offered in kernels only, and --drgn
code that does exactly what the command did, checked by executing the
printed code for every combination of options and comparing its output and
its report with the command's.
"""

import contextlib
import io
import itertools
import pickle
import subprocess
import sys

import pytest
import samplelib

commands = pytest.importorskip(
    "drgn.commands", reason="drgn < 0.1.0 has no command framework"
)


def run_command(prog, line):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = commands.run_command(prog, line, globals={"prog": prog})
    return result, out.getvalue()


def test_help(prog):
    result, out = run_command(prog, "balloon -h")
    assert result is None
    assert "--no-verify" in out and "--drgn" in out and "-s" in out


def test_usage_error_is_drgn_s_argument_error(prog):
    with pytest.raises(commands.CommandArgumentError):
        run_command(prog, "balloon --no-such-option")


def test_errors_are_command_errors_without_our_prefix(prog, tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(commands.CommandError) as info:
        run_command(prog, f"balloon -s {missing}")
    message = str(info.value)
    assert missing in message and "no such file" in message
    assert "balloon-report" not in message and "\n" not in message


def test_offered_in_kernels_of_every_architecture_only(prog):
    # Every architecture has a balloon driver (virtio_balloon everywhere, the
    # CMM on ppc64); a program that is not a kernel has none.
    import drgn

    from drgn_balloon.plugin import _enabled

    assert _enabled(prog)
    assert not _enabled(drgn.Program(drgn.Platform(drgn.Architecture.X86_64)))
    assert not _enabled(drgn.Program(drgn.Platform(drgn.Architecture.AARCH64)))


OPTIONS = ["--json", "--no-verify", "--slow-walk", "--no-rss", "-s"]


def combinations():
    for n in range(len(OPTIONS) + 1):
        yield from itertools.combinations(OPTIONS, n)


@pytest.mark.parametrize("options", list(combinations()), ids=" ".join)
def test_drgn_code_does_what_the_command_did(prog, sample_name, options):
    args = []
    for option in options:
        if option == "-s":
            for path in samplelib.debug_files(sample_name):
                args += ["-s", path]
        else:
            args.append(option)
    line = " ".join(["balloon"] + args)
    report, out = run_command(prog, line)
    _, code = run_command(prog, line + " --drgn")
    globals_ = {"prog": prog}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, globals_)
    assert printed.getvalue() == out
    assert globals_["report"] == report
    # The options reached the code.
    assert (report.balloon.verification is None) == ("--no-verify" in options)
    assert (report.memory.rss is None) == ("--no-rss" in options)
    assert out.lstrip().startswith("{") == ("--json" in options)
    for option, text in (("--slow-walk", "fast=False"), ("-s", "vmlinux")):
        assert (text in code) == (option in options), code


def test_report_renders_in_a_process_without_a_program(prog):
    # The report holds plain values: pickled, it renders where there is no
    # program and no dump.
    from drgn_balloon.render import render_json, render_text
    from drgn_balloon.report import balloon_report

    report = balloon_report(prog)
    code = (
        "import pickle, sys\n"
        "from drgn_balloon.render import render_json, render_text\n"
        "r = pickle.loads(sys.stdin.buffer.read())\n"
        "sys.stdout.write(render_text(r) + render_json(r))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(report),
        capture_output=True,
        check=True,
    )
    assert r.stdout.decode() == render_text(report) + render_json(report)


def test_btf_option_reaches_the_command_and_its_code():
    # %balloon --btf on a program with DWARF loaded reads the kernel's own
    # BTF instead, and --drgn prints code that does the same.
    import json

    from drgn_balloon.btf_debuginfo import btf_supported

    if btf_supported() is not None:
        pytest.skip(btf_supported())
    from drgn_balloon.errors import MissingDebugInfo

    def has_btf(name):
        try:
            samplelib.open_sample(name, btf=True)
        except MissingDebugInfo:
            return False
        return True

    names = [
        n
        for n in samplelib.selected_names()
        if samplelib.manifest(n).get("vmware")
        and samplelib.manifest(n).get("debug_files")
        and has_btf(n)
    ]
    if not names:
        pytest.skip("no sample of a kernel with both DWARF and BTF")
    first, second = (samplelib.open_sample(names[0]) for _ in range(2))
    report, out = run_command(first, "balloon --btf --json")
    assert json.loads(out)["debuginfo"]["source"] == "btf"
    _, code = run_command(first, "balloon --btf --json --drgn")
    assert "btf=True" in code
    globals_ = {"prog": second}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, globals_)
    assert printed.getvalue() == out
    assert globals_["report"] == report
