#!/usr/bin/env python3
"""mailer vs Postfix, in one run, on loopback.

Both systems relay to the same smtp-sink "upstream". For each system (3 repetitions, median
reported; both run side by side and each workload runs on one, then the other, in alternating
order) it measures, with Postfix's smtp-source as the client:

  * accepted msg/s and end-to-end delivered msg/s, `smtp-source -s 20 -m 5000 -l 4096`
    (one message per connection), and the same with `-d` (many messages per connection);
  * per-message latency with one session, `smtp-source -s 1 -m 1000 -l 4096` (wall time / 1000);
  * peak RSS and peak PSS of the whole process tree (sum over processes, sampled from
    /proc/PID/smaps_rollup every 0.1 s while the system runs the workloads);
  * CPU ms per message: utime+stime (+ cutime+cstime of reaped children) of the process tree,
    from the start of a workload until its last message reached the sink, divided by the count.

Plus a "ceiling" (smtp-source straight into smtp-sink) and an fsync-rate probe (write 4 KiB,
fsync, rename, fsync directory, one thread). At the end it checks that the sink received every
message that got a 250 (smtp-source aborts on any other reply, and its -c counter counts DATA
completions) and prints a Markdown table.

Usage: bench/run.py --mailer PATH [--reps 3] [--quick]   (run as root, or a user that may bind
high ports; Postfix needs root to start its master). bench/run.sh installs and builds first.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
IS_ROOT = os.geteuid() == 0
SENDER = "bench@source.example"
RECIPIENT = "rcpt@upstream.example"


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.recv(100)
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


# --------------------------------------------------------------------------------------------
# /proc accounting


def all_ppids():
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(b")") + 2:].split()
        out[int(name)] = int(rest[1])
    return out


def tree(root):
    """The pids of root and all its descendants."""
    ppids = all_ppids()
    children = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in ppids or pid == root:
            result.append(pid)
        todo.extend(children.get(pid, []))
    return result


def cpu_ticks(pid):
    """utime+stime+cutime+cstime: the process and every child it has reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    rest = data[data.rindex(b")") + 2:].split()
    return sum(int(x) for x in rest[11:15])


def tree_cpu_seconds(root):
    # A live process's cutime only holds reaped children, which are no longer in the tree: no
    # double counting. A child that exits between two snapshots lands in its parent's cutime.
    return sum(cpu_ticks(p) for p in tree(root)) / CLK_TCK


def rollup(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class MemorySampler:
    """Samples the summed RSS/PSS (kB) of a process tree every `interval` seconds."""

    def __init__(self, root_fn, interval=0.1):
        self.root_fn = root_fn
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.stop_flag = threading.Event()
        # Sampling costs CPU (smaps_rollup of every process): only the system being measured is sampled.
        self.active = True
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_flag.is_set():
            root = self.root_fn() if self.active else None
            if root:
                pids = tree(root)
                rss = pss = 0
                for p in pids:
                    r, s = rollup(p)
                    rss += r
                    pss += s
                self.peak_rss = max(self.peak_rss, rss)
                self.peak_pss = max(self.peak_pss, pss)
                self.peak_procs = max(self.peak_procs, len(pids))
            self.stop_flag.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join()


# --------------------------------------------------------------------------------------------
# The upstream: smtp-sink with its running counter on stdout


class Sink:
    def __init__(self, workdir):
        self.port = free_port()
        self.path = os.path.join(workdir, "sink.out")
        self.out = open(self.path, "wb")
        args = [SMTP_SINK, "-c", "-m", "512"]
        if IS_ROOT:
            args += ["-u", "nobody"]
        args += [f"127.0.0.1:{self.port}", "1024"]
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.reader = open(self.path, "rb")
        self.tail = b""
        self.last = 0
        wait_until(lambda: port_open(self.port), 10, "smtp-sink")

    def count(self):
        """Messages received so far ("." completions)."""
        data = self.reader.read()
        if data:
            self.tail = (self.tail + data)[-4096:]
            found = re.findall(rb"mesg=(\d+)", self.tail)
            if found:
                self.last = int(found[-1])
        return self.last

    def wait_for(self, target, timeout):
        """Waits until the counter reaches target; returns the monotonic time it did (or None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= target:
                return time.monotonic()
            time.sleep(0.002)
        return None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------------
# Workloads


WORKLOADS = [
    # name, smtp-source options, message count
    ("s20", ["-s", "20"], 5000),
    ("s20d", ["-s", "20", "-d"], 5000),
    ("s1", ["-s", "1"], 1000),
]


def run_workload(port, sink, opts, count, root_fn=None, drain_timeout=120):
    """One smtp-source run; returns accepted/s, delivered/s, latency, CPU and the check."""
    base = sink.count()
    cpu0 = tree_cpu_seconds(root_fn()) if root_fn else 0.0
    args = [SMTP_SOURCE, "-c", *opts, "-m", str(count), "-l", "4096", "-f", SENDER, "-t", RECIPIENT,
            "-M", "source.example", f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, timeout=600)
    t1 = time.monotonic()
    counted = re.findall(rb"(\d+)", proc.stdout)
    accepted = int(counted[-1]) if counted else 0
    if proc.returncode != 0:
        log(f"smtp-source exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    t2 = sink.wait_for(base + accepted, drain_timeout)
    cpu1 = tree_cpu_seconds(root_fn()) if root_fn else 0.0
    time.sleep(0.3)  # late duplicates, if any, still show up in the delta
    delivered = sink.count() - base
    return {
        "accepted": accepted,
        "sent_ok": proc.returncode == 0 and accepted == count,
        "accept_s": t1 - t0,
        "accepted_per_s": accepted / (t1 - t0),
        "delivered": delivered,
        "delivered_per_s": (accepted / (t2 - t0)) if t2 else 0.0,
        "latency_ms": (t1 - t0) * 1000 / count,
        "cpu_ms_per_msg": (cpu1 - cpu0) * 1000 / max(1, accepted),
        "all_delivered": t2 is not None and delivered >= accepted,
    }


# --------------------------------------------------------------------------------------------
# Systems under test


class Mailer:
    name = "mailer"

    def __init__(self, binary, workdir, sink_port, worker_count, recycle=True):
        self.binary = binary
        self.recycle = recycle
        self.dir = os.path.join(workdir, "mailer")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.config = {
            "smtpHost": "127.0.0.1",
            "smtpPort": self.port,
            "forwardSMTP": True,
            "forwardProviders": [{"name": "sink", "host": "127.0.0.1", "port": sink_port}],
            "enableHealthCheck": False,
            "dataDir": os.path.join(self.dir, "emails"),
            "hostname": "mailer-bench.localdomain",
            "workerCount": worker_count,
        }
        if IS_ROOT:
            self.config["user"] = "mailer"
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.proc = None

    def start(self):
        self.logf = open(os.path.join(self.dir, "mailer.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "-config", self.config_path], stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or port_open(self.port), 30, "mailer SMTP port")
        if self.proc.poll() is not None:
            raise RuntimeError("mailer exited: see " + self.logf.name)
        time.sleep(0.5)  # let the forwarder come up too
        if not self.recycle:
            # A/B of the inode-recycling change: without queue/free/ the spool creates and unlinks
            # a file per message, exactly as before the change.
            os.rmdir(os.path.join(self.config["dataDir"], "queue", "free"))

    def root(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def stop(self):
        if not self.proc:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.logf.close()

    def wipe(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# Every setting that differs from Postfix 3.7's built-in defaults (`postconf -d`), and why.
POSTFIX_MAIN_CF = """\
# --- needed for a private instance in a temporary directory ---
queue_directory = {queue}
data_directory = {data}
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
# (no syslog daemon here; postlogd writes the log, like mailer writes its own)
compatibility_level = 3.6
myhostname = postfix-bench.localdomain
# --- needed to act as a loopback relay to the sink ---
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relayhost = [127.0.0.1]:{sink_port}
alias_maps =
alias_database =
# --- everything else (concurrency, process limits, flow control) is left at its default:
# default_process_limit = 100, smtp_destination_concurrency_limit = default_destination_concurrency_limit = 20,
# in_flow_delay = 1s, smtp_connection_cache_on_demand = yes, smtpd_client_connection_rate_limit = 0
"""


class Postfix:
    name = "postfix"

    def __init__(self, workdir, sink_port):
        self.dir = os.path.join(workdir, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        for d in (self.dir, self.etc, self.data, self.queue):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        if IS_ROOT:
            shutil.chown(self.data, "postfix", "postfix")
        self.port = free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(queue=self.queue, data=self.data, dir=self.dir, sink_port=sink_port))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self.master_cf())
        self.env = dict(os.environ, MAIL_CONFIG=self.etc)

    def master_cf(self):
        """Debian's default master.cf, with: the smtpd listener on 127.0.0.1:PORT, chroot off (a
        chroot would need copies of /etc files in the temporary queue), the pipe(8) examples removed."""
        dist = "/usr/share/postfix/master.cf.dist"
        lines = open(dist).read().splitlines() if os.path.exists(dist) else []
        out, skip = [], False
        for line in lines:
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace():
                if not skip:
                    out.append(line)
                continue
            fields = line.split()
            skip = len(fields) >= 8 and fields[7] == "pipe"
            if skip:
                continue
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{self.port}"
            if len(fields) >= 8 and fields[4] == "y":
                fields[4] = "n"
            out.append("  ".join(fields[:8]) + (" " + " ".join(fields[8:]) if len(fields) > 8 else ""))
        if not out:
            raise RuntimeError(f"{dist} missing: install postfix")
        return "\n".join(out) + "\n"

    def start(self):
        r = subprocess.run(["postfix", "-c", self.etc, "start"], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: " + r.stdout + r.stderr)
        wait_until(lambda: port_open(self.port), 30, "postfix SMTP port")
        time.sleep(0.5)

    def root(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        pid = self.root()
        subprocess.run(["postfix", "-c", self.etc, "stop"], env=self.env, capture_output=True)
        if pid:
            try:
                wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30, "postfix master exit")
            except RuntimeError:
                subprocess.run(["postfix", "-c", self.etc, "abort"], env=self.env, capture_output=True)

    def wipe(self):
        shutil.rmtree(self.queue, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Machine limits


def fsync_probe(workdir, seconds=3.0, limit=20000):
    """write 4 KiB → fsync → rename → fsync(dir), from one thread, as fast as it goes."""
    d = os.path.join(workdir, "fsync-probe")
    os.makedirs(os.path.join(d, "tmp"))
    os.makedirs(os.path.join(d, "new"))
    dfd = os.open(os.path.join(d, "new"), os.O_RDONLY | os.O_DIRECTORY)
    payload = os.urandom(4096)
    n, t0 = 0, time.monotonic()
    while n < limit and time.monotonic() - t0 < seconds:
        tmp = os.path.join(d, "tmp", str(n))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(d, "new", str(n)))
        os.fsync(dfd)
        n += 1
    rate = n / (time.monotonic() - t0)
    os.close(dfd)
    shutil.rmtree(d)
    return rate


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", tempfile.gettempdir()],
                        capture_output=True, text=True).stdout.strip()
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "-T", tempfile.gettempdir()],
                            capture_output=True, text=True).stdout.strip()
    if fs.startswith("ext4"):
        dev = os.path.basename(source)
        journal = os.path.isdir("/proc/fs/jbd2") and any(n.startswith(dev + "-") for n in os.listdir("/proc/fs/jbd2"))
        fs = fs.replace("ext4", "ext4 (journal)" if journal else "ext4 (no journal)", 1)
    fs = " ".join(fs.split())
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "mem_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
        "tmpfs": fs,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": open("/proc/loadavg").read().split()[:3],
        "postfix": subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True,
                                  text=True).stdout.strip(),
    }


# --------------------------------------------------------------------------------------------


def measure_systems(systems, sink, rep):
    """Starts every system, then runs each workload on each of them in turn (the order of the
    systems alternates from one workload to the next), so that the two figures of a ratio are taken
    a few seconds apart, not a whole system run apart: on a shared host the machine's speed drifts
    over tens of seconds. A system that is not being measured sits idle."""
    results = {system.name: {} for system in systems}
    with contextlib.ExitStack() as stack:
        for system in systems:
            stack.callback(system.wipe)
            stack.callback(system.stop)
            system.start()
        samplers = {system.name: stack.enter_context(MemorySampler(system.root)) for system in systems}
        for index, (name, opts, count) in enumerate(WORKLOADS):
            for system in (systems if index % 2 == 0 else systems[::-1]):
                for other in systems:
                    samplers[other.name].active = other is system
                r = run_workload(system.port, sink, opts, count, root_fn=system.root)
                results[system.name][name] = r
                log(f"  rep {rep} {system.name:8s} {name:5s}: accepted {r['accepted_per_s']:7.0f}/s "
                    f"delivered {r['delivered_per_s']:7.0f}/s latency {r['latency_ms']:6.2f} ms "
                    f"cpu {r['cpu_ms_per_msg']:.3f} ms/msg  250s {r['accepted']} at sink {r['delivered']}")
        for mem in samplers.values():
            mem.active = False
        for system in systems:
            mem, out = samplers[system.name], results[system.name]
            out["rss_mb"] = mem.peak_rss / 1024
            out["pss_mb"] = mem.peak_pss / 1024
            out["procs"] = mem.peak_procs
            log(f"  rep {rep} {system.name:8s} peak RSS {out['rss_mb']:.1f} MB, PSS {out['pss_mb']:.1f} MB, "
                f"{mem.peak_procs} processes")
    return results


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailer", required=True, help="path to the release mailer binary")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker-count", type=int, default=20,
                    help="mailer workerCount (default 20 = Postfix's default_destination_concurrency_limit)")
    ap.add_argument("--json", help="also write all raw results here")
    ap.add_argument("--only", choices=["mailer", "postfix"], help="measure one system (for profiling)")
    ap.add_argument("--no-recycle", action="store_true",
                    help="remove mailer's queue/free/ after start (the spool as it was before inode recycling)")
    args = ap.parse_args()

    started = time.monotonic()
    info = machine()
    log("machine:", info)
    workdir = tempfile.mkdtemp(prefix="mailer-bench-")
    os.chmod(workdir, 0o755)
    sink = Sink(workdir)
    raw = {"machine": info, "ceiling": {}, "mailer": [], "postfix": []}
    try:
        log("fsync probe ...")
        raw["fsync_per_s"] = fsync_probe(workdir)
        log(f"  fsync'd file + directory: {raw['fsync_per_s']:.0f}/s")
        log("ceiling: smtp-source -> smtp-sink ...")
        for name, opts, count in WORKLOADS:
            runs = [run_workload(sink.port, sink, opts, count) for _ in range(3)]
            raw["ceiling"][name] = {k: median([r[k] for r in runs]) for k in ("accepted_per_s", "latency_ms")}
            log(f"  ceiling {name}: {raw['ceiling'][name]['accepted_per_s']:.0f}/s, "
                f"{raw['ceiling'][name]['latency_ms']:.2f} ms/msg")
        for rep in range(1, args.reps + 1):
            makers = [("mailer", lambda: Mailer(args.mailer, workdir, sink.port, args.worker_count,
                                                recycle=not args.no_recycle)),
                      ("postfix", lambda: Postfix(workdir, sink.port))]
            if rep % 2 == 0:
                makers.reverse()
            systems = [make() for name, make in makers if not args.only or name == args.only]
            for name, results in measure_systems(systems, sink, rep).items():
                raw[name].append(results)
            for system in systems:
                shutil.rmtree(system.dir, ignore_errors=True)
    finally:
        sink.stop()
        raw["machine"]["load_after"] = open("/proc/loadavg").read().split()[:3]
        raw["elapsed_s"] = time.monotonic() - started
        if args.json:
            with open(args.json, "w") as f:
                json.dump(raw, f, indent=2)
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(raw))
    ok = all(r[w]["all_delivered"] and r[w]["sent_ok"] for s in ("mailer", "postfix") for r in raw[s]
             for w, _, _ in WORKLOADS)
    return 0 if ok else 1


def report(raw):
    m, p, c = raw["mailer"], raw["postfix"], raw["ceiling"]

    def med(rs, w, k):
        return median([r[w][k] for r in rs]) if rs else float("nan")

    def spread(rs, w, k):
        vals = [r[w][k] for r in rs]
        return f"{min(vals):.4g}–{max(vals):.4g}" if vals else ""

    rows = []

    def row(label, ceiling, key, workload=None, fmt="{:.0f}", goal=""):
        mv = med(m, workload, key) if workload else median([r[key] for r in m])
        pv = med(p, workload, key) if workload else median([r[key] for r in p])
        ratio = mv / pv if pv and pv == pv and mv == mv else float("nan")
        rows.append(f"| {label} | {ceiling} | {fmt.format(mv)} | {fmt.format(pv)} | **{ratio:.2f}** | {goal} |")

    row("accepted msg/s, 20 sessions, 1 msg/connection", f"{c['s20']['accepted_per_s']:.0f}", "accepted_per_s", "s20",
        goal="≥ 3")
    row("delivered msg/s (at the sink), 20 sessions, 1 msg/conn", f"{c['s20']['accepted_per_s']:.0f}",
        "delivered_per_s", "s20", goal="≥ 3")
    row("accepted msg/s, 20 sessions, `-d` (many per connection)", f"{c['s20d']['accepted_per_s']:.0f}",
        "accepted_per_s", "s20d", goal="≥ 3")
    row("delivered msg/s, 20 sessions, `-d`", f"{c['s20d']['accepted_per_s']:.0f}", "delivered_per_s", "s20d",
        goal="≥ 3")
    row("latency ms/msg, 1 session (`-s 1 -m 1000`)", f"{c['s1']['latency_ms']:.2f}", "latency_ms", "s1",
        fmt="{:.2f}", goal="≤ 0.6")
    row("peak RSS MB, all processes", "", "rss_mb", fmt="{:.1f}")
    row("peak PSS MB, all processes", "", "pss_mb", fmt="{:.1f}", goal="≤ 0.5")
    row("CPU ms/msg, 20 sessions, 1 msg/conn", "", "cpu_ms_per_msg", "s20", fmt="{:.3f}")
    row("CPU ms/msg, 20 sessions, `-d`", "", "cpu_ms_per_msg", "s20d", fmt="{:.3f}")
    row("CPU ms/msg, 1 session", "", "cpu_ms_per_msg", "s1", fmt="{:.3f}")

    info = raw["machine"]
    out = [
        f"mailer vs Postfix {info.get('postfix', '')} relay → smtp-sink, 4 KiB messages, median of "
        f"{max(len(m), len(p))} alternating repetitions",
        f"machine: {info['nproc']} × {info['cpu']}, {info['mem_gb']} GB, kernel {info['kernel']}, "
        f"temp fs {info['tmpfs']}; {info['date']}; load before {' '.join(info['load'])}, "
        f"after {' '.join(info.get('load_after', []))}; bench took {raw.get('elapsed_s', 0):.0f} s",
        f"fsync probe (4 KiB write, fsync, rename, fsync dir; 1 thread): {raw.get('fsync_per_s', 0):.0f}/s",
        "",
        "| figure | ceiling (source→sink) | mailer | Postfix | mailer/Postfix | goal |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "per repetition (accepted/s · delivered/s for s20 and s20d; latency ms; PSS MB):",
    ]
    for name, rs in (("mailer", m), ("postfix", p)):
        for i, r in enumerate(rs, 1):
            out.append(f"  {name:8s} #{i}: s20 {r['s20']['accepted_per_s']:.0f} · {r['s20']['delivered_per_s']:.0f}  "
                       f"s20d {r['s20d']['accepted_per_s']:.0f} · {r['s20d']['delivered_per_s']:.0f}  "
                       f"s1 {r['s1']['latency_ms']:.2f}  PSS {r['pss_mb']:.1f}  RSS {r['rss_mb']:.1f}  "
                       f"procs {r['procs']}")
    checks = []
    for name, rs in (("mailer", m), ("postfix", p)):
        got = sum(r[w]["accepted"] for r in rs for w, _, _ in WORKLOADS)
        seen = sum(r[w]["delivered"] for r in rs for w, _, _ in WORKLOADS)
        bad = [f"rep {i} {w}" for i, r in enumerate(rs, 1) for w, _, _ in WORKLOADS
               if not (r[w]["all_delivered"] and r[w]["sent_ok"])]
        checks.append(f"check {name}: {got} messages got 250, the sink counted {seen} "
                      f"({seen - got} extra = duplicates): {'OK' if not bad else 'FAILED in ' + ', '.join(bad)}")
    out += ["", *checks]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
