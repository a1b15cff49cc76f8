"""Datasheet figures of the GPUs the kit is measured on or projected to, looked up by the exact name
torch reports (`torch.cuda.get_device_name()`).

    from trmkit.gpus import gpu_spec
    spec = gpu_spec("NVIDIA L40S")      # GPU(model="L40S", tflops=362.0, ...); an L40S never reads as an L4
    gpu_spec("NVIDIA A10G")             # None: not in the table, so "unknown" -- never a guess

A name matches only when it equals one of a model's names, ignoring case, repeated spaces and the
"NVIDIA " / "Tesla " prefix: substring tests are what made an L40S read as an L4 (and an H100 PCIe
as an SXM part). Figures are the vendor's datasheets (docs/performance.md lists them):
  tflops      dense (no sparsity) tensor-core TFLOP/s in the GPU's training dtype -- bf16 from
              Ampere on, fp16 on the T4 and P100 (no bf16 there) -- at the boost clock;
  mem_gbs     memory bandwidth, GB/s;
  clocks_mhz  (base, boost) SM clocks where the projection's range needs them: a power-capped card
              (T4 70 W, L4 72 W) sustains tensor work near its base clock, so the compute peak at
              base = tflops x base / boost is the range's slow end (T4: 65 x 585 / 1590 = 24 TFLOP/s);
  flash       whether FlashAttention-class fused attention kernels exist for it (sm80+);
  pcie_gbs    host link (PCIe) GB/s per direction, for data-parallel all-reduces without NVLink.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    model: str  # short, unique: "H100 SXM", "L4", "T4"
    names: tuple[str, ...]  # the exact device names torch reports, without the vendor prefix
    tflops: float  # dense tensor-core TFLOP/s at boost clock (bf16; fp16 where dtype says so)
    mem_gbs: float  # memory bandwidth, GB/s
    dtype: str = "bfloat16"  # the training dtype the peak is quoted for (trm.model.pick_dtype's choice)
    clocks_mhz: tuple[int, int] | None = None  # (base, boost) SM clock, where the range needs it
    flash: bool = True  # sm80+ (FlashAttention / cuDNN flash); the T4 (sm75) and P100 have none
    pcie_gbs: float = 32.0  # per direction: PCIe 4.0 x16 = 32 GB/s, 3.0 x16 = 16 GB/s

    def tflops_sustained(self) -> float:
        """The compute peak at the base clock (the slow end of a range); the boost peak without clocks."""
        if self.clocks_mhz is None:
            return self.tflops
        base, boost = self.clocks_mhz
        return self.tflops * base / boost


GPUS: tuple[GPU, ...] = (
    GPU("H200 SXM", ("H200",), 989.0, 4800.0, pcie_gbs=64.0),
    GPU("H200 NVL", ("H200 NVL",), 835.0, 4800.0, pcie_gbs=64.0),
    GPU("H100 SXM", ("H100 80GB HBM3", "H100 SXM5 80GB"), 989.0, 3350.0, pcie_gbs=64.0),
    GPU("H100 PCIe", ("H100 PCIe",), 756.0, 2000.0, pcie_gbs=64.0),
    GPU("H100 NVL", ("H100 NVL",), 835.0, 3900.0, pcie_gbs=64.0),
    GPU("A100 SXM 80GB", ("A100-SXM4-80GB",), 312.0, 2039.0),
    GPU("A100 SXM 40GB", ("A100-SXM4-40GB",), 312.0, 1555.0),
    GPU("A100 PCIe 80GB", ("A100 80GB PCIe",), 312.0, 1935.0),
    GPU("A100 PCIe 40GB", ("A100-PCIE-40GB",), 312.0, 1555.0),
    GPU("A10", ("A10",), 125.0, 600.0),
    GPU("L40S", ("L40S",), 362.0, 864.0),
    GPU("L40", ("L40",), 181.0, 864.0),
    GPU("L4", ("L4",), 121.0, 300.0, clocks_mhz=(795, 2040)),
    GPU("T4", ("T4",), 65.0, 320.0, dtype="float16", clocks_mhz=(585, 1590), flash=False, pcie_gbs=16.0),
    GPU("P100 PCIe 16GB", ("P100-PCIE-16GB",), 18.7, 732.0, dtype="float16", flash=False, pcie_gbs=16.0),
)
BY_MODEL = {g.model: g for g in GPUS}


def _normal(name: str) -> str:
    name = re.sub(r"\s+", " ", name.strip()).lower()
    return re.sub(r"^(nvidia|tesla) ", "", re.sub(r"^nvidia tesla ", "", name))


_BY_NAME = {_normal(n): g for g in GPUS for n in g.names}
assert len(_BY_NAME) == sum(len(g.names) for g in GPUS), "a device name belongs to two models"


def gpu_spec(device_name: str | None) -> GPU | None:
    """The model whose names include `device_name` exactly (module doc), else None: unknown."""
    return _BY_NAME.get(_normal(device_name)) if device_name else None


def peak_flops(device_name: str | None) -> float | None:
    """Dense tensor-core peak in FLOP/s for MFU, or None when the GPU is unknown (no MFU then)."""
    spec = gpu_spec(device_name)
    return spec.tflops * 1e12 if spec else None
