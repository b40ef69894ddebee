"""Rain rate, reflectivity and the [0, 1] pixel the models see, both ways.

The MS-RNN code stores German radar as pixels ``P = (dBZ + 10) / 70`` clipped to [0, 1], with reflectivity
from the rain rate by the Z-R relation ``Z = 256 R^1.42`` (the one DWD uses for RADOLAN). Scores in mm/h
need the way back, so both directions live here and are tested as a pair.

Conventions of the inverse:

* ``P = 0`` is "no echo above -10 dBZ" (it is where zero rain lands after clipping) and maps to exactly
  0 mm/h, not to the 0.0036 mm/h that -10 dBZ would give, so a dry pixel stays dry in physical units.
* ``P = 1`` is 60 dBZ, about 339 mm/h: heavier rain was clipped there on the way in and cannot come back.
* A NaN pixel stays NaN, so a forecast that diverged scores NaN in mm/h, not as a dry forecast would.
"""

from __future__ import annotations

import numpy as np
import torch

ZR_A = 256.0
ZR_B = 1.42
"""``Z = A R^B`` with Z in mm^6/m^3 and R in mm/h (DWD's RADOLAN relation, used by the MS-RNN code)."""
DBZ_OFFSET = 10.0
DBZ_SPAN = 70.0
"""``P = (dBZ + 10) / 70``: -10 dBZ is pixel 0, 60 dBZ is pixel 1."""

UNIT = "mm/h"
DESCRIPTION = (
    "pixel P in [0, 1] -> dBZ = 70 P - 10 -> rain rate R = (10^(dBZ/10) / 256)^(1/1.42) mm/h (Z = 256 R^1.42); "
    "P = 0 (no echo above -10 dBZ) is 0 mm/h"
)


def rain_to_dbz(rain: np.ndarray) -> np.ndarray:
    """Reflectivity in dBZ of rain rates in mm/h; zero rain is -inf dBZ (it clips to pixel 0).

    ``10 log10(A) + 10 B log10(R)``: one logarithm, not a power and a logarithm, over 810,000 pixels a file.
    """
    rain = np.asarray(rain, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(ZR_A) + 10.0 * ZR_B * np.log10(np.maximum(rain, 0.0))


def dbz_to_rain(dbz: np.ndarray) -> np.ndarray:
    """Rain rate in mm/h of reflectivity in dBZ (the Z-R relation solved for R)."""
    dbz = np.asarray(dbz, dtype=np.float64)
    return np.power(np.power(10.0, dbz / 10.0) / ZR_A, 1.0 / ZR_B)


def rain_to_unit(rain: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] (float64) of rain rates in mm/h: the forward scaling of the paper protocol.

    Only wet pixels are transformed: a radar frame is mostly dry, and dry is pixel 0 whatever the formula.
    """
    rain = np.asarray(rain, dtype=np.float64)
    pixels = np.zeros(rain.shape, dtype=np.float64)
    wet = rain > 0.0
    pixels[wet] = np.clip((rain_to_dbz(rain[wet]) + DBZ_OFFSET) / DBZ_SPAN, 0.0, 1.0)
    return pixels


def unit_to_rain(pixels: np.ndarray) -> np.ndarray:
    """Rain rates in mm/h (float64) of pixels in [0, 1]; pixel 0 is 0 mm/h, NaN stays NaN (see the module notes)."""
    pixels = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)
    rain = dbz_to_rain(pixels * DBZ_SPAN - DBZ_OFFSET)
    return np.where(pixels == 0.0, 0.0, rain)


def unit_to_rain_torch(pixels: torch.Tensor) -> torch.Tensor:
    """:func:`unit_to_rain` on tensors, in float64 on the tensor's device (evaluation runs on batches)."""
    p = pixels.to(torch.float64).clamp(0.0, 1.0)
    dbz = p * DBZ_SPAN - DBZ_OFFSET
    rain = torch.pow(torch.pow(10.0, dbz / 10.0) / ZR_A, 1.0 / ZR_B)
    return torch.where(p == 0.0, torch.zeros_like(rain), rain)


def inverse(pixels: torch.Tensor, params: object = None) -> torch.Tensor:
    """The zoo's inverse-scaling hook: a fixed formula, so the store records no parameters for it."""
    return unit_to_rain_torch(pixels)
