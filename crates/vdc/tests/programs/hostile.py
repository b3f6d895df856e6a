"""A hostile instance: tries every way out of its confinement it knows and
prints one line per attempt, `blocked NAME` when the attempt failed and
`ESCAPED NAME: what it got` when it worked. Then checks that what it was
given still works (`works NAME` or `BROKEN NAME: why`), and ends with
`done`. Every target comes from the environment the test sets:

  HOSTILE_DATA_DIR    the node's data directory
  HOSTILE_VICTIM      path of another tenant's volume file and log file
  HOSTILE_VICTIM_LOG  (tab-separated: volume file, log file)
  HOSTILE_VICTIM_PID  host pid of another tenant's instance
  HOSTILE_HOST_TMP    a file in the host's /tmp
  HOSTILE_API         the host's public API address (host:port)
  HOSTILE_GATEWAY     another app's gateway address (host:port)
"""

import ctypes
import ctypes.util
import os
import socket
import sys
import urllib.error
import urllib.request

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MACHINE = os.uname().machine
# System call numbers the C library has no wrapper for.
SYSCALLS = {
    "x86_64": {"bpf": 321, "keyctl": 250, "init_module": 175, "finit_module": 313,
               "kexec_load": 246, "open_tree": 428, "userfaultfd": 323,
               "io_uring_setup": 425, "perf_event_open": 298, "ptrace": 101},
    "aarch64": {"bpf": 280, "keyctl": 219, "init_module": 105, "finit_module": 273,
                "kexec_load": 104, "open_tree": 428, "userfaultfd": 282,
                "io_uring_setup": 425, "perf_event_open": 241, "ptrace": 117},
}[MACHINE]


def say(line):
    print(line, flush=True)


def attempt(name, action):
    """Runs `action`; an exception (or a falsy result) means it was blocked."""
    try:
        got = action()
    except Exception as e:  # noqa: BLE001 - any failure is a block
        say(f"blocked {name} ({type(e).__name__}: {e})")
        return
    if got:
        say(f"ESCAPED {name}: {str(got)[:200]}")
    else:
        say(f"blocked {name}")


def expect(name, action):
    try:
        action()
        say(f"works {name}")
    except Exception as e:  # noqa: BLE001
        say(f"BROKEN {name}: {type(e).__name__}: {e}")


def read(path):
    with open(path, "rb") as f:
        return f.read(200) or b"(empty file)"


def syscall(name, *args):
    result = libc.syscall(SYSCALLS[name], *[ctypes.c_long(a) for a in args])
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return f"{name} returned {result}"


def libc_call(fn, *args):
    result = fn(*args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return f"returned {result}"


def connect(address):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2):
        return f"connected to {address}"


def http(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def platform(path, token):
    try:
        return http(os.environ["VDC_API"] + path, token)[0]
    except urllib.error.HTTPError as e:
        return e.code


data_dir = os.environ["HOSTILE_DATA_DIR"]
victim_volume, victim_log = os.environ["HOSTILE_VICTIM"].split("\t")

# === the node's secrets and other tenants' data ===
attempt("read-admin-token", lambda: read(os.path.join(data_dir, "admin.token")))
attempt("read-instance-key", lambda: read(os.path.join(data_dir, "instance.key")))
attempt("read-state", lambda: read(os.path.join(data_dir, "state.redb")))


def others_in_data_dir():
    """What the data directory shows besides the way to its own volume."""
    own = os.environ["VDC_VOLUME_DATA"]
    found = []
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            if not (own.startswith(path + "/") or path == own or path.startswith(own + "/")):
                found.append(path)
    return found


attempt("list-data-dir", others_in_data_dir)
attempt("read-other-volume", lambda: read(victim_volume))
attempt("read-other-log", lambda: read(victim_log))
attempt("read-shadow", lambda: read("/etc/shadow"))
attempt("list-root-home", lambda: os.listdir("/root"))
attempt("see-host-tmp", lambda: os.path.exists(os.environ["HOSTILE_HOST_TMP"]) and "host /tmp file visible")
attempt("see-host-processes",
        lambda: len([p for p in os.listdir("/proc") if p.isdigit()]) > 10 and "many processes")
attempt("write-host-usr", lambda: open("/usr/hostile", "w").write("x"))

# === leaving the namespaces ===
attempt("umount-proc", lambda: libc_call(libc.umount2, b"/proc", 2))
attempt("mount-tmpfs", lambda: libc_call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None))
attempt("mount-proc-elsewhere", lambda: libc_call(libc.mount, b"proc", b"/tmp", b"proc", 0, None))
attempt("open-other-netns", lambda: read(f"/proc/{os.environ['HOSTILE_VICTIM_PID']}/ns/net"))
own_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
attempt("setns", lambda: libc_call(libc.setns, own_netns, 0x40000000))
attempt("unshare-user", lambda: libc_call(libc.unshare, 0x10000000))
attempt("unshare-net", lambda: libc_call(libc.unshare, 0x40000000))
attempt("chroot", lambda: libc_call(libc.chroot, b"/tmp"))
attempt("setuid-root", lambda: os.setuid(0) or "became root")
for cgroup in ["/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs",
               "/sys/fs/cgroup/memory/../cgroup.procs"]:
    attempt(f"write-cgroup {cgroup}",
            lambda c=cgroup: open(c, "w").write(str(os.getpid())) and "moved")
attempt("escape-memory-limit",
        lambda: open("/sys/fs/cgroup/memory/memory.limit_in_bytes", "w").write("-1") and "raised")

# === the kernel ===
attempt("ptrace-pid1", lambda: syscall("ptrace", 16, 1, 0, 0))  # PTRACE_ATTACH
attempt("ptrace-traceme", lambda: syscall("ptrace", 0, 0, 0, 0))
attempt("raw-socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet-socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
attempt("vsock", lambda: socket.socket(40, socket.SOCK_STREAM, 0))
attempt("load-module", lambda: syscall("init_module", 0, 0, 0))
attempt("load-module-file", lambda: syscall("finit_module", 0, 0, 0))
attempt("kexec", lambda: syscall("kexec_load", 0, 0, 0, 0))
attempt("bpf", lambda: syscall("bpf", 0, 0, 0))
attempt("keyctl", lambda: syscall("keyctl", 0, 0, 0, 0))
attempt("userfaultfd", lambda: syscall("userfaultfd", 0))
attempt("io-uring", lambda: syscall("io_uring_setup", 1, 0))
attempt("perf-event", lambda: syscall("perf_event_open", 0, 0, -1, -1, 0))
attempt("open-tree", lambda: syscall("open_tree", -100, 0, 0))
attempt("change-hostname", lambda: libc_call(libc.sethostname, b"evil", 4))
attempt("kill-init", lambda: os.kill(1, 9) or "signalled pid 1")

# === the network ===
attempt("reach-host-api", lambda: connect(os.environ["HOSTILE_API"]))
attempt("reach-other-gateway", lambda: connect(os.environ["HOSTILE_GATEWAY"]))
attempt("platform-as-admin", lambda: platform("/v1/apps", os.environ["VDC_TOKEN"]) == 200 and "listed apps")
attempt("platform-forged-token",
        lambda: platform("/v1/self", os.environ["VDC_TOKEN"][:-4] + "0000") == 200 and "accepted")

# === what it was given ===
volume = os.environ["VDC_VOLUME_DATA"]
expect("own-volume", lambda: (open(os.path.join(volume, "mine"), "w").write("mine"),
                              read(os.path.join(volume, "mine")) == b"mine" or 1 / 0))
expect("own-tmp", lambda: open("/tmp/mine", "w").write("mine"))
expect("declared-link", lambda: http(os.environ["VDC_LINK_WEB_URL"] + "/")[0] == 200 or 1 / 0)
expect("platform-self", lambda: platform("/v1/self", os.environ["VDC_TOKEN"]) == 200 or 1 / 0)
expect("own-identity", lambda: os.getuid() != 0 or 1 / 0)
say(f"uid {os.getuid()} gid {os.getgid()}")
say("done")
sys.stdout.flush()
os.execvp("sleep", ["sleep", "1000"])
