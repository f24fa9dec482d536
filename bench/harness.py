#!/usr/bin/env python3
"""The groxy benchmark: groxy, nginx and LiteLLM against the same Groq simulator, side by side.

Run it through `bench/run` (which builds the binaries and installs the peers); see
bench/README.md for what every figure means. Standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LOADGEN = BENCH / "loadgen" / "target" / "release" / "loadgen"
GROXY = ROOT / "target" / "release" / "groxy"
SIM = ROOT / "target" / "release" / "groq-sim"  # crates/groq-sim: cargo build --release -p groq-sim
VENV = BENCH / ".venv"
MODEL = "openai/gpt-oss-20b"
LITELLM_KEY = "sk-bench-5f2c9a7e1d3b4c6a8e0f2a4b6c8d0e1f"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
PROXIES = ["groxy", "nginx", "litellm"]
LABEL = {"direct": "direct", "groxy": "groxy", "groxy-h2": "groxy, HTTP/2 upstream", "nginx": "nginx",
         "litellm": "LiteLLM"}

# Targets of issue 3, on this 2-core machine.
TARGETS = {
    "added_p99_1000rps_ms": 1.0,
    "saturation_vs_nginx": 0.80,
    "added_ttfb_p99_ms": 1.0,
    "added_chunk_p99_ms": 0.5,
    "rss_10k_streams_mb": 150.0,
    "idle_rss_mb": 20.0,
    "ready_ms": 100.0,
}
# Targets of issue 19 (performance), on the same machine.
TARGETS_19 = {
    "added_p99_c1_us": 100.0,
    "rss_per_stream_2k_kb": 20.0,
    "rss_after_burst_ratio": 1.2,
    "instructions_default": 75_000,
    "instructions_miss": 110_000,
    "instructions_hit": 60_000,
}
INSTRUCTIONS_JSON = BENCH / "results" / "instructions.json"  # written by bench/instructions
C1_TARGETS = ["direct", "groxy", "nginx"]  # LiteLLM is left out of concurrency 1: bounded run time
BURST_STREAMS, BURST_SECONDS, BURST_SETTLE_S = 2000, 4.0, 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

LOAD_CPUS: set[int] = {0}
PROXY_CPUS: set[int] = {1}
PINNED = True
STARTED: list["Proc"] = []


def pin(cpus: set[int]):
    def f():
        if PINNED:
            os.sched_setaffinity(0, cpus)
        os.setpgrp()

    return f


class Proc:
    """A child process in its own process group, stopped by its own pid (never by name)."""

    def __init__(self, name: str, argv: list[str], cpus: set[int], logdir: Path, env=None, cwd=None):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.logf = open(self.log_path, "ab")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(
            argv,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            preexec_fn=pin(cpus),
        )
        STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 8.0) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.logf.close()
        if self in STARTED:
            STARTED.remove(self)


def stop_all() -> None:
    for p in list(STARTED):
        try:
            p.stop(3)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def tree(pid: int) -> list[int]:
    """pid and its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kb(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except (OSError, ValueError):
            pass
    return total


def cpu_s(pid: int) -> float:
    """CPU seconds of pid's process tree, every thread, in nanoseconds precision (schedstat)."""
    total = 0
    for p in tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total / 1e9


def busy_s() -> float:
    """Non-idle CPU seconds of the whole machine so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(port: int, path: str, timeout: float = 0.5, headers: str = "") -> tuple[int | None, bytes]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body
    except (OSError, ValueError, IndexError):
        return None, b""


def wait_until(cond, timeout: float, interval: float = 0.001) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic()
        time.sleep(interval)
    return None


def nginx_config(d: Path, sim_port: int, port: int, port_h2: int, nofile: int, single_process: bool = False) -> str:
    """nginx.conf for a proxy in directory d (which holds tmp/); single_process adds
    `master_process off;` (one process, for running it under valgrind: bench/instructions)."""
    conns = max(1024, nofile - 200)
    single = "\nmaster_process off;" if single_process else ""
    return f"""
# nginx as a plain reverse proxy in front of the simulator: one worker (pinned like groxy),
# upstream keep-alive, no response buffering, no access log (groxy, by default, writes one JSON
# access line per request).
user root;
worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;{single}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {conns}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    http2_max_concurrent_streams 256;
    upstream groq {{ server 127.0.0.1:{sim_port}; keepalive 256; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{port_h2} http2 backlog=4096;
        client_max_body_size 8m;
        location = /nginx-ready {{ return 200 "ready"; }}
        location / {{
            proxy_pass http://groq;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


# ---------------------------------------------------------------------------------------------
# The systems under test
# ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.results_dir = Path(args.out).resolve()
        self.raw = self.results_dir / f"raw-{stamp}"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="groxy-bench-"))
        atexit.register(shutil.rmtree, self.work, True)
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.peers_available: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.foreign: list[float] = []
        self.waited: list[float] = []
        self.make_payloads()
        help_text = subprocess.run([str(SIM), "--help"], capture_output=True, text=True).stdout
        self.sim_has_budget = "--budget-requests" in help_text

    # -- payloads ---------------------------------------------------------------------------

    def make_payloads(self) -> None:
        req = {"model": MODEL, "messages": [{"role": "user", "content": ""}]}
        text = "The quick brown fox jumps over the lazy dog while the gateway relays every byte. " * 40
        pad = 2048 - len(json.dumps(req, separators=(",", ":")))
        req["messages"][0]["content"] = text[:pad]
        body = json.dumps(req, separators=(",", ":"))
        assert len(body) == 2048
        (self.work / "req.json").write_text(body)
        req["stream"] = True
        (self.work / "req-stream.json").write_text(json.dumps(req, separators=(",", ":")))
        fixture = json.loads((ROOT / "tests/fixtures/groq/chat-completion.json").read_text())
        fixture["model"] = MODEL
        msg = fixture["choices"][0]["message"]
        msg["content"] = ""
        pad = 1024 - len(json.dumps(fixture, separators=(",", ":"), ensure_ascii=False).encode())
        msg["content"] = ("Fast models answer in milliseconds and keep users engaged. " * 40)[:pad]
        resp = json.dumps(fixture, separators=(",", ":"), ensure_ascii=False)
        assert len(resp.encode()) == 1024
        (self.work / "resp.json").write_text(resp)

    # -- simulator --------------------------------------------------------------------------

    def start_sim(self, name: str, chunks: int, ttft_ms: int, interval_ms: int,
                  h2_streams: bool = False) -> tuple[Proc, int]:
        port = free_port()
        argv = [
            str(SIM), "--listen", f"127.0.0.1:{port}", "--threads", "1",
            "--json-body-file", str(self.work / "resp.json"),
            "--stream-chunks", str(chunks), "--ttft-ms", str(ttft_ms),
            "--chunk-interval-ms", str(interval_ms),
        ]  # fmt: skip
        argv += upstream_http2_sim_args(getattr(self, "args", None))
        if h2_streams and "--h2-max-streams" not in argv:
            argv += ["--h2-max-streams", "20000"]  # groxy-h2's held streams share one connection
        if self.sim_has_budget:
            # Groq-style x-ratelimit-* headers computed from a budget no run can spend: groxy's
            # upstream-aware admission (on by default) then sees a realistic, roomy budget instead
            # of the captured fixture's free-tier headers (8,000 tokens/min), which would throttle
            # it to ~19 requests/s.
            argv += ["--budget-requests", "1000000000", "--budget-request-window", "1m",
                     "--budget-tokens", "1000000000000", "--budget-token-window", "1m"]  # fmt: skip
        p = Proc(name, argv, LOAD_CPUS, self.raw)
        if wait_until(lambda: probe(port, "/openai/v1/models")[0] == 200, 10) is None:
            raise SystemExit(f"groq-sim did not start: see {p.log_path}")
        return p, port

    # -- proxies ----------------------------------------------------------------------------

    def start_groxy(self, sim_port: int, name="groxy", limits: bool = False,
                    http2: str | None = None) -> tuple[Proc, int, dict]:
        port = free_port()
        cfg = self.work / f"{name}.toml"
        text = (
            "# groxy as benchmarked: defaults, plus the simulator's stamp header and room for the\n"
            "# concurrency scenario.\n"
            "[server]\nmax_connections = 20000\n\n"
            '[upstream]\nforward_headers = ["x-sim-stamp"]\n'
        ) + (f'http2 = "{http2}"\n' if http2 else upstream_http2_toml(self.args))
        if limits:
            # Client rate limits no run can reach: every request is checked and settled.
            text += "\n[rate_limits.default]\nrequests_per_minute = 1000000000\ntokens_per_minute = 1000000000000\n"
        cfg.write_text(text)
        env = dict(os.environ)
        env.update(
            GROQ_API_KEY="bench-key",
            GROXY_LISTEN=f"127.0.0.1:{port}",
            GROXY_UPSTREAM_URL=f"http://127.0.0.1:{sim_port}/openai/v1",
            GROXY_LOG_FORMAT="json",
            GROXY_DATA_DIR=str(self.work / f"{name}-data"),
        )
        env.pop("RUST_LOG", None)
        p = Proc(name, [str(GROXY), "serve", "--config", str(cfg)], PROXY_CPUS, self.raw, env=env)
        t_ready = wait_until(lambda: probe(port, "/readyz")[0] == 200, 10)
        t_fresh = wait_until(lambda: b'"fresh"' in probe(port, "/readyz")[1], 10)
        if t_ready is None or t_fresh is None:
            raise SystemExit(f"groxy did not become ready: see {p.log_path}")
        return p, port, {"ready_ms": (t_ready - p.t0) * 1000, "fresh_ms": (t_fresh - p.t0) * 1000}

    def start_nginx(self, sim_port: int, name="nginx") -> tuple[Proc, int, dict]:
        port, port_h2 = free_port(), free_port()
        d = self.work / f"{name}-{port}"
        (d / "tmp").mkdir(parents=True)
        conf = d / "nginx.conf"
        conf.write_text(nginx_config(d, sim_port, port, port_h2, self.nofile))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        p = Proc(name, [nginx, "-p", str(d), "-c", str(conf)], PROXY_CPUS, self.raw)
        t = wait_until(lambda: probe(port, "/nginx-ready")[0] == 200, 10)
        if t is None:
            raise SystemExit(f"nginx did not start: see {p.log_path} and {d}/error.log")
        p.h2_port = port_h2  # type: ignore[attr-defined]
        return p, port, {"ready_ms": (t - p.t0) * 1000}

    def start_litellm(self, sim_port: int, name="litellm") -> tuple[Proc, int, dict]:
        port = free_port()
        d = self.work / f"{name}-{port}"
        d.mkdir()
        cfg = d / "litellm.yaml"
        cfg.write_text(f"""
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://127.0.0.1:{sim_port}/openai/v1
      api_key: bench-key
      extra_headers: {{"x-sim-stamp": "1"}}
litellm_settings:
  telemetry: false
general_settings:
  master_key: {LITELLM_KEY}
""")
        logcfg = d / "log.json"
        logcfg.write_text(json.dumps({
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
            "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "loggers": {
                "uvicorn": {"handlers": ["err"], "level": "INFO"},
                "uvicorn.access": {"handlers": ["err"], "level": "WARNING", "propagate": False},
            },
        }))  # fmt: skip
        env = dict(os.environ)
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_TELEMETRY="False",
            LITELLM_LOG="ERROR",
            NO_DOCS="True",
            PYTHONUNBUFFERED="1",
        )
        argv = [
            str(VENV / "bin" / "litellm"), "--config", str(cfg), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1", "--log_config", str(logcfg),
        ]  # fmt: skip
        p = Proc(name, argv, PROXY_CPUS, self.raw, env=env, cwd=d)
        t = wait_until(lambda: probe(port, "/health/readiness")[0] == 200 or not p.alive(), 120, 0.02)
        if t is None or not p.alive():
            p.stop()
            raise RuntimeError(f"LiteLLM did not start: see {p.log_path}")
        return p, port, {"ready_ms": (t - p.t0) * 1000}

    def start_proxy(self, kind: str, sim_port: int) -> tuple[Proc, int, dict]:
        if kind == "groxy-limits":
            return self.start_groxy(sim_port, name="groxy-limits", limits=True)
        if kind == "groxy-h2":
            # HTTP/2 to the simulator, as groxy speaks it to api.groq.com (ALPN, `upstream.http2 = "auto"`).
            return self.start_groxy(sim_port, name="groxy-h2", http2="always")
        return {"groxy": self.start_groxy, "nginx": self.start_nginx, "litellm": self.start_litellm}[kind](sim_port)

    # -- load -------------------------------------------------------------------------------

    def wait_quiet(self) -> float:
        """Waits (up to --quiet-wait s) until processes outside the benchmark use under 15% of one
        core over half a second; returns the seconds waited. The benchmark's own processes are
        idle between runs, so the machine's busy time then is foreign."""
        t0 = time.monotonic()
        budget = (30 if self.quick else 180) - sum(self.waited)  # across the whole run
        while time.monotonic() - t0 < min(self.args.quiet_wait, budget):
            b0 = busy_s()
            time.sleep(0.5)
            if (busy_s() - b0) / 0.5 < 0.15:
                break
        waited = time.monotonic() - t0 - 0.5
        if waited > 0.5:
            self.waited.append(waited)
        return waited

    def loadgen(self, mode: str, url: str, body: str, raw: str | None, extra: list[str],
                headers: list[str], watch: list[Proc], timeout: float = 600,
                proxy: Proc | None = None) -> dict:  # fmt: skip
        argv = [str(LOADGEN), mode, "--url", url, "--body", str(self.work / body)] + extra
        for h in headers:
            argv += ["--header", h]
        if raw:
            argv += ["--raw", str(self.raw / raw)]
        if raw is not None or mode == "sat":
            self.wait_quiet()
        p0 = cpu_s(proxy.pid) if proxy else 0.0
        b0, c0 = busy_s(), sum(cpu_s(p.pid) for p in watch)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=pin(LOAD_CPUS))
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = sum(cpu_s(p.pid) for p in watch) - c0 + (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        foreign = max(0.0, busy_s() - b0 - own)
        self.foreign.append(foreign / wall)
        if out.returncode != 0:
            raise RuntimeError(f"loadgen {mode} failed: {out.stderr[-2000:]}")
        res = json.loads(out.stdout)
        res["wall_s"] = round(wall, 3)
        res["foreign_cpu_frac"] = round(foreign / wall, 3)
        if proxy:
            pc = cpu_s(proxy.pid) - p0
            res["proxy_cpu_s"] = pc
            res["proxy_cpu_pct"] = pc / wall * 100
            # Whole run (warm-up included) over every request completed in it.
            total = res.get("completed_with_warmup")
            res["proxy_cpu_us_per_request"] = pc / total * 1e6 if total else None
        return res


# ---------------------------------------------------------------------------------------------
# Statistics helpers
# ---------------------------------------------------------------------------------------------


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rotate(xs: list, k: int) -> list:
    k %= len(xs)
    return xs[k:] + xs[:k]


PCTS = ["p50", "p90", "p99", "p99.9"]


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


def run(args) -> dict:
    global PINNED, LOAD_CPUS, PROXY_CPUS
    b = Bench(args)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and not args.no_pin:
        LOAD_CPUS, PROXY_CPUS = {cpus[0]}, {cpus[1]}
        os.sched_setaffinity(0, LOAD_CPUS)  # the harness itself stays off the proxy's core
    else:
        PINNED = False
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    q = args.quick
    reps = args.reps or (1 if q else 3)
    dur = args.duration or (2.0 if q else 5.0)
    warm = 0.5 if q else 1.0
    rates = [int(r) for r in (args.rates.split(",") if args.rates else ["50", "500", "1000", "2000"])]
    soak_s = args.soak_seconds if args.soak_seconds is not None else (20 if q else 120)

    peers = [p for p in PROXIES if p == "groxy" or p in args.peers.split(",")] if args.peers != "none" else ["groxy"]
    if "nginx" in peers and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        b.skipped["nginx"] = "nginx not installed (bench/run installs it with apt-get unless --no-install)"
        peers.remove("nginx")
    if "litellm" in peers and not (VENV / "bin" / "litellm").exists():
        b.skipped["litellm"] = "LiteLLM not installed in bench/.venv (bench/run installs it unless --no-install)"
        peers.remove("litellm")
    targets = ["direct"] + peers

    res: dict = {
        "meta": meta(b, reps, dur, warm),
        "targets_under_test": targets,
        "skipped": b.skipped,
    }
    log(f"targets: {targets}; reps={reps} duration={dur}s; raw data in {b.raw}")
    if args.only_hold:
        return hold_only(b, peers, q, args, res)

    # -- static and start-up ----------------------------------------------------------------
    res["static"] = static_facts()
    sim, sim_port = b.start_sim("sim-startup", 30, 100, 10)
    res["startup"] = startup(b, sim_port, peers, 3 if q else 10)
    sim.stop()

    # -- stack A: non-streaming and streaming ------------------------------------------------
    sim, sim_port = b.start_sim("sim-a", 30, 100, 10)
    stack: dict[str, tuple[Proc, int]] = {}
    for kind in peers:
        try:
            p, port, _ = b.start_proxy(kind, sim_port)
            stack[kind] = (p, port)
        except RuntimeError as e:
            b.skipped[kind] = str(e)
            targets.remove(kind)
            peers.remove(kind)
    watch = [sim] + [p for p, _ in stack.values()]

    def url(t: str) -> str:
        if t == "direct":
            return f"http://127.0.0.1:{sim_port}/openai/v1/chat/completions"
        return f"http://127.0.0.1:{stack[t][1]}/v1/chat/completions"

    def hdrs(t: str, stream: bool) -> list[str]:
        h = ["x-sim-stamp: 1"] if stream else []
        if t == "litellm":
            h.append(f"authorization: Bearer {LITELLM_KEY}")
        return h

    def proxy_of(t: str) -> Proc | None:
        return stack[t][0] if t in stack else None

    rss_before = {k: rss_kb(p.pid) for k, (p, _) in stack.items()}

    log("warm-up")
    for t in targets:
        r = 50 if t == "litellm" else 500
        b.loadgen("rate", url(t), "req.json", None, ["--rate", str(r), "--duration", str(1 if q else 2),
                  "--warmup", "0", "--conns", "16"], hdrs(t, False), watch)  # fmt: skip
        b.loadgen("stream", url(t), "req-stream.json", None, ["--rate", "20", "--duration", "1", "--warmup", "0"],
                  hdrs(t, True), watch)  # fmt: skip

    log("saturation (closed loop)")
    sat: dict = {t: {"reps": []} for t in targets}
    for rep in range(reps):
        for t in rotate(targets, rep):
            r = b.loadgen("sat", url(t), "req.json", None,
                          ["--conns", str(args.sat_conns), "--duration", str(dur), "--warmup", str(warm)],
                          hdrs(t, False), watch, proxy=proxy_of(t))  # fmt: skip
            sat[t]["reps"].append(r)
            log(f"  sat {t:8s} rep{rep}: {r['throughput_rps']:9.0f} rps errors={r['errors']}")
    for t in targets:
        sat[t]["median_rps"] = med([r["throughput_rps"] for r in sat[t]["reps"]])
        sat[t]["median_proxy_cpu_pct"] = med([r.get("proxy_cpu_pct") for r in sat[t]["reps"]])
        sat[t]["median_proxy_cpu_us_per_request"] = med([r.get("proxy_cpu_us_per_request") for r in sat[t]["reps"]])
    for t in peers:
        sat[t]["fraction_of_direct"] = sat[t]["median_rps"] / sat["direct"]["median_rps"]
    res["saturation"] = sat

    log("fixed rate (open loop, latency from the intended send time)")
    rate_res: dict = {}
    for rate in rates:
        rr: dict = {t: {"reps": []} for t in targets}
        for t in targets:
            cap = sat[t]["median_rps"]
            if rate > 0.9 * cap:
                rr[t]["skipped"] = f"over capacity: saturation is {cap:.0f} rps"
        for rep in range(reps):
            for t in rotate(targets, rep):
                if "skipped" in rr[t]:
                    continue
                r = b.loadgen("rate", url(t), "req.json", f"rate{rate}-{t}-rep{rep}.json",
                              ["--rate", str(rate), "--duration", str(dur), "--warmup", str(warm),
                               "--conns", str(args.rate_conns), "--grace", "5"],
                              hdrs(t, False), watch, proxy=proxy_of(t))  # fmt: skip
                rr[t]["reps"].append(r)
                lat = r["latency_us"]
                log(f"  {rate:5d} rps {t:8s} rep{rep}: p50={fmt_us(lat['p50'])} p99={fmt_us(lat['p99'])} "
                    f"p99.9={fmt_us(lat['p99.9'])} errors={r['errors']} incomplete={r['incomplete']}")  # fmt: skip
        for t in targets:
            if "skipped" in rr[t]:
                continue
            rr[t]["median_us"] = {k: med([r["latency_us"][k] for r in rr[t]["reps"]]) for k in PCTS}
            rr[t]["median_proxy_cpu_us_per_request"] = med([r.get("proxy_cpu_us_per_request") for r in rr[t]["reps"]])
            if t != "direct":
                rr[t]["added_median_us"] = paired(rr[t]["reps"], rr["direct"]["reps"], "latency_us")
        rate_res[str(rate)] = rr
    res["rate"] = rate_res

    res["concurrency1"] = concurrency1(b, targets, url, hdrs, watch, proxy_of, reps, dur, warm)

    log("streaming (open loop, 30 chunks, ttft 100 ms, 10 ms apart; stamped chunks)")
    st: dict = {t: {"reps": []} for t in targets}
    for rep in range(reps):
        for t in rotate(targets, rep):
            r = b.loadgen("stream", url(t), "req-stream.json", f"stream-{t}-rep{rep}.json",
                          ["--rate", str(args.stream_rate), "--duration", str(dur), "--warmup", str(warm),
                           "--conns", "32", "--grace", "10"], hdrs(t, True), watch, proxy=proxy_of(t))  # fmt: skip
            st[t]["reps"].append(r)
            log(f"  stream {t:8s} rep{rep}: ttfb p99={fmt_us(r['ttfb_us']['p99'])} chunk p50="
                f"{fmt_us(r['chunk_delay_us']['p50'])} p99={fmt_us(r['chunk_delay_us']['p99'])} "
                f"completed={r['completed']} failed={r['failed']}")  # fmt: skip
    for t in targets:
        for key in ("ttfb_us", "chunk_delay_us", "first_token_us"):
            st[t][f"median_{key}"] = {k: med([r[key][k] for r in st[t]["reps"]]) for k in PCTS}
            if t != "direct":
                st[t][f"added_{key}"] = paired(st[t]["reps"], st["direct"]["reps"], key)
    res["stream"] = st

    if "groxy" in stack:
        res["rate_limit_check"] = rate_limit_check(b, sim_port, stack, watch, reps, dur, warm, args)
        res["cache_hit"] = cache_hit(b, sim_port, stack, watch, reps, dur, warm, args)

    time.sleep(2)
    res["rss_after_load"] = {
        k: {"before_kb": rss_before[k], "after_kb": rss_kb(p.pid)} for k, (p, _) in stack.items()
    }

    # -- soak: groxy alone, mixed load, RSS over time -----------------------------------------
    if soak_s > 0 and "groxy" in stack:
        res["soak"] = soak(b, stack["groxy"][0], url("groxy"), soak_s, watch)
    for p, _ in stack.values():
        p.stop()
    sim.stop()

    # -- stack B: many slow streams held open -------------------------------------------------
    res["hold"] = hold(b, peers, q, args)
    res["burst"] = burst_recovery(b)
    if not getattr(args, "upstream_http2", None):
        res["burst_h2"] = burst_recovery(b, http2="always")

    # -- instruction counts: bench/instructions' latest results, not measured here ------------
    res["instructions"] = instruction_counts()
    res["skipped"] = b.skipped
    res["noise"] = {
        "foreign_cpu_frac_median": med(b.foreign),
        "foreign_cpu_frac_max": max(b.foreign) if b.foreign else None,
        "loadavg_end": os.getloadavg(),
        "waits_for_quiet_s": [round(w, 1) for w in b.waited],
        "note": "fraction of one core used by processes outside the benchmark during each load run "
        "(machine busy time minus the benchmark's processes), over all runs",
    }
    res["notes"] = b.notes
    res["targets"] = evaluate(res)
    res["meta"]["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return res


def rate_limit_check(b: Bench, sim_port: int, stack: dict, watch: list, reps: int, dur: float, warm: float,
                     args) -> dict:  # fmt: skip
    """groxy with client rate limits that never bind against groxy's defaults: the cost of checking
    and settling a request's budget. Both have upstream-aware admission on (the default)."""
    log("rate-limit check: groxy with non-binding client limits vs groxy defaults")
    try:
        p, port, _ = b.start_proxy("groxy-limits", sim_port)
    except SystemExit as e:
        return {"error": str(e)}
    pair = {"groxy": stack["groxy"], "groxy-limits": (p, port)}
    out: dict = {"sat": {k: [] for k in pair}, "rate1000": {k: [] for k in pair}}
    url = {k: f"http://127.0.0.1:{v[1]}/v1/chat/completions" for k, v in pair.items()}
    b.loadgen("rate", url["groxy-limits"], "req.json", None, ["--rate", "500", "--duration", "2", "--warmup", "0"],
              [], watch + [p])  # fmt: skip
    for rep in range(reps):
        for k in rotate(list(pair), rep):
            r = b.loadgen("sat", url[k], "req.json", None,
                          ["--conns", str(args.sat_conns), "--duration", str(dur), "--warmup", str(warm)],
                          [], watch + [p], proxy=pair[k][0])  # fmt: skip
            out["sat"][k].append(r)
            r = b.loadgen("rate", url[k], "req.json", f"ratelimit-rate1000-{k}-rep{rep}.json",
                          ["--rate", "1000", "--duration", str(dur), "--warmup", str(warm),
                           "--conns", str(args.rate_conns), "--grace", "5"], [], watch + [p], proxy=pair[k][0])  # fmt: skip
            out["rate1000"][k].append(r)
            log(f"  {k:13s} rep{rep}: sat {out['sat'][k][-1]['throughput_rps']:.0f} rps, 1000 rps p50="
                f"{fmt_us(r['latency_us']['p50'])} p99={fmt_us(r['latency_us']['p99'])} errors={r['errors']}")  # fmt: skip
    p.stop()
    summary = {}
    for k in pair:
        summary[k] = {
            "sat_rps": med([r["throughput_rps"] for r in out["sat"][k]]),
            "sat_cpu_us_per_request": med([r.get("proxy_cpu_us_per_request") for r in out["sat"][k]]),
            "rate1000_cpu_us_per_request": med([r.get("proxy_cpu_us_per_request") for r in out["rate1000"][k]]),
            "rate1000_us": {q: med([r["latency_us"][q] for r in out["rate1000"][k]]) for q in PCTS},
        }
    summary["added_us"] = paired(out["rate1000"]["groxy-limits"], out["rate1000"]["groxy"], "latency_us")
    return {"runs": out, "summary": summary}


def concurrency1(b: Bench, targets: list[str], url, hdrs, watch: list, proxy_of, reps: int, dur: float,
                 warm: float) -> dict:  # fmt: skip
    """One connection, one request at a time (`loadgen sat --conns 1`, closed loop): the latency a
    lone client sees, with nothing queued in front of its request; added = proxy - direct within
    each repetition, as in the other latency rows (issue 19: added p99 <= 100 us)."""
    ts = [t for t in C1_TARGETS if t in targets]
    log(f"concurrency 1 (one connection, one request at a time): {ts}")
    out: dict = {t: {"reps": []} for t in ts}
    for rep in range(reps):
        for t in rotate(ts, rep):
            r = b.loadgen("sat", url(t), "req.json", f"c1-{t}-rep{rep}.json",
                          ["--conns", "1", "--duration", str(dur), "--warmup", str(warm)],
                          hdrs(t, False), watch, proxy=proxy_of(t))  # fmt: skip
            out[t]["reps"].append(r)
            lat = r["latency_us_closed_loop"]
            log(f"  c1 {t:8s} rep{rep}: p50={fmt_us(lat['p50'])} p99={fmt_us(lat['p99'])} "
                f"p99.9={fmt_us(lat['p99.9'])} n={r['completed']} errors={r['errors']}")  # fmt: skip
    for t in ts:
        reps_t = out[t]["reps"]
        out[t]["median_us"] = {k: med([r["latency_us_closed_loop"][k] for r in reps_t]) for k in PCTS}
        out[t]["median_rps"] = med([r["throughput_rps"] for r in reps_t])
        out[t]["median_proxy_cpu_us_per_request"] = med([r.get("proxy_cpu_us_per_request") for r in reps_t])
        if t != "direct":
            out[t]["added_median_us"] = paired(reps_t, out["direct"]["reps"], "latency_us_closed_loop")
    return out


def make_cache_payload(work: Path) -> str:
    """The 2,048-byte request with `"temperature":0` (what the `deterministic` cache mode, groxy's
    default, stores), as bench/instructions builds it; returns its file name in work."""
    req = json.loads((work / "req.json").read_text())
    out = {"model": req["model"], "temperature": 0, "messages": [{"role": "user", "content": ""}]}
    pad = 2048 - len(json.dumps(out, separators=(",", ":")))
    out["messages"][0]["content"] = req["messages"][0]["content"][:pad]
    body = json.dumps(out, separators=(",", ":"))
    assert len(body) == 2048
    (work / "req-t0.json").write_text(body)
    return "req-t0.json"


def cache_statuses(log_path: Path, offset: int = 0) -> dict:
    """`cache` of every access line (JSON, target groxy::access) groxy logged after offset."""
    counts: dict[str, int] = {}
    with open(log_path, "rb") as f:
        f.seek(offset)
        for line in f:
            if b'"groxy::access"' not in line:
                continue
            try:
                c = json.loads(line).get("cache", "none")
            except ValueError:
                continue
            counts[c] = counts.get(c, 0) + 1
    return counts


def cache_hit(b: Bench, sim_port: int, stack: dict, watch: list, reps: int, dur: float, warm: float,
              args) -> dict:  # fmt: skip
    """Identical `"temperature":0` requests through groxy's default config (cache mode
    `deterministic`): the first is a MISS, every later one a HIT answered from memory. Saturation
    and 1,000 rps open loop, against the same requests sent directly, interleaved per repetition."""
    log("cache hit: identical temperature-0 requests, groxy (default cache) vs direct")
    body = make_cache_payload(b.work)
    groxy = stack["groxy"][0]
    urls = {"direct": f"http://127.0.0.1:{sim_port}/openai/v1/chat/completions",
            "groxy": f"http://127.0.0.1:{stack['groxy'][1]}/v1/chat/completions"}  # fmt: skip
    offset = groxy.log_path.stat().st_size
    # The first request stores the answer; the warm-up's others are HITs (or coalesced onto it).
    b.loadgen("rate", urls["groxy"], body, None, ["--rate", "500", "--duration", "1", "--warmup", "0",
              "--conns", "16"], [], watch)  # fmt: skip
    runs: dict = {"sat": {t: [] for t in urls}, "rate1000": {t: [] for t in urls}}
    for rep in range(reps):
        for t in rotate(list(urls), rep):
            r = b.loadgen("sat", urls[t], body, None,
                          ["--conns", str(args.sat_conns), "--duration", str(dur), "--warmup", str(warm)],
                          [], watch, proxy=groxy if t == "groxy" else None)  # fmt: skip
            runs["sat"][t].append(r)
            log(f"  cache sat {t:6s} rep{rep}: {r['throughput_rps']:9.0f} rps errors={r['errors']}")
    sat_rps = {t: med([r["throughput_rps"] for r in runs["sat"][t]]) for t in urls}
    skipped = {t: f"over capacity: saturation is {sat_rps[t]:.0f} rps" for t in urls if 1000 > 0.9 * sat_rps[t]}
    for rep in range(reps if not skipped else 0):
        for t in rotate(list(urls), rep):
            r = b.loadgen("rate", urls[t], body, f"cache-rate1000-{t}-rep{rep}.json",
                          ["--rate", "1000", "--duration", str(dur), "--warmup", str(warm),
                           "--conns", str(args.rate_conns), "--grace", "5"],
                          [], watch, proxy=groxy if t == "groxy" else None)  # fmt: skip
            runs["rate1000"][t].append(r)
            lat = r["latency_us"]
            log(f"  cache 1000 rps {t:6s} rep{rep}: p50={fmt_us(lat['p50'])} p99={fmt_us(lat['p99'])} "
                f"errors={r['errors']} incomplete={r['incomplete']}")  # fmt: skip
    summary: dict = {}
    for t in urls:
        rr = runs["rate1000"][t]
        summary[t] = {
            "sat_rps": sat_rps[t],
            "sat_cpu_us_per_request": med([r.get("proxy_cpu_us_per_request") for r in runs["sat"][t]]),
            "sat_cpu_pct": med([r.get("proxy_cpu_pct") for r in runs["sat"][t]]),
            "errors": sum(r["errors"] for r in runs["sat"][t] + rr),
            "rate1000_us": {q: med([r["latency_us"][q] for r in rr]) for q in PCTS} if rr else None,
            "rate1000_cpu_us_per_request": med([r.get("proxy_cpu_us_per_request") for r in rr]),
        }
    if runs["rate1000"]["groxy"]:
        summary["added_us"] = paired(runs["rate1000"]["groxy"], runs["rate1000"]["direct"], "latency_us")
    return {"runs": runs, "summary": summary, "skipped": skipped, "cache": cache_statuses(groxy.log_path, offset)}


def paired(reps: list[dict], direct: list[dict], key: str) -> dict:
    """Median over repetitions of (proxy pXX - direct pXX) of the same repetition."""
    out = {}
    for k in PCTS:
        diffs = []
        for a, d in zip(reps, direct):
            if a[key][k] is not None and d[key][k] is not None:
                diffs.append(a[key][k] - d[key][k])
            elif a[key][k] is None:
                diffs.append(None)
        out[k] = med(diffs) if all(x is not None for x in diffs) and diffs else None
    return out


def startup(b: Bench, sim_port: int, peers: list[str], n: int) -> dict:
    log(f"start-up: {n} starts of groxy")
    out: dict = {}
    runs = []
    for i in range(n):
        p, port, t = b.start_groxy(sim_port, name=f"groxy-startup{i}")
        if i == 0:
            time.sleep(2)
            t["idle_rss_kb"] = rss_kb(p.pid)
            cpu0 = cpu_s(p.pid)
            time.sleep(3)
            t["idle_cpu_pct"] = (cpu_s(p.pid) - cpu0) / 3 * 100
        runs.append(t)
        p.stop()
    out["groxy"] = {
        "runs": runs,
        "ready_ms_median": med([r["ready_ms"] for r in runs]),
        "ready_ms_max": max(r["ready_ms"] for r in runs),
        "fresh_ms_median": med([r["fresh_ms"] for r in runs]),
        "idle_rss_kb": runs[0]["idle_rss_kb"],
        "idle_cpu_pct": runs[0]["idle_cpu_pct"],
    }
    for kind in [k for k in peers if k != "groxy"]:
        log(f"start-up: {kind}")
        k_runs = []
        for i in range(1 if kind == "litellm" else min(n, 3)):
            try:
                p, port, t = b.start_proxy(kind, sim_port)
            except RuntimeError as e:
                b.skipped[kind] = str(e)
                break
            if i == 0:
                time.sleep(2 if kind != "litellm" else 5)
                t["idle_rss_kb"] = rss_kb(p.pid)
                cpu0 = cpu_s(p.pid)
                time.sleep(3)
                t["idle_cpu_pct"] = (cpu_s(p.pid) - cpu0) / 3 * 100
            k_runs.append(t)
            p.stop()
        if k_runs:
            out[kind] = {
                "runs": k_runs,
                "ready_ms_median": med([r["ready_ms"] for r in k_runs]),
                "ready_ms_max": max(r["ready_ms"] for r in k_runs),
                "idle_rss_kb": k_runs[0]["idle_rss_kb"],
                "idle_cpu_pct": k_runs[0]["idle_cpu_pct"],
            }
    return out


def soak(b: Bench, groxy: Proc, url: str, seconds: int, watch: list[Proc]) -> dict:
    log(f"soak: groxy, {seconds}s of 500 rps non-streaming + 20 streams/s")
    samples = []
    t0 = time.monotonic()
    common = ["--duration", str(seconds), "--warmup", "0", "--grace", "10"]
    argv_rate = [str(LOADGEN), "rate", "--url", url, "--body", str(b.work / "req.json"), "--rate", "500",
                 "--conns", "16"] + common  # fmt: skip
    argv_stream = [str(LOADGEN), "stream", "--url", url, "--body", str(b.work / "req-stream.json"), "--rate", "20",
                   "--header", "x-sim-stamp: 1"] + common  # fmt: skip
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=pin(LOAD_CPUS)) for a in (argv_rate, argv_stream)]  # fmt: skip
    cpu0 = cpu_s(groxy.pid)
    while any(p.poll() is None for p in procs):
        samples.append((round(time.monotonic() - t0, 1), rss_kb(groxy.pid)))
        time.sleep(2)
    cpu = cpu_s(groxy.pid) - cpu0
    outs = [json.loads(p.stdout.read()) for p in procs]
    time.sleep(3)
    after = rss_kb(groxy.pid)
    n = len(samples)
    quarter = samples[max(0, n // 4)][1] if samples else 0
    half = samples[n // 2 :] or samples
    slope = 0.0
    if len(half) >= 2:
        xs = [s[0] for s in half]
        ys = [s[1] for s in half]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60 / 1024 if den else 0.0
    growth = samples[-1][1] - quarter if samples else 0
    return {
        "seconds": seconds,
        "samples_s_kb": samples,
        "rss_first_quarter_kb": quarter,
        "rss_end_kb": samples[-1][1] if samples else None,
        "rss_max_kb": max(s[1] for s in samples) if samples else None,
        "rss_after_kb": after,
        "growth_after_first_quarter_kb": growth,
        "slope_second_half_mb_per_min": slope,
        "flat": growth <= 2048 and slope < 1.0,
        "cpu_pct": cpu / max(1e-9, time.monotonic() - t0) * 100,
        "rate_result": {k: outs[0].get(k) for k in ("completed", "errors", "incomplete", "latency_us")},
        "stream_result": {k: outs[1].get(k) for k in ("completed", "failed", "chunk_delay_us")},
    }


def hold(b: Bench, peers: list[str], q: bool, args) -> list[dict]:
    chunks, interval = (12, 500) if q else (24, 500)
    ramp = 2500
    sim, sim_port = b.start_sim("sim-hold", chunks, 0, interval, h2_streams=True)
    peers = hold_peers(peers, args)
    levels = [int(x) for x in (args.hold.split(",") if args.hold else ["1000", "2000", "5000", "10000"])]
    plan: list[tuple[int, int]] = []  # (streams, h2 connections; 0 = HTTP/1.1)
    for n in levels:
        fits_h1 = 2 * n + 200 <= b.nofile
        if fits_h1:
            plan.append((n, 0))
        else:
            plan.append((n, max(1, n // 100)))
            b.notes.append(
                f"{n} streams over HTTP/1.1 need {2 * n}+ descriptors in the proxy (one client and one "
                f"upstream socket per stream) but this machine's hard RLIMIT_NOFILE is {b.nofile}: "
                f"the client multiplexes them over {n // 100} h2c connections instead (the proxy still "
                "holds one HTTP/1.1 upstream connection per stream, groxy-h2 one HTTP/2 stream)"
            )
    h1_levels = [n for n, k in plan if k == 0]
    if not q and h1_levels and len(h1_levels) < len(plan):
        # The largest HTTP/1.1 level again over h2c: how much of the footprint is per connection.
        n = max(h1_levels)
        plan.insert(plan.index((n, 0)) + 1, (n, max(1, n // 100)))
    out = []
    for n, h2 in plan:
        for kind in peers:
            if kind in ("litellm", "groxy-h2") and h2 and not n == max(levels):
                continue  # bounded run time: the h2c client rows of these only at the top level
            if kind == "litellm" and (n > 1000 or h2):
                continue  # bounded run time: LiteLLM gets the 1k HTTP/1.1 level only
            log(f"hold: {kind} {n} streams over {'h2c x' + str(h2) if h2 else 'HTTP/1.1'}")
            try:
                p, port, _ = b.start_proxy(kind, sim_port)
            except RuntimeError as e:
                out.append({"proxy": kind, "streams": n, "error": str(e)})
                continue
            if h2 and kind == "nginx":
                port = p.h2_port  # type: ignore[attr-defined]
            path = "/v1/chat/completions"
            headers = ["x-sim-stamp: 1"] + ([f"authorization: Bearer {LITELLM_KEY}"] if kind == "litellm" else [])
            argv = [str(LOADGEN), "hold", "--url", f"http://127.0.0.1:{port}{path}",
                    "--body", str(b.work / "req-stream.json"), "--count", str(n), "--rate", str(ramp),
                    "--grace", str(chunks * interval / 1000 + 60), "--h2", str(h2)]  # fmt: skip
            for h in headers:
                argv += ["--header", h]
            time.sleep(1)
            rss0, cpu0, t0 = rss_kb(p.pid), cpu_s(p.pid), time.monotonic()
            lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  preexec_fn=pin(LOAD_CPUS))  # fmt: skip
            peak, samples, last = rss0, [], (t0, cpu0)
            peak_cpu = 0.0
            while lg.poll() is None:
                time.sleep(0.25)
                now, c, r = time.monotonic(), cpu_s(p.pid), rss_kb(p.pid)
                samples.append((round(now - t0, 2), r))
                peak = max(peak, r)
                if now - last[0] >= 1.0:
                    peak_cpu = max(peak_cpu, (c - last[1]) / (now - last[0]) * 100)
                    last = (now, c)
            wall = time.monotonic() - t0
            cpu = cpu_s(p.pid) - cpu0
            r = json.loads(lg.stdout.read())
            time.sleep(2)
            after = rss_kb(p.pid)
            alive = p.alive()
            p.stop()
            row = {
                "proxy": kind,
                "streams": n,
                "protocol": f"h2c over {h2} connections" if h2 else "HTTP/1.1, one connection per stream",
                "completed": r.get("completed"),
                "failed": r.get("failed"),
                "error_kinds": r.get("error_kinds"),
                "max_open": r.get("max_open"),
                "rss_before_kb": rss0,
                "rss_peak_kb": peak,
                "rss_after_kb": after,
                "rss_per_stream_kb": (peak - rss0) / n,
                "cpu_s": cpu,
                "cpu_pct_mean": cpu / wall * 100,
                "cpu_pct_peak_1s": peak_cpu,
                "wall_s": wall,
                "chunk_delay_us": r.get("chunk_delay_us"),
                "proxy_alive_after": alive,
                "rss_samples_s_kb": samples,
            }
            out.append(row)
            log(f"  {kind} {n}: completed={row['completed']} failed={row['failed']} peak RSS="
                f"{peak / 1024:.1f} MB cpu={row['cpu_pct_mean']:.0f}%")  # fmt: skip
    sim.stop()
    return out


def burst_rss(pid: int, port: int, work: Path, streams: int = BURST_STREAMS, stream_seconds: float = BURST_SECONDS,
              settle_s: int = BURST_SETTLE_S, loadgen: Path = LOADGEN) -> dict:  # fmt: skip
    """Memory after a burst (issue 19: RSS back within 20% of its pre-burst level 10 s after it).
    Against a running groxy at 127.0.0.1:port, whose simulator streams last stream_seconds: 2 s of
    requests at 200 rps, 2 s of rest, RSS "before"; then the burst, `loadgen hold` opening `streams`
    streams at 2,500/s while `loadgen sat` sends the 2,048-byte request over 32 connections for
    stream_seconds; RSS (groxy's process tree) sampled every 250 ms for the peak, then 1, 5 and
    settle_s seconds after the burst ended (the last stream and the sat run done). Shared with
    bench/rss-burst, which runs it per allocator."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    lg = [str(loadgen)]
    subprocess.run(lg + ["rate", "--url", url, "--body", str(work / "req.json"), "--rate", "200",
                         "--duration", "2", "--warmup", "0"], capture_output=True, check=True,
                   preexec_fn=pin(LOAD_CPUS))  # fmt: skip
    time.sleep(2)
    before = rss_kb(pid)
    t0 = time.monotonic()
    hold_p = subprocess.Popen(lg + ["hold", "--url", url, "--body", str(work / "req-stream.json"),
                                    "--count", str(streams), "--rate", "2500",
                                    "--grace", str(stream_seconds + 30)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              preexec_fn=pin(LOAD_CPUS))  # fmt: skip
    sat_p = subprocess.Popen(lg + ["sat", "--url", url, "--body", str(work / "req.json"), "--conns", "32",
                                   "--duration", str(stream_seconds), "--warmup", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             preexec_fn=pin(LOAD_CPUS))  # fmt: skip
    peak, samples = before, []
    while hold_p.poll() is None or sat_p.poll() is None:
        time.sleep(0.25)
        r = rss_kb(pid)
        samples.append((round(time.monotonic() - t0, 2), r))
        peak = max(peak, r)
    held = json.loads(hold_p.stdout.read())
    satr = json.loads(sat_p.stdout.read())
    after = {}
    t_end = time.monotonic()
    for t in sorted({1, 5, settle_s}):
        time.sleep(max(0.0, t_end + t - time.monotonic()))
        after[t] = rss_kb(pid)
    return {
        "streams": streams,
        "stream_seconds": stream_seconds,
        "streams_completed": held.get("completed"),
        "streams_failed": held.get("failed"),
        "sat_requests": satr.get("completed", satr.get("requests")),
        "sat_errors": satr.get("errors"),
        "burst_s": round(t_end - t0, 2),
        "rss_before_kb": before,
        "rss_peak_kb": peak,
        "rss_after_kb": after,
        "settle_s": settle_s,
        "after_settle_over_before": round(after[settle_s] / before, 3) if before else None,
        "rss_samples_s_kb": samples,
    }


def burst_recovery(b: Bench, http2: str | None = None) -> dict:
    """burst_rss on a fresh simulator (streams of BURST_SECONDS, a chunk every 200 ms) and a fresh
    groxy configured as everywhere else in this harness (with `upstream.http2 = http2` if given)."""
    log(f"memory after a burst: groxy{' upstream.http2=' + http2 if http2 else ''}, {BURST_STREAMS} streams of {BURST_SECONDS:.0f} s + saturation, "
        f"RSS {BURST_SETTLE_S} s after")  # fmt: skip
    sim, sim_port = b.start_sim("sim-burst", max(1, int(BURST_SECONDS * 1000 / 200)), 0, 200, h2_streams=bool(http2))
    try:
        p, port, _ = b.start_groxy(sim_port, name=f"groxy-burst{'-h2' if http2 else ''}", http2=http2)
        try:
            r = burst_rss(p.pid, port, b.work)
        finally:
            p.stop()
    except (RuntimeError, SystemExit, subprocess.CalledProcessError, ValueError) as e:
        return {"error": str(e)}
    finally:
        sim.stop()
    log(f"  burst: RSS {r['rss_before_kb'] / 1024:.1f} MB before, {r['rss_peak_kb'] / 1024:.1f} MB peak, "
        f"{r['rss_after_kb'][BURST_SETTLE_S] / 1024:.1f} MB {BURST_SETTLE_S} s after "
        f"(x{r['after_settle_over_before']}); streams {r['streams_completed']}/{r['streams']}")  # fmt: skip
    return r


def instruction_counts(path: Path = INSTRUCTIONS_JSON) -> dict:
    """bench/instructions' latest results (callgrind, exact): not measured by this run, read from
    the file that script writes, with the run they come from."""
    if not path.exists():
        return {"missing": f"{path.relative_to(ROOT)} is absent: run `bench/instructions` (about 6 minutes, "
                "every mode) to produce it, then bench/run again"}  # fmt: skip
    try:
        d = json.loads(path.read_text())
        modes = {m: {"per_request": v["per_request"], "sha256_soft_per_request": v.get("sha256_soft_per_request")}
                 for m, v in d["modes"].items() if m in ("default", "miss", "hit", "nginx")}  # fmt: skip
    except (ValueError, KeyError, TypeError) as e:
        return {"missing": f"{path.relative_to(ROOT)} could not be read ({e}): run `bench/instructions` again"}
    meta_ = d.get("meta", {})
    return {"file": str(path.relative_to(ROOT)), "date": meta_.get("date"), "git": meta_.get("git"),
            "groxy_git": meta_.get("groxy_git"), "groxy": meta_.get("groxy"), "n1": meta_.get("n1"),
            "n2": meta_.get("n2"), "modes": modes}  # fmt: skip


def hold_peers(peers: list[str], args) -> list[str]:
    """The hold rows run groxy twice, unless --upstream-http2 chose one: speaking HTTP/1.1 to the
    simulator (one upstream connection per held stream, like nginx) and HTTP/2 (every stream on
    one connection), which is what it speaks to api.groq.com, whose TLS offers h2 by ALPN."""
    if "groxy" not in peers or getattr(args, "upstream_http2", None):
        return peers
    i = peers.index("groxy") + 1
    return peers[:i] + ["groxy-h2"] + peers[i:]


def upstream_http2_toml(args) -> str:
    """--upstream-http2: the `upstream.http2` line of groxy's config (under `[upstream]`)."""
    return f'http2 = "{args.upstream_http2}"\n' if getattr(args, "upstream_http2", None) else ""


def upstream_http2_sim_args(args) -> list[str]:
    """With HTTP/2 to the simulator every held stream shares one connection: the simulator's
    stream cap (hyper's default, 200) must not make them queue."""
    return ["--h2-max-streams", "20000"] if getattr(args, "upstream_http2", None) == "always" else []


def hold_only(b: Bench, peers: list[str], q: bool, args, res: dict) -> dict:
    """--only-hold: the concurrency rows alone (memory per stream), nothing else."""
    res["hold"] = hold(b, peers, q, args)
    res["notes"] = b.notes
    res["meta"]["upstream_http2"] = args.upstream_http2
    return res


def hold_only_report(res: dict, out: Path) -> None:
    """Writes hold.json and prints one line per level (latest.json and the README stay as they are)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "hold.json").write_text(json.dumps(res, indent=1) + "\n")
    for h in res["hold"]:
        if "error" in h:
            print(f"{h['proxy']} {h['streams']}: {h['error']}")
            continue
        print(f"{h['proxy']} {h['streams']} {h['protocol']} upstream.http2={res['meta']['upstream_http2'] or 'default'}: "
              f"completed {h['completed']}/{h['streams']}, RSS {h['rss_before_kb'] / 1024:.1f} -> peak "
              f"{h['rss_peak_kb'] / 1024:.1f} MB ({h['rss_per_stream_kb']:.1f} KB/stream), "
              f"{h['rss_after_kb'] / 1024:.1f} MB 2 s after")  # fmt: skip
    log(f"wrote {out / 'hold.json'}")




def static_facts() -> dict:
    out = {"groxy_binary_bytes": GROXY.stat().st_size, "groq_sim_binary_bytes": SIM.stat().st_size}
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(nginx).exists():
        out["nginx_binary_bytes"] = Path(nginx).stat().st_size
    return out


def meta(b: Bench, reps, dur, warm) -> dict:
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    cpu_model = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    litellm_version = None
    if (VENV / "bin" / "python").exists():
        litellm_version = cmd([str(VENV / "bin" / "python"), "-c",
                               "import importlib.metadata as m; print(m.version('litellm'))"])  # fmt: skip
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip() if shutil.which(
        "nginx") else None  # fmt: skip
    return {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if b.quick else "full",
        "repetitions": reps,
        "duration_s": dur,
        "warmup_s": warm,
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "nofile_hard": b.nofile,
        "loadavg_start": os.getloadavg(),
        "pinning": {
            "pinned": PINNED,
            "load_cpus": sorted(LOAD_CPUS),
            "proxy_cpus": sorted(PROXY_CPUS),
            "what": "groq-sim (--threads 1), the load generator and this harness share the load core; the proxy "
            "under test (groxy, nginx worker or LiteLLM) has the other core to itself. Direct runs leave it idle.",
        },
        "git_commit": cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(cmd(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml"])),
        "rustc": cmd(["rustc", "--version"]),
        "nginx": nginx_v,
        "litellm": litellm_version,
        "shared_machine_note": "2 cores shared with other engineers' builds and tests: numbers are noisy; "
        "see 'noise' for the CPU used by foreign processes during the load runs",
    }


# ---------------------------------------------------------------------------------------------
# Verdicts and report
# ---------------------------------------------------------------------------------------------


def evaluate(res: dict) -> list[dict]:
    out = []

    def add(name, what, measured, limit, unit, better="le", evidence=""):
        met = None if measured is None else (measured <= limit if better == "le" else measured >= limit)
        out.append({"id": name, "target": what, "measured": measured, "threshold": limit, "unit": unit,
                    "met": met, "evidence": evidence})  # fmt: skip

    g1000 = res["rate"].get("1000", {}).get("groxy", {})
    v = g1000.get("added_median_us", {}).get("p99")
    add("added_p99_1000rps_ms", "added p99 latency at 1000 rps (non-streaming)", ms(v),
        TARGETS["added_p99_1000rps_ms"], "ms", evidence="median over repetitions of groxy p99 - direct p99")  # fmt: skip
    sat = res["saturation"]
    frac = sat["groxy"]["median_rps"] / sat["nginx"]["median_rps"] if "nginx" in sat else None
    add("saturation_vs_nginx", "saturation throughput vs nginx", frac, TARGETS["saturation_vs_nginx"], "x",
        better="ge", evidence="median closed-loop throughput groxy / nginx")  # fmt: skip
    st = res["stream"].get("groxy", {})
    add("added_ttfb_p99_ms", "added time to first byte p99 (streaming)", ms(st.get("added_ttfb_us", {}).get("p99")),
        TARGETS["added_ttfb_p99_ms"], "ms", evidence="groxy TTFB p99 - direct TTFB p99")  # fmt: skip
    add("added_chunk_p99_ms", "added per-chunk delay p99 (streaming)",
        ms(st.get("added_chunk_delay_us", {}).get("p99")), TARGETS["added_chunk_p99_ms"], "ms",
        evidence="groxy chunk delay p99 - direct chunk delay p99 (simulator send stamp to client read)")  # fmt: skip
    for proxy, how in (("groxy", ""), ("groxy-h2", ", groxy speaking HTTP/2 upstream (as to api.groq.com)")):
        rows = [h for h in res.get("hold", []) if h.get("proxy") == proxy and h.get("streams") == 10000]
        if rows:
            h = rows[-1]
            ok = h["completed"] == 10000
            add("rss_10k_streams_mb", f"10k concurrent streams: peak RSS (all must complete){how}",
                h["rss_peak_kb"] / 1024 if ok else None, TARGETS["rss_10k_streams_mb"], "MB",
                evidence=f"{h['protocol']}; completed {h['completed']}/10000")  # fmt: skip
    su = res["startup"]["groxy"]
    add("idle_rss_mb", "idle RSS", su["idle_rss_kb"] / 1024, TARGETS["idle_rss_mb"], "MB",
        evidence="2 s after ready, catalogue loaded, before any request")  # fmt: skip
    add("ready_ms", "ready after start (/readyz 200)", su["ready_ms_median"], TARGETS["ready_ms"], "ms",
        evidence=f"median of {len(su['runs'])} starts (max {su['ready_ms_max']:.1f} ms); catalogue fresh at "
        f"{su['fresh_ms_median']:.1f} ms")  # fmt: skip
    return out + evaluate_19(res)


def ms(us):
    return None if us is None else us / 1000


def fmt_us(v) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 10000:
        return f"{v / 1000:.1f} ms"
    if abs(v) >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def fmt_added(v) -> str:
    if v is None:
        return "n/a"
    sign = "+" if v >= 0 else "−"
    return sign + fmt_us(abs(v))


def ratio(a, b) -> str:
    if a is None or b is None or b <= 0 or a < 0:
        return "–"
    x = a / b
    return f"{x:.0f}" if x >= 100 else f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def markdown(res: dict) -> str:
    m = res["meta"]
    peers = [t for t in res["targets_under_test"] if t != "direct"]
    cols = ["direct"] + peers
    L: list[str] = []
    L.append(f"Run {m['started']} ({m['mode']} mode: {m['repetitions']} repetition(s) of {m['duration_s']} s "
             f"after {m['warmup_s']} s warm-up, medians), git {m['git_commit']}"
             f"{' + uncommitted changes' if m['git_dirty'] else ''}.")  # fmt: skip
    L.append(f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}; "
             f"{m['rustc']}; {m['nginx'] or 'nginx absent'}; LiteLLM {m['litellm'] or 'absent'}.")  # fmt: skip
    pin_ = m["pinning"]
    L.append(f"Pinning: simulator + load generator + harness on CPU {pin_['load_cpus']}, the proxy under test "
             f"alone on CPU {pin_['proxy_cpus']}." if pin_["pinned"] else "Pinning: none (fewer than 2 CPUs).")  # fmt: skip
    nz = res.get("noise", {})
    L.append(f"**Shared, noisy machine**: other engineers build and test on these 2 cores; foreign CPU during "
             f"load runs: median {pct_str(nz.get('foreign_cpu_frac_median'))}, max "
             f"{pct_str(nz.get('foreign_cpu_frac_max'))} of one core.")  # fmt: skip
    L.append("")
    L.append("### Targets")
    L.append("")
    L.append("| target | measured | threshold | met |")
    L.append("|---|---|---|---|")
    for t in res["targets"]:
        meas = "n/a" if t["measured"] is None else f"{target_num(t['measured'], t['unit'])} {t['unit']}"
        op = "≥" if t["id"] == "saturation_vs_nginx" else "≤"
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[t["met"]]
        L.append(f"| {t['target']} | {meas} | {op} {target_num(t['threshold'], t['unit'])} {t['unit']} | {verdict} |")
    L += md_targets_note(res)
    L.append("")
    L.append("### Non-streaming, 2 KB request / 1 KB response")
    L.append("")
    head = "| load | metric | " + " | ".join(LABEL[c] for c in cols) + " | " + " | ".join(
        f"groxy/{LABEL[p]}" for p in peers if p != "groxy") + " |"  # fmt: skip
    L.append(head)
    L.append("|" + "---|" * (2 + len(cols) + len([p for p in peers if p != "groxy"])))
    sat = res["saturation"]
    cells = []
    for c in cols:
        v = sat[c]["median_rps"]
        frac = sat[c].get("fraction_of_direct", 1)
        cells.append(f"{v:,.0f} rps" + (f" ({frac * 100:.2g}% of direct)" if c != "direct" else ""))
    rat = [ratio(sat["groxy"]["median_rps"], sat[p]["median_rps"]) for p in peers if p != "groxy"]
    L.append(f"| saturation ({res_conns(res)} conns, closed loop) | throughput | " + " | ".join(cells) + " | "
             + " | ".join(rat) + " |")  # fmt: skip
    cells = ["–"] + [cpu_cell(sat[c].get("median_proxy_cpu_us_per_request"), sat[c].get("median_proxy_cpu_pct"))
                     for c in peers]  # fmt: skip
    rat = [ratio(sat["groxy"].get("median_proxy_cpu_us_per_request"), sat[p].get("median_proxy_cpu_us_per_request"))
           for p in peers if p != "groxy"]  # fmt: skip
    L.append("| saturation | proxy CPU per request (core busy) | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    for rate, rr in res["rate"].items():
        for k in PCTS:
            cells = []
            for c in cols:
                if "skipped" in rr[c]:
                    cells.append("over capacity" if k == "p50" else "")
                    continue
                v = rr[c]["median_us"][k]
                cells.append(fmt_us(v) + ("" if c == "direct" else f" ({fmt_added(rr[c]['added_median_us'][k])})"))
            rat = []
            for p in peers:
                if p == "groxy":
                    continue
                a = rr["groxy"].get("added_median_us", {}).get(k) if "skipped" not in rr["groxy"] else None
                bb = rr[p].get("added_median_us", {}).get(k) if "skipped" not in rr[p] else None
                rat.append(ratio(a, bb))
            L.append(f"| {rate} rps open loop | {k} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
        cells = ["–"] + [("" if "skipped" in rr[c] else cpu_cell(rr[c].get("median_proxy_cpu_us_per_request")))
                         for c in peers]  # fmt: skip
        rat = [ratio(rr["groxy"].get("median_proxy_cpu_us_per_request"), rr[p].get("median_proxy_cpu_us_per_request"))
               if "skipped" not in rr[p] and "skipped" not in rr["groxy"] else "–" for p in peers if p != "groxy"]  # fmt: skip
        L.append(f"| {rate} rps open loop | proxy CPU per request | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    L.append("")
    L.append("Latency cells: median over repetitions of the percentile, (added over direct in the same repetition). "
             "groxy/peer: ratio of the added latency (below 1: groxy adds less), or of throughput.")  # fmt: skip
    L.append("")
    L += md_concurrency1(res)
    L += md_cache_hit(res)
    L.append("### Streaming: 30 chunks, TTFT 100 ms, 10 ms apart (stamped by the simulator)")
    L.append("")
    L.append(head)
    L.append("|" + "---|" * (2 + len(cols) + len([p for p in peers if p != "groxy"])))
    st = res["stream"]
    for key, name in (("ttfb_us", "time to first byte"), ("first_token_us", "time to first token"),
                      ("chunk_delay_us", "per-chunk delay")):  # fmt: skip
        for k in ("p50", "p99"):
            cells = []
            for c in cols:
                v = st[c][f"median_{key}"][k]
                cells.append(fmt_us(v) + ("" if c == "direct" else f" ({fmt_added(st[c][f'added_{key}'][k])})"))
            rat = [ratio(st["groxy"][f"added_{key}"][k], st[p][f"added_{key}"][k]) for p in peers if p != "groxy"]
            L.append(f"| {name} | {k} | " + " | ".join(cells) + " | " + " | ".join(rat) + " |")
    comp = []
    for c in cols:
        done = sum(r["completed"] for r in st[c]["reps"])
        total = sum(r["intended"] for r in st[c]["reps"])
        comp.append(f"{done}/{total}")
    L.append("| streams completed | all reps | " + " | ".join(comp) + " |" + " |" * len(
        [p for p in peers if p != "groxy"]))  # fmt: skip
    L.append("")
    L.append("### Concurrency: slow streams held open (ramp 2,500/s, one chunk every 500 ms)")
    L.append("")
    L.append("| proxy | streams | client protocol | completed | peak RSS | RSS per stream | CPU mean / peak 1 s | "
             "chunk delay p99 |")  # fmt: skip
    L.append("|---|---|---|---|---|---|---|---|")
    for h in res["hold"]:
        if "error" in h:
            L.append(f"| {LABEL[h['proxy']]} | {h['streams']} | | failed to start: {h['error']} | | | | |")
            continue
        cd = (h.get("chunk_delay_us") or {}).get("p99")
        L.append(f"| {LABEL[h['proxy']]} | {h['streams']:,} | {h['protocol']} | {h['completed']}/{h['streams']}"
                 f"{'' if not h['failed'] else ' (' + errs(h['error_kinds']) + ')'} | {h['rss_peak_kb'] / 1024:.1f} MB | "
                 f"{h['rss_per_stream_kb']:.1f} KB | {h['cpu_pct_mean']:.0f}% / {h['cpu_pct_peak_1s']:.0f}% | "
                 f"{fmt_us(cd)} |")  # fmt: skip
    L.append("")
    L += md_burst(res)
    L.append("### Footprint")
    L.append("")
    L.append("| | " + " | ".join(LABEL[p] for p in peers) + " |")
    L.append("|---|" + "---|" * len(peers))
    su = res["startup"]
    L.append("| ready after start (median / max) | " + " | ".join(
        f"{su[p]['ready_ms_median']:.1f} / {su[p]['ready_ms_max']:.1f} ms" if p in su else "n/a" for p in peers) + " |")  # fmt: skip
    L.append("| idle RSS | " + " | ".join(
        f"{su[p]['idle_rss_kb'] / 1024:.1f} MB" if p in su else "n/a" for p in peers) + " |")  # fmt: skip
    L.append("| idle CPU | " + " | ".join(
        f"{su[p]['idle_cpu_pct']:.1f}%" if p in su else "n/a" for p in peers) + " |")  # fmt: skip
    ra = res.get("rss_after_load", {})
    L.append("| RSS before → after the rate and stream runs | " + " | ".join(
        f"{ra[p]['before_kb'] / 1024:.1f} → {ra[p]['after_kb'] / 1024:.1f} MB" if p in ra else "n/a"
        for p in peers) + " |")  # fmt: skip
    sf = res["static"]
    L.append("| binary size | " + " | ".join(
        {"groxy": f"{sf['groxy_binary_bytes'] / 2**20:.1f} MiB",
         "nginx": f"{sf.get('nginx_binary_bytes', 0) / 2**20:.1f} MiB (+ shared libraries)",
         "litellm": "Python package (bench/.venv: " + venv_size() + ")"}[p] for p in peers) + " |")  # fmt: skip
    if "soak" in res:
        s = res["soak"]
        L.append("")
        L.append(f"Soak (groxy, {s['seconds']} s of 500 rps non-streaming + 20 streams/s): RSS "
                 f"{s['rss_first_quarter_kb'] / 1024:.1f} MB after the first quarter, {s['rss_end_kb'] / 1024:.1f} MB "
                 f"at the end (max {s['rss_max_kb'] / 1024:.1f} MB), {s['rss_after_kb'] / 1024:.1f} MB 3 s after; "
                 f"slope over the second half {s['slope_second_half_mb_per_min']:+.2f} MB/min: "
                 f"**{'flat' if s['flat'] else 'growing'}**; CPU {s['cpu_pct']:.0f}%; "
                 f"{s['rate_result']['completed']} requests ({s['rate_result']['errors']} errors), "
                 f"{s['stream_result']['completed']} streams ({s['stream_result']['failed']} failed).")  # fmt: skip
    L.append("")
    rl = res.get("rate_limit_check", {}).get("summary")
    if rl:
        g, gl = rl["groxy"], rl["groxy-limits"]
        L.append("### Rate-limit check (groxy with non-binding client limits vs groxy defaults)")
        L.append("")
        L.append("| | groxy (defaults) | groxy + client limits | difference |")
        L.append("|---|---|---|---|")
        L.append(f"| saturation throughput | {g['sat_rps']:,.0f} rps | {gl['sat_rps']:,.0f} rps | "
                 f"{ratio(gl['sat_rps'], g['sat_rps'])}× |")  # fmt: skip
        L.append(f"| CPU per request at saturation | {cpu_cell(g['sat_cpu_us_per_request'])} | "
                 f"{cpu_cell(gl['sat_cpu_us_per_request'])} | "
                 f"{fmt_added(diff(gl['sat_cpu_us_per_request'], g['sat_cpu_us_per_request']))} |")  # fmt: skip
        L.append(f"| CPU per request at 1000 rps | {cpu_cell(g['rate1000_cpu_us_per_request'])} | "
                 f"{cpu_cell(gl['rate1000_cpu_us_per_request'])} | "
                 f"{fmt_added(diff(gl['rate1000_cpu_us_per_request'], g['rate1000_cpu_us_per_request']))} |")  # fmt: skip
        for q in ("p50", "p99"):
            L.append(f"| 1000 rps latency {q} | {fmt_us(g['rate1000_us'][q])} | {fmt_us(gl['rate1000_us'][q])} | "
                     f"{fmt_added(rl['added_us'][q])} |")  # fmt: skip
        L.append("")
        L.append("Both have upstream-aware admission on (the default), fed by the simulator's computed "
                 "x-ratelimit-* headers; the client limits add a per-key check and settlement.")  # fmt: skip
        L.append("")
    L += md_instructions(res)
    notes = list(res.get("notes", []))
    for k, why in res.get("skipped", {}).items():
        notes.append(f"{LABEL.get(k, k)} skipped: {why}")
    if notes:
        L.append("")
        L.append("Notes: " + " ".join(f"({i + 1}) {n}" for i, n in enumerate(notes)))
    return "\n".join(L) + "\n"


def evaluate_19(res: dict) -> list[dict]:
    """Issue 19's targets: concurrency-1 latency, memory per stream at 2,000 and after a burst,
    and the instruction counts bench/instructions measured (read, not measured here)."""
    out = []

    def add(name, what, measured, unit, evidence=""):
        limit = TARGETS_19[name]
        out.append({"id": name, "target": what, "measured": measured, "threshold": limit, "unit": unit,
                    "met": None if measured is None else measured <= limit, "evidence": evidence})  # fmt: skip

    g = res.get("concurrency1", {}).get("groxy", {})
    add("added_p99_c1_us", "added p99 latency at concurrency 1 (one connection, closed loop)",
        (g.get("added_median_us") or {}).get("p99"), "µs",
        evidence="median over repetitions of groxy p99 - direct p99, one request at a time")  # fmt: skip
    for proxy, how in (("groxy", ", HTTP/1.1 upstream"), ("groxy-h2", ", HTTP/2 upstream (as to api.groq.com)")):
        rows = [h for h in res.get("hold", []) if h.get("proxy") == proxy and h.get("streams") == 2000
                and str(h.get("protocol", "")).startswith("HTTP/1.1")]  # fmt: skip
        h = rows[0] if rows else None
        if h is None and proxy == "groxy-h2":
            continue
        add("rss_per_stream_2k_kb", f"2,000 HTTP/1.1 client streams: RSS per stream (all must complete){how}",
            h["rss_per_stream_kb"] if h and h["completed"] == 2000 else None, "KB",
            evidence=f"(peak - before) / 2000; completed {h['completed']}/2000" if h else "no 2,000-stream level run")  # fmt: skip
    for key, how in (("burst", ", HTTP/1.1 upstream"), ("burst_h2", ", HTTP/2 upstream (as to api.groq.com)")):
        if key not in res and key == "burst_h2":
            continue
        bu = res.get(key, {})
        add("rss_after_burst_ratio", f"RSS {BURST_SETTLE_S} s after a burst / before it{how}",
            bu.get("after_settle_over_before"), "x",
            evidence=f"{BURST_STREAMS} streams + saturation for {BURST_SECONDS:.0f} s" if "error" not in bu
            else bu["error"])  # fmt: skip
    ins = res.get("instructions", {})
    src = f" (bench/instructions, git {ins.get('groxy_git') or ins.get('git')}, {str(ins.get('date'))[:10]})" \
        if "modes" in ins else " (bench/instructions)"  # fmt: skip
    for mode, what in (("default", "default"), ("miss", "cacheable miss"), ("hit", "cache hit")):
        v = ins.get("modes", {}).get(mode, {}).get("per_request")
        add(f"instructions_{mode}", f"instructions per request, {what}{src}", v, "instructions",
            evidence=ins.get("missing", "callgrind, user space, net of start-up"))  # fmt: skip
    return out


def target_num(v, unit: str) -> str:
    if unit == "instructions" or abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def md_targets_note(res: dict) -> list[str]:
    ins = res.get("instructions", {})
    if "missing" in ins:
        return ["", f"Instruction targets not measured: {ins['missing']}."]
    m = res["meta"]
    same = ins.get("groxy_git") == m.get("git_commit")
    return ["", f"Instruction counts: `{ins['file']}`, written by `bench/instructions` on {ins['date']} for groxy "
            f"git {ins.get('groxy_git')}" + ("" if same else f" (this run: git {m.get('git_commit')}; run "
            "`bench/instructions` on this build to refresh them)") + "; see \"Instructions per request\" below."]  # fmt: skip


def md_concurrency1(res: dict) -> list[str]:
    c1 = res.get("concurrency1")
    if not c1:
        return []
    ts = list(c1)
    peers = [t for t in ts if t not in ("direct", "groxy")]
    L = ["### Concurrency 1: one connection, one request at a time (closed loop)", ""]
    L.append("| metric | " + " | ".join(LABEL[t] for t in ts) + "".join(f" | groxy/{LABEL[p]}" for p in peers) + " |")
    L.append("|---|" + "---|" * (len(ts) + len(peers)))
    for k in PCTS:
        cells = [fmt_us(c1[t]["median_us"][k]) + ("" if t == "direct" else f" ({fmt_added(c1[t]['added_median_us'][k])})")
                 for t in ts]  # fmt: skip
        rat = [ratio(c1["groxy"]["added_median_us"][k], c1[p]["added_median_us"][k]) for p in peers]
        L.append(f"| {k} | " + " | ".join(cells) + "".join(f" | {x}" for x in rat) + " |")
    L.append("| requests per second | " + " | ".join(f"{c1[t]['median_rps']:,.0f}" for t in ts)
             + " |" * (len(peers) + 1))  # fmt: skip
    L.append("| proxy CPU per request | –" + "".join(
        f" | {cpu_cell(c1[t].get('median_proxy_cpu_us_per_request'))}" for t in ts if t != "direct") + "".join(
        f" | {ratio(c1['groxy'].get('median_proxy_cpu_us_per_request'), c1[p].get('median_proxy_cpu_us_per_request'))}"
        for p in peers) + " |")  # fmt: skip
    L += ["", "Latency of each request from its send to its last byte, nothing queued in front of it (the "
          "next request leaves when the answer is in); cells as above: median, (added over direct).", ""]  # fmt: skip
    return L


def md_cache_hit(res: dict) -> list[str]:
    ch = res.get("cache_hit")
    if not ch:
        return []
    if "summary" not in ch:
        return ["### Cache hit", "", f"Not measured: {ch.get('error')}", ""]
    s = ch["summary"]
    d, g = s["direct"], s["groxy"]
    byp_sat = res.get("saturation", {}).get("groxy", {}).get("median_rps")
    byp_1k = res.get("rate", {}).get("1000", {}).get("groxy", {})
    L = ["### Cache hit: identical `\"temperature\":0` requests, answered from groxy's cache", ""]
    L.append("| load | metric | direct | groxy, cache hit | groxy, cache bypassed (table above) | hit/direct |")
    L.append("|---|---|---|---|---|---|")
    L.append(f"| saturation ({res_conns(res)} conns) | throughput | {d['sat_rps']:,.0f} rps | {g['sat_rps']:,.0f} rps | "
             f"{'n/a' if byp_sat is None else f'{byp_sat:,.0f} rps'} | {ratio(g['sat_rps'], d['sat_rps'])} |")  # fmt: skip
    L.append(f"| saturation | proxy CPU per request (core busy) | – | "
             f"{cpu_cell(g['sat_cpu_us_per_request'], g['sat_cpu_pct'])} | "
             f"{cpu_cell(res.get('saturation', {}).get('groxy', {}).get('median_proxy_cpu_us_per_request'))} | |")  # fmt: skip
    if ch.get("skipped"):
        L.append(f"| 1000 rps open loop | | {'; '.join(f'{k}: {v}' for k, v in ch['skipped'].items())} | | | |")
    else:
        for q in PCTS:
            byp = (byp_1k.get("median_us") or {}).get(q)
            byp_add = (byp_1k.get("added_median_us") or {}).get(q)
            L.append(f"| 1000 rps open loop | {q} | {fmt_us(d['rate1000_us'][q])} | {fmt_us(g['rate1000_us'][q])} "
                     f"({fmt_added(s['added_us'][q])}) | {fmt_us(byp)} ({fmt_added(byp_add)}) | |")  # fmt: skip
        L.append(f"| 1000 rps open loop | proxy CPU per request | – | {cpu_cell(g['rate1000_cpu_us_per_request'])} | "
                 f"{cpu_cell(byp_1k.get('median_proxy_cpu_us_per_request'))} | |")  # fmt: skip
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(ch.get("cache", {}).items())) or "no access lines"
    L += ["", f"groxy's access lines during these runs: cache {statuses}; errors: direct {d['errors']}, groxy "
          f"{g['errors']}. A hit never reaches the simulator, which shares core 0 with the load generator: "
          "hit throughput can exceed direct's.", ""]  # fmt: skip
    return L


def md_burst(res: dict) -> list[str]:
    if not res.get("burst"):
        return []
    L = [f"### Memory after a burst (groxy, {BURST_STREAMS:,} streams of {BURST_SECONDS:.0f} s opened at 2,500/s "
         f"+ saturation for {BURST_SECONDS:.0f} s)", ""]  # fmt: skip
    mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
    L.append(f"| groxy → simulator | before | peak | 1 s after | 5 s after | {BURST_SETTLE_S} s after | "
             f"{BURST_SETTLE_S} s after / before | streams completed | saturation requests |")  # fmt: skip
    L.append("|---|---|---|---|---|---|---|---|---|")
    for key, label in (("burst", "HTTP/1.1"), ("burst_h2", "HTTP/2")):
        bu = res.get(key)
        if not bu:
            continue
        if "error" in bu:
            L.append(f"| {label} | not measured: {bu['error']} | | | | | | | |")
            continue
        a = {int(k): v for k, v in bu["rss_after_kb"].items()}  # int keys, or strings after a JSON round trip
        L.append(f"| {label} | {mb(bu['rss_before_kb'])} | {mb(bu['rss_peak_kb'])} | {mb(a[1])} | {mb(a[5])} | "
                 f"{mb(a[int(bu['settle_s'])])} | {bu['after_settle_over_before']} | "
                 f"{bu['streams_completed']}/{bu['streams']} | {bu['sat_requests']:,} ({bu['sat_errors']} errors) |")  # fmt: skip
    L += ["", "Before: after 2 s at 200 rps and 2 s of rest. \"After\" counts from the end of the burst (last "
          "stream and saturation run done); RSS of groxy's process tree.", ""]  # fmt: skip
    return L


def md_instructions(res: dict) -> list[str]:
    ins = res.get("instructions", {})
    L = ["### Instructions per request (bench/instructions, callgrind)", ""]
    if "missing" in ins:
        return L + [f"Not measured: {ins['missing']}."]
    L.append(f"From `{ins['file']}`: run {ins['date']}, groxy git {ins.get('groxy_git')} (`{ins.get('groxy')}`), "
             f"N2 − N1 = {ins['n2'] - ins['n1']:,} requests; not measured by this run.")  # fmt: skip
    L.append("")
    L.append("| mode | instructions per request | of which SHA-256 in software (callgrind only) | ratio to nginx | "
             "target |")  # fmt: skip
    L.append("|---|---|---|---|---|")
    ng = ins["modes"].get("nginx", {}).get("per_request")
    for mode in ("default", "miss", "hit", "nginx"):
        v = ins["modes"].get(mode)
        if not v:
            continue
        t = TARGETS_19.get(f"instructions_{mode}")
        L.append(f"| {mode} | {v['per_request']:,.0f} | {v.get('sha256_soft_per_request') or 0:,.0f} | "
                 f"{ratio(v['per_request'], ng)} | {'' if t is None else f'≤ {t:,}'} |")  # fmt: skip
    return L


def diff(a, b):
    return None if a is None or b is None else a - b


def cpu_cell(us, pct=None) -> str:
    if us is None:
        return "n/a"
    return (f"{us:.1f} µs" if us < 1000 else fmt_us(us)) + (f" ({pct:.0f}%)" if pct is not None else "")


def errs(kinds: dict | None) -> str:
    if not kinds:
        return ""
    return ", ".join(f"{v}× {k}" for k, v in list(kinds.items())[:3])


def pct_str(v) -> str:
    return "n/a" if v is None else f"{v:.0%}"


_VENV_SIZE: str | None = None


def venv_size() -> str:
    global _VENV_SIZE
    if _VENV_SIZE is None:
        try:
            out = subprocess.run(["du", "-sm", str(VENV)], capture_output=True, text=True).stdout.split()[0]
            _VENV_SIZE = f"{out} MB"
        except (OSError, IndexError):
            _VENV_SIZE = "?"
    return _VENV_SIZE


def res_conns(res: dict) -> int:
    return res["saturation"]["direct"]["reps"][0]["conns"]


def update_readme(md: str) -> None:
    readme = BENCH / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        a, rest = text.split(start, 1)
        _, b = rest.split(end, 1)
        readme.write_text(f"{a}{start}\n{md}{end}{b}")
        log("bench/README.md results updated")


def main() -> None:
    ap = argparse.ArgumentParser(description="groxy benchmark harness (use bench/run)")
    ap.add_argument("--quick", action="store_true", help="one short repetition of everything (~5-7 minutes)")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds measured per run (default 5, quick 2)")
    ap.add_argument("--rates", help="fixed rates, comma separated (default 50,500,1000,2000)")
    ap.add_argument("--stream-rate", type=float, default=50, help="streams started per second (default 50)")
    ap.add_argument("--sat-conns", type=int, default=32, help="connections of the saturation run (default 32)")
    ap.add_argument("--rate-conns", type=int, default=32, help="connection pool of the fixed-rate runs (default 32)")
    ap.add_argument("--hold", help="concurrent stream levels (default 1000,2000,5000,10000)")
    ap.add_argument("--soak-seconds", type=int, help="soak length (default 120, quick 20; 0 skips)")
    ap.add_argument("--peers", default="nginx,litellm", help="peers to compare: nginx,litellm (default) or none")
    ap.add_argument("--quiet-wait", type=float, help="seconds to wait for foreign CPU load to settle before each "
                    "measured run (default 20, quick 5)")  # fmt: skip
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--only-hold", action="store_true", help="run only the concurrency rows (--hold levels, "
                    "memory per stream); writes OUT/hold.json, not latest.json or the README")  # fmt: skip
    ap.add_argument("--upstream-http2", choices=["auto", "always", "never"],
                    help="groxy's upstream.http2 (always: h2c to the simulator, whose stream cap is raised)")  # fmt: skip
    ap.add_argument("--groxy", help="groxy binary (default target/release/groxy)")
    ap.add_argument("--out", default=str(BENCH / "results"), help="results directory (default bench/results)")
    ap.add_argument("--update-readme", choices=["auto", "yes", "no"], default="auto",
                    help="write the table into bench/README.md (auto: full runs only)")  # fmt: skip
    args = ap.parse_args()
    if args.groxy:
        global GROXY
        GROXY = Path(args.groxy).resolve()
    if args.quiet_wait is None:
        args.quiet_wait = 5.0 if args.quick else 20.0
    for path in (LOADGEN, GROXY, SIM):
        if not path.exists():
            raise SystemExit(f"{path} is missing: run bench/run, which builds it")

    def on_signal(signum, _frame):
        stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(stop_all)
    t0 = time.monotonic()
    res = run(args)
    res["meta"]["elapsed_s"] = round(time.monotonic() - t0, 1)
    if args.only_hold:
        hold_only_report(res, Path(args.out))
        return
    md = markdown(res)
    out = Path(args.out)
    (out / "latest.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "latest.md").write_text("# groxy benchmark: latest results\n\n" + md)
    print(md)
    log(f"wrote {out / 'latest.json'} and {out / 'latest.md'} in {res['meta']['elapsed_s']:.0f} s")
    if args.update_readme == "yes" or (args.update_readme == "auto" and not args.quick):
        update_readme(md)


if __name__ == "__main__":
    main()
