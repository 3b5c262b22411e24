"""SMAP ``*_3dcal.mat`` import: files written here with SMAP's layout (see the
docstring of napari_smlm.core.smap for where the layout comes from)."""

import h5py
import numpy as np
import pytest
import scipy.io as sio

from napari_smlm.core.smap import read_smap_3dcal

# SMAP's gauss_zfit: [σ0x, Ax, Ay, Bx, By, γ, d, σ0y], σ0 in px, γ and d in µm;
# its "x" width is along the image rows, "y" along the columns (see smap.py).
ZFIT = np.array([1.3, 0.10, -0.05, 0.02, 0.03, 0.15, 0.40, 1.1])
N_ROWS, N_COLS, N_Z = 13, 13, 31
DZ, Z0, X0 = 20.0, 12.0, 7.0  # nm; z0 as a spline coordinate; x0 1-based centre pixel
PIXEL_UM = 0.1


def smap_sigma(z_um, s0, a, b, gamma, d):
    """SMAP's Gaussian fitter: σ = σ0·sqrt(1 + u² + A·u³ + B·u⁴), u = (z − γ)/d."""
    u = (z_um - gamma) / d
    return s0 * np.sqrt(1 + u**2 + a * u**3 + b * u**4)


def huang_sigma(z_nm, p, axis):
    u = (z_nm - p[f"gamma_{axis}_nm"]) / p[f"d_{axis}_nm"]
    return p[f"sigma0_{axis}_nm"] * np.sqrt(1 + u**2 + p[f"A_{axis}"] * u**3 + p[f"B_{axis}"] * u**4)


def psf_stack():
    """(rows, columns, planes) in the file's order, as SMAP's calibration pairs the spline
    with gauss_zfit: plane k at z_g = (k − z0)·dz, rows width σ'x'(z_g − γ), columns σ'y'(z_g + γ)."""
    z_um = (np.arange(N_Z) - Z0) * DZ / 1000
    s_rows = smap_sigma(z_um, ZFIT[0], ZFIT[1], ZFIT[3], ZFIT[5], ZFIT[6])
    s_cols = smap_sigma(z_um, ZFIT[7], ZFIT[2], ZFIT[4], -ZFIT[5], ZFIT[6])
    r = np.arange(N_ROWS)[:, None, None] - (X0 - 1)
    c = np.arange(N_COLS)[None, :, None] - (X0 - 1)
    return np.exp(-r**2 / (2 * s_rows**2) - c**2 / (2 * s_cols**2))


def catmull_rom(n):
    """(n−1, 4 powers, n points): the cubic of each interval, interpolating the points."""
    m = np.array([[0, 1, 0, 0], [-0.5, 0, 0.5, 0], [1, -2.5, 2, -0.5], [-0.5, 1.5, -1.5, 0.5]])
    w = np.zeros((n - 1, 4, n))
    for i in range(n - 1):
        for a in range(4):
            w[i, :, min(max(i - 1 + a, 0), n - 1)] += m[:, a]
    return w


def smap_coeff(stack):
    """SMAP's cspline.coeff (N1, N2, Nz, 64) for a (N1+1, N2+1, Nz+1) stack: term
    i*16 + j*4 + k multiplies x^k y^j z^i (computeDelta3Dj_v2.m), x along dimension 1."""
    n1, n2, nz = stack.shape
    c = np.tensordot(catmull_rom(n1), stack, axes=(2, 0))  # (i, p, b, c)
    c = np.tensordot(c, catmull_rom(n2), axes=(2, 2))  # (i, p, c, j, q)
    c = np.tensordot(c, catmull_rom(nz), axes=(2, 2))  # (i, p, j, q, k, r)
    c = c.transpose(0, 2, 4, 1, 3, 5)  # (i, j, k, p, q, r)
    out = np.zeros((n1 - 1, n2 - 1, nz - 1, 64))
    for k in range(4):  # power along dimension 1 (rows)
        for j in range(4):  # dimension 2 (columns)
            for i in range(4):  # z
                out[..., i * 16 + j * 4 + k] = c[..., k, j, i]
    return out


def cell(*items):
    a = np.empty((1, len(items)), dtype=object)
    for n, item in enumerate(items):
        a[0, n] = item
    return a


def write_v5(path, sxy=None, parameters=True, **cspline_overrides):
    stack = psf_stack()
    cspline = {"coeff": cell(smap_coeff(stack).astype(np.float32)), "dz": DZ, "z0": Z0, "x0": X0,
               "mirror": 0.0, "global": {"isglobal": 0.0}}
    cspline.update(cspline_overrides)
    cspline = {k: v for k, v in cspline.items() if v is not None}
    if sxy is None:
        sxy = {"cspline": cspline, "gauss_zfit": ZFIT.astype(np.float32)[None, :], "EMon": 1.0,
               "Xrange": np.array([[-np.inf, np.inf]])}
    variables = {"SXY": sxy}
    if parameters:
        variables["parameters"] = {"pixelsize": cell(np.array([[PIXEL_UM, PIXEL_UM]])), "dz": DZ}
    sio.savemat(path, variables)
    return stack


def check_fitter_convention(d, stack):
    # Plane k of the file shows z = -(k - z0)·dz (SMAP's fitter, DECODE): reversed so that z grows.
    expected = stack.transpose(2, 0, 1)[::-1]
    assert d["stack"].dtype == np.float64 and d["stack"].shape == (N_Z, N_ROWS, N_COLS)
    np.testing.assert_allclose(d["stack"], expected, atol=2e-6)  # float32 coefficients
    assert d["z_step_nm"] == DZ
    assert d["focus_index"] == (N_Z - 1) - Z0
    assert d["center_index"] == X0 - 1


def test_v5_stack_axes_z_and_astigmatism(tmp_path):
    path = tmp_path / "beads_3dcal.mat"
    stack = write_v5(path)
    d = read_smap_3dcal(path)
    check_fitter_convention(d, stack)
    # A transposed or unreversed reading would differ: the PSF is not symmetric.
    assert np.abs(d["stack"] - d["stack"].transpose(0, 2, 1)).max() > 0.05
    assert np.abs(d["stack"] - d["stack"][::-1]).max() > 0.05
    assert d["pixel_size_nm"] == pytest.approx(100.0)
    assert "SXY" in d["source"] and "MATLAB v5" in d["source"]

    # The astigmatic Gaussian describes the same PSF as the stack at each of its z.
    a = d["astigmatic"]
    assert set(a) == {"sigma0_x_nm", "gamma_x_nm", "d_x_nm", "A_x", "B_x",
                      "sigma0_y_nm", "gamma_y_nm", "d_y_nm", "A_y", "B_y"}
    z_nm = (np.arange(N_Z) - d["focus_index"]) * d["z_step_nm"]
    k_file = (N_Z - 1) - np.arange(N_Z)
    z_g = (k_file - Z0) * DZ / 1000
    rows = smap_sigma(z_g, ZFIT[0], ZFIT[1], ZFIT[3], ZFIT[5], ZFIT[6]) * PIXEL_UM * 1000
    cols = smap_sigma(z_g, ZFIT[7], ZFIT[2], ZFIT[4], -ZFIT[5], ZFIT[6]) * PIXEL_UM * 1000
    np.testing.assert_allclose(huang_sigma(z_nm, a, "y"), rows, rtol=1e-5)  # y: image rows
    np.testing.assert_allclose(huang_sigma(z_nm, a, "x"), cols, rtol=1e-5)
    # …and matches the widths in the stack itself (second moments, focus plane and an edge).
    for j in (int(d["focus_index"]), 2, N_Z - 3):
        img = d["stack"][j]
        c = np.arange(N_COLS) - d["center_index"]
        w_rows = np.sqrt((img.sum(1) * c**2).sum() / img.sum()) * 100
        w_cols = np.sqrt((img.sum(0) * c**2).sum() / img.sum()) * 100
        assert w_rows == pytest.approx(huang_sigma(z_nm[j], a, "y"), rel=0.05)
        assert w_cols == pytest.approx(huang_sigma(z_nm[j], a, "x"), rel=0.05)


def test_stack_convention_keeps_file_order(tmp_path):
    path = tmp_path / "cal.mat"
    stack = write_v5(path)
    d = read_smap_3dcal(path, z_convention="stack")
    np.testing.assert_allclose(d["stack"], stack.transpose(2, 0, 1), atol=2e-6)
    assert d["focus_index"] == Z0
    z_nm = (np.arange(N_Z) - Z0) * DZ
    rows = smap_sigma(z_nm / 1000, ZFIT[0], ZFIT[1], ZFIT[3], ZFIT[5], ZFIT[6]) * PIXEL_UM * 1000
    np.testing.assert_allclose(huang_sigma(z_nm, d["astigmatic"], "y"), rows, rtol=1e-5)
    with pytest.raises(ValueError, match="z_convention"):
        read_smap_3dcal(path, z_convention="up")


def test_struct_array_takes_first_and_no_pixel_size(tmp_path):
    stack = psf_stack()
    sxy = np.zeros((1, 2), dtype=[("cspline", object), ("gauss_zfit", object)])
    sxy[0, 0] = ({"coeff": smap_coeff(stack), "dz": DZ, "z0": Z0, "x0": X0}, ZFIT[None, :])
    sxy[0, 1] = ({"coeff": np.zeros((2, 2, 2, 64)), "dz": 1.0, "z0": 0.0, "x0": 1.0}, ZFIT[None, :])
    path = tmp_path / "two_cameras_3dcal.mat"
    sio.savemat(path, {"SXY": sxy})
    d = read_smap_3dcal(path)
    check_fitter_convention(d, stack)
    assert "SXY holds 2 entries; the first was read" in d["source"]
    assert d["pixel_size_nm"] is None and d["astigmatic"] is None
    assert "no pixel size" in d["source"] and "σ0" in d["source"]


def test_v73_hdf5(tmp_path):
    """MATLAB v7.3: HDF5, arrays with their axes reversed, cells and struct arrays as references."""
    stack = psf_stack()
    path = tmp_path / "cal_v73_3dcal.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def mat(group, name, value, cls="double"):
            ds = group.create_dataset(name, data=np.asarray(value).T)  # MATLAB is column-major
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            return ds

        def refcell(group, name, targets, cls=None):
            ds = group.create_dataset(name, shape=(len(targets), 1), dtype=h5py.ref_dtype)
            for n, t in enumerate(targets):
                ds[n, 0] = t.ref
            if cls:
                ds.attrs["MATLAB_class"] = np.bytes_(cls)

        csplines = []
        for n, (coeff, dz) in enumerate([(smap_coeff(stack).astype(np.float32), DZ), (np.zeros((2, 2, 2, 64)), 1.0)]):
            g = refs.create_group(f"cs{n}")
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            refcell(g, "coeff", [mat(refs, f"coeff{n}", coeff, "single")], cls="cell")
            for k, v in (("dz", dz), ("z0", Z0), ("x0", X0)):
                mat(g, k, [[v]])
            csplines.append(g)
        zfits = [mat(refs, f"zfit{n}", ZFIT[None, :]) for n in range(2)]
        sxy = f.create_group("SXY")
        sxy.attrs["MATLAB_class"] = np.bytes_("struct")
        refcell(sxy, "cspline", csplines)
        refcell(sxy, "gauss_zfit", zfits)
        params = f.create_group("parameters")
        params.attrs["MATLAB_class"] = np.bytes_("struct")
        refcell(params, "pixelsize", [mat(refs, "px", [[PIXEL_UM, PIXEL_UM]])], cls="cell")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")

    d = read_smap_3dcal(path)
    check_fitter_convention(d, stack)
    assert "v7.3" in d["source"] and "SXY holds 2 entries" in d["source"]
    assert d["pixel_size_nm"] == pytest.approx(100.0)
    v5 = tmp_path / "same_v5.mat"
    write_v5(v5)
    ref = read_smap_3dcal(v5)["astigmatic"]
    assert d["astigmatic"] == pytest.approx(ref)


def test_top_level_layout_of_the_standalone_calibrator(tmp_path):
    """calibrate3D_g.m run outside SMAP saves cspline, gauss_zfit… as variables, not in SXY."""
    stack = psf_stack()
    path = tmp_path / "standalone_3dcal.mat"
    sio.savemat(path, {"cspline": {"coeff": cell(smap_coeff(stack)), "dz": DZ, "z0": Z0, "x0": X0},
                       "gauss_zfit": ZFIT[None, :], "parameters": {"pixelsize": cell(np.array([[0.1, 0.1]]))}})
    d = read_smap_3dcal(path)
    check_fitter_convention(d, stack)
    assert "top level" in d["source"] and d["astigmatic"] is not None


def test_bad_files_name_the_file_and_the_field(tmp_path):
    no_cspline = tmp_path / "no_cspline.mat"
    sio.savemat(no_cspline, {"SXY": {"gauss_zfit": ZFIT[None, :]}})
    with pytest.raises(ValueError, match=r"no_cspline\.mat.*'SXY\.cspline'"):
        read_smap_3dcal(no_cspline)

    no_dz = tmp_path / "no_dz.mat"
    write_v5(no_dz, dz=None)
    with pytest.raises(ValueError, match=r"no_dz\.mat.*'SXY\.cspline\.dz'"):
        read_smap_3dcal(no_dz)

    bad_coeff = tmp_path / "bad_coeff.mat"
    write_v5(bad_coeff, coeff=np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match=r"bad_coeff\.mat.*'SXY\.cspline\.coeff'.*64"):
        read_smap_3dcal(bad_coeff)

    other = tmp_path / "other.mat"
    sio.savemat(other, {"x": np.ones(3)})
    with pytest.raises(ValueError, match=r"other\.mat.*'SXY'"):
        read_smap_3dcal(other)

    text = tmp_path / "notes_3dcal.mat"
    text.write_text("not a MATLAB file\n" * 20)
    with pytest.raises(ValueError, match=r"notes_3dcal\.mat.*not a MATLAB"):
        read_smap_3dcal(text)

    with pytest.raises(FileNotFoundError, match="missing.mat"):
        read_smap_3dcal(tmp_path / "missing.mat")


def test_a_smap_file_drives_the_spline_psf_and_training_config(tmp_path):
    """What a DECODE user does: train --psf FILE_3dcal.mat (load_calibration, use_calibration, the PSF)."""
    import torch

    from napari_smlm.cli import _config_path
    from napari_smlm.core.calibration import load_calibration, use_calibration
    from napari_smlm.core.config import load_config
    from napari_smlm.core.simulation import Simulator

    write_v5(tmp_path / "beads_3dcal.mat")
    cal = load_calibration(tmp_path / "beads_3dcal.mat")
    assert cal.pixel_size_nm > 0 and np.allclose(cal.stack.sum((1, 2)), 1.0, atol=1e-5)
    cfg = load_config(_config_path("astig_3d"), ["training.init_weights=null"])
    said = use_calibration(cfg, tmp_path / "beads_3dcal.mat")
    assert cfg.simulation.psf.kind == "spline" and "z drawn uniformly" in said
    sim = Simulator(cfg.simulation, seed=0)
    frames = sim.render(sim.sample_emitters(2, 3), 2, 3)
    assert torch.isfinite(frames).all() and frames.sum() > 0
