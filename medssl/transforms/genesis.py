"""Model Genesis corruptions of 3D volumes, batched on the device with per-sample random draws.

Model Genesis learns to restore a volume from a corrupted copy. Each image is min-max scaled to
[0, 1] (per sample), corrupted, and scaled back, so every corruption keeps the image's shape and
its [min, max] range:

- ``bezier_intensity``: a monotonic intensity mapping y = B(x) along a cubic Bezier curve with end
  points (0, 0), (1, 1) and two random control points; the curve's x and y are both monotone in
  t (Bernstein coefficients of the derivative), so the mapping is one-to-one and *invertible* (the
  paper's requirement: the network can learn the inverse); with a 50 % chance the y values are
  reversed, a decreasing (intensity-inverting) one-to-one map. Control points on the diagonal give
  the identity.
- ``local_pixel_shuffle``: voxels are permuted inside small cubic windows, which keeps the global
  anatomy and the intensity histogram; shuffling no window (``fraction=0``) is the identity.
  (A batched variant of the paper's random blocks: windows of a fixed grid, a random subset of
  them.)
- ``paint``: in-painting replaces random boxes (1/6-1/3 of each axis) with uniform noise;
  out-painting replaces everything *outside* random boxes (3/7-4/7 of each axis) with noise.
  No box (in-painting) or a box covering the volume (out-painting) is the identity.

The composition and its probabilities follow the authors' code: shuffle p=0.5, non-linear p=0.9,
painting p=0.9 of which in-painting 20 % and out-painting 80 %.

References:
    - [0] Zhou et al., Models Genesis, MedIA 2021, https://arxiv.org/abs/2004.07882
"""

from __future__ import annotations

import torch
from torch import nn


def bezier_curve(points: torch.Tensor, n: int = 1001) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubic Bezier curves through control points ``points`` (B, 4, 2) at ``n`` uniform t.

    Returns ``(xs, ys)``, each (B, n), ordered by t from the first control point to the last.
    """
    t = torch.linspace(0, 1, n, device=points.device, dtype=points.dtype)
    basis = torch.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3])  # (4, n)
    curve = torch.einsum("kn,bkc->bnc", basis, points)
    return curve[..., 0], curve[..., 1]


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Batched ``np.interp``: piecewise-linear ``f`` through (xp, fp) at ``x``; all (B, *).

    ``xp`` must be non-decreasing per row; values outside [xp_0, xp_-1] take the end values.
    Hand-rolled because torch has no ``interp``.
    """
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    f0, f1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    w = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return f0 + w * (f1 - f0)


def bezier_intensity(x: torch.Tensor, controls: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Map intensities of ``x`` (B, C, D, H, W) in [0, 1] through per-sample Bezier curves.

    Args:
        controls: (B, 2, 2) the two inner control points (x, y) in [0, 1].
        flip: (B,) bool; True reverses the curve's y values (a decreasing map).
    """
    b = x.shape[0]
    ends = x.new_tensor([[0.0, 0.0], [1.0, 1.0]]).expand(b, 2, 2)
    points = torch.cat([ends[:, :1], controls.to(x.dtype), ends[:, 1:]], dim=1)
    xs, ys = bezier_curve(points)
    ys = torch.where(flip[:, None], ys.flip(1), ys)
    return interp(x.reshape(b, -1), xs, ys).reshape(x.shape)


def local_pixel_shuffle(x: torch.Tensor, window: int, fraction: float) -> torch.Tensor:
    """Permute voxels inside a random ``fraction`` of the ``window``^3 cubes of ``x`` (B, C, *S).

    The grid starts at the origin; voxels beyond the last whole window on an axis are left as is.
    """
    b, c, *size = x.shape
    n = [s // window for s in size]
    if fraction <= 0 or window < 2 or min(n) == 0:
        return x.clone()
    core = x[:, :, : n[0] * window, : n[1] * window, : n[2] * window]
    blocks = core.reshape(b, c, n[0], window, n[1], window, n[2], window)
    blocks = blocks.permute(0, 1, 2, 4, 6, 3, 5, 7).reshape(b, c, n[0] * n[1] * n[2], window**3)
    chosen = torch.rand(b, 1, blocks.shape[2], 1, device=x.device) < fraction
    keys = torch.where(chosen, torch.rand(b, 1, blocks.shape[2], window**3, device=x.device),
                       torch.arange(window**3, device=x.device, dtype=torch.float32))
    shuffled = blocks.gather(3, keys.argsort(dim=3).expand_as(blocks))
    shuffled = shuffled.reshape(b, c, n[0], n[1], n[2], window, window, window)
    out = x.clone()
    out[:, :, : n[0] * window, : n[1] * window, : n[2] * window] = shuffled.permute(
        0, 1, 2, 5, 3, 6, 4, 7).reshape(core.shape)
    return out


def random_boxes(
    b: int, size: list[int], n_boxes: int, extent: tuple[float, float], first_always: bool,
    device: torch.device,
) -> torch.Tensor:
    """Union of up to ``n_boxes`` random boxes per sample as a (B, 1, D, H, W) bool mask.

    Box k exists with probability 0.95^k (0.95^(k+1) unless ``first_always``), as the authors'
    ``while cnt > 0 and random() < 0.95`` loop; each side is ``U(extent)`` x the axis length.
    """
    mask = torch.zeros(b, 1, *size, dtype=torch.bool, device=device)
    alive = torch.ones(b, dtype=torch.bool, device=device)
    coords = [torch.arange(s, device=device) for s in size]
    for k in range(n_boxes):
        if not (first_always and k == 0):
            alive = alive & (torch.rand(b, device=device) < 0.95)
        inside = alive.view(b, 1, 1, 1, 1)
        for axis, s in enumerate(size):
            side = (torch.empty(b, device=device).uniform_(*extent) * s).long().clamp(1, s)
            start = (torch.rand(b, device=device) * (s - side + 1)).long()
            pos = coords[axis][None]
            on_axis = (pos >= start[:, None]) & (pos < (start + side)[:, None])
            shape = [b, 1, 1, 1, 1]
            shape[2 + axis] = s
            inside = inside & on_axis.view(shape)
        mask |= inside
    return mask


def paint(x: torch.Tensor, mask: torch.Tensor, inside: bool) -> torch.Tensor:
    """Replace voxels of ``x`` in [0, 1] by uniform noise inside ``mask`` (in-painting) or
    outside it (out-painting, ``inside=False``)."""
    noise = torch.rand_like(x)
    return torch.where(mask if inside else ~mask, noise, x)


class GenesisCorruption(nn.Module):
    """Random Model Genesis corruption of a batch ``(B, C, D, H, W) -> (B, C, D, H, W)``.

    Args:
        shuffle_prob: probability of local pixel shuffling (0.5).
        shuffle_window: side of the shuffled cubes in voxels (the paper's blocks are up to 1/10
            of each axis).
        shuffle_fraction: fraction of the cubes shuffled when shuffling applies.
        nonlinear_prob: probability of the Bezier intensity mapping (0.9).
        paint_prob: probability of painting (0.9).
        inpaint_rate: share of in-painting among paintings (0.2; the rest is out-painting).
        max_boxes: boxes per painting (5).
    """

    def __init__(
        self,
        shuffle_prob: float = 0.5,
        shuffle_window: int = 4,
        shuffle_fraction: float = 0.5,
        nonlinear_prob: float = 0.9,
        paint_prob: float = 0.9,
        inpaint_rate: float = 0.2,
        max_boxes: int = 5,
    ) -> None:
        super().__init__()
        for key, p in (("shuffle_prob", shuffle_prob), ("shuffle_fraction", shuffle_fraction),
                       ("nonlinear_prob", nonlinear_prob), ("paint_prob", paint_prob),
                       ("inpaint_rate", inpaint_rate)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {p}")
        if shuffle_window < 1 or max_boxes < 0:
            raise ValueError(f"need shuffle_window >= 1 and max_boxes >= 0, got "
                             f"{shuffle_window}, {max_boxes}")
        self.shuffle_prob, self.shuffle_window = shuffle_prob, shuffle_window
        self.shuffle_fraction, self.nonlinear_prob = shuffle_fraction, nonlinear_prob
        self.paint_prob, self.inpaint_rate, self.max_boxes = paint_prob, inpaint_rate, max_boxes

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, size, dev = x.shape[0], list(x.shape[2:]), x.device
        dims = tuple(range(1, x.ndim))
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        scale = (hi - lo).clamp_min(1e-8)
        y = ((x - lo) / scale).float()

        def per_sample(p: float) -> torch.Tensor:
            return (torch.rand(b, device=dev) < p).view(b, 1, 1, 1, 1)

        y = torch.where(per_sample(self.shuffle_prob),
                        local_pixel_shuffle(y, self.shuffle_window, self.shuffle_fraction), y)
        controls = torch.rand(b, 2, 2, device=dev)
        flip = torch.rand(b, device=dev) < 0.5
        y = torch.where(per_sample(self.nonlinear_prob), bezier_intensity(y, controls, flip), y)
        inner = random_boxes(b, size, self.max_boxes, (1 / 6, 1 / 3), False, dev)
        outer = random_boxes(b, size, self.max_boxes, (3 / 7, 4 / 7), True, dev)
        painted = torch.where(per_sample(self.inpaint_rate), paint(y, inner, inside=True),
                              paint(y, outer, inside=False))
        y = torch.where(per_sample(self.paint_prob), painted, y)
        return (lo + y.clamp(0, 1).to(x.dtype) * scale).to(x.dtype)
