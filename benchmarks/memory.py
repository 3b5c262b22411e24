"""Peak memory of `napari-smlm localize` as the movie grows (issue 3 target: well
under 2 GB on CPU for a 20,000-frame 128x128 movie).

    python benchmarks/memory.py [--frames 1000,5000,20000] [--size 128]

Simulates each movie to a temporary TIFF (uint16, written chunk by chunk), then
runs the real command in a fresh process and reads its peak RSS
(resource.getrusage of the child). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", default="1000,5000,20000")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    print(f"# localize peak RSS, {args.size}x{args.size} frames, {time.strftime('%Y-%m-%d')}\n")
    print("| frames | movie on disk MB | wall s | frames/s | peak RSS MB |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.frames.split(",")):
            d = Path(tmp) / f"m{n}"
            subprocess.run([sys.executable, "-m", "napari_smlm.cli", "simulate", "--frames", str(n), "--out", str(d),
                            "--set", f"simulation.frame_size=[{args.size},{args.size}]",
                            "--set", "simulation.emitters.density_per_um2=[0.5,0.5]"], check=True, capture_output=True)
            argv = ["localize", str(d / "movie.tif"), "--model", args.model, "--out", str(d / "locs.csv"),
                    "--baseline", "100", "--e-per-adu", "45", "--em-gain", "100", "--qe", "0.9"]
            # The localize process reports its own peak RSS when done: VmHWM of its own
            # address space (ru_maxrss would include the forking parent's, Linux keeps it across exec).
            code = ("import sys; from napari_smlm.cli import main; rc = main(sys.argv[1:]); "
                    "print('PEAK_RSS_KIB', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)")
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True)
            wall = time.time() - t0
            peak = int(proc.stdout.split("PEAK_RSS_KIB")[1].split()[0])
            size_mb = (d / "movie.tif").stat().st_size / 2**20
            print(f"| {n} | {size_mb:.0f} | {wall:.0f} | {n / wall:.0f} | {peak / 1024:.0f} |", flush=True)


if __name__ == "__main__":
    main()
