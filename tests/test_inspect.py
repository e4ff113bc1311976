"""``tcomp inspect`` on a small MLP: fusion reduces kernels and bytes, figures are consistent."""
from tcomp.tools.inspect_cmd import report


def test_inspect_small_mlp_reports_fusion_gains():
    lines = []
    r = report(sizes=(16, 8, 8, 4), batch=4, backend="cpu", scale=3, out=lines.append)
    assert r["kernels_fused"] < r["kernels_unfused"]
    assert r["bytes_fused"] < r["bytes_unfused"]
    assert r["bytes_fused"] <= r["bytes_fused_without_reuse"]
    nodes_ratio, _ = r["pass_scaling"]
    assert nodes_ratio >= 3
    assert any(line.startswith("fuse_elementwise") for line in lines)
