"""SSIMULACRA2 in torch: a differentiable form of the `ssimulacra2` package, for losses.

The reference is the PyPI package `ssimulacra2` (a numpy/scipy port of libjxl's
tools/ssimulacra2.cc), the one bench reports (bbcodec.metrics.ssimulacra2). This module
follows it step by step, so that its scores are the package's to rounding
(tests/test_ssimulacra2_torch.py checks real Kodak/JPEG pairs):

* sRGB (gamma-encoded, 0..1) -> linear RGB -> XYB: the opsin absorbance matrix and bias,
  the cube root less the bias' cube root, then MakePositiveXYB (X*14+0.42, Y+0.01,
  B-Y+0.55);
* up to 6 scales, each a 2x2 box downsampling in *linear RGB* (a partial block at an odd
  edge averages the pixels it has: done here by replicating the last row/column), then XYB
  again; the pyramid stops before a side under 8 pixels;
* per scale and XYB channel: the SSIM error map 1 - (1-(mu1-mu2)^2)(2 sigma12+C2) /
  (sigma1^2+sigma2^2+C2), clamped at 0 (no luminance term's denominator, as libjxl), and
  the edge maps (1+|img2-mu2|)/(1+|img1-mu1|) - 1 split into artefact (>0, ringing and
  blocking) and detail lost (<0, blur); each map pooled by its mean (1-norm) and
  mean(x^4)^(1/4) (4-norm);
* the fixed weights over the features, taken in the package's order (channel, scale,
  norm, [ssim, artefact, detail]) and *sequentially*: with fewer than 6 scales (images
  under 256 pixels a side) the first 18*scales weights are used, as the package and
  libjxl do; then the final mapping: x*0.956.., a cubic, 100 - 10*x^0.6276.

The blur. libjxl blurs with a recursive (IIR) Gaussian of sigma 1.5; the package does not:
it uses scipy's FIR ``gaussian_filter`` (sigma 1.5, truncate 3.33: an 11-tap kernel,
radius 5) with zero padding on one axis and scipy's "reflect" (edge sample repeated,
``d c b a | a b c d``) on the other. Because the package builds its XYB planes from
``linear.T`` the planes are transposed, so the zero-padded axis is the image's *width*
and the mirrored one its height. This module does the same (an exact FIR convolution, no
approximation), so it matches the package; how far the package (and so this module)
is from libjxl's IIR blur was not measured here.

Differentiability. Everything is torch ops; the few non-smooth points are guarded so that
gradients stay finite: the cube root takes its argument clamped at 1e-30 (it is at least
the bias, 0.0038, for inputs in 0..1), the 1/4 and 0.6276 powers are exactly 0 with a 0
gradient at 0 (a double ``torch.where``), and the sRGB power
branch is evaluated on a clamped input (so a pixel below 0 in a decoder's output does not
put a NaN into the unselected branch of ``torch.where``). Inputs are not clamped to 0..1.

``ssimulacra2`` returns the score (higher is better). ``ssimulacra2_loss`` returns
100 - score made smooth for training: the final power gets ``eps`` (finite gradient at a
perfect reconstruction, where x^0.6276 has an infinite slope) and the cubic, whose slope
falls to almost 0 near x = 111 (scores about -64, where the score would stop teaching),
is continued by its tangent line beyond x = 30 (a score of about -20). Above that score,
and away from a perfect match, the loss is 100 - score to within 0.05.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ssimulacra2", "ssimulacra2_loss", "ssimulacra2_distance"]

K_C2 = 0.0009
NUM_SCALES = 6
MIN_SIDE = 8
SIGMA = 1.5
RADIUS = 5  # scipy: int(truncate * sigma + 0.5) with truncate 3.33

_M02, _M00 = 0.078, 0.30
_M12, _M10 = 0.078, 0.23
_M20, _M21 = 0.24342268924547819, 0.20476744424496821
OPSIN_MATRIX = (
    (_M00, 1.0 - _M02 - _M00, _M02),
    (_M10, 1.0 - _M12 - _M10, _M12),
    (_M20, _M21, 1.0 - _M20 - _M21),
)
OPSIN_BIAS = 0.0037930732552754493

# The 108 weights of libjxl's ssimulacra2 (and of the package), order: channel (X, Y, B),
# scale, norm (1, 4), [ssim, artefact, detail lost].
WEIGHTS = (
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
    0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271,
    0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0, 1.8422455520539298,
    11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072,
    0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967,
    0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398,
    0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296,
    1.027889937768264, 225.20515300849274, 0.0, 0.0, 19.213238186143016,
    0.0011401524586618361, 0.001237755635509985, 176.39317598450694, 0.0, 0.0,
    24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0, 0.0,
    34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0,
    0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336,
    0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
    23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353,
    0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0,
    0.0005130064588990679, 0.0, 0.00010854057858411537,
)
SCALE = 0.9562382616834844
POLY = (2.326765642916932, -0.020884521182843837, 6.248496625763138e-05)
EXPONENT = 0.6276336467831387
TINY = 1e-30  # the cube root's argument is clamped here (it is >= the bias 0.0038 in 0..1)
KNEE = 30.0  # the loss continues the cubic linearly beyond this distance (score ~ -20)


def _kernel(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / SIGMA) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The package's blur of (B, C, H, W) planes: the 11-tap Gaussian, mirrored with the
    edge sample repeated along H (scipy "reflect"), zero-padded along W."""
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    r = RADIUS
    y = torch.cat([y[:, :, :r].flip(2), y, y[:, :, h - r:].flip(2)], dim=2)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    y = F.conv2d(y, k.view(1, 1, 1, -1), padding=(0, r))
    return y.reshape(b, c, h, w)


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    hi = ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(x <= 0.04045, x / 12.92, hi)


def _xyb(lin: torch.Tensor) -> torch.Tensor:
    """Linear RGB (B, 3, H, W) -> positive XYB (MakePositiveXYB), as the package."""
    m = torch.tensor(OPSIN_MATRIX, dtype=lin.dtype, device=lin.device)
    mixed = torch.einsum("ij,bjhw->bihw", m, lin) + OPSIN_BIAS
    mixed = mixed.clamp_min(TINY) ** (1.0 / 3.0) - OPSIN_BIAS ** (1.0 / 3.0)
    x = 0.5 * (mixed[:, 0] - mixed[:, 1])
    y = 0.5 * (mixed[:, 0] + mixed[:, 1])
    bb = mixed[:, 2]
    return torch.stack([x * 14.0 + 0.42, y + 0.01, (bb - y) + 0.55], dim=1)


def _downsample(lin: torch.Tensor) -> torch.Tensor:
    """2x2 box average; a partial block at an odd edge averages the pixels it has."""
    h, w = lin.shape[-2:]
    if h % 2 or w % 2:
        lin = F.pad(lin, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(lin, 2)


def _root(x: torch.Tensor, e: float) -> torch.Tensor:
    """x^e for x >= 0 with a finite gradient: exactly 0 (value and gradient) at x == 0."""
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)) ** e, torch.zeros_like(x))


def _norms(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1-norm and 4-norm pooling of (B, 3, H, W) maps -> two (B, 3)."""
    l1 = d.mean(dim=(2, 3))
    l4 = _root(((d * d) ** 2).mean(dim=(2, 3)), 0.25)
    return l1, l4


def _features(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """The (B, 3, scales, 2, 3) features: channel, scale, norm, [ssim, artefact, detail]."""
    if reference.shape != distorted.shape or reference.dim() != 4 or reference.shape[1] != 3:
        raise ValueError(
            f"expected two (B, 3, H, W) tensors of one shape, got {tuple(reference.shape)} "
            f"and {tuple(distorted.shape)}"
        )
    if min(reference.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"SSIMULACRA2 needs images of at least {MIN_SIDE}x{MIN_SIDE}")
    k = _kernel(reference.dtype, reference.device)
    lin1, lin2 = _srgb_to_linear(reference), _srgb_to_linear(distorted)
    scales = []
    for scale in range(NUM_SCALES):
        if scale:
            lin1, lin2 = _downsample(lin1), _downsample(lin2)
            if min(lin1.shape[-2:]) < MIN_SIDE:
                break
        img1, img2 = _xyb(lin1), _xyb(lin2)
        mu1, mu2 = _blur(img1, k), _blur(img2, k)
        s11, s22, s12 = _blur(img1 * img1, k), _blur(img2 * img2, k), _blur(img1 * img2, k)
        num_m = 1.0 - (mu1 - mu2) ** 2
        num_s = 2.0 * (s12 - mu1 * mu2) + K_C2
        denom_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + K_C2
        ssim = torch.relu(1.0 - num_m * num_s / denom_s)
        ratio = (1.0 + (img2 - mu2).abs()) / (1.0 + (img1 - mu1).abs()) - 1.0
        artefact, detail = torch.relu(ratio), torch.relu(-ratio)
        pooled = [_norms(ssim), _norms(artefact), _norms(detail)]  # each (l1, l4)
        # (B, 3, 2 norms, 3 kinds)
        scales.append(torch.stack([torch.stack(p, dim=-1) for p in pooled], dim=-1))
    return torch.stack(scales, dim=2)


def ssimulacra2_distance(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """The weighted feature sum before the final mapping (0 for identical images, larger
    is worse), per image: (B,). Linear in the pooled features, it never saturates."""
    f = _features(reference, distorted)
    flat = f.flatten(1)
    w = torch.tensor(WEIGHTS[: flat.shape[1]], dtype=flat.dtype, device=flat.device)
    return (flat * w).sum(dim=1) * SCALE


def _cubic(x: torch.Tensor) -> torch.Tensor:
    a, b, c = POLY
    return a * x + b * x * x + c * x * x * x


def ssimulacra2(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """SSIMULACRA2 score of ``distorted`` against ``reference``, per image: (B,).

    Both are (B, 3, H, W) sRGB (gamma-encoded) tensors in 0..1, H and W at least 8; the
    score is the package's (100: identical, 90 visually lossless, 30 low quality; it goes
    below 0 for heavy distortion). In float64 it is the package's score to rounding
    (1e-11 on Kodak/JPEG crops), in float32 within 0.01 (measured: 0.005)."""
    p = _cubic(ssimulacra2_distance(reference, distorted))
    return 100.0 - 10.0 * _root(p, EXPONENT)


def ssimulacra2_loss(
    reference: torch.Tensor,
    distorted: torch.Tensor,
    eps: float = 1e-4,
    reduction: str = "mean",
) -> torch.Tensor:
    """A training loss: 100 - SSIMULACRA2, smooth (see the module docstring).

    ``eps`` keeps the slope of x^0.6276 finite at a perfect match (the loss is 0 there);
    beyond a distance of 30 (scores under about -20) the cubic is continued by its tangent,
    so badly distorted images still get a gradient. ``reduction``: "mean", "sum" or "none"
    (per image)."""
    x = ssimulacra2_distance(reference, distorted)
    a, b, c = POLY
    slope = a + 2 * b * KNEE + 3 * c * KNEE * KNEE
    p_knee = a * KNEE + b * KNEE**2 + c * KNEE**3
    p = torch.where(x <= KNEE, _cubic(x.clamp_max(KNEE)), p_knee + slope * (x - KNEE))
    loss = 10.0 * ((p.clamp_min(0.0) + eps) ** EXPONENT - math.pow(eps, EXPONENT))
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
