"""The guest supervisor: PID 1 of a sandbox container, between the host and the REPL server.

Runs inside the container as ``python3 -I -B -u -c <this source> <server source>``
(:func:`rlm_repl.supervised_command`); stdlib-only, Python 3.8+, Linux
(``/proc``), single-threaded.  It is the process the host talks to: its own
stdin/stdout are the host's protocol channel.  User code never runs in it.

Processes
---------
P (this supervisor, PID 1 of the container's PID namespace) starts U, the
REPL server (:mod:`rlm_repl.repl_server`), as ``python3 -I -B -u -c <server
source>`` with two fresh pipes as U's stdin and stdout and the container's
stderr as U's stderr.  P relays JSON lines: host -> U (the ``init`` message,
requests, callback replies) and U -> host (``ready``, callbacks, ``done``).
User code runs in U and in whatever U starts; the server reaps its exited
children after every request, so the processes P kills do not stay zombies.

What holds
----------
* **No process started by a cell outlives it.**  When U sends the ``done``
  of the current request, P first SIGKILLs every process of the container
  except itself and U (scanning ``/proc`` until a scan finds no live one,
  in bounded rounds; zombies are skipped and reaped), then forwards the
  ``done``.  The same sweep runs again just before each request is passed to
  U, for processes started in between (a signal handler, a timer).
* **No thread started by a cell outlives it.**  After the sweep P counts U's
  threads (``/proc/<U>/task``, re-checked for up to ~0.1 s so that a thread
  just joined has time to vanish).  More than one: P kills U, starts a fresh
  U (the kept ``init`` message again; its ``ready`` is not forwarded) and adds
  ``"session_lost": "<reason>"`` to the ``done`` it forwards, which the host
  turns into the result's notice (:func:`rlm_repl.replies.exec_result`).  The
  same check runs before each request; a restart found there, or during a
  request other than ``exec`` (whose replies carry no notice), is reported
  with the next ``exec``'s ``done``, so a lost state is never silent.  The
  host's ``SIGINT`` of an execution past its timeout is forwarded to U, and the
  interrupted execution's ``done`` goes through the same checks.
* **User code cannot write to the host's channel.**  U gets pipes, never P's
  fds 0/1 (every other fd of P is close-on-exec).  P makes itself
  non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``) before it passes U the host's
  ``init`` (U runs no user code before that; it starts early so that its
  start overlaps P's own imports), so processes of the same uid can neither
  ptrace it nor open ``/proc/1/fd/*``, ``/proc/1/mem`` or ``/proc/1/environ``
  (nor copy its fds with ``pidfd_getfd``); as PID 1 of its namespace it
  ignores every signal sent from inside the container but the ``SIGINT`` it
  forwards.  Everything U says reaches the host only as one complete line
  parsed as a JSON object carrying the session's nonce (from the host's
  ``init``), only while a host request is outstanding (from a request until
  its ``done``; a ``done`` with another request's id is dropped); lines
  outside that window (a stray thread, a timer) are dropped and reported on
  stderr (capped).  A line over 16 MiB (plus slack) stops U.
* **The container ends as before when U ends.**  When U closes its stdout
  (it exited, was killed by the OOM killer, ...) P writes the reason to fd 2
  and exits with a nonzero status (U's own status when it had one), so the
  host sees the container stop and reads docker's ``OOMKilled`` state.  When
  the host closes P's stdin, P kills U and exits 0.

What does not hold
------------------
* Within a cell, user code runs in U and can patch U's own Python objects
  (the server's channel included): it can forge the ``done`` of the current
  request, or answer its own ``llm_query`` calls.  That only affects the
  results of its own cell; the host checks every field
  (:mod:`rlm_repl.replies`).  U's state persisting between cells (variables,
  imports, monkeypatches, signal handlers, ``atexit`` hooks) is the point of a
  REPL.
* Thread pools are threads: a library that keeps worker threads after a cell
  (an executor never shut down, a BLAS thread pool) restarts the session.  P
  therefore sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
  ``MKL_NUM_THREADS`` to 1 in U's environment.
* "The end of a cell" is the ``done`` P receives: a cell that forges its own
  ``done`` and keeps running is swept by the check before the next request.
* The processes P kills are children of U (or of each other): they stay
  zombies (not running, but holding a slot of ``pids_limit``) until U reaps
  them, after the next request.
* Without ``ctypes`` (or a libc with ``prctl``) P stays dumpable; the ready
  message says so (``features.supervisor.nondumpable`` false).  Processes of
  another uid (``docker exec`` as root) are not killed.

Messages P adds
---------------
The ``ready`` forwarded to the host gains ``features.supervisor``:
``{"pid": 1, "nondumpable": bool, "sweep": bool}`` (``sweep``: P is PID 1 and kills
stray processes; run anywhere else, as in tests on a host, P never kills what it
did not start and only reaps); a ``done`` may gain ``session_lost``
(a short reason, ASCII).  Everything else passes through byte for byte.
"""

import os
import sys
import time

# Imported by main() once U is starting: loading them (json pulls in re and enum) takes about as
# long as U takes to start, so the two overlap.
json = select = selectors = signal = None

#: The longest line U may send (the host's frame limit plus slack); longer: U is stopped.
MAX_LINE = 16 * 1024 * 1024 + 64 * 1024
READ_CHUNK = 1024 * 1024
#: Rounds of the /proc sweep (each SIGKILLs every live process it finds) before giving up.
KILL_ROUNDS = 60
#: Pauses while waiting for just-joined threads to disappear from /proc/<U>/task (seconds).
THREAD_SETTLE = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04)
#: How long a restarted U may take to answer ``ready`` (seconds).
RESTART_TIMEOUT = 60.0
#: How long U may linger after closing its stdout before it is killed (seconds).
EXIT_GRACE = 0.5
MAX_DROP_REPORTS = 20
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

def log(text):
    try:
        os.write(2, ("rlm supervisor: " + text + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def make_nondumpable():
    """prctl(PR_SET_DUMPABLE, 0); True when it took effect."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        zero = ctypes.c_ulong(0)
        if libc.prctl(PR_SET_DUMPABLE, zero, zero, zero, zero) != 0:
            return False
        return libc.prctl(PR_GET_DUMPABLE, zero, zero, zero, zero) == 0
    except Exception:
        return False


def close_on_exec_all():
    """Mark every fd above 2 close-on-exec: U inherits only its pipes and fd 2."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def exit_code(status):
    """P's exit status for U's wait status: U's code, 128 + its signal, never 0."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status) or 1
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


def describe(status):
    if status is None:
        return "it ended"
    if os.WIFEXITED(status):
        return "it exited with status " + str(os.WEXITSTATUS(status))
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return "it was killed by " + name
    return "it ended"


def parse(line):
    """The line as a JSON object, or None."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


class Supervisor:
    def __init__(self, server_source, features):
        self.server_source = server_source
        self.features = features
        self.selector = selectors.DefaultSelector()
        self.host_buffer = bytearray()
        self.u_pid = None
        self.u_in = None
        self.u_out = None
        self.u_buffer = bytearray()
        self.u_pending_write = bytearray()
        self.u_status = None  # U's wait status once P reaped it
        self.u_ready = False
        self.generation = 0
        self.init_line = None
        self.nonce = None  # the session's, from the host's init: lines from U without it are dropped
        self.handshake = True  # until the first ready reached the host
        self.pending = False  # a host request is outstanding
        self.pending_id = None
        self.pending_op = None
        self.lost = None  # a restart not yet reported with an exec's done
        self.dropped = 0
        self.sweeps = os.getpid() == 1

    # --- U's lifecycle ---------------------------------------------------------------------

    def spawn(self, started=None):
        """Start U (or adopt ``started``, the first U main() started early) and watch its stdout."""
        pid, stdin_w, stdout_r = started or spawn_u(self.server_source)
        self.generation += 1
        self.u_pid, self.u_in, self.u_out = pid, stdin_w, stdout_r
        self.u_status = None
        self.u_ready = False
        self.u_buffer = bytearray()
        self.u_pending_write = bytearray()
        os.set_blocking(stdin_w, False)
        self.selector.register(stdout_r, selectors.EVENT_READ, "u_out")

    def discard(self):
        """Kill U, reap it, close its pipes."""
        pid, self.u_ready = self.u_pid, False
        for fd in (self.u_out, self.u_in):
            if fd is None:
                continue
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
        self.u_in = self.u_out = None
        if pid is not None and self.u_status is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                _pid, self.u_status = os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.u_pid = None

    def restart(self, reason):
        """A fresh U with the kept init message; blocks until its ready (not forwarded)."""
        log("restarting the REPL: " + reason)
        self.discard()
        self.sweep()
        self.spawn()
        if self.init_line is not None:
            self.u_pending_write += self.init_line
            self.flush_u(blocking=True)
        deadline = time.monotonic() + RESTART_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("the restarted REPL did not answer within " + str(int(RESTART_TIMEOUT)) + "s")
            readable, _w, _x = select.select([self.u_out], [], [], left)
            if readable:
                for line in self.lines_of(self.read_u()):
                    message = parse(line)
                    if message is not None and message.get("op") == "ready":
                        self.u_ready, self.u_buffer, self.lost = True, bytearray(), reason
                        return
                self.check_line_length()

    def u_ended(self):
        """U closed its stdout: report why and end the container (the host then restarts it)."""
        deadline = time.monotonic() + EXIT_GRACE
        while self.u_status is None and self.u_pid is not None:
            try:
                pid, status = os.waitpid(self.u_pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.u_status = status
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        status = self.u_status
        self.discard()
        status = self.u_status if status is None else status
        log("the REPL process ended: " + describe(status))
        self.sweep()
        os._exit(exit_code(status) if status is not None else 1)

    def fail(self, reason):
        log(reason + "; the REPL process was stopped")
        self.discard()
        os._exit(3)

    # --- the cleanup ------------------------------------------------------------------------

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.u_pid:
                self.u_status = status

    def sweep(self):
        """SIGKILL every live process of the container but P and U; reap what P may.

        Only as PID 1 (of the container's PID namespace): anywhere else /proc shows processes
        that are none of P's business, and P only reaps.
        """
        if not self.sweeps:
            self.reap()
            return
        keep = (1, self.u_pid)
        for attempt in range(KILL_ROUNDS):
            found = False
            try:
                names = os.listdir("/proc")
            except OSError:
                return
            for name in names:
                if not name.isdigit():
                    continue
                pid = int(name)
                if pid in keep or not alive(pid):
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                    found = True
                except (ProcessLookupError, PermissionError):
                    pass
            self.reap()
            if not found:
                return
            time.sleep(min(0.0002 * (attempt + 1), 0.01))
        log("processes were still starting after " + str(KILL_ROUNDS) + " rounds of killing")

    def threads(self):
        try:
            return len(os.listdir("/proc/" + str(self.u_pid) + "/task"))
        except OSError:
            return 1  # U is gone: its EOF tells

    def extra_threads(self):
        """Threads of U besides its main one, after a short settling time."""
        count = self.threads()
        for pause in THREAD_SETTLE:
            if count <= 1:
                return 0
            time.sleep(pause)
            count = self.threads()
        return count - 1

    def clean(self):
        """The sweep, then U's threads: restart U (and remember why) when a thread is left."""
        self.sweep()
        extra = self.extra_threads()
        if extra:
            self.restart("the cell left " + str(extra) + (" thread" if extra == 1 else " threads")
                         + " running, and no thread may outlive its cell")

    # --- relaying ---------------------------------------------------------------------------

    def to_host(self, data):
        try:
            write_all(1, data)
        except OSError:  # the host is gone
            self.discard()
            os._exit(0)

    def to_u(self, line):
        self.u_pending_write += line
        self.flush_u()

    def flush_u(self, blocking=False):
        while self.u_pending_write and self.u_in is not None:
            try:
                written = os.write(self.u_in, self.u_pending_write)
            except BlockingIOError:
                if not blocking:
                    break
                select.select([], [self.u_in], [], 1.0)
                continue
            except OSError:  # U closed its stdin: its EOF on stdout follows
                self.u_pending_write = bytearray()
                break
            del self.u_pending_write[:written]
        if self.u_in is None:
            return
        wanted = selectors.EVENT_WRITE if self.u_pending_write else 0
        try:
            key = self.selector.get_key(self.u_in)
        except KeyError:
            key = None
        if wanted and key is None:
            self.selector.register(self.u_in, selectors.EVENT_WRITE, "u_in")
        elif not wanted and key is not None:
            self.selector.unregister(self.u_in)

    def on_host_line(self, line):
        message = parse(line)
        op = message.get("op") if message is not None else None
        if op == "init":
            self.init_line, self.nonce = line, message.get("nonce")
        elif op is not None and op != "reply":  # a request
            self.clean()
            self.pending, self.pending_id, self.pending_op = True, message.get("id"), op
        self.to_u(line)

    def read_host(self):
        try:
            data = os.read(0, READ_CHUNK)
        except OSError:
            data = b""
        if not data:  # the host is gone
            self.discard()
            self.sweep()
            os._exit(0)
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            self.host_buffer += data[start:newline + 1]
            line, self.host_buffer = bytes(self.host_buffer), bytearray()
            start = newline + 1
            self.on_host_line(line)
        self.host_buffer += data[start:]

    def read_u(self):
        try:
            data = os.read(self.u_out, READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self.u_ended()
        return data

    def check_line_length(self):
        if len(self.u_buffer) > MAX_LINE:
            self.fail("the REPL process sent a line longer than " + str(MAX_LINE) + " bytes")

    def drop(self, why):
        self.dropped += 1
        if self.dropped <= MAX_DROP_REPORTS:
            log("dropped a line from the REPL process: " + why)
            if self.dropped == MAX_DROP_REPORTS:
                log("further dropped lines are not reported")

    def on_u_line(self, line):
        if not line.strip():
            return
        if self.handshake:
            message = parse(line)
            if message is None or message.get("op") != "ready" or message.get("nonce") != self.nonce:
                self.drop("not the ready message")
                return
            features = message.get("features")
            if isinstance(features, dict):
                features["supervisor"] = dict(self.features)
            self.handshake = False
            self.u_ready = True
            self.to_host(json.dumps(message).encode("ascii") + b"\n")
            return
        if not self.pending:
            self.drop("sent while no request was outstanding")
            return
        message = parse(line)
        if message is None or message.get("nonce") != self.nonce:
            self.drop("not a JSON object with the session's nonce")
            return
        op = message.get("op")
        if op == "ready":
            self.drop("an unexpected ready message")
            return
        if op != "done":
            self.to_host(line + b"\n")
            return
        if message.get("id") != self.pending_id or type(message.get("id")) is not type(self.pending_id):
            self.drop("the done of another request")
            return
        self.pending = False
        self.clean()
        if self.lost is not None and self.pending_op == "exec":
            message["session_lost"] = self.lost  # an interrupted cell's result carries it too
            self.lost = None
            line = json.dumps(message).encode("ascii")
        self.to_host(line + b"\n")

    def lines_of(self, data):
        """The complete lines of U's output that ``data`` ends (after what was buffered); the
        incomplete tail stays buffered once every line was taken."""
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                self.u_buffer += data[start:]
                return
            self.u_buffer += data[start:newline]
            line, self.u_buffer = bytes(self.u_buffer), bytearray()
            start = newline + 1
            yield line

    def on_u_data(self, data):
        generation = self.generation
        for line in self.lines_of(data):
            self.on_u_line(line)
            if generation != self.generation:  # U was restarted: the rest was the old one's
                return
        self.check_line_length()

    def on_sigint(self, signum, frame):
        if self.u_ready and self.u_pid is not None and self.u_status is None:
            try:
                os.kill(self.u_pid, signal.SIGINT)
            except OSError:
                pass

    def run(self, started):
        for fd in (0, 1):
            os.set_blocking(fd, True)
        self.spawn(started)
        signal.signal(signal.SIGINT, self.on_sigint)
        self.selector.register(0, selectors.EVENT_READ, "host")
        while True:
            for key, _mask in self.selector.select():
                if key.data == "host":
                    self.read_host()
                elif key.data == "u_out" and key.fd == self.u_out:
                    self.on_u_data(self.read_u())
                elif key.data == "u_in" and key.fd == self.u_in:
                    self.flush_u()


def spawn_u(server_source):
    """Start U: (pid, the write end of its stdin, the read end of its stdout).

    U gets the two pipes as fds 0/1 and P's fd 2; every other fd of P is close-on-exec
    (:func:`close_on_exec_all`).  Signal dispositions need no reset: U is Python, which sets its own."""
    env = dict(os.environ)
    for name in SINGLE_THREAD_ENV:
        env[name] = "1"
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    argv = [sys.executable, "-I", "-B", "-u", "-c", server_source]
    try:
        pid = os.posix_spawn(sys.executable, argv, env, file_actions=[(os.POSIX_SPAWN_DUP2, stdin_r, 0),
                                                                      (os.POSIX_SPAWN_DUP2, stdout_w, 1)])
    except BaseException:
        for fd in (stdin_w, stdout_r):
            os.close(fd)
        raise
    finally:
        os.close(stdin_r)
        os.close(stdout_w)
    return pid, stdin_w, stdout_r


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open("/proc/" + str(pid) + "/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x", b"")


def main():
    if len(sys.argv) < 2:
        log("usage: python3 -c <supervisor source> <server source>")
        os._exit(2)
    global json, select, selectors, signal
    try:
        close_on_exec_all()
        # U starts first (it runs no user code before the host's first request, by which time P
        # is non-dumpable); P's own imports and prctl overlap its start.
        started = spawn_u(sys.argv[1])
        features = {"pid": os.getpid(), "nondumpable": make_nondumpable(), "sweep": os.getpid() == 1}
        import json
        import select
        import selectors
        import signal
        Supervisor(sys.argv[1], features).run(started)
    except BaseException:
        import traceback

        log(traceback.format_exc())
        os._exit(1)


if __name__ == "__main__":
    main()
