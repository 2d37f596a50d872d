"""The bench's profile table: kernel time by kind, idle gaps, and what the host was doing during the long ones."""

from __future__ import annotations

from dataclasses import dataclass

from torch.autograd import DeviceType

from bench.run import _profile_table


@dataclass
class _Range:
    start: int
    end: int

    def elapsed_us(self) -> int:
        return self.end - self.start


@dataclass
class _Event:
    name: str
    device_type: DeviceType
    time_range: _Range


def test_a_long_gap_names_the_host_ops_that_overlap_it():
    cuda, cpu = DeviceType.CUDA, DeviceType.CPU
    events = [
        _Event("nvjet_sm90_gemm", cuda, _Range(0, 1000)),
        _Event("_rms_norm_forward_kernel", cuda, _Range(1002, 1100)),  # a 2 us launch gap: not explained
        _Event("Memcpy HtoD (Pinned -> Device)", cuda, _Range(1100, 1110)),
        _Event("vectorized_elementwise_kernel", cuda, _Range(4110, 4200)),  # 3 ms idle before it
        _Event("ProfilerStep#6", cpu, _Range(0, 5000)),  # the profiler's own range never counts
        _Event("enumerate(DataLoader)#_SingleProcessDataLoaderIter", cpu, _Range(1200, 4000)),
        _Event("aten::pin_memory", cpu, _Range(3900, 3950)),
        _Event("aten::mm", cpu, _Range(0, 900)),  # before the gap
    ]

    class Prof:
        def events(self):
            return events

    rows = _profile_table(Prof())
    summary = rows[0]
    assert summary["kernel_ms"] == round((1000 + 98 + 10 + 90) / 1e3, 1)
    assert summary["gpu_busy_share"] == round(1198 / 4200, 3)
    gaps = [r for r in rows if "gap_ms" in r]
    assert gaps[0]["gap_ms"] == 3.0 and gaps[0]["after"].startswith("vectorized_elementwise")
    assert gaps[0]["host"][0].startswith("enumerate(DataLoader)") and "(2.8/2.8 ms)" in gaps[0]["host"][0]
    assert len(gaps[0]["host"]) == 2  # the pin and the loader; not the profiler step, not the earlier mm
    assert "host" not in gaps[1]  # short gaps are launch latency, not host work
