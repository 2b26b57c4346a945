"""The reference stack's cost over bare ffmpeg, side by side in one run.

* ``render_overhead_ratio``: the same template (title over a colour, silent AAC track, H.264,
  same preset/crf/GOP, faststart) rendered through the stack (API submit -> completed, as a
  client sees it) and by one bare ffmpeg command in the same worker container. Median of N
  interleaved pairs. Goal <= 1.15.
* ``segment_memory_ratio``: peak memory of the worker container (cgroup
  ``memory.max_usage_in_bytes``, reset before each job) rendering 20 minutes / 1 minute of the
  same template. Segments (R §一.2, 5 minutes each) keep it flat. Goal <= 1.2.
* ``remux_throughput_ratio``: MB/s of the render API's download (remux pipe, PeerTube
  case) / MB/s of the bare ``ffmpeg -i pipe:0 -c copy -movflags frag_keyframe+empty_moov -f mp4
  pipe:1`` over the same file in the API container. Median of N. Goal >= 0.9.

    python benchmarks/render_overhead.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderchaos.faults.container import _memory_cgroup, exec_in  # noqa: E402
from renderchaos.platforms.base import Account, PlatformEndpoint  # noqa: E402
from renderchaos.platforms.refstack import RefstackPlatform  # noqa: E402
from renderchaos.platforms.refstack.client import Admin, RenderApi, render_body  # noqa: E402
from renderchaos.provisioning.stack.stack import Stack  # noqa: E402
from renderchaos.provisioning.stack.standalone import standalone_run  # noqa: E402
from renderchaos.wait import Poll, wait_for  # noqa: E402

W, H, FPS, PRESET = 1280, 720, 25, "veryfast"


def stack_render(api: RenderApi, admin: Admin, duration: float, width: int = W, height: int = H) -> tuple[float, dict]:
    body = render_body(title="benchmark", duration=duration, width=width, height=height)
    body["data"]["preset"] = PRESET
    body["data"]["colours"] = ["#203040", "white"]
    t0 = time.monotonic()
    resp = api.submit(body)
    if resp.status_code != 202:
        raise SystemExit(f"submit refused: {resp.status_code} {resp.text[:300]}")
    job_id = resp.json()["id"]
    job = wait_for(lambda: (j := admin.job(job_id)) and j["status"] in ("completed", "failed", "timeout") and j,
                   what=f"benchmark render {job_id}", timeout=duration * 10 + 120, poll=Poll(0.05))
    elapsed = time.monotonic() - t0
    if job["status"] != "completed":
        raise SystemExit(f"render {job['status']}: {job.get('error_code')} {job.get('error_message')}")
    return elapsed, job


def bare_render(stack: Stack, duration: float) -> float:
    size = max(12, H // 12)
    chain = (f"[0:v]null,drawtext=text=benchmark:fontcolor=white:fontsize={size}"
             f":x=(w-text_w)/2:y=(h-text_h)/2,format=yuv420p[v]")
    cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"color=c=#203040:s={W}x{H}:r={FPS}",
           "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo",
           "-filter_complex", chain, "-map", "[v]", "-map", "1:a:0", "-t", f"{duration:.3f}",
           "-c:v", "libx264", "-preset", PRESET, "-crf", "23", "-g", str(FPS * 2),
           "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4", "/tmp/bare.mp4"]
    t0 = time.monotonic()
    res = exec_in(stack.workers[0], cmd)
    elapsed = time.monotonic() - t0
    if res.exit_code != 0:
        raise SystemExit(f"bare ffmpeg failed: {res.output[-500:]}")
    exec_in(stack.workers[0], ["rm", "-f", "/tmp/bare.mp4"])
    return elapsed


def peak_memory(stack: Stack, api: RenderApi, admin: Admin, duration: float) -> tuple[int, dict]:
    cg = _memory_cgroup(stack.workers[0])
    if cg is None or not (cg / "memory.max_usage_in_bytes").exists():
        raise SystemExit("cannot read the worker's memory cgroup (cgroup v1 memory.max_usage_in_bytes)")
    (cg / "memory.max_usage_in_bytes").write_text("0")
    _, job = stack_render(api, admin, duration, 320, 240)
    return int((cg / "memory.max_usage_in_bytes").read_text()), job


def remux_pair(stack: Stack, api: RenderApi, job: dict) -> tuple[float, float]:
    """(MB/s through GET /download, MB/s of the bare pipe in the API container).

    The download is read by curl when it is installed: at ~150 MB/s a Python client's own
    reading cost is a visible share of the time, and the figure is about the server."""
    path, _headers = RefstackPlatform(PlatformEndpoint(stack.api_url, admin_token=stack.admin_token)).download_request(
        Account("bench", api.http.headers["Authorization"].removeprefix("Bearer ")), job["id"])
    url = f"{stack.api_url}{path}"
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                              "-H", f"Authorization: {api.http.headers['Authorization']}", url],
                             capture_output=True, text=True, timeout=300).stdout.split()
        if out[0] != "200":
            raise SystemExit(f"download answered {out[0]}")
        api_mbps = int(out[1]) / 1e6 / float(out[2])
    else:
        t0 = time.monotonic()
        n = 0
        with api.http.stream("GET", url, timeout=300) as resp:
            if resp.status_code != 200:
                raise SystemExit(f"download answered {resp.status_code}")
            for chunk in resp.iter_bytes(1 << 20):
                n += len(chunk)
        api_mbps = n / 1e6 / (time.monotonic() - t0)
    # timed inside the container, so podman exec's own start-up is not charged to ffmpeg
    path = job["output_path"]
    cmd = ["sh", "-c", "t0=$(date +%s%N); n=$(ffmpeg -v error -i pipe:0 -c copy -movflags frag_keyframe+empty_moov "
                       f"-f mp4 pipe:1 < '{path}' | wc -c); t1=$(date +%s%N); echo $n $((t1 - t0))"]
    res = exec_in(stack.api, cmd)
    bare_bytes, bare_ns = (int(x) for x in res.output.strip().splitlines()[-1].split())
    return api_mbps, bare_bytes / 1e6 / (bare_ns / 1e9)


def busy_output(stack: Stack, api: RenderApi, admin: Admin, seconds: float = 60.0) -> dict:
    """A render over a high-motion background clip: an output big enough (tens of MB) that the
    remux comparison measures streaming, not process start-up."""
    clip = stack.assets_dir / "busy.mp4"
    if not clip.exists():
        res = exec_in(stack.workers[0], [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-movflags", "+faststart",
            "/data/assets/busy.mp4"])
        if res.exit_code != 0:
            raise SystemExit(f"could not make the background clip: {res.output[-300:]}")
    body = render_body(title="remux", duration=seconds, width=1280, height=720, input_asset="busy.mp4")
    body["data"]["preset"] = "ultrafast"
    resp = api.submit(body)
    if resp.status_code != 202:
        raise SystemExit(f"submit refused: {resp.status_code} {resp.text[:300]}")
    job_id = resp.json()["id"]
    job = wait_for(lambda: (j := admin.job(job_id)) and j["status"] in ("completed", "failed", "timeout") and j,
                   what="the remux source render", timeout=600, poll=Poll(0.2))
    if job["status"] != "completed":
        raise SystemExit(f"remux source render {job['status']}: {job.get('error_message')}")
    return job


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of 720p video per overhead pair")
    args = parser.parse_args()
    with standalone_run() as run:
        stack = run.stack("bench", workers=1, with_live=False, storage_mib=2048)
        admin = Admin(stack.api_url, stack.admin_token, timeout=30)
        user = admin.create_user(credits=10**6)
        api = RenderApi(stack.api_url, user.api_key, timeout=30)
        stack_render(api, admin, 2.0)  # warm-up: encoder detection, imports, caches
        bare_render(stack, 2.0)
        ratios, jobs = [], []
        for i in range(args.pairs):
            bare = bare_render(stack, args.duration)
            through, job = stack_render(api, admin, args.duration)
            jobs.append(job)
            ratios.append(through / bare)
            print(f"pair {i + 1}: stack {through:.2f}s, bare {bare:.2f}s, ratio {through / bare:.3f}", flush=True)
        short_peak, _ = peak_memory(stack, api, admin, 60.0)
        long_peak, long_job = peak_memory(stack, api, admin, 1200.0)
        print(f"peak worker memory: 1 min {short_peak / 2**20:.1f} MiB, 20 min {long_peak / 2**20:.1f} MiB "
              f"({long_job.get('result')})", flush=True)
        busy = busy_output(stack, api, admin)
        print(f"remux source: {busy['output_bytes'] / 1e6:.1f} MB", flush=True)
        remux = [remux_pair(stack, api, busy) for _ in range(max(3, args.pairs))]
        for a, b in remux:
            print(f"remux: api {a:.1f} MB/s, bare pipe {b:.1f} MB/s", flush=True)
        remux_ratio = statistics.median(a / b for a, b in remux)
    print(f"render_overhead_ratio={statistics.median(ratios):.3f}")
    print(f"segment_memory_ratio={long_peak / short_peak:.3f}")
    print(f"remux_throughput_ratio={remux_ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
