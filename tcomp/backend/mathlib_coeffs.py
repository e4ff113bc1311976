"""Polynomial coefficient tables for :mod:`tcomp.backend.mathlib`.

The tables below are literal numbers so that importing tcomp never needs mpmath.  They were
produced by :func:`generate_tables` (mpmath Chebyshev fits at 60 digits, which are within a
small factor of the minimax error) and are reproducible by running it.  Each entry is stored
lowest degree first.  Why each shape was chosen:

* ``expm1``: ``expm1(r) = r + r**2/2 + r**3 * P(r)`` on ``|r| <= ln2/2``; exp uses it too
  (``exp(r) = 1 + expm1(r)``), so one fit serves both and the leading terms stay exact.
* ``log``: fdlibm's form ``log(1+f) = f - hfsq + s*(hfsq + z*P(z))`` with ``s = f/(2+f)``,
  ``z = s*s`` on ``z <= ((sqrt2-1)/(sqrt2+1))**2``.
* ``sin``/``cos``: ``sin(r) = r + r**3*P(z)``, ``cos(r) = 1 - z/2 + z**2*Q(z)``, ``z = r*r``,
  ``|r| <= pi/4``.
* ``tanh``: ``tanh(x) = x + x**3 * P(x*x)`` on ``|x| <= 0.625``; the fit error reaches the
  result times ``x**2 <= 0.39``, so float32 keeps 5 coefficients (~0.3 ulp; max 0.85 ulp measured
  below 0.625, where the other side's 1.1 ulp is the bound).
* ``tanh_exp``: the ``expm1`` shape, one degree lower, for tanh's ``exp(2|x|)`` above 0.625:
  there the error of the exponential reaches tanh multiplied by ``2e/(e+1)**2 <= 0.35``, so
  float32 gets by with 4 coefficients (fit error ~0.3 ulp of e) and float64 with 9.
* ``erf_small``: ``erf(x) = x * P(x*x)`` on ``|x| <= 1``.
* ``erf_large``: pieces ``(x_lo, x_hi, t_center, coeffs)`` of
  ``Q(t) = erfc(x) * exp(x*x) * x`` with ``t = 1/x``, as a polynomial in ``t - t_center``
  (centred so that the monomial coefficients stay small and Horner does not cancel);
  ``erf(x) = 1 - exp(-x*x) * t * Q(t)``.

Degrees: float32 tables keep the fit error below ~0.03 ulp, float64 tables below ~0.1 ulp, except
the two tanh tables, whose errors are damped before they reach the result (see above).
"""
from __future__ import annotations

# Degrees (number of coefficients) per table and dtype; erf_large pieces are (x_lo, x_hi).
_SPEC = {
    "float32": {"expm1": 5, "log": 4, "sin": 4, "cos": 4, "erf_small": 7, "tanh": 5, "tanh_exp": 4,
                "erf_large": [(1.0, 4.0, 10)]},
    "float64": {"expm1": 10, "log": 8, "sin": 7, "cos": 7, "erf_small": 12, "tanh": 12, "tanh_exp": 9,
                "erf_large": [(1.0, 1.6, 16), (1.6, 2.6, 16), (2.6, 6.0, 16)]},
}


def generate_tables() -> dict:
    """Refit every table with mpmath (needs ``pip install mpmath``); returns the same layout as TABLES."""
    import struct

    import mpmath as mp

    mp.mp.dps = 60

    def rnd(v, dtype):
        v = float(v)
        return struct.unpack("f", struct.pack("f", v))[0] if dtype == "float32" else v

    def fit(f, a, b, n, dtype):
        coeffs = mp.chebyfit(f, [a, b], n)
        return [rnd(c, dtype) for c in coeffs[::-1]]

    def near0(z, limit, fn):
        return limit if abs(z) < mp.mpf("1e-25") else fn(z)

    funcs = {
        "expm1": (lambda r: near0(r, mp.mpf(1) / 6, lambda r: (mp.expm1(r) - r - r * r / 2) / r ** 3),
                  -mp.log(2) / 2 * mp.mpf("1.001"), mp.log(2) / 2 * mp.mpf("1.001")),
        "tanh_exp": (lambda r: near0(r, mp.mpf(1) / 6, lambda r: (mp.expm1(r) - r - r * r / 2) / r ** 3),
                     -mp.log(2) / 2 * mp.mpf("1.001"), mp.log(2) / 2 * mp.mpf("1.001")),
        "log": (lambda z: near0(z, mp.mpf(2) / 3,
                                lambda z: (mp.log((1 + mp.sqrt(z)) / (1 - mp.sqrt(z))) - 2 * mp.sqrt(z))
                                / (mp.sqrt(z) * z)),
                0, ((mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)) ** 2 * mp.mpf("1.001")),
        "sin": (lambda z: near0(z, -mp.mpf(1) / 6, lambda z: (mp.sin(mp.sqrt(z)) - mp.sqrt(z)) / (mp.sqrt(z) * z)),
                0, (mp.pi / 4) ** 2 * mp.mpf("1.001")),
        "cos": (lambda z: near0(z, mp.mpf(1) / 24, lambda z: (mp.cos(mp.sqrt(z)) - 1 + z / 2) / (z * z)),
                0, (mp.pi / 4) ** 2 * mp.mpf("1.001")),
        "tanh": (lambda z: near0(z, -mp.mpf(1) / 3, lambda z: (mp.tanh(mp.sqrt(z)) - mp.sqrt(z)) / (mp.sqrt(z) * z)),
                 0, mp.mpf("0.625") ** 2 * mp.mpf("1.001")),
        "erf_small": (lambda z: near0(z, 2 / mp.sqrt(mp.pi), lambda z: mp.erf(mp.sqrt(z)) / mp.sqrt(z)),
                      0, mp.mpf(1)),
    }
    out = {}
    for dtype, spec in _SPEC.items():
        tab = {}
        for name, (f, a, b) in funcs.items():
            tab[name] = fit(f, a, b, spec[name], dtype)
        pieces = []
        for x_lo, x_hi, n in spec["erf_large"]:
            a, b = 1 / mp.mpf(x_hi), 1 / mp.mpf(x_lo)
            c = (a + b) / 2

            def q(u, c=c):
                x = 1 / (u + c)
                return mp.erfc(x) * mp.exp(x * x) * x

            pieces.append((x_lo, x_hi, rnd(c, dtype), fit(q, a - c, b - c, n, dtype)))
        tab["erf_large"] = pieces
        out[dtype] = tab
    return out


# Output of generate_tables() (mpmath 1.3.0; tanh_exp and the 5-term float32 tanh fitted with 1.4.1,
# which reproduces every other entry exactly).
TABLES = {'float32': {'cos': [0.0416666679084301,
                     -0.00138888880610466,
                     2.4800598112051375e-05,
                     -2.7300703209220956e-07],
             'erf_large': [(1.0,
                            4.0,
                            0.625,
                            [0.489524781703949,
                             -0.17158564925193787,
                             -0.001295486930757761,
                             0.07210192829370499,
                             -0.07798336446285248,
                             0.0496121421456337,
                             -0.011232849210500717,
                             -0.02460380084812641,
                             0.05492168664932251,
                             -0.047822628170251846])],
             'erf_small': [1.1283791065216064,
                           -0.3761262595653534,
                           0.11283594369888306,
                           -0.02685421146452427,
                           0.005189087241888046,
                           -0.000801686430349946,
                           7.875874871388078e-05],
             'expm1': [0.1666666716337204,
                       0.04166655242443085,
                       0.00833332072943449,
                       0.0013926250394433737,
                       0.00019882773631252348],
             'log': [0.6666666865348816, 0.4000012278556824, 0.28550779819488525, 0.23331613838672638],
             'sin': [-0.1666666716337204,
                     0.008333331905305386,
                     -0.00019840084132738411,
                     2.724962087086169e-06],
             'tanh': [-0.333333283662796,
                      0.1333276778459549,
                      -0.05385059490799904,
                      0.020995695143938065,
                      -0.006094554904848337],
             'tanh_exp': [0.16666631400585175,
                          0.04166662320494652,
                          0.008357248269021511,
                          0.0013918773038312793]},
 'float64': {'cos': [0.041666666666666664,
                     -0.0013888888888888887,
                     2.4801587301584632e-05,
                     -2.755731922139249e-07,
                     2.0876755787492604e-09,
                     -1.1470460319209511e-11,
                     4.745838412531023e-14],
             'erf_large': [(1.0,
                            1.6,
                            0.8125,
                            [0.45769671058273187,
                             -0.16623681842795954,
                             0.025807951533906966,
                             0.02906133917384315,
                             -0.0397346366459619,
                             0.03106531432648781,
                             -0.01694140540963761,
                             0.004251236545753208,
                             0.004348847481892015,
                             -0.00856064856729226,
                             0.009224032959383713,
                             -0.0075693866186472775,
                             0.004816601777129057,
                             -0.0018518411702158283,
                             -0.0011861124045557028,
                             0.002916215777058386]),
                           (1.6,
                            2.6,
                            0.5048076923076923,
                            [0.5099866199558672,
                             -0.1675550526963112,
                             -0.034932512817266226,
                             0.11688114806131271,
                             -0.10771827520301157,
                             0.04361877117958917,
                             0.03714426769349336,
                             -0.09979776830330556,
                             0.1188997554900233,
                             -0.08342188421493307,
                             -6.995673962270829e-05,
                             0.10733061281569252,
                             -0.20073514565652836,
                             0.236390922100812,
                             -0.1604706007353959,
                             -0.02483461624164138]),
                           (2.6,
                            6.0,
                            0.27564102564102566,
                            [0.5448284610830337,
                             -0.12762084373163007,
                             -0.15105471302534726,
                             0.2149757665454318,
                             -0.05907886935028167,
                             -0.2114600282308784,
                             0.3824867297818613,
                             -0.2104380362748987,
                             -0.4010575397958111,
                             1.1705377668107484,
                             -1.3063717697414765,
                             -0.25682412734461463,
                             3.994289655124566,
                             -8.082920156130577,
                             5.0254696399713055,
                             10.91324926606245])],
             'erf_small': [1.1283791670955126,
                           -0.37612638903183543,
                           0.11283791670945006,
                           -0.02686617064323777,
                           0.0052239776071164225,
                           -0.0008548325975389692,
                           0.00012055294904839707,
                           -1.492473690741966e-05,
                           1.6447424703317362e-06,
                           -1.6208483801871705e-07,
                           1.3720064546777686e-08,
                           -7.795898827002142e-10],
             'expm1': [0.16666666666666669,
                       0.041666666666666664,
                       0.008333333333330039,
                       0.0013888888888886537,
                       0.00019841269863171557,
                       2.4801587317228724e-05,
                       2.7557268276905696e-06,
                       2.7557282838800484e-07,
                       2.5100472505694996e-08,
                       2.09112987659402e-09],
             'log': [0.6666666666666666,
                     0.40000000000000885,
                     0.28571428570799784,
                     0.22222222392581045,
                     0.18181795547521137,
                     0.15386244737621665,
                     0.13268638369266825,
                     0.13088034850927555],
             'sin': [-0.16666666666666666,
                     0.008333333333333331,
                     -0.0001984126984126504,
                     2.755731921932058e-06,
                     -2.50521062259944e-08,
                     1.6058530596645953e-10,
                     -7.586636882825159e-13],
             'tanh': [-0.3333333333333333,
                      0.1333333333333304,
                      -0.05396825396789371,
                      0.02186948851886792,
                      -0.008863235100174033,
                      0.0035921217122266407,
                      -0.0014557751050964238,
                      0.0005896591083635056,
                      -0.00023758563980884253,
                      9.256112886604006e-05,
                      -3.118977434431334e-05,
                      6.479652583909459e-06],
             'tanh_exp': [0.16666666666666666,
                          0.041666666666651246,
                          0.008333333333332147,
                          0.0013888888905973543,
                          0.00019841269854409363,
                          2.480153620505534e-05,
                          2.755727992579576e-06,
                          2.761390867578486e-07,
                          2.509563297507093e-08]}}


if __name__ == "__main__":  # regenerate: python -m tcomp.backend.mathlib_coeffs
    import pprint

    pprint.pprint(generate_tables(), width=110)
