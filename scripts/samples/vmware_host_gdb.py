# Plays the VMware balloon "host" from gdb, attached to QEMU's gdbstub.
#
# Run as:  VMW_HOST_CONFIG=cfg.json gdb -batch -nx -x vmware_host_gdb.py
# (with `file vmlinux` first, or, for a stock kernel, "module_symbols" in the config:
# the vmw_balloon kallsyms the guest printed, and gdb attaches to the running guest).
#
# The unmodified vmw_balloon driver talks to the hypervisor with `inl (%dx)` on port
# 0x5670 (eax = magic, ecx = command, ebx = arg1, esi = arg2).  QEMU answers such an
# unassigned port with 0xffffffff.  We break on the instruction after each such `in`
# and put in the registers what a VMware host would answer:
#   eax = status, ebx = result (the target for GET_TARGET and lock/unlock commands),
#   ecx = capabilities (START only).
# For batched lock commands, the per-page status lives in the batch page (guest
# memory); a zero status means the host accepted the page.
#
# Command numbers, status codes and capability bits: drivers/misc/vmw_balloon.c
# (identical in 5.10, 6.1, 6.12 and 7.2).
import json
import os
import time

import gdb

CFG = json.load(open(os.environ["VMW_HOST_CONFIG"]))
LOG = open(CFG["log"], "a", buffering=1)
PAGE_OFFSET = int(CFG.get("page_offset", 0xFFFF888000000000))
MASK64 = (1 << 64) - 1

CMD_START = 0
CMD_GET_TARGET = 1
CMD_LOCK = 2
CMD_UNLOCK = 3
CMD_GUEST_ID = 4
CMD_BATCHED_LOCK = 6
CMD_BATCHED_UNLOCK = 7
CMD_BATCHED_2M_LOCK = 8
CMD_BATCHED_2M_UNLOCK = 9
CMD_VMCI_DOORBELL_SET = 10
CMD_NAMES = {
    0: "start",
    1: "target",
    2: "lock",
    3: "unlock",
    4: "guestType",
    6: "batchLock",
    7: "batchUnlock",
    8: "2m-lock",
    9: "2m-unlock",
    10: "doorbellSet",
}

SUCCESS = 0
ERROR_CMD_INVALID = 1
ERROR_PPN_NOTNEEDED = 6
SUCCESS_WITH_CAPABILITIES = 0x03000000
QEMU_UNANSWERED = 0xFFFFFFFF
FRAMES_2M = 512


def log(msg):
    LOG.write("%.3f %s\n" % (time.time(), msg))


class Host:
    def __init__(self, cfg):
        self.caps = int(cfg["capabilities"], 0)
        self.targets = [int(t) for t in cfg["targets"]]
        self.idx = 0
        self.max_2m_pages = cfg.get("max_2m_pages")  # None: accept every 2M page
        self.settle_polls = int(cfg.get("settle_polls", 2))
        # Answer target 0 to the first GET_TARGET polls, so that the guest can read
        # vmmemctl once (which turns the driver's statistics on) before inflation.
        self.start_delay_polls = int(cfg.get("start_delay_polls", 2))
        self.polls = 0
        self.size = 0  # frames the host believes are locked
        self.last_size = None
        self.stable = 0
        self.accepted_2m = 0
        self.refused_2m = 0
        self.accepted_4k = 0
        self.unlocked_4k = 0
        self.unlocked_2m = 0
        self.commands = {}
        self.double_hits = 0
        self.target_history = [[self.targets[0], time.time()]]

    @property
    def target(self):
        if self.polls <= self.start_delay_polls:
            return 0
        return self.targets[self.idx]

    def save(self):
        state = {k: v for k, v in self.__dict__.items()}
        with open(CFG["state_file"] + ".tmp", "w") as f:
            json.dump(state, f, indent=1)
        os.replace(CFG["state_file"] + ".tmp", CFG["state_file"])

    def batch(self, arg1, n):
        addr = PAGE_OFFSET + arg1 * 4096
        return addr, bytearray(gdb.selected_inferior().read_memory(addr, 8 * n))

    def answer(self, cmd, arg1, arg2):
        """Return (eax, ebx, ecx or None)."""
        name = CMD_NAMES.get(cmd, str(cmd))
        self.commands[name] = self.commands.get(name, 0) + 1
        if cmd == CMD_START:
            return SUCCESS_WITH_CAPABILITIES, 0, self.caps
        if cmd == CMD_GUEST_ID:
            return SUCCESS, 0, None
        if cmd == CMD_GET_TARGET:
            self.polls += 1
            if self.polls <= self.start_delay_polls:
                return SUCCESS, 0, None
            if self.size == self.last_size:
                self.stable += 1
            else:
                self.stable = 0
            self.last_size = self.size
            if self.stable >= self.settle_polls and self.idx + 1 < len(self.targets):
                self.idx += 1
                self.stable = 0
                self.target_history.append([self.target, time.time()])
                log("target -> %d (size %d)" % (self.target, self.size))
            return SUCCESS, self.target, None
        if cmd == CMD_BATCHED_LOCK:
            self.size += arg2
            self.accepted_4k += arg2
            return SUCCESS, self.target, None
        if cmd == CMD_BATCHED_2M_LOCK:
            addr, buf = self.batch(arg1, arg2)
            refused = 0
            for i in range(arg2):
                if self.max_2m_pages is None or self.accepted_2m < self.max_2m_pages:
                    self.accepted_2m += 1
                    self.size += FRAMES_2M
                else:
                    e = int.from_bytes(buf[8 * i : 8 * i + 8], "little")
                    e = (e & ~0x1F) | ERROR_PPN_NOTNEEDED
                    buf[8 * i : 8 * i + 8] = e.to_bytes(8, "little")
                    refused += 1
            if refused:
                self.refused_2m += refused
                gdb.selected_inferior().write_memory(addr, bytes(buf))
            return SUCCESS, self.target, None
        if cmd == CMD_BATCHED_UNLOCK:
            self.size -= arg2
            self.unlocked_4k += arg2
            return SUCCESS, self.target, None
        if cmd == CMD_BATCHED_2M_UNLOCK:
            self.size -= arg2 * FRAMES_2M
            self.unlocked_2m += arg2
            return SUCCESS, self.target, None
        if cmd == CMD_LOCK:
            self.size += 1
            self.accepted_4k += 1
            return SUCCESS, self.target, None
        if cmd == CMD_UNLOCK:
            self.size -= 1
            self.unlocked_4k += 1
            return SUCCESS, self.target, None
        return ERROR_CMD_INVALID, 0, None


HOST = Host(CFG["host"])
STATE = {}


def reg(frame, name):
    return int(frame.read_register(name)) & MASK64


class InBreakpoint(gdb.Breakpoint):
    """On the instruction right after `inl (%dx),%eax` in vmw_balloon."""

    def stop(self):
        frame = gdb.selected_frame()
        rax = reg(frame, "rax")
        if rax & 0xFFFFFFFF != QEMU_UNANSWERED:
            # gdb sometimes reports one hit twice; the first report was answered.
            HOST.double_hits += 1
            log("double hit at %s rax=%#x" % (self.location, rax))
            return False
        if reg(frame, "rdx") & 0xFFFF != 0x5670:
            log("not the balloon port at %s" % self.location)
            return False
        cmd = reg(frame, "rcx") & 0xFFFFFFFF
        arg1 = reg(frame, "rbx")
        arg2 = reg(frame, "rsi")
        eax, ebx, ecx = HOST.answer(cmd, arg1, arg2)
        gdb.execute("set $rax = %d" % eax)
        gdb.execute("set $rbx = %d" % ebx)
        if ecx is not None:
            gdb.execute("set $rcx = %d" % ecx)
        log(
            "%s(%#x, %d) -> eax=%#x ebx=%d%s size=%d"
            % (
                CMD_NAMES.get(cmd, cmd),
                arg1,
                arg2,
                eax,
                ebx,
                "" if ecx is None else " ecx=%#x" % ecx,
                HOST.size,
            )
        )
        HOST.save()
        return False


class ModuleLoadBreakpoint(gdb.Breakpoint):
    """do_init_module(struct module *mod): relocated, not yet initialized."""

    def stop(self):
        mod = gdb.parse_and_eval("(struct module *)$rdi")
        name = mod["name"].string()
        log("do_init_module(%s)" % name)
        if name != "vmw_balloon":
            return False
        ks = mod["kallsyms"].dereference()
        symtab = ks["symtab"]
        strtab = ks["strtab"]
        syms = {}
        for i in range(int(ks["num_symtab"])):
            s = symtab[i]
            off = int(s["st_name"])
            if off:
                syms[(strtab + off).string()] = int(s["st_value"]) & MASK64
        STATE["syms"] = syms
        return True


def main():
    gdb.execute("set pagination off")
    gdb.execute("set confirm off")
    gdb.execute("target remote %s" % CFG["gdb_address"])
    if "module_symbols" in CFG:
        # Attach mode (a stock kernel: no vmlinux): the guest has loaded vmw_balloon and
        # printed its kallsyms; attaching stopped the VM.  Until now the driver's START
        # went unanswered (it retries every second, as after a host reset).
        syms = {k: int(v, 0) for k, v in CFG["module_symbols"].items()}
        log("attached after vmw_balloon was loaded")
    else:
        bp = ModuleLoadBreakpoint("*do_init_module", internal=True)
        log("waiting for vmw_balloon to load")
        gdb.execute("continue")
        if "syms" not in STATE:
            log("stopped without vmw_balloon loaded; giving up")
            return
        syms = STATE["syms"]
        bp.delete()
    sites = []
    for site in CFG["in_sites"]:
        addr = syms[site["function"]] + site["offset_after"]
        sites.append({"function": site["function"], "address": "%#x" % addr})
        InBreakpoint("*%#x" % addr, internal=True)
    with open(CFG["sites_file"], "w") as f:
        json.dump(
            {"sites": sites, "symbols": {k: "%#x" % v for k, v in syms.items()}},
            f,
            indent=1,
        )
    log("breakpoints: %s" % sites)
    HOST.save()
    while True:
        try:
            gdb.execute("continue")
        except gdb.error as e:
            log("continue ended: %s" % e)
            break
        # Not one of our breakpoints (e.g. dump-guest-memory paused the VM): go on.
        try:
            log("unexpected stop at %#x; continuing" % reg(gdb.selected_frame(), "rip"))
        except gdb.error as e:
            log("stopped, no frame: %s" % e)
            break
        time.sleep(0.2)
    HOST.save()


try:
    main()
except Exception as e:  # keep a trace in the log
    log("host error: %r" % e)
    raise
