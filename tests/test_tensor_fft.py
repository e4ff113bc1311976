"""T.fft.rfft / irfft (DFT matrices in the graph) against numpy.fft, with gradients."""
import numpy as np
import pytest

import tcomp
import tcomp.tensor as T
from tcomp.gradient import verify_grad
from tcomp.tensor import fft

RNG = np.random.default_rng(11)


def _var(nd):
    return T.TensorType("float64", (None,) * nd)("v")


@pytest.mark.parametrize("shape,norm", [((3, 8), None), ((2, 7), "ortho"), ((2, 4, 6), "no_norm"),
                                        ((2, 3, 5, 4), None)])
def test_rfft_and_irfft_match_numpy(shape, norm):
    x = RNG.standard_normal(shape)
    axes = tuple(range(1, len(shape)))
    np_norm = {None: "backward", "ortho": "ortho", "no_norm": "backward"}[norm]
    X = _var(len(shape))
    got = tcomp.function([X], fft.rfft(X, norm))(x)
    want = np.fft.rfftn(x, axes=axes, norm=np_norm)
    np.testing.assert_allclose(got[..., 0], want.real, atol=1e-10)
    np.testing.assert_allclose(got[..., 1], want.imag, atol=1e-10)
    # irfft of an arbitrary half spectrum (not one rfft made), as numpy.fft.irfftn computes it
    spec = RNG.standard_normal(want.shape) + 1j * RNG.standard_normal(want.shape)
    Z = _var(len(shape) + 1)
    odd = shape[-1] % 2 == 1
    back = tcomp.function([Z], fft.irfft(Z, norm, is_odd=odd))(np.stack([spec.real, spec.imag], -1))
    ref = np.fft.irfftn(spec, s=shape[1:], axes=axes, norm=np_norm)
    if norm == "no_norm":
        ref = ref * np.prod(shape[1:])
    np.testing.assert_allclose(back, ref, atol=1e-10)


def test_fft_gradients_and_errors():
    verify_grad(lambda a: fft.rfft(a), [RNG.standard_normal((2, 5))], rng=np.random.default_rng(1))
    verify_grad(lambda a: fft.irfft(a, "ortho"), [RNG.standard_normal((1, 3, 4, 2))], rng=np.random.default_rng(2))
    with pytest.raises(ValueError, match="norm"):
        fft.rfft(T.dmatrix("m"), norm="forward")
    with pytest.raises(ValueError, match="batch axis"):
        fft.rfft(T.dvector("v"))
