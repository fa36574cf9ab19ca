"""The GPU table's bookkeeping (squeezetime.bench.gpu), on made-up timings: ratios, the issue's targets and the
plot. The timings themselves come from `make gpu-check` on a GPU."""
import json

from squeezetime.bench import gpu


def raw(ours_s):
    """Seconds per batch: compile and eager at fixed speeds, ours at the given per-batch seconds."""
    out = {}
    for batch, ours in ours_s.items():
        out[batch] = {"eager fp16": {"network": batch / 4000, "end_to_end": batch / 3000},
                      "compile fp16": {"network": batch / 9000, "end_to_end": batch / 5000},
                      "ours fp16": {"network": ours, "end_to_end": ours * 1.1}}
    return out


def test_records_carry_clips_per_second_and_ratios():
    records = gpu.summarize(raw({8: 8 / 18000}))
    ours = next(r for r in records if r["row"] == "ours fp16" and r["mode"] == "network")
    assert round(ours["clips_per_s"]) == 18000
    assert abs(ours["speedup_vs_compile"] - 2.0) < 1e-9 and abs(ours["speedup_vs_eager"] - 4.5) < 1e-9


def test_targets_are_judged_per_batch_and_missing_ones_stay_unknown():
    met = gpu.check_targets(gpu.summarize(raw({1: 0.0001, 8: 8 / 10000, 64: 64 / 10000, 256: 256 / 16000})))
    assert all(met.values()), met
    missed = gpu.check_targets(gpu.summarize(raw({1: 0.0030, 256: 256 / 12000})))
    assert missed["ours <= 2 ms at batch 1"] is False and missed["ours >= 15,000 clips/s at batch 256"] is False
    assert missed["ours >= 1.0x compile at batch 8"] is None  # not measured
    assert missed["ours end to end >= 80% of network at 256"] is True  # 1.1x slower end to end: 91 %


def test_table_json_and_plot(tmp_path, capsys):
    records = gpu.summarize(raw({1: 0.0015, 256: 256 / 16000}))
    gpu.print_table(records)
    assert "clips/s, end to end" in capsys.readouterr().out
    gpu.plot(records, str(tmp_path / "gpu_bench.png"), "test")
    assert (tmp_path / "gpu_bench.png").stat().st_size > 10_000
    json.dumps(records)  # what gpu_bench.json holds
