"""bench.py's measurements at tiny sizes: each runs, and reports what it measured."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import train_config

import train_vae
from tools import bench, homework
from worldvae import compute, constants


def test_collection_is_measured_against_the_homework_collector_with_the_same_picture() -> None:
    result = bench.measure_collection(train_config(n_frames=40, img_size=64))
    assert result["ours_frames_per_s"] > 0 and result["reference_frames_per_s"] > 0
    assert result["mad_vs_full_render"] < 3, "our frames are the env's picture"
    assert result["mad_vs_reference"] < 10


def test_reference_collection_obeys_the_same_filters() -> None:
    data = homework.reference_collect(train_config(n_frames=50, angle_range=(-0.05, 0.05), reset_after=7))
    assert len(data["frames"]) == 50 and abs(data["states"][:, 2]).max() <= 0.05 and data["step"].max() <= 6


@pytest.mark.slow
def test_the_homework_run_reports_time_and_heldout_mse_along_its_way(tmp_path) -> None:
    np.save(tmp_path / "heldout.npy", homework.reference_collect(train_config(n_frames=20, seed=99))["frames"])
    result = homework.main(["--n_frames", "110", "--iterations", "3", "--eval_every", "1", "--warmup_steps", "1",
                            "--heldout", str(tmp_path / "heldout.npy"), "--report", str(tmp_path / "homework.json")])
    points = result["points"]
    assert [p["step"] for p in points] == [1, 2, 3] and all(0 < p["mse"] < 1 for p in points)
    assert result["collect_seconds"] < points[0]["seconds"] < points[1]["seconds"] < points[2]["seconds"], \
        "wall seconds of the run, its collection included"
    assert result["images_per_s"] > 0 and json.loads((tmp_path / "homework.json").read_text()) == result


@pytest.mark.slow
def test_each_side_trains_in_its_own_process_at_its_own_threads_and_the_report_says_so(request, tmp_path) -> None:
    bench_cfg = constants.defaults(bench, train_frames=120, homework_speed_steps=2, reader_rounds=1, seed=0)
    threads = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    torch.set_num_threads(3)  # this process's own: neither side may inherit it
    training = bench.measure_training(bench_cfg, tmp_path)
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    assert training["reference_threads"] == int(fresh.stdout) != 3, "the homework runs at torch's own default"
    assert training["ours_threads"] == train_vae.THREADS and torch.get_num_threads() == 3
    assert training["ours_images_per_s"] > 0 and training["speedup"] == pytest.approx(
        training["ours_images_per_s"] / training["reference_images_per_s"])
    collection = {"ours_frames_per_s": 2.0, "reference_frames_per_s": 1.0, "speedup": 2.0,
                  "mad_vs_full_render": 0.3, "mad_vs_reference": 0.9}
    quality = {"ours": [{"seconds": 10.0, "mse": 0.001}], "homework": [{"seconds": 30.0, "mse": 0.002}]}
    memory = [{"frames": n, "img_size": 32, "peak_mib": mib, "frames_mib": 0.1, "store_mib": 0.2, "streamed": n > 10}
              for n, mib in ((10, 500.0), (50, 550.0))]
    results = {"collection": collection, "training": training, "quality": quality, "memory": memory,
               "scaling": [{"processes": 2, "images_per_s": 900.4, "heldout_mse": 0.00031, "seconds": 50.0}]}
    rows = bench.report(results)
    assert rows[0][1] == "2 vs 1 = 2.0x" and "0.001000" in rows[-3][1] and "0.002000" in rows[-3][2]
    assert f"THREADS={train_vae.THREADS}" in rows[3][2] and f"({training['reference_threads']} threads" in rows[3][2]
    assert training["streamed_images_per_s"] > 0 and "IN_RAM_MB=0 vs the default" in rows[4][2]
    assert rows[-2][1] == "500 MiB" and "held in RAM" in rows[-2][2] and "over" not in rows[-2][2]
    assert rows[-1][1] == "550 MiB" and "streamed" in rows[-1][2] and "+10% over 10 frames" in rows[-1][2]
    assert bench.scaling_rows(results) == [("2", "900", "0.000310")]
    bench.plot_quality(quality["ours"], quality["homework"], tmp_path / "q.png")
    assert (tmp_path / "q.png").stat().st_size > 1000
    machine = compute.machine()
    assert set(machine) >= {"cpu", "amx", "avx512_bf16", "device"} and json.dumps(machine)


@pytest.mark.slow
def test_the_memory_probe_reports_peak_rss_and_the_store_size(tmp_path) -> None:
    result = bench.memory_probe(500, 32, tmp_path)
    assert 100 < result["peak_mib"] < 4000 and 0 < result["store_mib"] < result["frames_mib"]
    assert result["streamed"] is True, "the probe measures streaming (IN_RAM_MB=0), as a set larger than RAM trains"
