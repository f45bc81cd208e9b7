"""Sensor noise fingerprints (PRNU): the noise residual, the camera's estimate, and correlations.

The model is the one of Lukas, Fridrich & Goljan ("Digital camera identification from sensor pattern
noise", IEEE TIFS 2006) with the maximum-likelihood estimate of Chen, Fridrich, Goljan & Lukas
("Determining image origin and integrity using sensor noise", IEEE TIFS 2008): a photo is
``I = I0 (1 + K) + noise``, its noise residual ``W = I - F(I)`` (F a denoiser) is about ``I K`` plus
noise, and from N photos of one camera

    K = sum_i(W_i * I_i) / sum_i(I_i ** 2)

(per pixel). Here F is scikit-image's wavelet denoiser (`skimage.restoration.denoise_wavelet`,
db8, 4 levels (fewer on images too small for 4), BayesShrink soft thresholds at sigma = 3 grey levels) on the grey image (ITU-R 601
luma, float, 0-255). The estimate is then cleaned as in the Binghamton code: every row and column
zero-meaned (removes the linear patterns demosaicking and readout leave in all cameras of a model
alike) and Wiener-filtered in the Fourier domain (flattens periodic peaks of the spectrum), and
normalised to unit standard deviation (a correlation does not depend on the scale; float16 keeps
unit values exactly enough).

Saturated pixels (grey >= `SATURATED`) carry no PRNU and are left out of both sums.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

SIGMA = 3.0
"""Noise sigma of the wavelet denoiser, grey levels (0-255)."""
WAVELET = "db8"
LEVELS = 4
SATURATED = 250.0
"""Grey levels at or above this are treated as clipped and carry no fingerprint."""
WINDOW = 64
"""Side of the sliding window of :func:`correlation_map`, pixels."""
_EPS = 1e-12


def grey(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float32 luma (ITU-R 601 weights), 0-255, unrounded."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got {rgb.shape}")
    return (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def noise_residual(rgb: np.ndarray) -> np.ndarray:
    """W = grey - denoise_wavelet(grey): HxW float32, grey levels (about zero-mean, a few levels)."""
    import pywt
    from skimage.restoration import denoise_wavelet

    g = grey(rgb)
    levels = max(1, min(LEVELS, pywt.dwt_max_level(min(g.shape), pywt.Wavelet(WAVELET).dec_len)))
    den = denoise_wavelet(g / 255.0, sigma=SIGMA / 255.0, wavelet=WAVELET, mode="soft", wavelet_levels=levels,
                          method="BayesShrink", rescale_sigma=True)
    return (g - 255.0 * den.astype(np.float32)).astype(np.float32)


class FingerprintSums:
    """Running sums of the ML estimate, one photo at a time (memory: two HxW float64 arrays)."""

    def __init__(self, shape_hw: tuple[int, int]) -> None:
        self.shape = tuple(shape_hw)
        self.num = np.zeros(self.shape, np.float64)
        self.den = np.zeros(self.shape, np.float64)
        self.n = 0

    def add(self, rgb: np.ndarray) -> None:
        """Add one photo (HxWx3 uint8, the sums' size, sensor orientation)."""
        if rgb.shape[:2] != self.shape:
            raise ValueError(f"photo is {rgb.shape[1]}x{rgb.shape[0]}, the fingerprint is {self.shape[1]}x{self.shape[0]}")
        g = grey(rgb)
        w = noise_residual(rgb)
        g = np.where(g >= SATURATED, 0.0, g)
        self.num += w * g
        self.den += g.astype(np.float64) ** 2
        self.n += 1

    def fingerprint(self) -> np.ndarray:
        """The cleaned estimate (:func:`clean`): HxW float32, zero mean, unit standard deviation."""
        if self.n == 0:
            raise ValueError("no photo was added")
        return clean((self.num / np.maximum(self.den, 1.0)).astype(np.float32))


def estimate_fingerprint(photos: Iterable[np.ndarray]) -> np.ndarray:
    """The cleaned ML fingerprint of photos of one camera (each HxWx3 uint8, one size): HxW float32."""
    sums = None
    for rgb in photos:
        sums = sums or FingerprintSums(rgb.shape[:2])
        sums.add(rgb)
    if sums is None:
        raise ValueError("no photo given")
    return sums.fingerprint()


def zero_mean(k: np.ndarray) -> np.ndarray:
    """``k`` (HxW) minus its overall mean, every column's mean and every row's mean."""
    k = k - k.mean()
    k = k - k.mean(axis=0, keepdims=True)
    return k - k.mean(axis=1, keepdims=True)


def wiener_dft(k: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """Wiener filter of ``k`` (HxW) in the Fourier domain (Goljan's WienerInDFT): each spectral
    magnitude is shrunk by ``sigma^2 / (local variance + sigma^2)``, the local variance the smallest
    of 3x3..9x9 windows, so peaks (periodic artefacts shared by a camera model) are flattened."""
    import cv2

    sigma = float(k.std()) if sigma is None else sigma
    f = np.fft.fft2(k)
    mag = (np.abs(f) / np.sqrt(k.size)).astype(np.float32)
    var = sigma**2
    sq = mag * mag
    est = np.full(mag.shape, np.inf, np.float32)
    for w in (3, 5, 7, 9):
        est = np.minimum(est, np.maximum(0.0, cv2.blur(sq, (w, w), borderType=cv2.BORDER_REFLECT) - var))
    shrunk = mag * (var / (est + var))
    ratio = np.where(mag > 0, shrunk / np.where(mag > 0, mag, 1.0), 0.0)
    return np.real(np.fft.ifft2(f * ratio)).astype(np.float32)


def clean(k: np.ndarray) -> np.ndarray:
    """Zero-meaned rows and columns, Wiener-filtered in the DFT, unit standard deviation: HxW float32."""
    k = wiener_dft(zero_mean(k.astype(np.float32)))
    k = zero_mean(k)
    return (k / max(float(k.std()), _EPS)).astype(np.float32)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two same-shape arrays, in [-1, 1]."""
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / max(np.sqrt((a @ a) * (b @ b)), _EPS))


def fingerprint_correlation(rgb: np.ndarray, k: np.ndarray) -> float:
    """Correlation of a photo's noise residual with ``K * I`` (its expected PRNU term), in [-1, 1].

    rgb: HxWx3 uint8 at the fingerprint's size and orientation; k: HxW float.
    """
    g = grey(rgb)
    return correlation(noise_residual(rgb), k * np.where(g >= SATURATED, 0.0, g))


def correlation_map(rgb: np.ndarray, k: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Local normalised correlation of the residual with ``K * I`` over ``window`` x ``window``
    windows centred on each pixel (box filters, reflected borders): HxW float32 in [-1, 1]; high where
    the pixels came from the camera of ``k``, about 0 where they did not (a splice from another
    camera, a region painted over). The window shrinks to the image's shorter side / 2 on small images.
    """
    import cv2

    if k.shape != rgb.shape[:2]:
        raise ValueError(f"fingerprint is {k.shape[1]}x{k.shape[0]}, the image {rgb.shape[1]}x{rgb.shape[0]}")
    g = grey(rgb)
    x = noise_residual(rgb)
    y = (k.astype(np.float32) * np.where(g >= SATURATED, 0.0, g)).astype(np.float32)
    side = max(3, min(int(window), min(g.shape) // 2))

    def mean(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_32F, (side, side), normalize=True, borderType=cv2.BORDER_REFLECT)

    mx, my = mean(x), mean(y)
    cov = mean(x * y) - mx * my
    vx = np.maximum(mean(x * x) - mx * mx, 0.0)
    vy = np.maximum(mean(y * y) - my * my, 0.0)
    out = cov / np.sqrt(np.maximum(vx * vy, 1e-8))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def orient(k: np.ndarray, orientation: int | None) -> np.ndarray:
    """``k`` (HxW) in sensor orientation, turned as `PIL.ImageOps.exif_transpose` turns the photo for
    EXIF ``orientation`` (1-8; None or anything else: unchanged), so it lines up with upright pixels."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1, :], 5: lambda a: a.T,
           6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].T, 8: lambda a: np.rot90(a, 1)}
    op = ops.get(int(orientation or 1))
    return np.ascontiguousarray(op(k)) if op else k
