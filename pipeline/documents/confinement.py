"""What the parsers' child process may do: the confinement it applies to itself before any document.

Plain functions, each applying one mechanism and saying what it enforced: resource limits (always),
Landlock (filesystem, TCP and signal/abstract-socket scoping, where the kernel has it) and a
seccomp filter (through libseccomp, where the library and the kernel have it). A mechanism the
host lacks is reported as missing, never silently skipped: the parent logs a warning.

Nothing here needs privileges: Landlock and seccomp only take rights away, after
`no_new_privs`, so the same code runs as an unprivileged service user.
"""

from __future__ import annotations

import errno
import os
import resource
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The child's environment: locale only (and libmagic's database location if the host moved it).
# Everything else (storage and SMTP credentials, database URLs, key locations) stays with the worker.
KEPT_ENVIRONMENT = ("LANG", "LC_ALL", "LC_CTYPE", "MAGIC")

# Standard streams (/dev/null), the answer channel, the document, and room for the parsers' own
# transient opens (pypdf and defusedxml open the document's path once more).
OPEN_FILES = 16

# Syscalls the parsers never make, refused with EPERM. Everything else is allowed: an allow-list
# of what CPython, pypdf and libmagic call would break on the next library upgrade, and the
# filesystem is Landlock's part.
DENIED_SYSCALLS = (
    # new processes and programs
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    # network (the answer channel is inherited, never created)
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # other processes' memory and descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "kcmp",
    # namespaces, mounts, privileges
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at", "personality",
    # kernel surfaces a parser has no use for
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl", "ioperm",
)  # fmt: skip
# Signals: only to itself (Landlock's signal scope does the same where the kernel has ABI 6).
SELF_SIGNAL_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")


@dataclass(frozen=True)
class Enforced:
    """One mechanism's outcome in the child: what it enforces, or why it could not."""

    mechanism: str
    active: bool
    detail: str


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a parser child starts with: the locale, nothing else of the worker's."""
    return {name: environ[name] for name in KEPT_ENVIRONMENT if name in environ}


def readable_paths() -> list[Path]:
    """Where the child may still read once confined: Python's own modules (the interpreter's and the
    environment's, for lazy imports) and this package. Not the working folder, the key file, /proc
    or /etc; libmagic's database is loaded before confinement."""
    import pipeline

    roots = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(Path(pipeline.__file__).parent))
    return sorted(Path(root) for root in roots if root and Path(root).is_dir())


def limit_resources(memory_bytes: int) -> Enforced:
    """Address space, no file writes, no new process, few descriptors, no core dump."""
    limits = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_NPROC: 0,
        resource.RLIMIT_NOFILE: OPEN_FILES,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
    }
    for kind, value in limits.items():
        resource.setrlimit(kind, (value, value))
    return Enforced("rlimits", True, f"address space {memory_bytes} B, file size 0, processes 0, {OPEN_FILES} files, no core")


def arm_cpu(seconds: int) -> None:
    """RLIMIT_CPU counts the process's whole life: allow `seconds` more from now (soft limit only,
    so it can be re-armed for the next document)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(usage.ru_utime + usage.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (spent + seconds, resource.RLIM_INFINITY))


def apply_landlock(readable: Iterable[Path]) -> Enforced:
    """Read-only access to `readable`, nothing else on any filesystem; no TCP; signals and abstract
    Unix sockets confined to the child (rights the kernel lacks are dropped: best effort)."""
    landlock = _libraries()["landlock"]
    if isinstance(landlock, str):
        return Enforced("landlock", False, landlock)
    abi = landlock.abi_version()
    if abi < 1:
        return Enforced("landlock", False, "the kernel has no Landlock (not built in, or not in the lsm= list)")
    with landlock.Ruleset(scoped=landlock.Scope.ABSTRACT_UNIX_SOCKET | landlock.Scope.SIGNAL) as ruleset:
        for path in readable:
            ruleset.allow_path(path, landlock.AccessFS.READ_FILE | landlock.AccessFS.READ_DIR)
        ruleset.restrict()
        handled = f"filesystem {int(ruleset.handled_fs):#x}, network {int(ruleset.handled_net):#x}, scopes {int(ruleset.scoped):#x}"
    return Enforced("landlock", True, f"ABI {abi}: {handled}")


def apply_seccomp() -> Enforced:
    """Refuse (EPERM) the syscalls of DENIED_SYSCALLS, and signals to any process but itself."""
    seccomp = _libraries()["seccomp"]
    if isinstance(seccomp, str):
        return Enforced("seccomp", False, seccomp)
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    unknown = []
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(refuse, name)
        except (OSError, ValueError, RuntimeError):  # a name this libseccomp or architecture lacks
            unknown.append(name)
    own = os.getpid()
    for name in SELF_SIGNAL_SYSCALLS:
        try:
            rules.add_rule(refuse, name, seccomp.Arg(0, seccomp.NE, own))
        except (OSError, ValueError, RuntimeError):
            unknown.append(name)
    try:
        rules.load()
    except OSError as exc:
        return Enforced("seccomp", False, f"the kernel refused the filter ({exc})")
    missing = f"; unknown here: {', '.join(unknown)}" if unknown else ""
    return Enforced("seccomp", True, f"{len(DENIED_SYSCALLS) - len(unknown)} syscalls refused{missing}")


def _libraries() -> dict[str, Any]:
    """landlockpy and pyseccomp, loaded, or why not. Loading looks libraries up with `ldconfig`
    (a new process): done before the limits and filters that forbid it."""
    if not _loaded:
        try:
            import landlockpy

            landlockpy.abi_version()  # loads libc through ctypes
            _loaded["landlock"] = landlockpy
        except ImportError as exc:
            _loaded["landlock"] = f"landlockpy is not importable ({exc})"
        try:
            import pyseccomp

            _loaded["seccomp"] = pyseccomp
        except (ImportError, RuntimeError) as exc:  # RuntimeError: libseccomp itself is missing
            _loaded["seccomp"] = f"libseccomp is not usable ({exc})"
    return _loaded


_loaded: dict[str, Any] = {}


def confine(memory_bytes: int) -> list[Enforced]:
    """Everything, in order: load the libraries, set the limits, then Landlock (its own syscalls
    must still be allowed), then seccomp."""
    _libraries()
    return [limit_resources(memory_bytes), apply_landlock(readable_paths()), apply_seccomp()]
