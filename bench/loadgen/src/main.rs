//! `loadgen`: the load generator of the groxy benchmark (`bench/run` drives it).
//!
//! Four modes, each printing one JSON object on stdout (raw samples optionally to `--raw FILE`):
//!
//! * `rate`   open loop at a fixed rate over a fixed pool of keep-alive connections. A ticker
//!   thread (1 ns timer slack, not tokio's 1 ms timer wheel) releases request *i* at
//!   its intended time `start + i/rate`; latency is measured from that intended time to
//!   the last response byte, so a request that waited for a free connection, or behind a
//!   stalled one, is charged for the wait (coordinated omission corrected, as wrk2).
//! * `sat`    closed loop: C connections sending back to back; throughput and (uncorrected)
//!   latency. With `--conns 1` it is one request at a time: each latency is a single
//!   request's round trip, with nothing queued in front of it (`--raw` keeps them all).
//! * `stream` open-loop stream starts; for each stream the time to first body byte (from the
//!   intended start) and, for every content frame stamped by `groq-sim` (`x-sim-stamp:
//!   1`, content `t<unix-ns> `), the delay from the simulator's send time to the moment
//!   the client read it (same machine, same wall clock).
//! * `hold`   N streams opened at a ramp rate and held until they end (HTTP/1.1: one connection
//!   each; `--h2 K`: multiplexed over K h2c connections); counts completions.
//!
//! Only loopback addresses are accepted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

type Body = Full<Bytes>;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

struct Args {
    mode: String,
    addr: SocketAddr,
    authority: String,
    path: String,
    body: Bytes,
    headers: Vec<(String, String)>,
    rate: f64,
    duration: f64,
    warmup: f64,
    conns: usize,
    count: usize,
    h2: usize,
    grace: f64,
    raw: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen rate|sat|stream|hold --url http://127.0.0.1:PORT/PATH --body FILE \
         [--header 'k: v']... [--rate R] [--duration S] [--warmup S] [--conns C] [--count N] \
         [--h2 K] [--grace S] [--raw FILE]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    if !["rate", "sat", "stream", "hold"].contains(&mode.as_str()) {
        usage()
    }
    let (mut url, mut body_file) = (None, None);
    let mut a = Args {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        authority: String::new(),
        path: String::new(),
        body: Bytes::new(),
        headers: Vec::new(),
        rate: 100.0,
        duration: 5.0,
        warmup: 1.0,
        conns: 32,
        count: 0,
        h2: 0,
        grace: 10.0,
        raw: None,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |s: String| s.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--url" => url = Some(val()),
            "--body" => body_file = Some(val()),
            "--header" => {
                let h = val();
                let (k, v) = h.split_once(':').unwrap_or_else(|| usage());
                a.headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "--rate" => a.rate = num(val()),
            "--duration" => a.duration = num(val()),
            "--warmup" => a.warmup = num(val()),
            "--conns" => a.conns = num(val()) as usize,
            "--count" => a.count = num(val()) as usize,
            "--h2" => a.h2 = num(val()) as usize,
            "--grace" => a.grace = num(val()),
            "--raw" => a.raw = Some(val()),
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let rest = url.strip_prefix("http://").unwrap_or_else(|| usage());
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    a.addr = authority.parse().unwrap_or_else(|_| {
        eprintln!("loadgen: --url needs a literal IP:PORT");
        std::process::exit(2)
    });
    if !a.addr.ip().is_loopback() {
        eprintln!("loadgen: refusing a non-loopback target {}", a.addr);
        std::process::exit(2)
    }
    a.authority = authority.to_owned();
    a.path = path.to_owned();
    if let Some(f) = body_file {
        a.body = std::fs::read(&f)
            .unwrap_or_else(|e| {
                eprintln!("loadgen: cannot read {f}: {e}");
                std::process::exit(2)
            })
            .into();
    }
    a.conns = a.conns.max(1);
    a
}

fn request(a: &Args) -> Request<Body> {
    let mut b = Request::post(a.path.as_str())
        .header(hyper::header::HOST, a.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if !a.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
        b = b.header(hyper::header::AUTHORIZATION, "Bearer bench");
    }
    for (k, v) in &a.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(a.body.clone())).expect("valid request")
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

type H1 = hyper::client::conn::http1::SendRequest<Body>;
type H2 = hyper::client::conn::http2::SendRequest<Body>;

async fn tcp(addr: SocketAddr) -> Result<TokioIo<TcpStream>, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(TokioIo::new(s))
}

async fn connect_h1(addr: SocketAddr) -> Result<H1, String> {
    let (sender, conn) = hyper::client::conn::http1::handshake(tcp(addr).await?)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connect_h2(addr: SocketAddr) -> Result<H2, String> {
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(256 * 1024)
        .handshake(tcp(addr).await?)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send_h1(conn: &mut Option<H1>, addr: SocketAddr, req: Request<Body>) -> Result<Response<Incoming>, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(connect_h1(addr).await?);
    }
    let c = conn.as_mut().expect("connected");
    if c.ready().await.is_err() {
        *conn = Some(connect_h1(addr).await?);
    }
    let c = conn.as_mut().expect("connected");
    match c.send_request(req).await {
        Ok(r) => Ok(r),
        Err(e) => {
            *conn = None;
            Err(format!("request: {e}"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values; `None` when it lands on a censored sample.
fn pct(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite 0.999 * 1000 = 999.0000000000001.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil().max(1.0) as usize;
    let v = sorted[rank.min(sorted.len()) - 1];
    (v != u64::MAX).then_some(v)
}

/// Percentiles in microseconds (floats, ns precision) of nanosecond samples.
fn summary_us(mut ns: Vec<u64>) -> Value {
    ns.sort_unstable();
    let us = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
    let finite: Vec<u64> = ns.iter().copied().filter(|&v| v != u64::MAX).collect();
    let mean = if finite.is_empty() {
        None
    } else {
        Some(finite.iter().map(|&v| v as f64).sum::<f64>() / finite.len() as f64 / 1000.0)
    };
    json!({
        "n": ns.len(),
        "min": us(ns.first().copied()),
        "p50": us(pct(&ns, 50.0)),
        "p90": us(pct(&ns, 90.0)),
        "p99": us(pct(&ns, 99.0)),
        "p99.9": us(pct(&ns, 99.9)),
        "max": us(ns.last().copied().filter(|&v| v != u64::MAX)),
        "mean": mean,
    })
}

fn write_raw(path: &Option<String>, v: Value) {
    if let Some(p) = path {
        if let Err(e) = std::fs::write(p, v.to_string()) {
            eprintln!("loadgen: cannot write {p}: {e}");
        }
    }
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

// ---------------------------------------------------------------------------------------------
// The ticker: intended send times, released precisely by a plain thread
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Job {
    intended: Instant,
    measured: bool,
}

/// Sends `Job`s at `start + i/rate` for `warmup + duration` seconds from a thread with 1 ns
/// timer slack. A ticker that falls behind still stamps each job with its intended time.
fn ticker(start: Instant, rate: f64, warmup: f64, duration: f64, tx: mpsc::UnboundedSender<Job>) -> u64 {
    let total = ((warmup + duration) * rate).round() as u64;
    let warm = (warmup * rate).round() as u64;
    std::thread::spawn(move || {
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        for i in 0..total {
            let t = start + Duration::from_nanos((i as f64 * 1e9 / rate) as u64);
            let now = Instant::now();
            if t > now {
                std::thread::sleep(t - now);
            }
            if tx
                .send(Job {
                    intended: t,
                    measured: i >= warm,
                })
                .is_err()
            {
                break;
            }
        }
    });
    total - warm
}

// ---------------------------------------------------------------------------------------------
// rate: open loop over a fixed connection pool
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct RateRec {
    lat: Vec<u64>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
    error_kinds: std::collections::BTreeMap<String, u64>,
    bytes: u64,
    /// Every completed request, warm-up included (for CPU per request).
    all: u64,
}

async fn run_rate(a: Arc<Args>) -> Value {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let rec = Arc::new(Mutex::new(RateRec::default()));
    let backlog_max = Arc::new(AtomicU64::new(0));
    let in_queue = Arc::new(AtomicU64::new(0));
    // Open the pool before the clock starts.
    let mut conns = Vec::new();
    for _ in 0..a.conns {
        conns.push(connect_h1(a.addr).await.ok());
    }
    let start = Instant::now() + Duration::from_millis(20);
    let measured_total = ticker(start, a.rate, a.warmup, a.duration, tx);
    let mut workers = Vec::new();
    for conn in conns {
        let (a, rx, rec) = (a.clone(), rx.clone(), rec.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = conn;
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let result = async {
                    let resp = send_h1(&mut conn, a.addr, request(&a)).await?;
                    let status = resp.status().as_u16();
                    let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
                    Ok::<_, String>((status, body.to_bytes().len() as u64))
                }
                .await;
                let done = Instant::now();
                let mut r = rec.lock().unwrap();
                r.all += 1;
                if !job.measured {
                    continue;
                }
                r.lat.push((done - job.intended).as_nanos() as u64);
                match result {
                    Ok((status, n)) => {
                        *r.statuses.entry(status).or_default() += 1;
                        r.bytes += n;
                        if !(200..300).contains(&status) {
                            r.errors += 1;
                        }
                    }
                    Err(e) => {
                        r.errors += 1;
                        *r.error_kinds.entry(e).or_default() += 1;
                    }
                }
            }
        }));
    }
    // Backlog sampling: how far behind the pool fell (jobs released but not yet picked up).
    let sampler = {
        let (rx, backlog_max, in_queue) = (rx.clone(), backlog_max.clone(), in_queue.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Ok(g) = rx.try_lock() {
                    let n = g.len() as u64;
                    in_queue.store(n, Ordering::Relaxed);
                    backlog_max.fetch_max(n, Ordering::Relaxed);
                }
            }
        })
    };
    let deadline = start + Duration::from_secs_f64(a.warmup + a.duration + a.grace);
    let all = futures_join(workers);
    let timed_out = tokio::time::timeout_at(deadline.into(), all).await.is_err();
    sampler.abort();
    let end = Instant::now();
    let mut r = std::mem::take(&mut *rec.lock().unwrap());
    let completed = r.lat.len() as u64;
    let incomplete = measured_total.saturating_sub(completed);
    write_raw(&a.raw, json!({"latency_ns": r.lat}));
    r.lat.extend(std::iter::repeat_n(u64::MAX, incomplete as usize));
    let measured_span = (end - (start + Duration::from_secs_f64(a.warmup))).as_secs_f64();
    json!({
        "mode": "rate",
        "target_rps": a.rate,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "conns": a.conns,
        "intended": measured_total,
        "completed": completed,
        "completed_with_warmup": r.all,
        "incomplete": incomplete,
        "timed_out": timed_out,
        "errors": r.errors,
        "error_kinds": r.error_kinds,
        "statuses": r.statuses,
        "response_bytes_mean": if completed > 0 { r.bytes as f64 / completed as f64 } else { 0.0 },
        "achieved_rps": completed as f64 / measured_span.max(a.duration),
        "max_backlog": backlog_max.load(Ordering::Relaxed),
        "latency_us": summary_us(r.lat),
    })
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

// ---------------------------------------------------------------------------------------------
// sat: closed loop
// ---------------------------------------------------------------------------------------------

async fn run_sat(a: Arc<Args>) -> Value {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let rec = Arc::new(Mutex::new(RateRec::default()));
    let mut workers = Vec::new();
    for _ in 0..a.conns {
        let (a, rec) = (a.clone(), rec.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = connect_h1(a.addr).await.ok();
            let mut local = Vec::with_capacity(4096);
            let (mut errors, mut ok, mut all) = (0u64, 0u64, 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = async {
                    let resp = send_h1(&mut conn, a.addr, request(&a)).await?;
                    let status = resp.status().as_u16();
                    resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
                    Ok::<_, String>(status)
                }
                .await;
                let t1 = Instant::now();
                all += 1;
                if t1 > measure_from && t1 <= end {
                    local.push((t1 - t0).as_nanos() as u64);
                    match result {
                        Ok(s) if (200..300).contains(&s) => ok += 1,
                        _ => errors += 1,
                    }
                }
            }
            let mut r = rec.lock().unwrap();
            r.lat.extend(local);
            r.errors += errors;
            r.all += all;
            *r.statuses.entry(200).or_default() += ok;
        }));
    }
    futures_join(workers).await;
    let r = std::mem::take(&mut *rec.lock().unwrap());
    let n = r.lat.len() as u64;
    write_raw(&a.raw, json!({"latency_ns": r.lat}));
    json!({
        "mode": "sat",
        "conns": a.conns,
        "duration_s": a.duration,
        "completed": n,
        "completed_with_warmup": r.all,
        "ok": r.statuses.get(&200).copied().unwrap_or(0),
        "errors": r.errors,
        "throughput_rps": n as f64 / a.duration,
        "latency_us_closed_loop": summary_us(r.lat),
    })
}

// ---------------------------------------------------------------------------------------------
// Streams: stamp parsing
// ---------------------------------------------------------------------------------------------

/// Incremental SSE reader: complete lines are scanned for a content of the form `t<digits>` and
/// for `[DONE]`; a partial line waits for the next read.
#[derive(Default)]
struct StampScan {
    carry: Vec<u8>,
    delays_ns: Vec<i64>,
    first_stamp_at: Option<Instant>,
    frames: u32,
    done: bool,
    error_event: bool,
}

impl StampScan {
    fn feed(&mut self, data: &[u8], recv_wall: i128, now: Instant) {
        self.carry.extend_from_slice(data);
        let mut start = 0;
        while let Some(off) = self.carry[start..].iter().position(|&b| b == b'\n') {
            let line_end = start + off;
            let line = &self.carry[start..line_end];
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = trim_ascii_start(rest);
                if rest.starts_with(b"[DONE]") {
                    self.done = true;
                } else {
                    self.frames += 1;
                    if let Some(stamp) = find_stamp(rest) {
                        self.delays_ns.push((recv_wall - stamp) as i64);
                        self.first_stamp_at.get_or_insert(now);
                    } else if find(rest, b"\"error\"").is_some() && find(rest, b"\"choices\"").is_none() {
                        self.error_event = true;
                    }
                }
            }
            start = line_end + 1;
        }
        self.carry.drain(..start);
    }
}

fn trim_ascii_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `"content"` `:` `"t123…`: the nanoseconds, whatever whitespace the proxy's serializer adds.
fn find_stamp(line: &[u8]) -> Option<i128> {
    let mut from = 0;
    while let Some(i) = find(&line[from..], b"\"content\"") {
        let mut rest = trim_ascii_start(&line[from + i + 9..]);
        from += i + 9;
        rest = match rest.strip_prefix(b":") {
            Some(r) => trim_ascii_start(r),
            None => continue,
        };
        if let Some(r) = rest.strip_prefix(b"\"t") {
            let digits: Vec<u8> = r.iter().take_while(|b| b.is_ascii_digit()).copied().collect();
            if digits.len() >= 18 {
                return std::str::from_utf8(&digits).ok()?.parse().ok();
            }
        }
    }
    None
}

struct StreamOutcome {
    ttfb_ns: Option<u64>,
    first_token_ns: Option<u64>,
    total_ns: u64,
    scan: StampScan,
    status: u16,
    error: Option<String>,
}

/// Reads one streamed response to its end, timing against `intended`.
async fn read_stream(resp: Result<Response<Incoming>, String>, intended: Instant) -> StreamOutcome {
    let mut out = StreamOutcome {
        ttfb_ns: None,
        first_token_ns: None,
        total_ns: 0,
        scan: StampScan::default(),
        status: 0,
        error: None,
    };
    match resp {
        Err(e) => out.error = Some(e),
        Ok(resp) => {
            out.status = resp.status().as_u16();
            let mut body = resp.into_body();
            loop {
                match body.frame().await {
                    None => break,
                    Some(Err(e)) => {
                        out.error = Some(format!("body: {e}"));
                        break;
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let (wall, now) = (wall_ns(), Instant::now());
                            out.ttfb_ns.get_or_insert((now - intended).as_nanos() as u64);
                            out.scan.feed(&data, wall, now);
                        }
                    }
                }
            }
        }
    }
    out.first_token_ns = out.scan.first_stamp_at.map(|t| (t - intended).as_nanos() as u64);
    out.total_ns = (Instant::now() - intended).as_nanos() as u64;
    out
}

#[derive(Default)]
struct StreamRec {
    ttfb: Vec<u64>,
    first_token: Vec<u64>,
    total: Vec<u64>,
    chunk_delays: Vec<i64>,
    completed: u64,
    failed: u64,
    error_kinds: std::collections::BTreeMap<String, u64>,
    frames: u64,
}

impl StreamRec {
    fn add(&mut self, o: StreamOutcome) {
        let ok = o.error.is_none() && o.scan.done && !o.scan.error_event && (200..300).contains(&o.status);
        if ok {
            self.completed += 1;
        } else {
            self.failed += 1;
            let kind = o.error.clone().unwrap_or_else(|| {
                if o.scan.error_event {
                    "error event".into()
                } else if !o.scan.done {
                    format!("status {} without [DONE]", o.status)
                } else {
                    format!("status {}", o.status)
                }
            });
            *self.error_kinds.entry(kind).or_default() += 1;
        }
        if let Some(t) = o.ttfb_ns {
            self.ttfb.push(t);
        }
        if let Some(t) = o.first_token_ns {
            self.first_token.push(t);
        }
        self.total.push(o.total_ns);
        self.frames += u64::from(o.scan.frames);
        self.chunk_delays.extend(o.scan.delays_ns);
    }

    fn report(self, raw: &Option<String>) -> Value {
        let delays: Vec<u64> = self.chunk_delays.iter().map(|&d| d.max(0) as u64).collect();
        let negative = self.chunk_delays.iter().filter(|&&d| d < 0).count();
        write_raw(
            raw,
            json!({"ttfb_ns": self.ttfb, "first_token_ns": self.first_token, "chunk_delay_ns": self.chunk_delays}),
        );
        json!({
            "completed": self.completed,
            "failed": self.failed,
            "error_kinds": self.error_kinds,
            "frames": self.frames,
            "stamped_chunks": delays.len(),
            "negative_delays": negative,
            "ttfb_us": summary_us(self.ttfb),
            "first_token_us": summary_us(self.first_token),
            "stream_total_us": summary_us(self.total),
            "chunk_delay_us": summary_us(delays),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// stream: open-loop stream starts, one stream per connection at a time (idle ones are reused)
// ---------------------------------------------------------------------------------------------

async fn run_stream(a: Arc<Args>) -> Value {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let idle: Arc<Mutex<Vec<H1>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..a.conns {
        if let Ok(c) = connect_h1(a.addr).await {
            idle.lock().unwrap().push(c);
        }
    }
    let rec = Arc::new(Mutex::new(StreamRec::default()));
    let start = Instant::now() + Duration::from_millis(20);
    let measured_total = ticker(start, a.rate, a.warmup, a.duration, tx);
    let mut tasks = Vec::new();
    while let Some(job) = rx.recv().await {
        let (a, idle, rec) = (a.clone(), idle.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            let reused = idle.lock().unwrap().pop();
            let mut conn = reused;
            let resp = send_h1(&mut conn, a.addr, request(&a)).await;
            let outcome = read_stream(resp, job.intended).await;
            if outcome.error.is_none() {
                if let Some(c) = conn {
                    idle.lock().unwrap().push(c);
                }
            }
            if job.measured {
                rec.lock().unwrap().add(outcome);
            }
        }));
    }
    let deadline = start + Duration::from_secs_f64(a.warmup + a.duration + a.grace);
    let timed_out = tokio::time::timeout_at(deadline.into(), futures_join(tasks))
        .await
        .is_err();
    let r = std::mem::take(&mut *rec.lock().unwrap());
    let incomplete = measured_total.saturating_sub(r.completed + r.failed);
    let mut v = r.report(&a.raw);
    v["mode"] = json!("stream");
    v["target_streams_per_s"] = json!(a.rate);
    v["duration_s"] = json!(a.duration);
    v["intended"] = json!(measured_total);
    v["incomplete"] = json!(incomplete);
    v["timed_out"] = json!(timed_out);
    v
}

// ---------------------------------------------------------------------------------------------
// hold: N concurrent streams
// ---------------------------------------------------------------------------------------------

async fn run_hold(a: Arc<Args>) -> Value {
    let n = a.count.max(1);
    let h2_conns: Vec<H2> = if a.h2 > 0 {
        let mut v = Vec::new();
        for _ in 0..a.h2 {
            match connect_h2(a.addr).await {
                Ok(c) => v.push(c),
                Err(e) => return json!({"mode": "hold", "error": e}),
            }
        }
        v
    } else {
        Vec::new()
    };
    let h2_conns = Arc::new(h2_conns);
    let rec = Arc::new(Mutex::new(StreamRec::default()));
    let open = Arc::new(AtomicU64::new(0));
    let max_open = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // Progress on stderr once a second: the harness samples the proxy's RSS meanwhile.
    let progress = {
        let (open, rec, started) = (open.clone(), rec.clone(), started.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (c, f) = {
                    let r = rec.lock().unwrap();
                    (r.completed, r.failed)
                };
                eprintln!(
                    "hold t={:.0}s started={} open={} completed={} failed={}",
                    start.elapsed().as_secs_f64(),
                    started.load(Ordering::Relaxed),
                    open.load(Ordering::Relaxed),
                    c,
                    f
                );
            }
        })
    };
    let mut tasks = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (a.rate / 100.0).max(1.0);
    let mut credit = 0.0;
    let mut i = 0;
    while i < n {
        tick.tick().await;
        credit += per_tick;
        while credit >= 1.0 && i < n {
            credit -= 1.0;
            let (a, rec, open, max_open, started, h2) = (
                a.clone(),
                rec.clone(),
                open.clone(),
                max_open.clone(),
                started.clone(),
                h2_conns.clone(),
            );
            let idx = i;
            tasks.push(tokio::spawn(async move {
                let intended = Instant::now();
                started.fetch_add(1, Ordering::Relaxed);
                let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
                max_open.fetch_max(now_open, Ordering::Relaxed);
                let resp = if h2.is_empty() {
                    let mut conn = None;
                    send_h1(&mut conn, a.addr, request(&a)).await
                } else {
                    let mut c = h2[idx % h2.len()].clone();
                    match c.ready().await {
                        Ok(()) => c
                            .send_request(request(&a))
                            .await
                            .map_err(|e| format!("h2 request: {e}")),
                        Err(e) => Err(format!("h2 ready: {e}")),
                    }
                };
                let outcome = read_stream(resp, intended).await;
                open.fetch_sub(1, Ordering::Relaxed);
                rec.lock().unwrap().add(outcome);
            }));
            i += 1;
        }
    }
    let ramp_s = start.elapsed().as_secs_f64();
    let timed_out = tokio::time::timeout(Duration::from_secs_f64(a.grace), futures_join(tasks))
        .await
        .is_err();
    progress.abort();
    let r = std::mem::take(&mut *rec.lock().unwrap());
    let mut v = r.report(&a.raw);
    v["mode"] = json!("hold");
    v["streams"] = json!(n);
    v["h2_connections"] = json!(a.h2);
    v["ramp_s"] = json!(ramp_s);
    v["elapsed_s"] = json!(start.elapsed().as_secs_f64());
    v["max_open"] = json!(max_open.load(Ordering::Relaxed));
    v["timed_out"] = json!(timed_out);
    v
}

fn main() {
    let a = Arc::new(parse_args());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(async move {
        match a.mode.as_str() {
            "rate" => run_rate(a).await,
            "sat" => run_sat(a).await,
            "stream" => run_stream(a).await,
            _ => run_hold(a).await,
        }
    });
    println!("{out}");
    // Do not wait for lingering connection tasks.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_across_reads_and_serializers() {
        let mut s = StampScan::default();
        let now = Instant::now();
        s.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"t17000000000",
            1_700_000_000_000_000_100,
            now,
        );
        s.feed(
            b"00000000 \"}}]}\n\ndata: {\"choices\": [{\"delta\": {\"content\": \"t1700000000000000050 \"}}]}\n\n",
            1_700_000_000_000_000_100,
            now,
        );
        s.feed(b"data: [DONE]\n\n", 0, now);
        assert_eq!(s.delays_ns, vec![100, 50]);
        assert!(s.done);
        assert_eq!(s.frames, 2);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(pct(&v, 50.0), Some(500));
        assert_eq!(pct(&v, 99.0), Some(990));
        assert_eq!(pct(&v, 99.9), Some(999));
        assert_eq!(pct(&[1, u64::MAX], 99.0), None);
    }
}
